"""Zone sizing of free_area_init_nodes() for one node, as both x86_32 profiles need it.

mm/page_alloc.c (2.6.25 and 6.1): the arch passes the highest pfn of each zone; zone *j*
then spans from where zone *j-1* ended to ``max(max_zone_pfn[j], that)``, the first zone
starting at the lowest active pfn. Each zone's span is clipped to the node's span, and the
pages no active range covers are "absent". What is done with those numbers (memmap pages,
present pages, per-cpu batch) differs between the generations and stays in the profiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bootemu_arches.x86_32.mm import absent_pages


@dataclass
class ZoneSize:
    """One zone of node 0 as free_area_init_core() sees it.

    ``lowest``/``highest`` are arch_zone_lowest/highest_possible_pfn (the printed range);
    ``start``/``end`` the span clipped to the node; ``absent`` the holes inside the span.
    The profile fills ``present`` (zone->present_pages), ``memmap`` and ``freesize``.
    """

    name: str
    lowest: int
    highest: int
    start: int
    end: int
    absent: int
    highmem: bool
    present: int = 0
    memmap: int = 0
    freesize: int = 0

    @property
    def spanned(self) -> int:
        return self.end - self.start


def zone_sizes(
    active: Sequence[tuple[int, int]],
    max_zone_pfns: Sequence[tuple[str, int]],
    highmem_zones: Sequence[str] = ("HighMem",),
) -> list[ZoneSize]:
    """free_area_init_nodes() boundaries + zone_spanned/absent_pages_in_node() for node 0.

    ``active``: the early node map (sorted, disjoint pfn ranges); ``max_zone_pfns``: the
    configured zones in order with their max_zone_pfn. ZONE_MOVABLE (no kernelcore=) is
    appended with an empty range, as the kernel keeps it in every node.
    """
    node_start = active[0][0] if active else 0
    node_end = max((e for _, e in active), default=0)
    out: list[ZoneSize] = []
    lowest = node_start
    for name, max_pfn in max_zone_pfns:
        highest = max(max_pfn, lowest)
        if highest < node_start or lowest > node_end:
            start = end = lowest  # zone_spanned_pages_in_node(): no pages in this node
        else:
            start, end = max(lowest, node_start), min(highest, node_end)
            end = max(end, start)
        out.append(ZoneSize(name, lowest, highest, start, end,
                            absent_pages(active, start, end), name in highmem_zones))
        lowest = highest
    out.append(ZoneSize("Movable", 0, 0, 0, 0, 0, False))
    return out
