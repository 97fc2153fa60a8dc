"""bootmem2-rfc1: the bootmem2 RFC v1 exactly as posted, every defect kept.

Johannes Weiner, "[rfc][patch 2/3] mm: bootmem2 - memory block oriented boot time allocator"
(2008-05-05, Message-ID 20080505100846.526196633@symbol.fehenstaub.lan; ``mm/bootmem2.c`` and
``include/linux/bootmem2.h``), with "[rfc][patch 3/3] x86: Use bootmem2 on x86_32" (the arch
calls ``bootmem_register(0, max_low_pfn)``, ``bootmem_setup(min_low_pfn)`` and, in
``mem_init()``, ``bootmem_release()``). This is the code the real RFC kernel ran (v2.6.26-rc1 +
the three mails, ``CONFIG_HAVE_BOOTMEM2=y``; ``real-boots-2008/logs/trfc_*``), so this backend
reproduces its pages; :class:`bootemu_plugins.bootmem2.Bootmem2` stays the intended design.

It subclasses :class:`~bootemu_plugins.bootmem2.Bootmem2` and overrides only what the posted
code does differently: the map's indexing, ``bootmem_alloc_block()`` / ``__bootmem_alloc_block()`` /
``bootmem_alloc_node()``, and ``bootmem_release_block()`` / ``bootmem_release_node()``.
Registration, ``bootmem_setup()`` and its message, ``bootmem_free()`` and ``bootmem_reserve()``
are the parent's (the same behaviour). Each defect is marked ``# RFC v1 defect: ...`` where it
happens and, when it changes an answer, traced as an ``alloc.defect`` event (the kernel prints
nothing) and counted in the backend's stats. The Python is written from the mail, not copied.
"""

from __future__ import annotations

from typing import Any

from bootemu_plugins._bootmem2_common import release_pages, release_runs
from bootemu_plugins.bootmem2 import Bootmem2

from bootemu.hookspecs import hookimpl
from bootemu.models import (
    PAGE_SHIFT,
    PAGE_SIZE,
    AllocRequest,
    Block,
    BootemuError,
    KernelBug,
    PageSink,
    align_up,
    pfn_down,
    pfn_up,
)
from bootemu.runmap import RunMap

V1P = "mm/bootmem2.c (RFC v1 as posted, 2008-05-05)"


