"""The page-allocator (buddy) model against hand-checked cases and a per-page reference.

Expected values come from the reference (boot-allocators §4.3, §5.2, §5.5, §6 B13) or from
arithmetic written next to them; the property tests compare with a brute-force model that
plays mm/page_alloc.c __free_one_page() (2.6.25) page by page.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bootemu.models import Block, Layout, Zone
from bootemu.pagealloc import PageAllocModel, buddy_counts


def make_layout(
    max_pfn: int,
    limits: list[tuple[str, int]],
    blocks: list[tuple[int, int, int]],
) -> Layout:
    """A layout whose zones are the intersection of each node's span with the zone limits."""
    zones = []
    for node in sorted({n for _, _, n in blocks}):
        mine = [(s, e) for s, e, n in blocks if n == node]
        lo = 0
        for name, limit in limits:
            span_s = max(lo, min(s for s, _ in mine))
            span_e = min(limit, max(e for _, e in mine))
            present = sum(max(0, min(e, limit) - max(s, lo)) for s, e in mine)
            if present:
                zones.append(Zone(node, name, span_s, span_e, present))
            lo = limit
    return Layout(
        max_pfn=max_pfn,
        ram=tuple((s, e) for s, e, _ in sorted(blocks)),
        blocks=tuple(Block(s, e, n) for s, e, n in blocks),
        zones=tuple(zones),
        zone_limits=tuple(limits),
    )


B13 = make_layout(0x8000, [("DMA", 4096), ("Normal", 0x8000)], [(0, 0x8000, 0)])


def test_b13_buddyinfo() -> None:
    # Reference §6 B13: after free_all_bootmem() the free pfns are 256..32767 (pfns 0..0xff
    # reserved, the bitmap page 0x100 released last). DMA [256, 4096): 256 is aligned to 256
    # but not 512 -> one order-8 block [256, 512); 512 -> one order-9 block [512, 1024);
    # [1024, 4096) = 3 aligned blocks of 1024 -> three order-10 blocks.
    # Normal [4096, 32768) = 28672 pages = 28 * 1024 -> 28 order-10 blocks.
    pa = PageAllocModel(B13)
    pa.free_run(node=0, start_pfn=257, end_pfn=288, order=0)  # 31 single pages
    pa.free_run(node=0, start_pfn=288, end_pfn=32768, order=5)  # 1015 chunks of 32
    pa.free_run(node=0, start_pfn=256, end_pfn=257, order=0)  # the bitmap page
    assert pa.received == 32512  # B13: 31 + 1015 * 32 + 1
    assert pa.nr_free(0, "DMA") == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3]
    assert pa.nr_free(0, "Normal") == [0] * 10 + [28]
    # §5.5: "Node %d, zone %8s " then "%6lu " per order (trailing space included).
    assert pa.buddyinfo() == [
        "Node 0, zone      DMA      0      0      0      0      0      0      0      0"
        "      1      1      3 ",
        "Node 0, zone   Normal      0      0      0      0      0      0      0      0"
        "      0      0     28 ",
    ]
    assert pa.released_by_order == {0: 32, 5: 1015 * 32}
    assert pa.managed(0, "DMA") == 4096 - 256
    assert pa.free_pages() == 32512
    assert pa.free_pages(zone="Normal") == 28672
    assert pa.by_node_zone() == {"node0/DMA": 3840, "node0/Normal": 28672}


def test_memblock_greedy_example() -> None:
    # Reference §4.3 / M5: free pfns [1, 1024) are the blocks 1(o0), 2(o1), 4(o2) ... 512(o9).
    counts = [0] * 11
    buddy_counts(1, 1024, counts)
    assert counts == [1] * 10 + [0]


def test_large_run_counted_without_pages() -> None:
    # 2^26 aligned pages = 2^26 / 2^10 = 65536 blocks of order 10, nothing else.
    n = 1 << 26
    lay = make_layout(n, [("Normal", n)], [(0, n, 0)])
    pa = PageAllocModel(lay)
    pa.free_run(node=0, start_pfn=0, end_pfn=n, order=10)
    assert pa.nr_free(0, "Normal") == [0] * 10 + [65536]


