"""The x86_32 arch plugin: i386 Linux early memory setup, one profile per kernel generation.

- ``"2.6.25"`` (default, :mod:`arches.x86_32.v2_6_25`): the 2008 kernel of the seed: e820 as
  BIOS-provided and user-defined maps, ``find_max_low_pfn()``, classic bootmem over lowmem
  with the bitmap after the boot page tables, one active range from pfn 0, the highmem
  handover in ``mem_init()``.
- ``"6.1"`` (:mod:`arches.x86_32.v6_1`): the Debian 6.1 i386 kernels of ``real-boots/``:
  modern e820 messages, MAXMEM from VMALLOC_END, memblock ranges without page 0 and holes.

The plugin class only dispatches each phase hook to the profile object of the boot; the
profile classes are the data sheets (constants, defaults) plus the kernel's routines. The
``[kernel]`` keys the arch reads are documented in :mod:`arches.x86_32.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arches.x86_32.config import read_config
from arches.x86_32.v2_6_25 import Linux2625
from arches.x86_32.v6_1 import Linux61
from bootemu.hookspecs import hookimpl
from bootemu.models import BootemuError, Layout, Machine

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

#: Profile name -> profile class.
PROFILES: dict[str, type[Linux2625]] = {"2.6.25": Linux2625, "6.1": Linux61}


def make_profile(machine: Machine) -> Linux2625:
    """Validate ``machine`` for x86_32 and build the profile object for one boot."""
    cls = PROFILES.get(machine.kernel.profile)
    if cls is None:
        raise BootemuError(f"{machine.source}: kernel.profile: x86_32 has no profile "
                           f"{machine.kernel.profile!r} (known: {', '.join(PROFILES)})")
    highmem = machine.kernel.highmem or "64G"
    cfg = read_config(machine, cls.defaults(highmem))
    return cls(machine, cfg)


class X86_32:  # noqa: N801 - the arch's name
    """i386 Linux early memory: e820, lowmem/highmem, bootmem over lowmem, highmem handover."""

    def __init__(self) -> None:
        self.profile: Linux2625 | None = None

    def _profile(self, boot: Boot) -> Linux2625:
        if self.profile is None or self.profile.machine is not boot.machine:
            self.profile = make_profile(boot.machine)
        self.profile.boot = boot
        return self.profile

    @hookimpl
    def bootemu_arch_check_machine(self, machine: Machine) -> bool:
        """Validate the profile and the ``[kernel]`` keys (arches/x86_32/config.py)."""
        self.profile = make_profile(machine)
        return True

    @hookimpl
    def bootemu_arch_firmware(self, boot: Boot) -> bool:
        """The sanitized BIOS map, printed as ``BIOS-provided physical RAM map:``."""
        self._profile(boot).firmware(boot)
        return True

    @hookimpl
    def bootemu_arch_cmdline(self, boot: Boot) -> bool:
        """``mem=``, ``memmap=``, ``highmem=``, ``vmalloc=`` ... and the user-defined map."""
        self._profile(boot).cmdline(boot)
        return True

    @hookimpl
    def bootemu_arch_layout(self, boot: Boot) -> Layout:
        """max_pfn, max_low_pfn, highmem, zones (node 0, one block per RAM range)."""
        return self._profile(boot).layout(boot)

    @hookimpl
    def bootemu_arch_register(self, boot: Boot, allocator: AllocatorFacade) -> bool:
        """One block on node 0: pfns [0, max_low_pfn)."""
        self._profile(boot).register(boot, allocator)
        return True

    @hookimpl
    def bootemu_arch_enable(self, boot: Boot, allocator: AllocatorFacade) -> bool:
        """Bitmaps after the boot page tables (2.6.25), then free lowmem RAM."""
        self._profile(boot).enable(boot, allocator)
        return True

    @hookimpl
    def bootemu_arch_reserve(self, boot: Boot, allocator: AllocatorFacade) -> bool:
        """Kernel image, page 0, EBDA, trampoline, MP table, initrd, crashkernel."""
        self._profile(boot).reserve(boot, allocator)
        return True

    @hookimpl
    def bootemu_arch_allocate(self, boot: Boot, allocator: AllocatorFacade) -> bool:
        """mem_map, usemaps, page tables, per-cpu areas, pid/dentry/inode hashes ..."""
        self._profile(boot).allocate(boot, allocator)
        return True

    @hookimpl
    def bootemu_arch_handoff(
        self, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel
    ) -> int:
        """free_all_bootmem() on node 0, then the highmem pages; returns totalram_pages."""
        return self._profile(boot).handoff(boot, allocator, pagealloc)

    @hookimpl
    def bootemu_arch_summary(self, boot: Boot, pagealloc: PageAllocModel) -> bool:
        """The kernel's ``Memory:`` line."""
        self._profile(boot).summary(boot, pagealloc)
        return True


__all__ = ["PROFILES", "X86_32", "make_profile"]