class Bootmem2Rfc1(Bootmem2):
    """bootmem2 RFC v1 (2008-05-05) as posted: one global bitmap, blocks, defects included.

    The defects of the posted ``mm/bootmem2.c``, all reproduced (``alloc.defect`` events name
    them; 1-5 are the items of :class:`bootemu_plugins.bootmem2.Bootmem2`'s list). Whenever none of
    them fires, the answers are the intended design's (tested against ``bootmem2``):

    1. ``absolute-index``: the map holds ``max - min`` bits (word aligned) but every routine
       indexes it by absolute pfn. Harmless while ``min_pfn == 0`` (x86_32 registers
       ``[0, max_low_pfn)``); a pfn past the map would be a write past it, which cannot be
       emulated: such a block layout is refused (BootemuError).
    2. ``limit-bytes``: ``bootmem_alloc_block()`` clamps the pfn ``max_idx`` with the *byte*
       ``limit`` before shifting it, so a ``_low`` limit of 0xffffffff never clamps and a small
       limit clamps at a pfn equal to its byte value.
    3. ``interior-conflict``: the first-fit loop runs once: a reserved page inside the window
       only moves ``sidx`` past it (``continue`` of the inner loop) and the region is then
       taken at the moved ``sidx`` unchecked; ``__bootmem_reserve(..., exclusive)`` BUGs if it
       is not free ("Since we checked the area in advance ...").
    4. ``merge-unowned``: ``__bootmem_alloc_block()`` merges whenever ``last_pfn + 1 ==
       start_pfn``: with the initial ``bootmem_block_last[] == 0`` a region found at pfn 1
       starts at address 0, and after a region that ended on a page boundary the next one
       starts in the page after it. That page is neither reserved nor checked, whoever owns it:
       on the RFC kernel the first ``alloc_bootmem_low_pages()`` (one_page_table_init()) gets
       physical 0, the BIOS page reserved just before, and zeroes it.
    5. ``goal-below-block``: a goal below the block starts the search below it
       (``goal < max_idx`` is the only test), so a block request can get memory of the blocks
       before it; ``bootmem_alloc_node()`` keeps the goal for the blocks after the goal block.
    6. ``align-zero``: ``ALIGN(last_end, 0)`` is 0: a merging request with ``align == 0``
       starts at address 0.
    7. ``unaligned-release``: ``bootmem_release_block()`` reads the word holding the block's
       first pfn but takes its bit 0 as that pfn: a block not starting on a BITS_PER_LONG
       boundary releases by the bits of the pfns ``start % BITS_PER_LONG`` below.
    8. ``merge-outside-block``: node-less requests use block 0's merge slot, and the merge test
       does not check that the page merged into lies in the range searched: a block request
       starting at its block's first pfn can begin in the last page of a node-less region
       below the block (another node's page).
    9. ``empty-slot-release``: ``bootmem_release_node()`` releases all NR_MEMBLKS_PER_NODE
       slots of the node, unregistered ones too: each counts down ``bootmem_nr_blocks`` (the
       bitmap is freed early, BUG_ON(!bootmem_nr_blocks) later) and prints a line.

    Kept as in the parent (they are the posted behaviour): merged requests still need
    ``PFN_UP(size)`` free pages at the start found ("XXX: The last page may be dropped due to
    merging but it is required to be free!"); node-less requests use block 0's merge slot
    ("XXX: Find a more appropriate slot"); no wrapper panics (NULL on failure); free/reserve
    ignore the node; the strict ``start + BITS_PER_LONG < end`` word test at release.
    """

    def __init__(self) -> None:
        super().__init__()
        self._by_bid: dict[int, Block] = {}
        self._nr = 1  # NR_MEMBLKS_PER_NODE
        self._defects: dict[str, int] = {}

    def _defect(self, name: str, **fields: Any) -> None:
        """Count and trace one defect that changed an answer (the kernel prints nothing)."""
        self._defects[name] = self._defects.get(name, 0) + 1
        self._trace("alloc.defect", defect=name, **fields)

    def _make_map(self) -> tuple[RunMap, int]:
        """``bootmem_setup()``: ``memset(map, 0xff, bootmem_map_bytes())``; bit = absolute pfn."""
        nbits = self._map_bytes() * 8
        # RFC v1 defect: the map holds max - min bits but is indexed by absolute pfn.
        if self._max_pfn > nbits:
            raise BootemuError(
                f"bootmem2-rfc1: blocks span pfns {self._min_pfn:#x}-{self._max_pfn:#x}: the "
                f"posted v1 code indexes its {nbits}-bit map by absolute pfn and would write "
                "past it (RFC v1 defect 1); not emulated, use bootmem2"
            )
        # kept as runs (bootemu.runmap): a map over 2**34 pfns costs its runs, not 2 GiB
        return RunMap(nbits, 1), 0

    @hookimpl
    def bootemu_alloc_enable(self, placements: Any) -> bool:
        """``bootmem_setup(mapstart)`` (the parent's), plus the block table by block id."""
        super().bootemu_alloc_enable(placements)
        self._nr = self._nr_per_node(self._slots)
        self._by_bid = dict(zip(self._bids(self._slots), self._slots, strict=True))
        return True

    # ---------------------------------------------------------------------------------------
    # Allocation

    def _block_range(self, bid: int) -> tuple[int, int]:
        """``bootmem_block_offsets[bid]`` and its end; an unregistered slot is ``(0, 0)``."""
        if bid == -1:
            return self._min_pfn, self._max_pfn
        b = self._by_bid.get(bid)
        return (b.start_pfn, b.end_pfn) if b is not None else (0, 0)

    def _alloc_block(self, bid: int, request: AllocRequest, goal: int) -> int | None:
        """``bootmem_alloc_block(bid, size, align, goal, limit)`` as posted."""
        min_idx, max_idx = self._block_range(bid)
        align, size, limit = request.align, request.size, request.limit
        where = f"{V1P}: bootmem_alloc_block()"
        if align & (align - 1):
            raise KernelBug(where, f"BUG_ON(align & (align - 1)): align {align:#x}")
        if limit and goal + size > limit:
            raise KernelBug(
                where,
                f"BUG_ON(limit && goal + size > limit): goal {goal:#x} "
                f"size {size:#x} limit {limit:#x}",
            )
        # RFC v1 defect: the byte limit is compared with the pfn max_idx before the shift.
        if limit and max_idx > limit:
            self._defect("limit-bytes", bid=bid, max_idx=max_idx, limit=limit)
            max_idx = limit
        elif limit and (limit >> PAGE_SHIFT) < max_idx:
            self._defect("limit-bytes", bid=bid, max_idx=max_idx, limit=limit)
        if max_idx == min_idx:
            return None
        goal_pfn = goal >> PAGE_SHIFT
        step = max(align >> PAGE_SHIFT, 1)
        if goal_pfn and goal_pfn < max_idx:
            # RFC v1 defect: a goal below the block is accepted (only goal < max_idx tested).
            if goal_pfn < min_idx:
                self._defect("goal-below-block", bid=bid, goal_pfn=goal_pfn, min_idx=min_idx)
            sidx = align_up(goal_pfn, step)
        else:
            sidx = align_up(min_idx, step)
        while True:
            found = self._first_fit(sidx, max_idx, pfn_up(size), step)
            if found is not None:
                return self._alloc_at(bid, request, found, min_idx)
            if not goal_pfn:
                return None
            sidx, goal_pfn = align_up(min_idx, step), 0  # one retry from the block start

    def _first_fit(self, sidx: int, max_idx: int, pages: int, step: int) -> int | None:
        """The ``while (1)`` search of ``bootmem_alloc_block()``: it runs once.

        ``find_next_zero_bit()`` (lib/find_next_bit.c: ``max_idx`` when nothing is found or
        ``sidx >= max_idx``), aligned up; then the window ``[sidx, sidx + pages)``.
        """
        assert self._map is not None
        j = self._map.find(0, sidx, max_idx) if sidx < max_idx else -1
        sidx = align_up(j if j >= 0 else max_idx, step)
        eidx = sidx + pages
        if sidx > max_idx or eidx > max_idx:
            return None
        # RFC v1 defect: a reserved page in the window only moves sidx (the `continue` is the
        # inner loop's); the last one wins, and the moved region is taken unchecked.
        k = self._map.find(1, sidx, eidx, right=True)
        if k >= 0:
            moved = align_up(k, step)
            if moved == k:
                moved += step
            self._defect("interior-conflict", window=(sidx, eidx), last_reserved=k, moved_to=moved)
            sidx = moved
        return sidx

    def _alloc_at(self, bid: int, request: AllocRequest, start_pfn: int, min_idx: int) -> int:
        """``__bootmem_alloc_block(bid, align, start_pfn, size)`` as posted: merge, reserve
        exclusively (a conflict is a BUG), zero the region."""
        slot = 0 if bid == -1 else bid  # "XXX: Find a more appropriate slot"
        last_end = self._last.get(slot, 0)
        last_pfn = pfn_down(last_end)
        # RFC v1 defect: the merge test ignores whether last_end is mid-page (or still 0).
        if last_pfn + 1 == start_pfn:
            # RFC v1 defect: ALIGN(last_end, 0) is 0, so align 0 merges at address 0.
            new_start = align_up(last_end, request.align)
            if request.align == 0:
                self._defect("align-zero", bid=bid, last_end=last_end)
        else:
            new_start = start_pfn << PAGE_SHIFT
        merge = pfn_down(new_start) < start_pfn
        if merge and (last_end % PAGE_SIZE == 0 or request.align == 0):
            # The region starts in a page the previous region never reserved: not checked,
            # not reserved, zeroed by the memset below.
            self._defect(
                "merge-unowned",
                bid=bid,
                last_end=last_end,
                addr=new_start,
                pfn=pfn_down(new_start),
                size=request.size,
                zeroed=min(request.size, (start_pfn << PAGE_SHIFT) - new_start),
            )
        elif merge and pfn_down(new_start) < min_idx:
            # RFC v1 defect: the slot's last end may lie below the range searched (node-less
            # requests share block 0's slot), so the region starts outside its block.
            self._defect("merge-outside-block", bid=bid, last_end=last_end, addr=new_start)
        self._count_merge(merge)
        new_end = new_start + request.size
        self._last[slot] = new_end
        if self._reserve_pfns(pfn_down(new_start) + merge, pfn_up(new_end), exclusive=True):
            # "Since we checked the area in advance, a failed reservation is clearly a BUG."
            raise KernelBug(
                f"{V1P}: __bootmem_alloc_block()",
                f"BUG(): reservation of pfns {pfn_down(new_start) + merge:#x}-"
                f"{pfn_up(new_end):#x} failed",
            )
        return new_start  # memset(region, 0, bytes): the caller gets zeroed memory

    @hookimpl
    def bootemu_alloc_alloc(self, request: AllocRequest) -> int | None:
        """``bootmem_alloc_node(nid or -1, ...)`` / ``bootmem_alloc_low_node()`` as posted.

        nid -1 searches ``[min_pfn, max_pfn)``. A node request looks for the node's slot
        (registered and non-empty) holding PFN_DOWN(goal); if none, goal 0 from the node's
        first slot; then tries that slot and every following slot of the node, the goal kept.
        """
        if self._map is None:
            raise KernelBug(
                f"{V1P}: bootmem_alloc_block()",
                "bootmem_map is NULL: the allocator was never set up",
            )
        if request.node is None:
            return self._alloc_block(-1, request, request.goal)
        first = request.node * self._nr
        goal, goal_pfn = request.goal, pfn_down(request.goal)
        goal_block = -1
        for i in range(self._nr):
            start, end = self._block_range(first + i)
            if end != start and start <= goal_pfn < end:
                goal_block = i
                break
        if goal_block == -1:
            goal = goal_block = 0
        for i in range(goal_block, self._nr):
            addr = self._alloc_block(first + i, request, goal)
            if addr is not None:
                return addr
        return None

    # ---------------------------------------------------------------------------------------
    # Release

    def _release_block(self, bid: int, sink: PageSink) -> int:
        """``bootmem_release_block(bid)`` as posted; prints its count."""
        assert self._map is not None
        self._functional = False
        if self._live == 0:
            raise KernelBug(f"{V1P}: bootmem_release_block()", "BUG_ON(!bootmem_nr_blocks)")
        start, end = self._block_range(bid)
        node = bid // self._nr
        bpl = self._bits_per_long()
        off = start % bpl
        if off:
            # RFC v1 defect: bit 0 of the word holding `start` is taken as `start` itself.
            self._defect("unaligned-release", bid=bid, start_pfn=start, shift=off)
            count = release_runs(
                self._map[start - off : end - off], start, Block(start, end, node), bpl, sink, node
            )
        else:
            count = release_runs(self._map, 0, Block(start, end, node), bpl, sink, node)
        self._live -= 1
        if self._live == 0:  # the last block: the bitmap goes too
            count += release_pages(
                sink, self._blocks, self._mapstart, self._mapstart + self._map_pages(), fallback=0
            )
        self._trace(
            "alloc.handoff.block",
            dmesg=f"bootmem: {count} pages released on block {bid}",
            block=bid,
            node=node,
            pages=count,
        )
        return count

    @hookimpl
    def bootemu_alloc_handoff(self, sink: PageSink, node: int | None) -> int:
        """``bootmem_release_node(node)`` (``bootmem_release()`` is node 0); None: every node
        with a registered block, in order."""
        if self._map is None:
            raise KernelBug(f"{V1P}: bootmem_release_block()", "bootmem was never set up")
        nodes = [node] if node is not None else sorted({b.node for b in self._slots})
        total = 0
        for nid in nodes:
            for i in range(self._nr):
                bid = nid * self._nr + i
                if bid not in self._by_bid:
                    # RFC v1 defect: unregistered slots are "released" too.
                    self._defect("empty-slot-release", bid=bid, node=nid)
                total += self._release_block(bid, sink)
        return total

    @hookimpl
    def bootemu_alloc_stats(self) -> dict[str, Any]:
        stats = super().bootemu_alloc_stats()
        stats["variant"] = "global, as posted"
        stats["defects"] = dict(sorted(self._defects.items()))
        return stats
