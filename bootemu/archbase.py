"""A base for arch plugins whose phases are run by one profile object per boot.

Both built-in arches work this way (the py-evm pattern of STYLE.md): a profile class per kernel
generation (``"2.6.25"``, ``"6.1"`` subclassing it), holding the arch's constants and routines,
and a thin plugin class that validates the machine, builds the profile for the boot and hands
each phase hook to it. :class:`ProfileArch` is that thin class, written once.

A profile object implements :class:`bootemu.contract.Profile`: ``firmware(boot)``,
``cmdline(boot)``, ``layout(boot) -> Layout``, ``register(boot, allocator)``,
``enable(boot, allocator)``, ``reserve(boot, allocator)``, ``allocate(boot, allocator)``,
``handoff(boot, allocator, pagealloc) -> int`` and ``summary(boot, pagealloc)``; its ``boot``
attribute is set before each phase. The plugin says which build facts the profile stands for
(:meth:`ProfileArch.arch_info`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot
    from bootemu.contract import Allocator, ArchInfo
    from bootemu.models import Layout, Machine
    from bootemu.pagealloc import PageAllocModel


class ProfileArch:
    """An arch plugin that dispatches every phase to the profile object of the boot.

    Subclasses implement :meth:`make_profile`: validate ``machine`` (raise
    :class:`bootemu.models.BootemuError` naming the file and key) and return the profile object.
    """

    def __init__(self) -> None:
        self.profile: Any = None

    def make_profile(self, machine: Machine) -> Any:
        """The profile object for one boot of ``machine`` (validates the arch's keys)."""
        raise NotImplementedError

    def arch_info(self, profile: Any) -> ArchInfo:
        """The build facts (:class:`bootemu.contract.ArchInfo`) of ``profile``'s kernel.

        By default the profile's own ``arch_info()``; a plugin whose facts follow from its
        configuration alone may answer here instead."""
        return profile.arch_info()

    def _profile(self, boot: Boot) -> Any:
        if self.profile is None:  # the sequencer always checks the machine first
            self.profile = self.make_profile(boot.machine)
        self.profile.boot = boot
        return self.profile

    @hookimpl
    def bootemu_arch_check_machine(self, machine: Machine) -> None:
        self.profile = self.make_profile(machine)

    @hookimpl
    def bootemu_arch_info(self, machine: Machine) -> ArchInfo:
        if self.profile is None:
            self.profile = self.make_profile(machine)
        return self.arch_info(self.profile)

    @hookimpl
    def bootemu_arch_firmware(self, boot: Boot) -> None:
        self._profile(boot).firmware(boot)

    @hookimpl
    def bootemu_arch_cmdline(self, boot: Boot) -> None:
        self._profile(boot).cmdline(boot)

    @hookimpl
    def bootemu_arch_layout(self, boot: Boot) -> Layout:
        return self._profile(boot).layout(boot)

    @hookimpl
    def bootemu_arch_register(self, boot: Boot, allocator: Allocator) -> None:
        self._profile(boot).register(boot, allocator)

    @hookimpl
    def bootemu_arch_enable(self, boot: Boot, allocator: Allocator) -> None:
        self._profile(boot).enable(boot, allocator)

    @hookimpl
    def bootemu_arch_reserve(self, boot: Boot, allocator: Allocator) -> None:
        self._profile(boot).reserve(boot, allocator)

    @hookimpl
    def bootemu_arch_allocate(self, boot: Boot, allocator: Allocator) -> None:
        self._profile(boot).allocate(boot, allocator)

    @hookimpl
    def bootemu_arch_handoff(
        self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel
    ) -> int:
        return int(self._profile(boot).handoff(boot, allocator, pagealloc))

    @hookimpl
    def bootemu_arch_summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        self._profile(boot).summary(boot, pagealloc)
