"""The region arrays of :mod:`plugins.memblock`: struct memblock_type and its gap index.

Private to the memblock backend (no entry point of its own; only ``plugins.memblock`` imports
it), split out to keep each file at one idea: this one is data structure, the other one the
kernel routines. Everything here is plain sorted Python lists plus bisect.

Why a gap index: memblock's top-down search walks the free ranges from the top and returns the
first one that fits. On a machine that makes tens of thousands of early allocations (the 4 TiB
benchmark allocates per memory section) the slivers that alignment leaves between them make
that walk quadratic. A free range can only fit a request when the gap of ``reserved`` it lies
in is at least as long as the request, so :class:`GapIndex` files the gaps by size class and
lets the search skip the short ones: it still visits every range that could fit, in the
kernel's order, and so returns the kernel's answer.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator

#: mm/memblock.c: the static region arrays (INIT_MEMBLOCK_RESERVED_REGIONS defaults to it).
INIT_MEMBLOCK_REGIONS = 128
#: include/linux/numa.h: NUMA_NO_NODE, "any node".
NUMA_NO_NODE = -1
#: Past every address (PHYS_ADDR_MAX + 1 for any phys_addr_t): the end of the last gap.
INF = 1 << 64


def round_down(x: int, y: int) -> int:
    """include/linux/math.h round_down(): a mask, so only right for powers of two (as in C)."""
    return x & ~(y - 1)


def round_up(x: int, y: int) -> int:
    """include/linux/math.h round_up(): ``((x - 1) | (y - 1)) + 1``."""
    return ((x - 1) | (y - 1)) + 1


def free_pages_chunks(start: int, end: int, top: int) -> Iterator[tuple[int, int, int]]:
    """mm/memblock.c __free_pages_memory(), 6.1: the chunks of pfns ``[start, end)``.

    Greedy from the left: ``order = min(MAX_ORDER - 1, __ffs(pfn))`` (``top`` is MAX_ORDER -
    1), lowered until the chunk fits before ``end``. Consecutive chunks of one order come out
    as one ``(s, e, order)`` run and the order-``top`` middle is counted in one step, so a
    4 TiB range costs ~20 steps. __ffs(0) is undefined in 6.1; pfn 0 gets ``top`` here (what
    later kernels say explicitly); pfn 0 is reserved on every arch bootemu has.
    """
    pos = start
    while pos < end:
        order = top if pos == 0 else min(top, (pos & -pos).bit_length() - 1)
        while pos + (1 << order) > end:
            order -= 1
        stop = pos + (1 << order)
        if order == top:  # every following chunk is of that order too, while whole ones fit
            stop = pos + ((end - pos) >> top << top)
        yield pos, stop, order
        pos = stop


class GapIndex:
    """The non-empty gaps between the regions of one type, filed by what they can hold.

    For an alignment ``A`` a gap ``[s, e)`` has the capacity ``e - round_up(s, A)``: the
    largest ``A``-aligned block it holds. It is filed in class ``floor(log2(capacity))`` of
    ``A`` (not at all when nothing aligned fits). A request of ``size`` bytes aligned to ``A``
    fits a gap exactly when that capacity is at least ``size``. Alignments are indexed the
    first time a request uses one (a boot uses a handful: the cache line, the page, 2 MiB);
    an alignment that is not a power of two uses ``A = 1`` (the length), which every fitting
    gap still passes. :meth:`desc` merges the classes that can hold a request, highest
    address first; :meth:`refresh` re-reads the gaps that touch an address window after the
    regions changed there (every change is local: after the first use of an alignment
    nothing is rebuilt).
    """

    def __init__(self) -> None:
        self.starts: list[int] = []  # every gap start, sorted
        self.end: dict[int, int] = {}
        self.classes: dict[int, dict[int, list[int]]] = {}  # alignment -> class -> starts
        self.aligns: list[int] = [1]
        self._add(0, INF)  # the empty type: one gap over everything

    def _keys(self, s: int, e: int, aligns: list[int] | None = None) -> list[tuple[int, int]]:
        caps = ((a, e - round_up(s, a)) for a in aligns or self.aligns)
        return [(a, cap.bit_length() - 1) for a, cap in caps if cap > 0]

    def _add(self, s: int, e: int) -> None:
        bisect.insort(self.starts, s)
        self.end[s] = e
        for a, c in self._keys(s, e):
            bisect.insort(self.classes.setdefault(a, {}).setdefault(c, []), s)

    def _drop(self, s: int) -> None:
        for a, c in self._keys(s, self.end.pop(s)):
            cls = self.classes[a][c]
            del cls[bisect.bisect_left(cls, s)]

    def refresh(self, bases: list[int], ends: list[int], lo: int, hi: int) -> None:
        """Coverage changed inside ``[lo, hi)``: replace the gaps touching ``[lo, hi]``."""
        i = bisect.bisect_right(self.starts, hi)
        j = i
        while j > 0 and self.end[self.starts[j - 1]] >= lo:
            j -= 1
        for s in self.starts[j:i]:
            self._drop(s)
        del self.starts[j:i]
        k = bisect.bisect_right(ends, lo) - 1
        pos, m = (ends[k] if k >= 0 else 0), k + 1
        while pos <= hi:
            nxt = bases[m] if m < len(bases) else INF
            if nxt > pos and nxt >= lo:
                self._add(pos, nxt)
            if m >= len(bases):
                break
            pos, m = ends[m], m + 1

    def desc(self, hi: int, size: int, align: int) -> Iterator[tuple[int, int]]:
        """Gaps starting below ``hi`` that might hold ``size`` bytes aligned to ``align``
        (all that do, and some that do not), highest first."""
        a = align if align > 0 and align & (align - 1) == 0 else 1
        if a not in self.aligns:
            self.aligns.append(a)
            for s in self.starts:
                for _, c in self._keys(s, self.end[s], [a]):
                    # the starts ascend, so each class list stays sorted
                    self.classes.setdefault(a, {}).setdefault(c, []).append(s)
        low = max(size, 1).bit_length() - 1
        heap: list[tuple[int, int, int]] = []
        classes = self.classes.get(a, {})
        for c, starts in classes.items():
            if c >= low:
                k = bisect.bisect_left(starts, hi) - 1
                if k >= 0:
                    heap.append((-starts[k], c, k))
        heapq.heapify(heap)
        while heap:
            neg, c, k = heapq.heappop(heap)
            s = -neg
            e = self.end[s]
            if e - round_up(s, a) >= size:
                yield s, e
            if k > 0:
                heapq.heappush(heap, (-classes[c][k - 1], c, k - 1))


class MemblockType:
    """struct memblock_type: regions sorted, disjoint and merged, ``max`` of them in the array.

    Kept as parallel lists (bases, ends, nids); flags are always MEMBLOCK_NONE (no hotplug,
    mirror or nomap memory is emulated). An empty type holds the kernel's zero-size dummy
    region, so :attr:`cnt` is 1 then, as the doubling test sees it. ``array`` is where the
    region array lives: None for the static __initdata one, else the physical address
    memblock_double_array() found for it. ``gaps`` (for ``reserved``) is kept up to date by
    every method that changes coverage; the lists are changed only through these methods.
    """

    def __init__(self, name: str, indexed: bool = False) -> None:
        self.name = name
        self.max = INIT_MEMBLOCK_REGIONS
        self.bases: list[int] = []
        self.ends: list[int] = []
        self.nids: list[int] = []
        self.array: int | None = None
        self.gaps = GapIndex() if indexed else None

    @property
    def cnt(self) -> int:
        return len(self.bases) or 1

    @property
    def total_size(self) -> int:
        return sum(self.ends) - sum(self.bases)

    @property
    def regions(self) -> list[tuple[int, int, int]]:
        """``(base, size, nid)`` of each region, in order."""
        return [(b, e - b, n) for b, e, n in zip(self.bases, self.ends, self.nids, strict=True)]

    def _changed(self, lo: int, hi: int) -> None:
        if self.gaps is not None:
            self.gaps.refresh(self.bases, self.ends, lo, hi)

    def overlaps(self, base: int, end: int) -> bool:
        """memblock_overlaps_region() for ``[base, end)`` (bisect, not a walk)."""
        i = bisect.bisect_right(self.ends, base)
        return i < len(self.bases) and self.bases[i] < end

    def uncovered(self, base: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[base, end)`` that no region covers, ascending."""
        out, pos = [], base
        i = bisect.bisect_right(self.ends, base)
        while pos < end and i < len(self.bases) and self.bases[i] < end:
            if self.bases[i] > pos:
                out.append((pos, self.bases[i]))
            pos = max(pos, self.ends[i])
            i += 1
        if pos < end:
            out.append((pos, end))
        return out

    def node_at(self, addr: int) -> int | None:
        """The nid of the region holding ``addr`` (memblock_search()), None if none."""
        i = bisect.bisect_right(self.bases, addr) - 1
        return self.nids[i] if i >= 0 and addr < self.ends[i] else None

    def fill(self, pieces: list[tuple[int, int]], nid: int) -> None:
        """memblock_insert_region() for each piece (all in gaps), then memblock_merge_regions()
        around them: neighbours that touch and have the same node become one. The rest of the
        array is already merged (every operation keeps it so): the kernel's result."""
        if len(self.bases) + len(pieces) > self.max:  # callers grow the array first
            raise OverflowError(f"memblock: {self.name}: BUG_ON(type->cnt >= type->max)")
        idx = []
        for s, e in pieces:
            i = bisect.bisect_left(self.bases, s)
            self.bases.insert(i, s)
            self.ends.insert(i, e)
            self.nids.insert(i, nid)
            idx.append(i)
        i, hi = max(min(idx) - 1, 0), max(idx) + 1
        while i < min(hi, len(self.bases) - 1):
            if self.ends[i] == self.bases[i + 1] and self.nids[i] == self.nids[i + 1]:
                self.ends[i] = self.ends[i + 1]
                del self.bases[i + 1], self.ends[i + 1], self.nids[i + 1]
                hi -= 1
            else:
                i += 1
        self._changed(pieces[0][0], pieces[-1][1])

    def split(self, addr: int) -> None:
        """Half of memblock_isolate_range(): cut the region that straddles ``addr`` (both
        halves keep its node; coverage does not change)."""
        k = bisect.bisect_right(self.bases, addr) - 1
        if k >= 0 and self.bases[k] < addr < self.ends[k]:
            self.bases.insert(k + 1, addr)
            self.ends.insert(k + 1, self.ends[k])
            self.nids.insert(k + 1, self.nids[k])
            self.ends[k] = addr

    def delete(self, i: int, j: int) -> None:
        """memblock_remove_region() for regions ``[i, j)`` (an emptied type is the dummy)."""
        if i < j:
            lo, hi = self.bases[i], self.ends[j - 1]
            del self.bases[i:j], self.ends[i:j], self.nids[i:j]
            self._changed(lo, hi)
