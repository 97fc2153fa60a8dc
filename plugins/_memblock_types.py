"""The region arrays of :mod:`bootemu_plugins.memblock`: struct memblock_type and its gap index.

Private to the memblock backend (no entry point of its own; only ``bootemu_plugins.memblock``
imports it), split out to keep each file at one idea: this one is data structure, the other one the
kernel routines. The sorted sets are :class:`bootemu_plugins._sorted_keys.SortedKeys`
(chunked, so an insert or removal in the middle of a million regions does not shift the other ones).

Why a gap index: memblock's top-down search walks the free ranges from the top and returns the
first one that fits. On a machine that makes tens of thousands of early allocations (the 4 TiB
benchmark allocates per memory section) the slivers that alignment leaves between them make
that walk quadratic. A free range can only fit a request when the gap of ``reserved`` it lies
in is at least as long as the request, so :class:`GapIndex` files the gaps by size class and
lets the search skip the short ones: it still visits every range that could fit, in the
kernel's order, and so returns the kernel's answer.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from bootemu_plugins._sorted_keys import SortedKeys

#: mm/memblock.c: the static region arrays (INIT_MEMBLOCK_RESERVED_REGIONS defaults to it).
INIT_MEMBLOCK_REGIONS = 128
#: include/linux/numa.h: NUMA_NO_NODE, "any node".
NUMA_NO_NODE = -1
#: Past every address (PHYS_ADDR_MAX + 1 for any phys_addr_t): the end of the last gap.
INF = 1 << 64
#: How many gaps :meth:`GapIndex.desc` tries in address order before merging size classes.
PROBE = 8


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


def _merge_below(sets: list[SortedKeys], hi: int) -> Iterator[int]:
    """The keys below ``hi`` of disjoint sets, descending: a heap of each set's next key
    (a neighbour search per step: cheaper than a generator per set, most walks stop early)."""
    heap = []
    for k, keys in enumerate(sets):
        x = keys.lower(hi)
        if x is not None:
            heap.append((-x, k))
    heapq.heapify(heap)
    while heap:
        neg, k = heap[0]
        yield -neg
        x = sets[k].lower(-neg)
        if x is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (-x, k))


class GapIndex:
    """The non-empty gaps between the regions of one type, filed by what they can hold.

    For an alignment ``A`` a gap ``[s, e)`` has the capacity ``e - round_up(s, A)``: the
    largest ``A``-aligned block it holds. It is filed in class ``floor(log2(capacity))`` of
    ``A`` (not at all when nothing aligned fits). A request of ``size`` bytes aligned to ``A``
    fits a gap exactly when that capacity is at least ``size``. Alignments are indexed the
    first time a request uses one (a boot uses a handful: the cache line, the page, 2 MiB);
    an alignment that is not a power of two uses ``A = 1`` (the length), which every fitting
    gap still passes. ``filed[A]`` holds every gap filed for ``A`` (the slivers alignment
    leaves hold no aligned block and are not in it). :meth:`desc` tries the highest few of
    ``filed[A]`` first, then merges the classes that can hold a request, highest address
    first; :meth:`refresh` re-reads the gaps that touch an address window after the regions
    changed there, :meth:`split_gap` is its shortcut for one piece added inside one gap
    (every change is local: after the first use of an alignment nothing is rebuilt). Starts
    are :class:`SortedKeys`, so filing or dropping a gap costs O(log n) however many there
    are.
    """

    def __init__(self) -> None:
        self.starts = SortedKeys()  # every gap start
        self.end: dict[int, int] = {}
        self.classes: dict[int, dict[int, SortedKeys]] = {}  # alignment -> class -> starts
        self.aligns: list[int] = [1]
        self.filed: dict[int, SortedKeys] = {1: SortedKeys()}  # alignment -> every filed start
        self._add(0, INF)  # the empty type: one gap over everything

    def _keys(self, s: int, e: int, aligns: list[int] | None = None) -> list[tuple[int, int]]:
        """``(alignment, class)`` of each alignment the gap ``[s, e)`` holds a block of."""
        out = []
        for a in aligns or self.aligns:
            cap = e - (((s - 1) | (a - 1)) + 1)  # e - round_up(s, a)
            if cap > 0:
                out.append((a, cap.bit_length() - 1))
        return out

    def _same_classes(self, s: int, e: int, f: int) -> bool:
        """Whether the gaps ``[s, e)`` and ``[s, f)`` are filed alike (:meth:`_keys`): the
        same capacity bit length for every alignment, 0 standing for "not filed"."""
        for a in self.aligns:
            r = ((s - 1) | (a - 1)) + 1  # round_up(s, a)
            x, y = e - r, f - r
            if (x if x > 0 else 0).bit_length() != (y if y > 0 else 0).bit_length():
                return False
        return True

    def _file(self, a: int, c: int, s: int) -> None:
        by_class = self.classes.get(a)
        if by_class is None:
            by_class = self.classes[a] = {}
        cls = by_class.get(c)
        if cls is None:
            cls = by_class[c] = SortedKeys()
        cls.add(s)
        self.filed[a].add(s)

    def _add(self, s: int, e: int) -> None:
        self.starts.add(s)
        self.end[s] = e
        for a, c in self._keys(s, e):
            self._file(a, c, s)

    def _drop(self, s: int) -> None:
        for a, c in self._keys(s, self.end.pop(s)):
            self.classes[a][c].remove(s)
            self.filed[a].remove(s)
        self.starts.remove(s)

    def refresh(self, regions: MemblockType, lo: int, hi: int) -> None:
        """Coverage changed inside ``[lo, hi)``: replace the gaps touching ``[lo, hi]``.

        A gap that keeps its start and its classes (the common case: a region was added at
        one end of it, it only got shorter) just gets its new end, without refiling."""
        old: dict[int, int] = {}
        for s in self.starts.desc(hi + 1):  # gap ends ascend with their starts
            if self.end[s] < lo:
                break
            old[s] = self.end[s]
        new: list[tuple[int, int]] = []
        pos = regions.prev_end(lo)
        bases, ends = regions.bases, regions.end
        b = bases.floor(lo)  # then the regions ending above lo, one neighbour search each
        if b is None or ends[b] <= lo:
            b = bases.higher(lo)
        while pos <= hi:
            nxt = INF if b is None else b
            if nxt > pos and nxt >= lo:
                new.append((pos, nxt))
            if b is None:
                break
            pos = ends[b]
            b = bases.higher(b)
        fresh = dict(new)
        kept = set()
        for s, e in old.items():
            f = fresh.get(s)
            if f is not None and self._same_classes(s, e, f):
                kept.add(s)
            else:
                self._drop(s)
        for s, e in new:
            if s in kept:
                self.end[s] = e
            else:
                if s in self.end:  # not expected (old holds every gap touching the window)
                    self._drop(s)
                self._add(s, e)

    def split_gap(self, s: int, e: int) -> None:
        """:meth:`refresh` after ``[s, e)``, inside one gap, became covered: that gap keeps
        what lies below ``s`` (same start: kept as in :meth:`refresh` when filed alike) and a
        new gap starts at ``e`` when the old one went on past it."""
        gs = self.starts.floor(s)
        assert gs is not None
        ge = self.end[gs]
        if gs < s and self._same_classes(gs, ge, s):
            self.end[gs] = s
        else:
            self._drop(gs)
            if gs < s:
                self._add(gs, s)
        if e < ge:
            self._add(e, ge)

    def desc(self, hi: int, size: int, align: int) -> Iterator[tuple[int, int]]:
        """Gaps starting below ``hi`` that might hold ``size`` bytes aligned to ``align``
        (all that do, and some that do not), highest first."""
        a = align if align > 0 and align & (align - 1) == 0 else 1
        if a not in self.aligns:
            self.aligns.append(a)
            self.filed[a] = SortedKeys()
            for s in self.starts:  # ascending: each class grows at its end
                for _, c in self._keys(s, self.end[s], [a]):
                    self._file(a, c, s)
        # The walk yields exactly the gaps below hi whose capacity is at least size (and > 0),
        # descending. The first PROBE gaps filed for the alignment are tried one by one (a
        # top-down search usually stops there: the slivers alignment leaves are not filed);
        # the class merge below is only set up when the search goes on past them.
        end = self.end
        n = 0
        for s in self.filed[a].desc(hi):
            e = end[s]
            if e - round_up(s, a) >= size:
                yield s, e
            n += 1
            if n == PROBE:
                hi = s
                break
        else:
            return
        low = max(size, 1).bit_length() - 1
        fit = [cls for c, cls in self.classes.get(a, {}).items() if c >= low and cls]
        if len(fit) == 1:
            walk = fit[0].desc(hi)
        elif sum(map(len, fit)) == len(self.starts):
            # every gap is in a fitting class (small requests): the starts, no merge
            walk = self.starts.desc(hi)
        else:
            walk = _merge_below(fit, hi)
        for s in walk:
            e = end[s]
            cap = e - round_up(s, a)
            if cap >= size and cap > 0:  # cap > 0: filed at all (a zero-size request)
                yield s, e


class MemblockType:
    """struct memblock_type: regions sorted, disjoint and merged, ``max`` of them in the array.

    Kept as the sorted set of bases (:class:`SortedKeys`) with each region's end and nid in
    dicts keyed by its base: an insert, merge, split or removal costs O(log n), not the
    kernel's memmove of the array's tail (the emulated array's ``cnt`` and ``max``, and so
    every memblock_double_array(), are the kernel's all the same). Flags are always
    MEMBLOCK_NONE (no hotplug, mirror or nomap memory is emulated). An empty type holds the
    kernel's zero-size dummy region, so :attr:`cnt` is 1 then, as the doubling test sees it.
    ``array`` is where the region array lives: None for the static __initdata one, else the
    physical address memblock_double_array() found for it. ``gaps`` (for ``reserved``) is
    kept up to date by every method that changes coverage; the regions are changed only
    through these methods.
    """

    def __init__(self, name: str, indexed: bool = False) -> None:
        self.name = name
        self.max = INIT_MEMBLOCK_REGIONS
        self.bases = SortedKeys()
        self.end: dict[int, int] = {}
        self.nid: dict[int, int] = {}
        self.array: int | None = None
        self.gaps = GapIndex() if indexed else None
        self._flat: tuple[list[int], list[int], list[int]] | None = None

    @property
    def cnt(self) -> int:
        return len(self.bases) or 1

    @property
    def total_size(self) -> int:
        return sum(self.end[b] - b for b in self.bases)

    @property
    def regions(self) -> list[tuple[int, int, int]]:
        """``(base, size, nid)`` of each region, in order."""
        return [(b, self.end[b] - b, self.nid[b]) for b in self.bases]

    def asc(self, addr: int) -> Iterator[tuple[int, int, int]]:
        """``(base, end, nid)`` of the regions ending above ``addr``, ascending (where the
        kernel's ``bisect_right(ends, addr)`` would start)."""
        b = self.bases.floor(addr)
        first = b if b is not None and self.end[b] > addr else addr + 1
        end, nid = self.end, self.nid
        for b in self.bases.asc(first):
            yield b, end[b], nid[b]

    def desc(self, addr: int) -> Iterator[tuple[int, int, int]]:
        """``(base, end, nid)`` of the regions starting below ``addr``, descending."""
        end, nid = self.end, self.nid
        for b in self.bases.desc(addr):
            yield b, end[b], nid[b]

    def prev_end(self, addr: int) -> int:
        """The end of the last region ending at or below ``addr`` (0 if none)."""
        b = self.bases.floor(addr)
        if b is not None and self.end[b] > addr:
            b = self.bases.lower(b)
        return 0 if b is None else self.end[b]

    def flat(self) -> tuple[list[int], list[int], list[int]]:
        """Bases, ends and nids as plain lists, rebuilt after a change: for ``memory`` (a
        few regions, changed a few times a boot, searched on every request)."""
        if self._flat is None:
            bases = list(self.bases)
            self._flat = bases, [self.end[b] for b in bases], [self.nid[b] for b in bases]
        return self._flat

    def _changed(self, lo: int, hi: int) -> None:
        self._flat = None
        if self.gaps is not None:
            self.gaps.refresh(self, lo, hi)

    def overlaps(self, base: int, end: int) -> bool:
        """memblock_overlaps_region() for ``[base, end)`` (a search, not a walk)."""
        return next((b < end for b, _, _ in self.asc(base)), False)

    def uncovered(self, base: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[base, end)`` that no region covers, ascending."""
        b = self.bases.floor(base)
        if b is None or self.end[b] <= base:  # base is free: one piece unless a region follows
            nxt = self.bases.higher(base)
            if nxt is None or nxt >= end:
                return [(base, end)] if base < end else []
        out, pos = [], base
        for b, e, _ in self.asc(base):
            if pos >= end or b >= end:
                break
            if b > pos:
                out.append((pos, b))
            pos = max(pos, e)
        if pos < end:
            out.append((pos, end))
        return out

    def node_at(self, addr: int) -> int | None:
        """The nid of the region holding ``addr`` (memblock_search()), None if none."""
        b = self.bases.floor(addr)
        return self.nid[b] if b is not None and addr < self.end[b] else None

    def fill(self, pieces: list[tuple[int, int]], nid: int) -> None:
        """memblock_insert_region() for each piece (all in gaps), then memblock_merge_regions()
        around them: neighbours that touch and have the same node become one. The rest of the
        array is already merged (every operation keeps it so): the kernel's result."""
        if len(self.bases) + len(pieces) > self.max:  # callers grow the array first
            raise OverflowError(f"memblock: {self.name}: BUG_ON(type->cnt >= type->max)")
        bases, end, nids = self.bases, self.end, self.nid
        if len(pieces) == 1:  # the usual request: one piece, merged by neighbour searches
            s, e = pieces[0]
            self._fill_one(s, e, nid, bases.lower(s), bases.higher(s))
            return
        for s, e in pieces:
            bases.add(s)
            end[s] = e
            nids[s] = nid
        first, last = pieces[0][0], pieces[-1][0]
        before, after = bases.lower(first), bases.higher(last)
        window = bases.between(
            first if before is None else before, last + 1 if after is None else after + 1
        )
        cur = window[0]
        for b in window[1:]:
            if end[cur] == b and nids[cur] == nids[b]:
                end[cur] = end.pop(b)
                del nids[b]
                bases.remove(b)
            else:
                cur = b
        self._changed(first, pieces[-1][1])

    def add_free(self, base: int, stop: int, nid: int) -> bool:
        """The usual memblock_add_range(): ``[base, stop)`` lies in one gap and the array has
        room for one more region, so the kernel's two passes insert it whole without doubling:
        :meth:`fill` of that piece, done here with the two neighbours already found. False
        (nothing changed) when that is not the case: the caller takes the general path."""
        bases, end = self.bases, self.end
        before = bases.floor(base)
        if before is not None and end[before] > base:
            return False
        after = bases.higher(base)
        if (after is not None and after < stop) or len(bases) + 1 > self.max:
            return False
        self._fill_one(base, stop, nid, before, after)
        return True

    def _fill_one(self, s: int, e: int, nid: int, before: int | None, after: int | None) -> None:
        """:meth:`fill` of the one piece ``[s, e)`` lying in a gap, between the regions based
        at ``before`` and ``after`` (None: none): they are the whole merge window, and the gap
        it lay in is the only one that changes (see :meth:`GapIndex.split_gap`): the same
        regions and gaps as the general case."""
        bases, end, nids = self.bases, self.end, self.nid
        if before is not None and end[before] == s and nids[before] == nid:
            cur = before
            end[before] = e
        else:
            bases.add(s)
            end[s] = e
            nids[s] = nid
            cur = s
        if after is not None and end[cur] == after and nids[after] == nid:
            end[cur] = end.pop(after)
            del nids[after]
            bases.remove(after)
        self._flat = None
        if self.gaps is not None:
            self.gaps.split_gap(s, e)

    def split(self, addr: int) -> None:
        """Half of memblock_isolate_range(): cut the region that straddles ``addr`` (both
        halves keep its node; coverage does not change)."""
        b = self.bases.floor(addr)
        if b is not None and b < addr < self.end[b]:
            self.bases.add(addr)
            self.end[addr] = self.end[b]
            self.nid[addr] = self.nid[b]
            self.end[b] = addr
            self._flat = None

    def delete(self, lo: int, hi: int) -> None:
        """memblock_remove_region() for the regions starting in ``[lo, hi)`` (an emptied type
        is the dummy)."""
        doomed = self.bases.between(lo, hi)
        if doomed:
            first, last = doomed[0], self.end[doomed[-1]]
            for b in doomed:
                self.bases.remove(b)
                del self.end[b], self.nid[b]
            self._changed(first, last)
