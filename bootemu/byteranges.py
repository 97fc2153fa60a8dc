"""Sets of bytes kept as ranges, for the recorder's ledger of live reservations and allocations.

:class:`ByteRanges` is one sorted list of disjoint ranges: O(log n) to find, but inserting in
the middle moves the tail of the list, so a ledger of a million entries filled from eight
nodes' regions at once costs time quadratic in the requests. :class:`SpreadRanges` keeps the
same set split by 1 GiB of address space (one ByteRanges each, plus one for the ranges larger
than that): every operation touches only the buckets its range covers, so the cost per request
stays constant whatever the number of requests.
"""

from __future__ import annotations

import bisect

Ranges = list[tuple[int, int]]

#: log2 of the address span one bucket of :class:`SpreadRanges` covers (1 GiB).
BUCKET_SHIFT = 30


class ByteRanges:
    """A set of bytes kept as sorted, disjoint, non-touching ranges.

    Early boot makes one entry per request, and on large NUMA machines the number of requests
    grows with memory (sparse_init() allocates per section), so every operation bisects and
    touches only the ranges it changes: O(log n + k), never a rebuild of the whole list.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    @property
    def ranges(self) -> Ranges:
        return list(zip(self._starts, self._ends, strict=True))

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        # Ranges that overlap or touch [start, end) merge with it.
        i = bisect.bisect_left(self._ends, start)
        j = bisect.bisect_right(self._starts, end)
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def remove(self, start: int, end: int) -> None:
        if start >= end:
            return
        i = bisect.bisect_right(self._ends, start)
        j = bisect.bisect_left(self._starts, end)
        if i >= j:
            return
        starts: list[int] = []
        ends: list[int] = []
        if self._starts[i] < start:  # the head of the first range survives
            starts.append(self._starts[i])
            ends.append(start)
        if self._ends[j - 1] > end:  # the tail of the last range survives
            starts.append(end)
            ends.append(self._ends[j - 1])
        self._starts[i:j] = starts
        self._ends[i:j] = ends

    def intersects(self, start: int, end: int) -> bool:
        """Whether some byte of ``[start, end)`` is in the set."""
        i = bisect.bisect_right(self._ends, start)
        return i < len(self._starts) and self._starts[i] < end and start < end

    def overlapping(self, start: int, end: int) -> Ranges:
        i = bisect.bisect_right(self._ends, start)
        j = bisect.bisect_left(self._starts, end)
        return [
            (max(self._starts[k], start), min(self._ends[k], end))
            for k in range(i, j)
            if max(self._starts[k], start) < min(self._ends[k], end)
        ]


class SpreadRanges:
    """The interface of :class:`ByteRanges` (``add``, ``remove``, ``overlapping``, ``ranges``)
    with the ranges spread over 1 GiB buckets; results are the same sets, coalesced."""

    def __init__(self, shift: int = BUCKET_SHIFT) -> None:
        self._shift = shift
        self._big = ByteRanges()  # ranges of a bucket's size or more, kept whole
        self._buckets: dict[int, ByteRanges] = {}
        self._keys: list[int] = []  # sorted bucket numbers in use

    def _bucket(self, b: int) -> ByteRanges:
        br = self._buckets.get(b)
        if br is None:
            br = self._buckets[b] = ByteRanges()
            bisect.insort(self._keys, b)
        return br

    def _touched(self, start: int, end: int) -> list[int]:
        """Bucket numbers in use that ``[start, end)`` reaches."""
        lo, hi = start >> self._shift, (end - 1) >> self._shift
        i, j = bisect.bisect_left(self._keys, lo), bisect.bisect_right(self._keys, hi)
        return self._keys[i:j]

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        shift = self._shift
        if end - start >= 1 << shift:
            self._big.add(start, end)
            return
        cut = ((start >> shift) + 1) << shift
        self._bucket(start >> shift).add(start, min(end, cut))
        if end > cut:
            self._bucket(cut >> shift).add(cut, end)

    def remove(self, start: int, end: int) -> None:
        if start >= end:
            return
        self._big.remove(start, end)
        for b in self._touched(start, end):
            self._buckets[b].remove(start, end)

    def intersects(self, start: int, end: int) -> bool:
        """Whether some byte of ``[start, end)`` is in the set."""
        if start >= end:
            return False
        if self._big.intersects(start, end):
            return True
        lo, hi = start >> self._shift, (end - 1) >> self._shift
        if lo == hi:  # the usual request: one bucket, no list to build
            br = self._buckets.get(lo)
            return br is not None and br.intersects(start, end)
        return any(self._buckets[b].intersects(start, end) for b in self._touched(start, end))

    def overlapping(self, start: int, end: int) -> Ranges:
        if start >= end:
            return []
        found = self._big.overlapping(start, end)
        for b in self._touched(start, end):
            found += self._buckets[b].overlapping(start, end)
        return _coalesce(found)

    @property
    def ranges(self) -> Ranges:
        found = self._big.ranges
        for b in self._keys:
            found += self._buckets[b].ranges
        return _coalesce(found)


def _coalesce(ranges: Ranges) -> Ranges:
    """Sorted union of ``ranges``; ranges that overlap or touch become one."""
    out: Ranges = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


__all__ = ["BUCKET_SHIFT", "ByteRanges", "SpreadRanges"]
