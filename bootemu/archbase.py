"""Bases for arch plugins: :class:`BootSteps`, :class:`GenericArch` and :class:`ProfileArch`.

:class:`BootSteps` is a boot seen from the boot-time allocator: the phases the core calls
(register, enable, reserve, allocate, handoff), each made of named bookkeeping steps that
follow the cross-backend rules (docs/plugins.md): register the blocks, place the bitmaps, free
RAM once, reserve what is kept, hand off node by node. An arch writes its memory discovery
(:meth:`BootSteps.layout`), its reservations and its early allocations; a kernel that does one
of the steps its own way (a bitmap at a fixed pfn, frees in firmware-table order) overrides
that step, and only that one.

:class:`GenericArch` (the one to start from) is a plugin that is its own :class:`BootSteps`.
:class:`ProfileArch` is a :class:`GenericArch` whose steps run in one profile object per boot
(the py-evm pattern): a profile class per kernel generation (``"2.6.25"``, ``"6.1"``
subclassing it), itself a :class:`BootSteps` holding the arch's constants and routines. Both
built-in arches are built that way; the steps each of their profiles overrides, and the kernel
routine it follows instead, are listed in docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from bootemu.hookspecs import hookimpl
from bootemu.models import (
    AllocRequest,
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


class BootSteps:
    """The phases of a boot, as the hooks call them, built from overridable bookkeeping steps.

    What the arch writes: :meth:`layout` (memory discovery: RAM, nodes, zones and the ranges
    it occupies, ``Layout.owned``), :meth:`reservations` (further ranges to keep: initrd,
    firmware-reserved memory ...), :meth:`allocate` (its early allocations) and, if it likes,
    :meth:`firmware`, :meth:`cmdline`, :meth:`summary`.

    The bookkeeping, on any backend (docs/plugins.md, "Cross-backend rules"), one step each:

    - :meth:`register_blocks`: every non-empty block on its node, in address order;
    - :meth:`place_bitmaps`: each bitmap the backend asks for (none on memblock) on the lowest
      free pages of the RAM it covers, on its node when it names one, clear of the owned
      ranges, the reservations and the other bitmaps;
    - :meth:`free_ram`: every RAM page once, block by block with the block's node (bootmem2
      BUGs on a double free, the per-block variant on a free outside every block);
    - :meth:`reserve_bitmaps`: the bitmaps' own pages, right after the frees;
    - :meth:`reserve_kept`: the owned ranges and the reservations, clipped to the blocks and
      with the node they lie on (bootmem's ``reserve(node=None)`` acts on node 0 only and
      BUGs elsewhere);
    - :meth:`handoff_nodes`: node by node (``free_all_bootmem_node()`` order).

    The phases: ``register`` = :meth:`register_blocks`; ``enable`` = :meth:`place_bitmaps`,
    ``allocator.enable()``, :meth:`free_ram`, :meth:`reserve_bitmaps`; ``reserve`` =
    :meth:`reserve_kept`; ``allocate`` = :meth:`allocate`; ``handoff`` =
    :meth:`handoff_nodes`.
    """

    #: Where :meth:`place_bitmaps` put each bitmap: key -> pfn range (set by ``enable``).
    bitmaps: Mapping[str, tuple[int, int]] = MappingProxyType({})

    # -- what the arch writes ----------------------------------------------------------------

    def firmware(self, boot: Boot) -> None:
        """Read and trace the firmware's description of memory."""

    def cmdline(self, boot: Boot) -> None:
        """Apply early parameters."""

    def layout(self, boot: Boot) -> Layout:
        """RAM, blocks, zones and owned ranges."""
        raise NotImplementedError(f"{type(self).__name__}: write layout()")

    def reservations(self, boot: Boot) -> Sequence[OwnedRange]:
        """Byte ranges to reserve besides ``layout.owned`` (which the base reserves too)."""
        return ()

    def allocate(self, boot: Boot, allocator: Allocator) -> None:
        """The kernel's early allocations (``allocator.alloc(request=...)``)."""

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """The kernel's closing lines (``Memory: ...``), appended to ``boot.summary``."""

    def alloc_bootmem(
        self,
        allocator: Allocator,
        size: int,
        align: int,
        goal: int,
        wrapper: str,
        caller: str,
        label: str,
        node: int | None = None,
    ) -> int | None:
        """One early allocation as the kernel writes it: ``wrapper`` is the entry point its
        macro expands to (``__alloc_bootmem_node``, ``__alloc_bootmem_low`` ...), which sets
        the backend's limit and panic rule; ``caller`` the kernel function that asked,
        ``label`` what the report calls the memory; ``node`` for a ``*_node`` wrapper."""
        return allocator.alloc(
            request=AllocRequest(
                size=size,
                align=align,
                goal=goal,
                wrapper=wrapper,
                node=node,
                caller=caller,
                label=label,
            )
        )

    # -- the bookkeeping, one overridable step each -------------------------------------------

    def kept(self, boot: Boot) -> list[OwnedRange]:
        """What :meth:`reserve_kept` keeps, in order: the owned ranges, then the reservations."""
        assert boot.layout is not None
        return [*boot.layout.owned, *self.reservations(boot)]

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
        busy = [(pfn_down(r.start), pfn_up(r.end)) for r in self.kept(boot)]
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

    def reserve_bitmaps(self, boot: Boot, allocator: Allocator) -> None:
        """Each bitmap's own pages, right after the frees (as setup_node_bootmem() reserves
        its bootmap after free_bootmem_with_active_regions()), on the nodes they lie on."""
        for key, (s, e) in self.bitmaps.items():
            label = f"bootmem bitmap {key}"
            self.reserve_on_nodes(boot, allocator, pfn_phys(s), pfn_phys(e), label)

    def reserve_kept(self, boot: Boot, allocator: Allocator) -> None:
        """Owned ranges, then reservations, clipped to the blocks, with their node."""
        for r in self.kept(boot):
            self.reserve_on_nodes(boot, allocator, r.start, r.end, r.label)

    def reserve_on_nodes(
        self,
        boot: Boot,
        allocator: Allocator,
        start: int,
        end: int,
        label: str,
        *,
        event: str | None = None,
    ) -> None:
        """Reserve the bytes [start, end) piece by piece, each piece clipped to a block and
        with that block's node; memory no block holds is skipped. With ``event``, each piece
        is traced (name, start, end, node) before it is reserved."""
        lay = boot.layout
        assert lay is not None
        for s, e, node in lay.node_pieces(pfn_down(start), pfn_up(end)):
            if node is None:
                continue  # not memory any block holds: nothing to keep
            lo, hi = max(start, pfn_phys(s)), min(end, pfn_phys(e))
            if event is not None:
                boot.trace(event, name=label, start=lo, end=hi, node=node)
            allocator.reserve(addr=lo, size=hi - lo, node=node, exclusive=False, label=label)

    def handoff_nodes(self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel) -> int:
        """``free_all_bootmem_node()`` for each node with blocks, ascending; the page count."""
        assert boot.layout is not None
        nodes = sorted({b.node for b in boot.layout.blocks if b.pages})
        return sum(allocator.handoff(sink=pagealloc, node=n) for n in nodes)

    # -- the phases the hooks call -----------------------------------------------------------

    def register(self, boot: Boot, allocator: Allocator) -> None:
        self.register_blocks(boot, allocator)

    def enable(self, boot: Boot, allocator: Allocator) -> None:
        self.bitmaps = self.place_bitmaps(boot, allocator)
        allocator.enable(placements={k: s for k, (s, _) in self.bitmaps.items()})
        self.free_ram(boot, allocator)
        self.reserve_bitmaps(boot, allocator)

    def reserve(self, boot: Boot, allocator: Allocator) -> None:
        self.reserve_kept(boot, allocator)

    def handoff(self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel) -> int:
        return self.handoff_nodes(boot, allocator, pagealloc)


