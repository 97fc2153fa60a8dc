"""A sorted set of integers in chunks: what memblock's region arrays and gap index sit on.

Private to the memblock backend. A plain sorted Python list costs O(n) per insert or delete in
the middle (the tail is shifted), so a boot that leaves a region per request (the numa64
2.6.25 profile leaves one per 128 MiB section, ~a million at 64 TiB) goes quadratic. Here the
keys live in sorted chunks of at most ``2 * LOAD`` with the top-level list of each chunk's
maximum: an insert or delete shifts one chunk, a search is two bisects, a chunk is split or
dropped once per ~LOAD changes (the layout of sortedcontainers' SortedList, without its
positional index: no caller here needs "the i-th key", only neighbours and ranges of keys).

Iterators (:meth:`asc`, :meth:`desc`) walk the live chunks: the set must not change while one
is in use (every caller finishes its walk before changing anything).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator

#: Chunk size: a chunk holds LOAD .. 2 * LOAD keys after a split (memmove of a few KiB).
LOAD = 512


class SortedKeys:
    """Distinct ints, ascending; ``add`` / ``remove`` / neighbour searches in O(log n)."""

    __slots__ = ("_lists", "_maxes", "_len")

    def __init__(self) -> None:
        self._lists: list[list[int]] = []
        self._maxes: list[int] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[int]:
        for chunk in self._lists:
            yield from chunk

    def add(self, x: int) -> None:
        """Insert ``x`` (not present)."""
        lists, maxes = self._lists, self._maxes
        self._len += 1
        if not maxes:
            lists.append([x])
            maxes.append(x)
            return
        i = bisect_left(maxes, x)
        if i == len(maxes):  # past every key: append to the last chunk
            i -= 1
            lists[i].append(x)
            maxes[i] = x
        else:
            insort(lists[i], x)
        chunk = lists[i]
        if len(chunk) > 2 * LOAD:
            half = chunk[LOAD:]
            del chunk[LOAD:]
            maxes[i] = chunk[-1]
            lists.insert(i + 1, half)
            maxes.insert(i + 1, half[-1])

    def remove(self, x: int) -> None:
        """Delete ``x``; KeyError when absent."""
        lists, maxes = self._lists, self._maxes
        i = bisect_left(maxes, x)
        if i < len(maxes):
            chunk = lists[i]
            j = bisect_left(chunk, x)
            if chunk[j] == x:
                del chunk[j]
                self._len -= 1
                if not chunk:
                    del lists[i], maxes[i]
                elif j == len(chunk):
                    maxes[i] = chunk[-1]
                return
        raise KeyError(x)

    def floor(self, x: int) -> int | None:
        """The largest key ``<= x``, or None."""
        i = bisect_right(self._maxes, x)  # chunks before i hold only keys <= x
        if i < len(self._maxes):
            chunk = self._lists[i]
            j = bisect_right(chunk, x)
            if j:
                return chunk[j - 1]
        return self._maxes[i - 1] if i else None

    def lower(self, x: int) -> int | None:
        """The largest key ``< x``, or None."""
        maxes = self._maxes
        if maxes and maxes[-1] < x:  # above every key (a search from the top)
            return maxes[-1]
        i = bisect_left(maxes, x)
        if i < len(self._maxes):
            chunk = self._lists[i]
            j = bisect_left(chunk, x)
            if j:
                return chunk[j - 1]
        return self._maxes[i - 1] if i else None

    def higher(self, x: int) -> int | None:
        """The smallest key ``> x``, or None."""
        i = bisect_right(self._maxes, x)
        if i == len(self._maxes):
            return None
        chunk = self._lists[i]
        return chunk[bisect_right(chunk, x)]

    def asc(self, x: int) -> Iterator[int]:
        """The keys ``>= x``, ascending."""
        lists = self._lists
        i = bisect_left(self._maxes, x)
        if i == len(lists):
            return
        chunk = lists[i]
        for j in range(bisect_left(chunk, x), len(chunk)):
            yield chunk[j]
        for k in range(i + 1, len(lists)):
            yield from lists[k]

    def desc(self, x: int) -> Iterator[int]:
        """The keys ``< x``, descending."""
        lists = self._lists
        i = bisect_left(self._maxes, x)
        if i == len(lists):
            if not lists:
                return
            i -= 1
            j = len(lists[i])
        else:
            j = bisect_left(lists[i], x)
        chunk = lists[i]
        for m in range(j - 1, -1, -1):
            yield chunk[m]
        for k in range(i - 1, -1, -1):
            yield from reversed(lists[k])

    def between(self, lo: int, hi: int) -> list[int]:
        """The keys in ``[lo, hi)``, ascending."""
        out = []
        for x in self.asc(lo):
            if x >= hi:
                break
            out.append(x)
        return out
