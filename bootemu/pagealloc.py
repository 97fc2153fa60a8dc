"""The page-allocator model: what the buddy allocator holds right after the boot-time handoff.

Per node and per zone the kernel keeps ``free_area[order]`` lists for orders 0..MAX_ORDER-1
(``include/linux/mmzone.h``, 2.6.25: MAX_ORDER 11). The boot-time allocator releases its free
pages with ``__free_pages_bootmem()`` and every block ends in ``__free_one_page()``
(``mm/page_alloc.c``, 2.6.25; reference boot-allocators §5.1–5.2), which merges a block with its
buddy while the buddy is free, of the same order and in the same zone, up to order 10.

Whatever the order of the frees, the final state of that merging is unique: the free pfns of a
zone split into maximal naturally aligned blocks of at most order 10 (no two free buddies of the
same order can remain). So the model stores *runs* of free pfns per (node, zone) and derives
the free lists from them with arithmetic, lazily, when someone asks (:meth:`nr_free`,
:meth:`buddyinfo`). Nothing here is per page: a run of 2^20 aligned pages is 1024 blocks of
order 10, counted in O(1).

Not modelled: the per-cpu page lists (§5.3) that hold back some order-0 frees in a real kernel;
every released page is counted in the buddy lists.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from bootemu.models import MAX_ORDER, Layout, Zone, merge_ranges
from bootemu.runmap import RunMap

#: The highest order a free block can reach (orders 0..MAX_ORDER-1).
TOP_ORDER = MAX_ORDER - 1
_TOP_PAGES = 1 << TOP_ORDER


def buddy_counts(start: int, end: int, counts: list[int]) -> None:
    """Add the buddy decomposition of the free pfns ``[start, end)`` to ``counts`` (per order).

    The run splits into maximal naturally aligned blocks, capped at order 10: that is what
    ``__free_one_page()`` (mm/page_alloc.c, 2.6.25) leaves once every page of the run is free
    and nothing around it is. Greedy from the left (as ``__free_pages_memory()`` of memblock
    does), with the aligned middle counted in one step: at most ~20 iterations per run.
    """
    pos = start
    # Head: blocks up to the first order-10 boundary.
    while pos < end and pos & (_TOP_PAGES - 1):
        order = min((pos & -pos).bit_length() - 1, (end - pos).bit_length() - 1)
        counts[order] += 1
        pos += 1 << order
    # Middle: whole aligned order-10 blocks.
    n = (end - pos) >> TOP_ORDER
    counts[TOP_ORDER] += n
    pos += n << TOP_ORDER
    # Tail: pos is order-10 aligned, so the remainder's binary digits are the blocks.
    rest = end - pos
    for order in range(TOP_ORDER):
        if rest >> order & 1:
            counts[order] += 1


def bit_runs(bits: RunMap, value: int, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """Yield ``(s, e)`` for every maximal run of ``value`` in ``bits[start:stop]``: once per
    run, never once per bit."""
    return bits.runs(value, start, stop)


class PageAllocModel:
    """The buddy allocator's free lists after handoff, plus present / managed accounting.

    Implements :class:`bootemu.models.PageSink`. A released run is filed under the node the
    releasing code names (not where the pages reside: the checks compare the two) and split at
    the global zone limits. A pfn released a second time is recorded in
    :attr:`double_handoffs` and not filed again; pages above the last zone limit are recorded in
    :attr:`outside`.

    Public state after the handoff:

    - ``received``: pages accepted into the free lists;
    - ``offered``: pages passed to :meth:`free_run`, double and outside ones included (what
      the releasing code counts);
    - ``released_by_order``: pages offered per chunk order of the releasing routine;
    - ``double_handoffs``: ``(start_pfn, end_pfn, first_node, second_node)`` ranges;
    - ``outside``: ``(start_pfn, end_pfn, node)`` ranges above every zone;
    - ``handed``: a :class:`~bootemu.runmap.RunMap` over pfns, set = accepted into the free
      lists.
    """

    def __init__(self, layout: Layout, trace: Callable[..., Any] | None = None) -> None:
        self.layout = layout
        self._trace = trace
        self._zone_names = [name for name, _ in layout.zone_limits]
        self._zone_rank = {name: i for i, name in enumerate(self._zone_names)}
        self._last_limit = layout.zone_limits[-1][1] if layout.zone_limits else 0
        self.handed = RunMap(layout.max_pfn)
        self.received = 0
        self.offered = 0
        self.released_by_order: dict[int, int] = {}
        self.double_handoffs: list[tuple[int, int, int, int]] = []
        self.outside: list[tuple[int, int, int]] = []
        # (node, zone) -> runs as filed (disjoint, any order); merged lazily.
        self._runs: dict[tuple[int, str], list[tuple[int, int]]] = {}
        self._managed: dict[tuple[int, str], int] = {}
        self._merged: dict[tuple[int, str], list[tuple[int, int]]] = {}
        self._nr_free: dict[tuple[int, str], list[int]] = {}
        # node -> sorted disjoint (start, end) runs that node filed: who handed a pfn first.
        self._owner: dict[int, list[tuple[int, int]]] = {}
        self._present = {(z.node, z.name): z.present for z in layout.zones}

    # ----------------------------------------------------------------------------------------
    # PageSink

    def free_run(self, *, node: int, start_pfn: int, end_pfn: int, order: int) -> None:
        """Release ``[start_pfn, end_pfn)`` to ``node``'s free lists (chunk order ``order``).

        Plays ``__free_pages_bootmem()`` for every chunk of the run at once (mm/page_alloc.c,
        2.6.25): the pages go to the zone's free lists; the buddy state is derived later.
        """
        if start_pfn < 0 or order < 0:
            raise ValueError(f"free_run: bad run [{start_pfn}, {end_pfn}) order {order}")
        if end_pfn <= start_pfn:
            return
        pages = end_pfn - start_pfn
        self.offered += pages
        self.released_by_order[order] = self.released_by_order.get(order, 0) + pages
        for s, e, zone in self.layout.zone_pieces(start_pfn, end_pfn):
            if s >= self._last_limit:
                # Above every zone: no struct zone would take these pages.
                self.outside.append((s, e, node))
                self._emit(node, None, s, e, order, accepted=0)
                continue
            accepted = self._file(node, zone, s, e)
            self._emit(node, zone, s, e, order, accepted=accepted)

    def _emit(self, node: int, zone: str | None, s: int, e: int, order: int, accepted: int) -> None:
        if self._trace is not None:
            self._trace(
                "handoff.pages",
                node=node,
                zone=zone,
                start_pfn=s,
                end_pfn=e,
                order=order,
                pages=e - s,
                accepted=accepted,
            )

    def _file(self, node: int, zone: str, s: int, e: int) -> int:
        """File ``[s, e)`` (inside one zone) under ``(node, zone)``; returns pages accepted."""
        if e > len(self.handed):
            self.handed.grow(e)
        if self.handed.find(1, s, e) < 0:
            new = [(s, e)]
        else:
            new = list(bit_runs(self.handed, 0, s, e))
            for ds, de in bit_runs(self.handed, 1, s, e):
                for os_, oe, first in self._owners(ds, de):
                    self.double_handoffs.append((os_, oe, first, node))
        key = (node, zone)
        runs = self._runs.setdefault(key, [])
        owner = self._owner.setdefault(node, [])
        accepted = 0
        for ns, ne in new:
            self.handed[ns:ne] = 1
            runs.append((ns, ne))
            if owner and owner[-1][0] > ns:
                bisect.insort(owner, (ns, ne))
            else:
                owner.append((ns, ne))
            accepted += ne - ns
        if accepted:
            self._managed[key] = self._managed.get(key, 0) + accepted
            self.received += accepted
            self._merged.pop(key, None)
            self._nr_free.pop(key, None)
        return accepted

    def _owners(self, s: int, e: int) -> list[tuple[int, int, int]]:
        """Split the already handed ``[s, e)`` by the node that filed each part first."""
        out: list[tuple[int, int, int]] = []
        for node in sorted(self._owner):
            runs = self._owner[node]
            i = max(bisect.bisect_right(runs, (s, s)) - 1, 0)
            while i < len(runs) and runs[i][0] < e:
                rs, re_ = runs[i]
                if re_ > s:
                    out.append((max(rs, s), min(re_, e), node))
                i += 1
        out.sort()
        return out

    # ----------------------------------------------------------------------------------------
    # Queries

    def _keys(self) -> list[tuple[int, str]]:
        """(node, zone) keys to show: populated layout zones plus any zone that got pages."""
        keys = {k for k, p in self._present.items() if p > 0} | set(self._managed)
        return sorted(
            keys, key=lambda k: (k[0], self._zone_rank.get(k[1], len(self._zone_rank)), k[1])
        )

    def merged_runs(self, node: int, zone: str) -> list[tuple[int, int]]:
        """The free pfn runs of ``(node, zone)``, sorted, touching runs merged."""
        key = (node, zone)
        cached = self._merged.get(key)
        if cached is not None:
            return cached
        out: list[tuple[int, int]] = []
        for s, e in sorted(self._runs.get(key, ())):
            if out and s <= out[-1][1]:
                if e > out[-1][1]:
                    out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        self._merged[key] = out
        return out

    def filed(self) -> list[tuple[int, str, int, int]]:
        """Every free run as ``(node, zone, start_pfn, end_pfn)``, by node, zone, pfn."""
        return [(n, z, s, e) for n, z in self._keys() for s, e in self.merged_runs(n, z)]

    def nr_free(self, node: int, zone: str) -> list[int]:
        """``free_area[order].nr_free`` for orders 0..10 of ``(node, zone)``."""
        key = (node, zone)
        cached = self._nr_free.get(key)
        if cached is None:
            cached = [0] * MAX_ORDER
            for s, e in self.merged_runs(node, zone):
                buddy_counts(s, e, cached)
            self._nr_free[key] = cached
        return list(cached)

    def buddyinfo(self) -> list[str]:
        """``/proc/buddyinfo`` lines (mm/vmstat.c: frag_show_print(), 2.6.25; reference §5.5).

        Each node ascending, each populated zone in zone order: ``"Node %d, zone %8s "`` then
        ``"%6lu "`` per order, so every number is followed by a space. A zone with no present
        page but with pages filed into it (a misplaced release, which a kernel could not do) is
        shown too, so that the lines account for every page received.
        """
        lines = []
        for node, zone in self._keys():
            counts = "".join(f"{c:6d} " for c in self.nr_free(node, zone))
            lines.append(f"Node {node}, zone {zone:>8s} {counts}")
        return lines

    def present(self, node: int, zone: str) -> int:
        """``present_pages`` of the zone, as the arch computed it (0 if there is no such zone)."""
        return self._present.get((node, zone), 0)

    def managed(self, node: int, zone: str) -> int:
        """Pages filed into ``(node, zone)`` at handoff."""
        return self._managed.get((node, zone), 0)

    def free_pages(self, node: int | None = None, zone: str | None = None) -> int:
        """Free pages (nothing is allocated from the model, so free = managed), filtered."""
        return sum(
            p
            for (n, z), p in self._managed.items()
            if (node is None or n == node) and (zone is None or z == zone)
        )

    def by_node_zone(self) -> dict[str, int]:
        """``{"node0/DMA": pages, ...}``: pages handed per node and zone, in buddyinfo order."""
        return {f"node{n}/{z}": self.managed(n, z) for n, z in self._keys()}

    def free_ranges(self) -> list[list[int]]:
        """``[[start_pfn, end_pfn, node], ...]``: the runs each node filed on its free lists,
        merged per node, sorted by start then node (the report's ``handoff.free_ranges``).

        A pfn handed twice appears once, under the node that filed it first (the second
        handoff is a ``double-handoff`` violation), so the runs add up to :attr:`received`.
        """
        out: list[list[int]] = []
        for node in sorted(self._owner):
            out += [[s, e, node] for s, e in merge_ranges(self._owner[node])]
        out.sort()
        return out

    def zones_report(self) -> list[dict[str, Any]]:
        """The report's ``zones`` entries, one per layout zone (ARCHITECTURE.md report keys)."""
        return [
            zone_entry(z, self.managed(z.node, z.name), self.free_pages(z.node, z.name))
            for z in self.layout.zones
        ]


def zone_entry(zone: Zone, managed: int, free: int) -> dict[str, Any]:
    """One zone as the report shows it (``managed``/``free`` are 0 before any handoff)."""
    return {
        "node": zone.node,
        "name": zone.name,
        "start_pfn": zone.start_pfn,
        "end_pfn": zone.end_pfn,
        "spanned": zone.spanned,
        "present": zone.present,
        "managed": managed,
        "free": free,
    }


__all__ = ["TOP_ORDER", "PageAllocModel", "bit_runs", "buddy_counts", "zone_entry"]