def test_zone_limit_stops_merging() -> None:
    # A zone limit that is not order-aligned: DMA [0, 100), Normal [100, 300).
    # DMA: 100 = 64 + 32 + 4 -> blocks 0(o6), 64(o5), 96(o2).
    # Normal [100, 300): 100(o2), 104(o3), 112(o4), 128(o7), 256(o5), 288(o3), 296(o2).
    lay = make_layout(300, [("DMA", 100), ("Normal", 300)], [(0, 300, 0)])
    pa = PageAllocModel(lay)
    pa.free_run(node=0, start_pfn=0, end_pfn=300, order=0)
    assert pa.nr_free(0, "DMA") == [0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0]
    assert pa.nr_free(0, "Normal") == [0, 0, 2, 2, 1, 1, 0, 1, 0, 0, 0]


def test_touching_runs_merge() -> None:
    # [0, 512) and [512, 1024) released separately merge into one order-10 block.
    lay = make_layout(1024, [("Normal", 1024)], [(0, 1024, 0)])
    pa = PageAllocModel(lay)
    pa.free_run(node=0, start_pfn=512, end_pfn=1024, order=9)
    pa.free_run(node=0, start_pfn=0, end_pfn=512, order=9)
    assert pa.nr_free(0, "Normal") == [0] * 10 + [1]
    assert pa.merged_runs(0, "Normal") == [(0, 1024)]


def test_two_nodes_buddyinfo_and_filing() -> None:
    # Node 0 = [0, 8192), node 1 = [8192, 16384); DMA limit 4096, so node 1 has no DMA zone
    # and its buddyinfo shows Normal only. Node 0 releases [8192, 9216) too (a pfn seen by two
    # nodes, as classic bootmem does): it is filed under node 0 as the releasing code says.
    lay = make_layout(16384, [("DMA", 4096), ("Normal", 16384)], [(0, 8192, 0), (8192, 16384, 1)])
    pa = PageAllocModel(lay)
    pa.free_run(node=0, start_pfn=0, end_pfn=9216, order=5)
    pa.free_run(node=1, start_pfn=8192, end_pfn=16384, order=5)
    # Node 0 Normal [4096, 9216) = 5 order-10 blocks; node 1 Normal [9216, 16384) = 7.
    assert pa.buddyinfo() == [
        "Node 0, zone      DMA" + "      0" * 10 + "      4 ",
        "Node 0, zone   Normal" + "      0" * 10 + "      5 ",
        "Node 1, zone   Normal" + "      0" * 10 + "      7 ",
    ]
    assert pa.double_handoffs == [(8192, 9216, 0, 1)]
    assert pa.received == 16384
    assert pa.offered == 16384 + 1024
    assert pa.managed(1, "Normal") == 7168
    assert pa.present(1, "Normal") == 8192
    assert pa.present(1, "DMA") == 0
    report = pa.zones_report()
    assert [(z["node"], z["name"]) for z in report] == [(0, "DMA"), (0, "Normal"), (1, "Normal")]
    assert report[2] == {
        "node": 1,
        "name": "Normal",
        "start_pfn": 8192,
        "end_pfn": 16384,
        "spanned": 8192,
        "present": 8192,
        "managed": 7168,
        "free": 7168,
    }


def test_double_handoff_partial_and_by_owner() -> None:
    lay = make_layout(1000, [("Normal", 1000)], [(0, 1000, 0)])
    pa = PageAllocModel(lay)
    pa.free_run(node=0, start_pfn=100, end_pfn=200, order=0)
    pa.free_run(node=1, start_pfn=300, end_pfn=400, order=0)
    # Node 2 releases [150, 350): [150, 200) was node 0's, [300, 350) node 1's.
    pa.free_run(node=2, start_pfn=150, end_pfn=350, order=0)
    assert pa.double_handoffs == [(150, 200, 0, 2), (300, 350, 1, 2)]
    assert pa.managed(2, "Normal") == 100  # only [200, 300) was new
    assert pa.received == 300
    assert pa.handed.count() == 300


def test_outside_every_zone() -> None:
    lay = make_layout(1000, [("Normal", 1000)], [(0, 1000, 0)])
    pa = PageAllocModel(lay)
    pa.free_run(node=0, start_pfn=900, end_pfn=1100, order=0)
    assert pa.outside == [(1000, 1100, 0)]
    assert pa.received == 100
    assert pa.offered == 200