class GenericArch(BootSteps):
    """An arch plugin that is its own :class:`BootSteps`: the bookkeeping done once.

    The arch writes :meth:`layout`, :meth:`reservations`, :meth:`allocate` (and, if it likes,
    :meth:`firmware`, :meth:`cmdline`, :meth:`summary`, :meth:`check`), declares
    ``ARCH_INFO`` (or overrides :meth:`arch_info`) and ``MACHINE_SCHEMA``, and overrides a
    bookkeeping step only where its kernel does that step its own way.
    """

    #: The build facts of the emulated kernel; or override :meth:`arch_info`.
    ARCH_INFO: ArchInfo | None = None

    def check(self, machine: Machine) -> None:
        """Cross-key checks the schema cannot express; raise BootemuError."""

    def arch_info(self, machine: Machine) -> ArchInfo:
        if self.ARCH_INFO is None:
            raise NotImplementedError(f"{type(self).__name__}: declare ARCH_INFO")
        return self.ARCH_INFO

    def steps(self, boot: Boot) -> BootSteps:
        """The object that runs ``boot``'s phases: the plugin itself."""
        return self

    # -- the hooks ---------------------------------------------------------------------------

    @hookimpl
    def bootemu_arch_check_machine(self, machine: Machine) -> None:
        self.check(machine)

    @hookimpl
    def bootemu_arch_info(self, machine: Machine) -> ArchInfo:
        return self.arch_info(machine)

    @hookimpl
    def bootemu_arch_firmware(self, boot: Boot) -> None:
        self.steps(boot).firmware(boot)

    @hookimpl
    def bootemu_arch_cmdline(self, boot: Boot) -> None:
        self.steps(boot).cmdline(boot)

    @hookimpl
    def bootemu_arch_layout(self, boot: Boot) -> Layout:
        return self.steps(boot).layout(boot)

    @hookimpl
    def bootemu_arch_register(self, boot: Boot, allocator: Allocator) -> None:
        self.steps(boot).register(boot, allocator)

    @hookimpl
    def bootemu_arch_enable(self, boot: Boot, allocator: Allocator) -> None:
        self.steps(boot).enable(boot, allocator)

    @hookimpl
    def bootemu_arch_reserve(self, boot: Boot, allocator: Allocator) -> None:
        self.steps(boot).reserve(boot, allocator)

    @hookimpl
    def bootemu_arch_allocate(self, boot: Boot, allocator: Allocator) -> None:
        self.steps(boot).allocate(boot, allocator)

    @hookimpl
    def bootemu_arch_handoff(
        self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel
    ) -> int:
        return int(self.steps(boot).handoff(boot, allocator, pagealloc))

    @hookimpl
    def bootemu_arch_summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        self.steps(boot).summary(boot, pagealloc)


