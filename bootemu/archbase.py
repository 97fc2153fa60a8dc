"""Bases for arch plugins: :class:`ProfileArch` and :class:`GenericArch`.

:class:`GenericArch` (the one to start from) does the backend bookkeeping every arch needs
once: the arch writes its memory discovery, its reservations and its early allocations.
:class:`ProfileArch` is for arches whose phases are run by one profile object per boot.

Both built-in arches use :class:`ProfileArch` (the py-evm pattern): a profile class per kernel
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

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bootemu.hookspecs import hookimpl
from bootemu.models import (
    Block,
    KernelPanic,
    Layout,
    OwnedRange,
    Zone,
    find_free,
    intersect,
    merge_ranges,
    pfn_down,
    pfn_phys,
    pfn_up,
)

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot
    from bootemu.contract import Allocator, ArchInfo, Profile
    from bootemu.models import Machine
    from bootemu.pagealloc import PageAllocModel


class ProfileArch:
    """An arch plugin that dispatches every phase to the profile object of the boot.

    Subclasses implement :meth:`make_profile`: validate ``machine`` (raise
    :class:`bootemu.models.BootemuError` naming the file and key) and return the profile object.
    """

    def __init__(self) -> None:
        self.profile: Profile | None = None

    def make_profile(self, machine: Machine) -> Profile:
        """The profile object for one boot of ``machine`` (validates the arch's keys)."""
        raise NotImplementedError

    def arch_info(self, profile: Profile) -> ArchInfo:
        """The build facts (:class:`bootemu.contract.ArchInfo`) of ``profile``'s kernel.

        By default the profile's own ``arch_info()``; a plugin whose facts follow from its
        configuration alone may answer here instead."""
        return profile.arch_info()

    def owned(self, profile: Profile) -> tuple[OwnedRange, ...]:
        """The ranges ``profile``'s kernel occupies itself (``Layout.owned``): none by default."""
        return ()

    def _profile(self, boot: Boot) -> Profile:
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
        profile = self._profile(boot)
        layout = profile.layout(boot)
        layout.owned = (*layout.owned, *self.owned(profile))
        return layout

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


class GenericArch:
    """An arch plugin base that does the backend bookkeeping once, by the cross-backend rules.

    The arch writes what is its own: :meth:`layout` (memory discovery: RAM, nodes, zones and
    the ranges it occupies, ``Layout.owned``), :meth:`reservations` (further ranges to keep:
    initrd, firmware-reserved memory ...), :meth:`allocate` (its early allocations) and,
    if it likes, :meth:`firmware`, :meth:`cmdline`, :meth:`summary`, :meth:`check`. It
    declares ``ARCH_INFO`` (or overrides :meth:`arch_info`) and ``MACHINE_SCHEMA``.

    The base then, on any backend (docs/plugins.md, "Cross-backend rules"):

    - registers every non-empty block on its node, in address order;
    - places each bitmap the backend asks for (none on memblock) on the lowest free pages of
      the RAM it covers, on its node when it names one, clear of the owned ranges, the
      reservations and the other bitmaps;
    - frees every RAM page once, block by block with the block's node (bootmem2 BUGs on a
      double free, the per-block variant on a free outside every block);
    - reserves the owned ranges, the reservations and the bitmaps, clipped to the blocks and
      with the node they lie on (bootmem's ``reserve(node=None)`` acts on node 0 only and BUGs
      elsewhere);
    - hands off node by node (``free_all_bootmem_node()`` order).

    Each step is a method (:meth:`register_blocks`, :meth:`place_bitmaps`, :meth:`free_ram`,
    :meth:`reserve_kept`, :meth:`handoff_nodes`): an arch whose kernel does one of them its
    own way (a bitmap at a fixed pfn, frees in firmware-table order) overrides that one.
    """

    #: The build facts of the emulated kernel; or override :meth:`arch_info`.
    ARCH_INFO: ArchInfo | None = None

    def __init__(self) -> None:
        self.bitmaps: dict[str, tuple[int, int]] = {}  # key -> pfn range

    # -- what the arch writes ----------------------------------------------------------------

    def check(self, machine: Machine) -> None:
        """Cross-key checks the schema cannot express; raise BootemuError."""

    def arch_info(self, machine: Machine) -> ArchInfo:
        if self.ARCH_INFO is None:
            raise NotImplementedError(f"{type(self).__name__}: declare ARCH_INFO")
        return self.ARCH_INFO

    def firmware(self, boot: Boot) -> None:
        """Read and trace the firmware's description of memory."""

    def cmdline(self, boot: Boot) -> None:
        """Apply early parameters."""

    def layout(self, boot: Boot) -> Layout:
        """RAM, blocks, zones and owned ranges."""
        raise NotImplementedError

    def reservations(self, boot: Boot) -> Sequence[OwnedRange]:
        """Byte ranges to reserve besides ``layout.owned`` (which the base reserves too)."""
        return ()

    def allocate(self, boot: Boot, allocator: Allocator) -> None:
        """The kernel's early allocations (``allocator.alloc(request=...)``)."""

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """The kernel's closing lines (``Memory: ...``), appended to ``boot.summary``."""

    # -- the hooks ---------------------------------------------------------------------------

    def _kept(self, boot: Boot) -> list[OwnedRange]:
        assert boot.layout is not None
        return [*boot.layout.owned, *self.reservations(boot)]

    @hookimpl
    def bootemu_arch_check_machine(self, machine: Machine) -> None:
        self.check(machine)

    @hookimpl
    def bootemu_arch_info(self, machine: Machine) -> ArchInfo:
        return self.arch_info(machine)

    @hookimpl
    def bootemu_arch_firmware(self, boot: Boot) -> None:
        self.firmware(boot)

    @hookimpl
    def bootemu_arch_cmdline(self, boot: Boot) -> None:
        self.cmdline(boot)

    @hookimpl
    def bootemu_arch_layout(self, boot: Boot) -> Layout:
        return self.layout(boot)

    # -- the bookkeeping, one overridable step each -------------------------------------------

    def register_blocks(self, boot: Boot, allocator: Allocator) -> None:
        """Every non-empty block of the layout, on its node, in address order."""
        assert boot.layout is not None
        for b in boot.layout.blocks:
            if b.pages:
                allocator.register_block(node=b.node, start_pfn=b.start_pfn, end_pfn=b.end_pfn)

    def place_bitmaps(self, boot: Boot, allocator: Allocator) -> dict[str, tuple[int, int]]:
        """Each requested bitmap on the lowest free RAM pages of the range it covers (its
        node's blocks when it names one), clear of the kept ranges and the other bitmaps."""
        lay = boot.layout
        assert lay is not None
        busy = [(pfn_down(r.start), pfn_up(r.end)) for r in self._kept(boot)]
        placed: dict[str, tuple[int, int]] = {}
        for req in allocator.bitmap_requests():
            space = intersect(merge_ranges(lay.ram), [(req.start_pfn, req.end_pfn)])
            if req.node is not None:
                mine = [(b.start_pfn, b.end_pfn) for b in lay.blocks if b.node == req.node]
                space = intersect(space, merge_ranges(mine))
            pfn = find_free(space, [*busy, *placed.values()], req.pages)
            if pfn is None:
                raise KernelPanic(f"no room for the {req.key} bootmem bitmap ({req.pages} pages)")
            placed[req.key] = (pfn, pfn + req.pages)
        return placed

    def free_ram(self, boot: Boot, allocator: Allocator) -> None:
        """Every RAM page once, one free per block piece, with the block's node."""
        lay = boot.layout
        assert lay is not None
        for start, end in merge_ranges(lay.ram):
            for s, e, node in lay.node_pieces(start, end):
                if node is not None:
                    allocator.free(addr=pfn_phys(s), size=pfn_phys(e - s), node=node)

    def reserve_kept(self, boot: Boot, allocator: Allocator) -> None:
        """Owned ranges, reservations and bitmaps, clipped to the blocks, with their node."""
        lay = boot.layout
        assert lay is not None
        ranges = [(r.start, r.end, r.label) for r in self._kept(boot)]
        ranges += [
            (pfn_phys(s), pfn_phys(e), f"bootmem bitmap {k}") for k, (s, e) in self.bitmaps.items()
        ]
        for start, end, label in ranges:
            for s, e, node in lay.node_pieces(pfn_down(start), pfn_up(end)):
                if node is None:
                    continue  # not memory any block holds: nothing to keep
                lo, hi = max(start, pfn_phys(s)), min(end, pfn_phys(e))
                allocator.reserve(addr=lo, size=hi - lo, node=node, exclusive=False, label=label)

    def handoff_nodes(self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel) -> int:
        """``free_all_bootmem_node()`` for each node with blocks, ascending; the page count."""
        assert boot.layout is not None
        nodes = sorted({b.node for b in boot.layout.blocks if b.pages})
        return sum(allocator.handoff(sink=pagealloc, node=n) for n in nodes)

    # -- the hooks, continued ----------------------------------------------------------------

    @hookimpl
    def bootemu_arch_register(self, boot: Boot, allocator: Allocator) -> None:
        self.register_blocks(boot, allocator)

    @hookimpl
    def bootemu_arch_enable(self, boot: Boot, allocator: Allocator) -> None:
        self.bitmaps = self.place_bitmaps(boot, allocator)
        allocator.enable(placements={k: s for k, (s, _) in self.bitmaps.items()})
        self.free_ram(boot, allocator)

    @hookimpl
    def bootemu_arch_reserve(self, boot: Boot, allocator: Allocator) -> None:
        self.reserve_kept(boot, allocator)

    @hookimpl
    def bootemu_arch_allocate(self, boot: Boot, allocator: Allocator) -> None:
        self.allocate(boot, allocator)

    @hookimpl
    def bootemu_arch_handoff(
        self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel
    ) -> int:
        return self.handoff_nodes(boot, allocator, pagealloc)

    @hookimpl
    def bootemu_arch_summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        self.summary(boot, pagealloc)


def zones_of(
    blocks: Sequence[Block], ram: Sequence[tuple[int, int]], limits: Sequence[tuple[str, int]]
) -> tuple[Zone, ...]:
    """The zones of every node: each global zone range ``limits`` (name, end pfn, ascending)
    intersected with the node's span (first to last pfn of its blocks); present = the RAM
    pages of the node inside (free_area_init_core()'s spanned / present, holes not present).
    Empty intersections give no zone."""
    out: list[Zone] = []
    for node in sorted({b.node for b in blocks}):
        mine = merge_ranges((b.start_pfn, b.end_pfn) for b in blocks if b.node == node)
        node_ram = intersect(mine, merge_ranges(ram))
        lo, hi, zone_start = mine[0][0], mine[-1][1], 0
        for name, zone_end in limits:
            s, e = max(lo, zone_start), min(hi, zone_end)
            if s < e:
                present = sum(b - a for a, b in intersect(node_ram, [(s, e)]))
                out.append(Zone(node, name, s, e, present))
            zone_start = zone_end
    return tuple(out)