def test_trace_one_event_per_run() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    lay = make_layout(8192, [("DMA", 4096), ("Normal", 8192)], [(0, 8192, 0)])
    pa = PageAllocModel(lay, trace=lambda event, **kw: events.append((event, kw)))
    pa.free_run(node=0, start_pfn=0, end_pfn=8192, order=5)
    assert [e for e, _ in events] == ["handoff.pages", "handoff.pages"]  # one per zone piece
    assert events[0][1] | {} == {
        "node": 0,
        "zone": "DMA",
        "start_pfn": 0,
        "end_pfn": 4096,
        "order": 5,
        "pages": 4096,
        "accepted": 4096,
    }
    assert events[1][1]["zone"] == "Normal"


# --------------------------------------------------------------------------------------------
# Property tests against a per-page reference


def reference_model(
    lay: Layout, runs: list[tuple[int, int, int]]
) -> tuple[dict[tuple[int, str], list[int]], dict[int, list[tuple[int, int]]]]:
    """Free every page one by one as __free_one_page() (mm/page_alloc.c, 2.6.25) does.

    Returns nr_free per (node, zone) and {pfn: [(first_node, later_node), ...]}, one pair
    per release after the first.
    """
    last = lay.zone_limits[-1][1]
    areas: dict[tuple[int, str], list[set[int]]] = {}
    owner: dict[int, int] = {}
    doubles: dict[int, list[tuple[int, int]]] = {}
    for node, s, e in runs:
        for pfn in range(s, e):
            if pfn >= last:
                continue
            if pfn in owner:
                doubles.setdefault(pfn, []).append((owner[pfn], node))
                continue
            owner[pfn] = node
            area = areas.setdefault((node, lay.zone_of(pfn)), [set() for _ in range(11)])
            idx, order = pfn, 0
            while order < 10:
                buddy = idx ^ (1 << order)
                # Same free_area => same zone of the same node, free, of this order.
                if buddy not in area[order]:
                    break
                area[order].remove(buddy)
                idx &= ~(1 << order)
                order += 1
            area[order].add(idx)
    return {k: [len(x) for x in v] for k, v in areas.items()}, doubles


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Layout, list[tuple[int, int, int]]]:
    max_pfn = draw(st.integers(2, 5000))
    cuts = sorted(draw(st.sets(st.integers(1, max_pfn - 1), max_size=2)))
    names = ["DMA", "DMA32", "Normal"][: len(cuts) + 1]
    limits = list(zip(names, [*cuts, max_pfn], strict=True))
    # Nodes: consecutive blocks with random owners.
    bounds = sorted({0, max_pfn, *draw(st.sets(st.integers(1, max_pfn - 1), max_size=4))})
    blocks = [(a, b, draw(st.integers(0, 2))) for a, b in zip(bounds, bounds[1:], strict=False)]
    lay = make_layout(max_pfn, limits, blocks)
    runs = []
    for _ in range(draw(st.integers(0, 8))):
        s = draw(st.integers(0, max_pfn + 50))
        e = draw(st.integers(s, min(s + 3000, max_pfn + 100)))
        runs.append((draw(st.integers(0, 2)), s, e))
    return lay, runs


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.integers(0, 10))
def test_matches_per_page_buddy(scn: tuple[Layout, list[tuple[int, int, int]]], order: int) -> None:
    lay, runs = scn
    pa = PageAllocModel(lay)
    for node, s, e in runs:
        pa.free_run(node=node, start_pfn=s, end_pfn=e, order=order)
    expected, doubles = reference_model(lay, runs)
    keys = set(expected) | {(n, z) for n, z, _, _ in pa.filed()}
    for node, zone in keys:
        assert pa.nr_free(node, zone) == expected.get((node, zone), [0] * 11)
    # Every page received is in exactly one block: sum of 2^order * nr_free.
    total = sum(c << o for node, zone in keys for o, c in enumerate(pa.nr_free(node, zone)))
    assert total == pa.received
    assert pa.received == pa.handed.count()
    # Double releases are found exactly on the pfns released twice, with both nodes.
    # (Releases happen in order, so the model's list per pfn is in release order too.)
    found: dict[int, list[tuple[int, int]]] = {}
    for s, e, first, second in pa.double_handoffs:
        for pfn in range(s, e):
            found.setdefault(pfn, []).append((first, second))
    assert found == doubles
    assert pa.offered == sum(e - s for _, s, e in runs)