class ProfileArch(GenericArch):
    """A :class:`GenericArch` whose steps run in the boot's profile object.

    Subclasses implement :meth:`make_profile`: validate ``machine`` (raise
    :class:`bootemu.models.BootemuError` naming the file and key) and return the profile, a
    :class:`BootSteps` with an ``arch_info()`` method (:class:`bootemu.contract.Profile`).
    """

    def __init__(self) -> None:
        self.profile: Profile | None = None

    def make_profile(self, machine: Machine) -> Profile:
        """The profile object for one boot of ``machine`` (validates the arch's keys)."""
        raise NotImplementedError

    def owned(self, profile: Profile) -> tuple[OwnedRange, ...]:
        """The ranges ``profile``'s kernel occupies itself, added to ``Layout.owned``."""
        return ()

    def check(self, machine: Machine) -> None:
        self.profile = self.make_profile(machine)

    def arch_info(self, machine: Machine) -> ArchInfo:
        """The profile's own ``arch_info()``: its build facts."""
        if self.profile is None:
            self.profile = self.make_profile(machine)
        return self.profile.arch_info()

    def steps(self, boot: Boot) -> Profile:
        if self.profile is None:  # the sequencer always checks the machine first
            self.profile = self.make_profile(boot.machine)
        self.profile.boot = boot
        return self.profile

    @hookimpl
    def bootemu_arch_layout(self, boot: Boot) -> Layout:
        profile = self.steps(boot)
        layout = profile.layout(boot)
        layout.owned = (*layout.owned, *self.owned(profile))
        return layout


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
