"""What the two bootmem2 backends of :mod:`bootemu_plugins.bootmem2` share: bitmap routines and the
block registration / tracing base class.

Private to bootmem2 (no entry point of its own; only ``bootemu_plugins.bootmem2`` and
``bootemu_plugins.bootmem2_rfc1`` import it), split out to keep each file at one idea. Every
bitmap is a
:class:`~bootemu.runmap.RunMap` (the bits kept as runs) indexed by ``pfn - base``, bit set =
reserved. Searches jump with ``find`` and hand-off walks free runs: nothing loops over single
pfns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bootemu.hookspecs import hookimpl
from bootemu.models import (
    PAGE_SIZE,
    AllocRequest,
    Block,
    KernelBug,
    PageSink,
    align_up,
    pfn_down,
    pfn_phys,
    pfn_up,
)
from bootemu.runmap import RunMap

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot


def first_fit(bits: RunMap, base: int, lo: int, hi: int, pages: int, step: int,
              start: int) -> int | None:
    """First pfn ``>= start`` in ``[lo, hi)``, a multiple of ``step``, with ``pages`` clear bits.

    The first-fit loop of ``bootmem_alloc_block()`` (v1) / ``__alloc_bootmem_block()`` (III),
    with the *intended* restart after an interior conflict: jump to the next clear bit, align
    up (absolute pfn), check the whole window with one ``find``; on a conflict restart at the
    next aligned pfn past it. Cost grows with the number of free runs crossed, not with pfns.
    """
    i = align_up(max(start, lo), step)
    while i < hi and i + pages <= hi:
        j = bits.find(0, i - base, hi - base)
        if j < 0:
            return None
        i = align_up(j + base, step)
        if i >= hi or i + pages > hi:
            return None
        k = bits.find(1, i - base, i - base + pages)
        if k < 0:
            return i
        i = align_up(k + base + 1, step)
    return None


def search(bits: RunMap, base: int, lo: int, hi: int, pages: int, step: int,
           goal_pfn: int, retry: bool) -> int | None:
    """Search ``[lo, hi)`` from the goal if it lies inside, else from ``lo``.

    ``retry``: v1's one retry from the bottom after a goal search failed (III instead drops the
    goal at the block-set level). A goal outside ``[lo, hi)`` is ignored (v1 defect 5 fixed).
    """
    if goal_pfn and lo <= goal_pfn < hi:
        found = first_fit(bits, base, lo, hi, pages, step, goal_pfn)
        if found is not None or not retry:
            return found
    return first_fit(bits, base, lo, hi, pages, step, lo)


def place(last_end: int, start_pfn: int, size: int, align: int, lo: int) -> tuple[int, int, int]:
    """Sub-page merging of ``__bootmem_alloc_block()`` (v1) / ``___alloc_bootmem_block()`` (III).

    ``last_end`` is the byte address where the slot's previous allocation ended. The region
    merges into that page only when the allocation ended mid-page (intended; the posted code
    also merged from a page-aligned or zero ``last_end``), the free run found starts at the
    next page, and that page is not below ``lo``, the start of the range searched (so a block
    request never merges into a page outside its block; III's block-relative offsets imply it).
    Returns ``(addr, first pfn to reserve, end pfn to reserve)``: a merged region does not
    reserve its first page again. ``align == 0`` is byte alignment here (C's ``ALIGN(x, 0)``
    would give address 0).
    """
    last_pfn = pfn_down(last_end)
    if last_end % PAGE_SIZE and last_pfn + 1 == start_pfn and last_pfn >= lo:
        addr = align_up(last_end, align or 1)
    else:
        addr = pfn_phys(start_pfn)
    merged = pfn_down(addr) < start_pfn
    return addr, pfn_down(addr) + merged, pfn_up(addr + size)


def release_runs(bits: RunMap, base: int, block: Block, bits_per_long: int,
                 sink: PageSink, node: int) -> int:
    """Hand the block's clear bits to ``sink``: ``bootmem_release_block()`` (v1) /
    ``free_all_bootmem_block()`` (III). Returns the page count.

    The kernel walks the map word by word: a word is released as one chunk of order
    ilog2(BITS_PER_LONG) when the block start is word aligned, the word is entirely free and
    ``word_start + BITS_PER_LONG < block_end``; every other free page goes one by one. Here each
    free run is split arithmetically into leading single pages, whole words and trailing single
    pages, one ``free_run`` call per piece.
    """
    start, end = block.start_pfn, block.end_pfn
    order = bits_per_long.bit_length() - 1
    aligned = start % bits_per_long == 0
    count = 0
    pos = start
    while pos < end:
        a = bits.find(0, pos - base, end - base)
        if a < 0:
            break
        a += base
        b = bits.find(1, a - base, end - base)
        b = end if b < 0 else b + base
        count += b - a
        w0 = align_up(a, bits_per_long)
        # RFC quirk (v1 and III): the strict "start + BITS_PER_LONG < end" keeps the block's
        # last whole word as single pages even when it ends exactly at the block end.
        w1 = min(b, end - 1) // bits_per_long * bits_per_long
        if aligned and w1 > w0:
            pieces = ((a, w0, 0), (w0, w1, order), (w1, b, 0))
        else:
            pieces = ((a, b, 0),)
        for s, e, o in pieces:
            if e > s:
                sink.free_run(node=node, start_pfn=s, end_pfn=e, order=o)
        pos = b
    return count


def release_pages(sink: PageSink, blocks: list[Block], start: int, end: int,
                  fallback: int) -> int:
    """Release bitmap pages ``[start, end)`` as order-0 pages, filed under the node of the
    block each piece lies in (``fallback`` where no registered block holds it)."""
    pos = start
    for b in sorted(blocks):
        if pos >= end:
            break
        if b.end_pfn <= pos or b.start_pfn >= end or b.start_pfn == b.end_pfn:
            continue
        if b.start_pfn > pos:
            sink.free_run(node=fallback, start_pfn=pos, end_pfn=b.start_pfn, order=0)
            pos = b.start_pfn
        stop = min(b.end_pfn, end)
        sink.free_run(node=b.node, start_pfn=pos, end_pfn=stop, order=0)
        pos = stop
    if pos < end:
        sink.free_run(node=fallback, start_pfn=pos, end_pfn=end, order=0)
    return max(end - start, 0)


def check_request(where: str, request: AllocRequest) -> None:
    """The two BUG_ON()s at the top of both variants' block allocator."""
    align, limit = request.align, request.limit
    if align & (align - 1):
        raise KernelBug(where, f"BUG_ON(align & (align - 1)): align {align:#x}")
    if limit and request.goal + request.size > limit:
        raise KernelBug(where, f"BUG_ON(limit && goal + size > limit): goal {request.goal:#x} "
                               f"size {request.size:#x} limit {limit:#x}")


def placement(placements: Mapping[str, int], key: str) -> int:
    """The first pfn the arch chose for bitmap ``key`` (an arch bug if it chose none)."""
    try:
        return int(placements[key])
    except KeyError:
        raise ValueError(f"bootmem2: enable: no placement for bitmap {key!r}") from None


class Bootmem2Common:
    """Registration, tracing and slot bookkeeping shared by both RFC versions."""

    def __init__(self) -> None:
        self._boot: Boot | None = None
        self._blocks: list[Block] = []
        self._enabled = False
        self._merges = 0

    def _trace(self, event: str, dmesg: str | None = None, **fields: Any) -> None:
        if self._boot is not None:
            self._boot.trace(event, dmesg=dmesg, **fields)

    def _bits_per_long(self) -> int:
        """BITS_PER_LONG of the emulated arch (its ``ArchInfo``, ``boot.info``)."""
        bpl = 32 if self._boot is None else self._boot.info.bits_per_long
        if bpl not in (32, 64):
            raise ValueError(f"bootmem2: bits_per_long must be 32 or 64, not {bpl}")
        return bpl

    def _slot_order(self) -> list[Block]:
        """Blocks in slot order ``nid * NR_MEMBLKS_PER_NODE + bnr``, bnr in address order."""
        return sorted(self._blocks, key=lambda b: (b.node, b.start_pfn, b.end_pfn))

    def _nr_per_node(self, slots: list[Block]) -> int:
        """NR_MEMBLKS_PER_NODE: ``boot.info.memblks_per_node`` (1 on x86_32, where
        NR_NODE_MEMBLKS defaults to MAX_NUMNODES), widened when a node registered more blocks."""
        per_node: dict[int, int] = {}
        for b in slots:
            per_node[b.node] = per_node.get(b.node, 0) + 1
        nr = 1 if self._boot is None else self._boot.info.memblks_per_node
        return max([nr, *per_node.values()])

    def _bids(self, slots: list[Block]) -> list[int]:
        """Block ids as the kernel numbers them: ``nid * NR_MEMBLKS_PER_NODE + bnr``."""
        nr = self._nr_per_node(slots)
        bids, seen = [], {}
        for b in slots:
            bnr = seen.get(b.node, 0)
            seen[b.node] = bnr + 1
            bids.append(b.node * nr + bnr)
        return bids

    def _count_merge(self, merged: bool) -> None:
        self._merges += merged

    @hookimpl
    def bootemu_alloc_attach(self, boot: Boot) -> bool:
        """Keep the boot for its tracer and facts."""
        self._boot = boot
        return True

    @hookimpl
    def bootemu_alloc_register_block(self, node: int, start_pfn: int, end_pfn: int) -> bool:
        """``bootmem_register_block()`` (v1) / the block half of ``init_bootmem_block()`` (III)."""
        if self._enabled:
            raise KernelBug("mm/bootmem2.c: bootmem_register_block()",
                            "BUG_ON(bootmem_functional): block registered after setup")
        if end_pfn < start_pfn:  # an arch programming error, not bad user input
            raise ValueError(f"bootmem2: block {start_pfn:#x}-{end_pfn:#x} ends before its start")
        self._blocks.append(Block(start_pfn, end_pfn, node))
        self._trace("alloc.block.register", node=node, start_pfn=start_pfn, end_pfn=end_pfn)
        return True
