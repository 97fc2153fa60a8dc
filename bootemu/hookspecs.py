"""The contract: every hook an arch, an allocator backend or an observer can implement.

Three families, one spec class each (pluggy project name ``"bootemu"``):

- :class:`ArchSpec`: one hook per boot phase; exactly one arch plugin is registered per boot.
- :class:`AllocatorSpec`: the boot-time allocator (bootmem, bootmem2, memblock ...); exactly one
  backend is registered per boot. Observers (the recorder and checker, tracers, user plugins)
  may wrap these hooks with ``@hookimpl(wrapper=True)`` to watch every call.
- :class:`LifecycleSpec`: before / after / on-error around each phase, and the end of a boot.

Rules for implementations: parameters take no default values and there is no ``**kwargs``
(pluggy passes nothing to parameters that have defaults); implement a subset of the parameters
if you like. The core calls the arch and allocator hooks only through the typed facades in
:mod:`bootemu.plugins`, with keyword arguments. A hook whose spec returns ``None`` returns
nothing: the core never reads such a value. The types of the contract are in
:mod:`bootemu.contract`, which imports nothing of the core's plugin machinery (no cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from bootemu.boot import Boot
    from bootemu.contract import Allocator, ArchInfo
    from bootemu.models import AllocRequest, BitmapRequest, Layout, Machine, PageSink
    from bootemu.pagealloc import PageAllocModel

PROJECT = "bootemu"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ArchSpec:
    """Hooks of an arch plugin (``arches/*.py``), called in phase order."""

    @hookspec(firstresult=True)
    def bootemu_arch_check_machine(self, machine: Machine) -> None:
        """Validate the arch-specific parts of ``machine`` before the boot starts.

        Called once, before the ``firmware`` phase, on a machine whose tables already passed
        the arch's declared schema (``MACHINE_SCHEMA``, :mod:`bootemu.schema`): check here what
        a schema cannot say (keys that depend on each other). Raise
        :class:`bootemu.models.BootemuError` naming the machine file and the key
        (``"m.toml: kernel.highmem: ..."``) for bad input. Returns nothing.
        """

    @hookspec(firstresult=True)
    def bootemu_arch_info(self, machine: Machine) -> ArchInfo | None:
        """The build facts of the emulated kernel (:class:`bootemu.contract.ArchInfo`).

        Required: called once, right after ``bootemu_arch_check_machine``; the sequencer stores
        the answer in ``boot.arch_info``, where backends read it (``boot.info``). An arch that
        answers nothing is an error naming it.
        """

    @hookspec(firstresult=True)
    def bootemu_arch_firmware(self, boot: Boot) -> None:
        """Phase ``firmware``: read the machine's firmware memory map.

        An e820 arch fills ``boot.e820`` (the report's ``memory.e820``) and traces the table as
        the kernel prints it; a device-tree arch reads its own tables. Returns nothing.
        """

    @hookspec(firstresult=True)
    def bootemu_arch_cmdline(self, boot: Boot) -> None:
        """Phase ``cmdline``: apply the early parameters of ``boot.machine.kernel.cmdline``.

        ``mem=``, ``memmap=``, ``highmem=``, ``vmalloc=``, ``numa=`` ... change ``boot.e820`` or
        the arch's own limits. Returns nothing.
        """

    @hookspec(firstresult=True)
    def bootemu_arch_layout(self, boot: Boot) -> Layout | None:
        """Phase ``layout``: sanitize the map and decide the page-frame layout.

        Returns the :class:`bootemu.models.Layout` (pfn limits, nodes and blocks, zones, and
        the ranges the arch owns: ``owned``); the sequencer stores it in ``boot.layout``.
        """

    @hookspec(firstresult=True)
    def bootemu_arch_register(self, boot: Boot, allocator: Allocator) -> None:
        """Phase ``register``: register every block, on its node, with the backend."""

    @hookspec(firstresult=True)
    def bootemu_arch_enable(self, boot: Boot, allocator: Allocator) -> None:
        """Phase ``enable``: place the backend's bitmaps and free usable RAM into it.

        Ask ``allocator.bitmap_requests()``, find memory for each, call
        ``allocator.enable(placements=...)``, then free the usable RAM the way the emulated
        kernel does. Returns nothing.
        """

    @hookspec(firstresult=True)
    def bootemu_arch_reserve(self, boot: Boot, allocator: Allocator) -> None:
        """Phase ``reserve``: reserve what early boot occupies (page 0, kernel, bitmaps ...)."""

    @hookspec(firstresult=True)
    def bootemu_arch_allocate(self, boot: Boot, allocator: Allocator) -> None:
        """Phase ``allocate``: the early allocations of the kernel's subsystems.

        The machine file's ``[[workload]]`` runs after this hook, in the core.
        """

    @hookspec(firstresult=True)
    def bootemu_arch_handoff(
        self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel
    ) -> int | None:
        """Phase ``handoff``: release every free page to the page-allocator model.

        Call ``allocator.handoff(sink=pagealloc, node=...)`` as the emulated kernel does, then
        hand over the pages the arch owns itself (x86_32 highmem). Returns the number of pages
        the arch counted as released (``totalram_pages``).
        """

    @hookspec(firstresult=True)
    def bootemu_arch_summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """Phase ``report``: print the kernel's summary lines (``Memory: ...k/...k available``).

        Append them to ``boot.summary`` and trace them. ``pagealloc`` is None when the boot
        panicked before the handoff. Returns nothing.
        """


class AllocatorSpec:
    """Hooks of a boot-time allocator backend (``plugins/*.py``).

    Addresses and sizes are bytes, pfn ranges half-open. ``node=None`` means the generic,
    node-agnostic call (``free_bootmem``); a node id means the ``*_node`` call.
    """

    @hookspec(firstresult=True)
    def bootemu_alloc_attach(self, boot: Boot) -> None:
        """Called once, after the arch declared its :class:`~bootemu.contract.ArchInfo`.

        The backend keeps ``boot`` to emit trace events and kernel lines (``boot.trace``) and to
        read the arch's build facts (``boot.info``). Returns nothing.
        """

    @hookspec(firstresult=True)
    def bootemu_alloc_register_block(self, node: int, start_pfn: int, end_pfn: int) -> None:
        """Register the pfn range ``[start_pfn, end_pfn)`` residing on ``node``.

        Called in the ``register`` phase, once per block, in address order. Classic bootmem
        widens the node's span; bootmem2 records a block. Returns nothing.
        """

    @hookspec(firstresult=True)
    def bootemu_alloc_bitmap_requests(self) -> list[BitmapRequest] | None:
        """The memory the backend needs for its bitmaps, one entry each; ``[]`` for none.

        Required (an empty list is an answer: memblock needs no bitmap)."""

    @hookspec(firstresult=True)
    def bootemu_alloc_enable(self, placements: Mapping[str, int]) -> None:
        """Enable the allocator: ``placements`` maps each bitmap key to its first pfn.

        Everything starts reserved; the arch frees usable RAM afterwards. Returns nothing.
        """

    @hookspec(firstresult=True)
    def bootemu_alloc_free(self, addr: int, size: int, node: int | None) -> None:
        """Free ``[addr, addr + size)`` (rounded inward to whole pages). Returns nothing."""

    @hookspec(firstresult=True)
    def bootemu_alloc_reserve(
        self, addr: int, size: int, node: int | None, exclusive: bool
    ) -> int | None:
        """Reserve ``[addr, addr + size)`` (rounded outward). Returns 0, or -EBUSY (-16)."""

    @hookspec(firstresult=True)
    def bootemu_alloc_alloc(self, request: AllocRequest) -> int | None:
        """Serve an early allocation; returns its physical address, or None on failure.

        Raises :class:`bootemu.models.KernelPanic` where the emulated kernel panics.
        """

    @hookspec(firstresult=True)
    def bootemu_alloc_handoff(self, sink: PageSink, node: int | None) -> int | None:
        """Release free pages to ``sink`` (``free_all_bootmem_node()`` / ``bootmem_release()``).

        ``node=None`` releases everything the backend manages; a node id only that node.
        Returns the number of pages released, bitmap pages included.
        """

    @hookspec(firstresult=True)
    def bootemu_alloc_overhead_bytes(self) -> int | None:
        """Bytes of bookkeeping memory (bitmaps, region arrays) the backend uses."""

    @hookspec(firstresult=True)
    def bootemu_alloc_stats(self) -> dict[str, Any] | None:
        """Backend-specific figures for reports and ``compare`` (variant, block count ...)."""


class LifecycleSpec:
    """Observer hooks around the phases of a boot (tracers, checkers, user plugins)."""

    @hookspec
    def bootemu_before_phase(self, boot: Boot, phase: str) -> None:
        """Called before each phase of :data:`bootemu.boot.PHASES` runs."""

    @hookspec
    def bootemu_after_phase(self, boot: Boot, phase: str) -> None:
        """Called after each phase that completed (also after a phase that panicked)."""

    @hookspec
    def bootemu_on_phase_error(self, boot: Boot, phase: str, error: BaseException) -> None:
        """Called when a phase ends by an emulated panic or BUG (``error``)."""

    @hookspec
    def bootemu_after_boot(self, boot: Boot, report: dict[str, Any]) -> None:
        """Called once at the end of a boot with the finished report (read-only by convention)."""


SPEC_CLASSES = (ArchSpec, AllocatorSpec, LifecycleSpec)
