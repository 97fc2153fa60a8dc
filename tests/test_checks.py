"""The checks, on small synthetic layouts where each violation is built on purpose.

The machine: node 0 = pfns [0, 1000), node 1 = [1024, 2048), a hole [1000, 1024) between them;
zones DMA below pfn 512, Normal up to 2048. A scripted fake backend answers the requests with
the addresses the test chooses and releases the runs the test lists, so every expected range
below is the deviation the test introduced, written out by hand.
"""

from __future__ import annotations

import pluggy
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import bootemu.checks as checks
from bootemu.boot import Boot, Tracer
from bootemu.checks import (
    MAX_RANGES,
    Recorder,
    Violation,
    intersect,
    run_checks,
    subtract,
)
from bootemu.hookspecs import PROJECT, AllocatorSpec, hookimpl
from bootemu.models import (
    EBUSY,
    AllocRequest,
    BitmapRequest,
    Block,
    KernelPanic,
    KernelSpec,
    Layout,
    Machine,
    PageSink,
    Zone,
    merge_ranges,
)
from bootemu.pagealloc import PageAllocModel

P = 4096  # bytes per page

LAYOUT = Layout(
    max_pfn=2048,
    ram=((0, 1000), (1024, 2048)),
    blocks=(Block(0, 1000, 0), Block(1024, 2048, 1)),
    zones=(
        Zone(0, "DMA", 0, 512, 512),
        Zone(0, "Normal", 512, 1000, 488),
        Zone(1, "Normal", 1024, 2048, 1024),
    ),
    zone_limits=(("DMA", 512), ("Normal", 2048)),
)


class FakeBackend:
    """Answers from a script: ``answers`` for allocations, ``runs`` released at handoff."""

    def __init__(self) -> None:
        self.answers: list[int | None] = []
        self.runs: list[tuple[int, int, int]] = []  # (node, start_pfn, end_pfn)
        self.reserve_result = 0

    @hookimpl
    def bootemu_alloc_bitmap_requests(self) -> list[BitmapRequest]:
        return [
            BitmapRequest("node0", 0, 0, 1000, 125),
            BitmapRequest("node1", 1, 1024, 2048, 128),
        ]

    @hookimpl
    def bootemu_alloc_enable(self, placements: dict[str, int]) -> bool:
        return True

    @hookimpl
    def bootemu_alloc_free(self, addr: int, size: int, node: int | None) -> bool:
        return True

    @hookimpl
    def bootemu_alloc_reserve(self, addr: int, size: int, node: int | None, exclusive: bool) -> int:
        return self.reserve_result

    @hookimpl
    def bootemu_alloc_alloc(self, request: AllocRequest) -> int | None:
        addr = self.answers.pop(0)
        if addr is None and request.panics:
            raise KernelPanic("Out of memory", [f"bootmem alloc of {request.size} bytes failed!"])
        return addr

    @hookimpl
    def bootemu_alloc_handoff(self, sink: PageSink, node: int | None) -> int:
        total = 0
        for n, s, e in self.runs:
            if node is None or n == node:
                sink.free_run(node=n, start_pfn=s, end_pfn=e, order=0)
                total += e - s
        return total


class Scenario:
    """One boot's worth of allocator calls through a real pluggy manager."""

    def __init__(self) -> None:
        machine = Machine(name="t", arch="fake", allocator="fake", kernel=KernelSpec(), e820=())
        self.boot = Boot(
            machine=machine, allocator_name="fake", arch_name="fake", trace=Tracer(), layout=LAYOUT
        )
        self.backend = FakeBackend()
        self.recorder = Recorder(self.boot)
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(AllocatorSpec)
        self.pm.register(self.backend, "backend")
        self.pm.register(self.recorder, "recorder")
        self.pm.check_pending()
        self.hook = self.pm.hook

    def reserve(self, start_pfn: int, pages: int) -> int:
        return self.hook.bootemu_alloc_reserve(
            addr=start_pfn * P, size=pages * P, node=None, exclusive=False
        )

    def alloc(self, request: AllocRequest, answer: int | None) -> int | None:
        self.backend.answers.append(answer)
        return self.hook.bootemu_alloc_alloc(request=request)

    def setup(self) -> None:
        """Enable, free all RAM, reserve page 0, both bitmaps and the kernel [256, 320)."""
        self.hook.bootemu_alloc_bitmap_requests()
        self.hook.bootemu_alloc_enable(placements={"node0": 10, "node1": 1030})
        for s, e in LAYOUT.ram:
            self.hook.bootemu_alloc_free(addr=s * P, size=(e - s) * P, node=None)
        self.reserve(0, 1)
        self.reserve(10, 1)
        self.reserve(1030, 1)
        self.reserve(256, 64)

    def handoff(
        self, runs: list[tuple[int, int, int]], handoff_count: int | None = None
    ) -> list[Violation]:
        self.backend.runs = runs
        self.pagealloc = PageAllocModel(LAYOUT)
        count = self.hook.bootemu_alloc_handoff(sink=self.pagealloc, node=None)
        return run_checks(
            LAYOUT,
            self.pagealloc,
            self.recorder,
            handoff_count=count if handoff_count is None else handoff_count,
        )


def free_runs(taken: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """What a correct backend releases: RAM minus ``taken`` pfn ranges, bitmaps released last
    (mm/bootmem.c free_all_bootmem_core(), 2.6.25: the map pages go after the walk)."""
    bitmaps = [(10, 11), (1030, 1031)]
    keep = subtract(list(LAYOUT.ram), sorted([*taken, *bitmaps]))
    runs = [(0 if s < 1000 else 1, s, e) for s, e in keep]
    return runs + [(0, 10, 11), (1, 1030, 1031)]


RESERVED = [(0, 1), (256, 320)]


def kinds(violations: list[Violation]) -> list[tuple[str, int, int]]:
    return [(v.kind, v.start_pfn, v.end_pfn) for v in violations]


def test_clean_boot_has_no_violation() -> None:
    sc = Scenario()
    sc.setup()
    node1 = AllocRequest(8192, P, 0, wrapper="__alloc_bootmem_node", node=1)
    assert sc.alloc(node1, 1100 * P) == 1100 * P
    # Reference §6 B1: two 100-byte allocations share pfn 1 (0x1000 and 0x1068): no overlap.
    sc.alloc(AllocRequest(100, 8, 0), 0x1000)
    sc.alloc(AllocRequest(100, 8, 0), 0x1068)
    taken = [*RESERVED, (1, 2), (1100, 1102)]
    assert sc.handoff(free_runs(taken)) == []
    # 2048 - 24 hole pfns = 2024 RAM pages; reserved 1 + 64, allocated 1 + 2 pages.
    assert sc.pagealloc.received == 2024 - 65 - 3


def test_allocation_records_and_nodes_touched() -> None:
    sc = Scenario()
    sc.setup()
    # 30 pages from pfn 998 cross the hole into node 1: pfns 998..1027.
    sc.alloc(AllocRequest(30 * P, P, 0, label="big"), 998 * P)
    sc.backend.reserve_result = EBUSY
    assert sc.reserve(600, 2) == EBUSY
    recs = sc.boot.allocations
    assert [r.op for r in recs] == ["free", "free", "reserve", "reserve", "reserve", "reserve"] + [
        "alloc",
        "reserve",
    ]
    assert recs[0].nodes_touched == (0,)
    big = recs[6]
    assert (big.addr, big.size, big.label, big.nodes_touched) == (998 * P, 30 * P, "big", (0, 1))
    assert recs[7].result == EBUSY
    # -EBUSY rolls back: [600, 602) was never booked.
    assert sc.recorder.live_pages() == [(0, 1), (10, 11), (256, 320), (998, 1028), (1030, 1031)]


def test_failed_allocation_is_recorded_and_panic_propagates() -> None:
    sc = Scenario()
    sc.setup()
    assert sc.alloc(AllocRequest(P, P, 0, wrapper="__alloc_bootmem_nopanic"), None) is None
    with pytest.raises(KernelPanic, match="Out of memory"):
        sc.alloc(AllocRequest(P, P, 0), None)
    assert [(r.op, r.addr, r.wrapper) for r in sc.boot.allocations[-2:]] == [
        ("alloc", None, "__alloc_bootmem_nopanic"),
        ("alloc", None, "__alloc_bootmem"),
    ]


def test_trace_events() -> None:
    sc = Scenario()
    with structlog.testing.capture_logs() as logs:
        sc.setup()
        sc.alloc(AllocRequest(64, 8, 0, caller="alloc_large_system_hash"), 0x2000)
        run_checks(
            LAYOUT, PageAllocModel(LAYOUT), sc.recorder, handoff_count=None, trace=sc.boot.trace
        )
    events = [e["event"] for e in logs]
    assert events.count("alloc.free") == 2
    assert events.count("alloc.reserve") == 4
    req = next(e for e in logs if e["event"] == "alloc.request")
    assert (req["addr"], req["size"], req["caller"]) == (0x2000, 64, "alloc_large_system_hash")
    # Nothing was handed off: both nodes' free RAM is lost, one event per violation.
    checks = [e for e in logs if e["event"] == "check.violation"]
    assert [(e["kind"], e["start_pfn"], e["end_pfn"]) for e in checks] == [
        ("conservation", 1, 2),  # pfn 2 holds the 64-byte allocation at 0x2000
        ("conservation", 3, 10),
        ("conservation", 11, 256),
        ("conservation", 320, 1000),
        ("conservation", 1024, 1030),
        ("conservation", 1031, 2048),
    ]


def test_lost_pages() -> None:
    sc = Scenario()
    sc.setup()
    runs = free_runs(RESERVED)
    # The backend skips [500, 510): drop it from node 0's run [320, 1000).
    runs = [r for r in runs if r != (0, 320, 1000)] + [(0, 320, 500), (0, 510, 1000)]
    assert kinds(sc.handoff(runs)) == [("conservation", 500, 510)]


def test_released_count_mismatch() -> None:
    sc = Scenario()
    sc.setup()
    runs = free_runs(RESERVED)
    offered = sum(e - s for _, s, e in runs)
    v = sc.handoff(runs, handoff_count=offered + 1)
    assert kinds(v) == [("conservation", 0, 0)]
    assert str(offered) in v[0].detail


def test_handed_while_reserved() -> None:
    sc = Scenario()
    sc.setup()
    # Page 0 is reserved but released too; the bitmap pages (reserved by the arch) are not
    # flagged: the backend releases its own map at handoff.
    runs = [*free_runs(RESERVED), (0, 0, 1)]
    assert kinds(sc.handoff(runs)) == [("conservation", 0, 1)]


def test_double_handoff() -> None:
    sc = Scenario()
    sc.setup()
    runs = [*free_runs(RESERVED), (1, 600, 610)]  # node 1 releases node 0's pages again
    v = sc.handoff(runs)
    assert kinds(v) == [("double-handoff", 600, 610)]
    assert "node 0" in v[0].detail and "node 1" in v[0].detail


def test_hole_handed_off() -> None:
    sc = Scenario()
    sc.setup()
    runs = [*free_runs(RESERVED), (0, 1000, 1024)]  # the hole between the nodes
    assert kinds(sc.handoff(runs)) == [("hole", 1000, 1024)]


def test_hole_allocated() -> None:
    sc = Scenario()
    sc.setup()
    sc.alloc(AllocRequest(2 * P, P, 0), 999 * P)  # pfns 999 and 1000; 1000 is in the hole
    assert kinds(sc.handoff(free_runs([*RESERVED, (999, 1000)]))) == [("hole", 1000, 1001)]


def test_misplaced_node_allocation() -> None:
    sc = Scenario()
    sc.setup()
    on_node0 = AllocRequest(P, P, 0, wrapper="__alloc_bootmem_node", node=0, label="pgdat")
    sc.alloc(on_node0, 1500 * P)  # pfn 1500 resides on node 1
    # A node-agnostic request may land anywhere.
    sc.alloc(AllocRequest(P, P, 0), 1600 * P)
    v = sc.handoff(free_runs([*RESERVED, (1500, 1501), (1600, 1601)]))
    assert kinds(v) == [("misplaced", 1500, 1501)]
    assert "pgdat" in v[0].detail and "node 1" in v[0].detail


def test_misplaced_low_node_allocation() -> None:
    sc = Scenario()
    sc.setup()
    low = AllocRequest(3 * P, P, 0, wrapper="__alloc_bootmem_low_node", node=1)
    sc.alloc(low, 998 * P)  # 998, 999 on node 0, 1000 in the hole
    v = sc.handoff(free_runs([*RESERVED, (998, 1000)]))
    assert kinds(v) == [("hole", 1000, 1001), ("misplaced", 998, 1000)]


def test_misplaced_free_list_pages() -> None:
    sc = Scenario()
    sc.setup()
    # Node 0 releases [1024, 1030), which resides on node 1 (classic bootmem with a node span
    # that covers its neighbour's memory); node 1 does not release them again.
    runs = [(0 if n == 1 and s == 1024 else n, s, e) for n, s, e in free_runs(RESERVED)]
    v = sc.handoff(runs)
    assert kinds(v) == [("misplaced", 1024, 1030)]
    assert "node 0 zone Normal" in v[0].detail


def test_overlap_with_reservation_and_allocation() -> None:
    sc = Scenario()
    sc.setup()
    sc.alloc(AllocRequest(16, 8, 0), 0x800)  # inside reserved page 0
    sc.alloc(AllocRequest(100, 8, 0), 0x1000)
    sc.alloc(AllocRequest(100, 8, 0), 0x1032)  # bytes [0x1032, 0x1064) already allocated
    v = sc.handoff(free_runs([*RESERVED, (1, 2)]))
    assert kinds(v) == [("overlap", 0, 1), ("overlap", 1, 2)]
    assert "reservation" in v[0].detail and "allocation" in v[1].detail


def test_overlap_with_bitmap_is_one_violation() -> None:
    sc = Scenario()
    sc.setup()
    sc.alloc(AllocRequest(P, P, 0), 10 * P)  # the node0 bitmap page, also reserved by the arch
    v = sc.handoff(free_runs(RESERVED))
    assert kinds(v) == [("overlap", 10, 11)]
    assert "bitmap node0" in v[0].detail and "reservation" in v[0].detail


def test_no_overlap_after_free() -> None:
    sc = Scenario()
    sc.setup()
    sc.hook.bootemu_alloc_free(addr=256 * P, size=64 * P, node=None)  # the kernel range freed
    sc.alloc(AllocRequest(P, P, 0), 300 * P)
    assert sc.handoff(free_runs([(0, 1), (300, 301)])) == []


def test_many_lost_ranges_are_summed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = Scenario()
    sc.setup()
    # Node 0 is released correctly; node 1 releases [1024, 1031) and then only the even pfns
    # of [1032, 2048). Lost: 1031, 1033, ..., 2047 = (2047 - 1031) / 2 + 1 = 509 ranges.
    runs = [r for r in free_runs(RESERVED) if r[0] == 0]
    runs += [(1, 1024, 1030), (1, 1030, 1031)]
    runs += [(1, p, p + 1) for p in range(1032, 2048, 2)]
    v = sc.handoff(runs)
    assert len(v) == 509 < MAX_RANGES
    # With a cap of 100: 100 violations, then one that sums up the other 409 ranges, starting
    # at the 101st lost pfn 1031 + 2 * 100 = 1231 and ending after 2047.
    monkeypatch.setattr(checks, "MAX_RANGES", 100)
    v = run_checks(LAYOUT, sc.pagealloc, sc.recorder, handoff_count=None)
    assert len(v) == 101
    assert (v[-1].start_pfn, v[-1].end_pfn) == (1231, 2048)
    assert "409 more ranges, 409 pages" in v[-1].detail


def test_sixty_four_gib_machine() -> None:
    # 16 M pfns (64 GiB) on two nodes: range arithmetic and bitarray searches only.
    n = 1 << 24
    lay = Layout(
        max_pfn=n,
        ram=((1, n),),
        blocks=(Block(0, n // 2, 0), Block(n // 2, n, 1)),
        zones=(Zone(0, "Normal", 0, n // 2, n // 2), Zone(1, "Normal", n // 2, n, n // 2)),
        zone_limits=(("Normal", n),),
    )
    pa = PageAllocModel(lay)
    pa.free_run(node=0, start_pfn=1, end_pfn=n // 2, order=10)
    pa.free_run(node=1, start_pfn=n // 2, end_pfn=n - 1, order=10)
    v = run_checks(lay, pa, None, handoff_count=n - 2)
    assert kinds(v) == [("conservation", n - 1, n)]


def test_range_helpers() -> None:
    assert subtract([(0, 10), (20, 30)], [(5, 22), (25, 26)]) == [(0, 5), (22, 25), (26, 30)]
    assert intersect([(0, 10), (20, 30)], [(5, 22), (25, 26)]) == [(5, 10), (20, 22), (25, 26)]


# --------------------------------------------------------------------------------------------
# Property: conservation and hole ranges equal a per-page evaluation of the definitions


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40)), max_size=4),
    st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40)), max_size=4),
    st.lists(st.tuples(st.integers(0, 330), st.integers(1, 60)), max_size=6),
)
def test_conservation_matches_per_page_definition(
    ram_l: list[tuple[int, int]],
    reserved_l: list[tuple[int, int]],
    runs_l: list[tuple[int, int]],
) -> None:
    ram = merge_ranges((s, s + n) for s, n in ram_l)
    lay = Layout(
        max_pfn=320,
        ram=ram,
        blocks=tuple(Block(s, e, 0) for s, e in ram),
        zones=(Zone(0, "Normal", 0, 320, 320),),
        zone_limits=(("Normal", 320),),
    )
    machine = Machine(name="t", arch="fake", allocator="fake", kernel=KernelSpec(), e820=())
    boot = Boot(machine=machine, allocator_name="f", arch_name="f", trace=Tracer(), layout=lay)
    rec = Recorder(boot)
    for s, n in reserved_l:
        rec.reserved.add(s * P, (s + n) * P)
    pa = PageAllocModel(lay)
    for s, n in runs_l:
        pa.free_run(node=0, start_pfn=s, end_pfn=s + n, order=0)
    v = run_checks(lay, pa, rec, handoff_count=None)

    def pages(kind: str, word: str) -> set[int]:
        return {
            p
            for x in v
            if x.kind == kind and word in x.detail
            for p in range(x.start_pfn, x.end_pfn)
        }

    is_ram = {p for s, e in ram for p in range(s, e)}
    resv = {p for s, n in reserved_l for p in range(s, s + n)}
    handed = {p for s, n in runs_l for p in range(s, min(s + n, 320))}
    assert pages("conservation", "lost") == is_ram - resv - handed
    assert pages("conservation", "still reserved") == is_ram & resv & handed
    assert pages("hole", "handed off") == (handed - is_ram)
    assert pages("hole", "above every zone") == {
        p for s, n in runs_l for p in range(max(s, 320), s + n)
    }
    assert {x.kind for x in v} <= {"conservation", "hole", "double-handoff"}
    assert v == sorted(v)


# ByteRanges is bisect-based for speed; hold it to a plain set of bytes.
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 60), st.integers(0, 12)),
        max_size=40,
    ),
    st.integers(0, 60),
    st.integers(0, 12),
)
def test_byte_ranges_equal_a_set_of_bytes(ops, qs, qn):
    from bootemu.checks import ByteRanges

    br, model = ByteRanges(), set()
    for op, start, n in ops:
        getattr(br, op)(start, start + n)
        if op == "add":
            model |= set(range(start, start + n))
        else:
            model -= set(range(start, start + n))
    got = {b for s, e in br.ranges for b in range(s, e)}
    assert got == model
    pairs = br.ranges
    # disjoint and not touching
    assert all(e0 < s1 for (_, e0), (s1, _) in zip(pairs, pairs[1:], strict=False))
    assert {b for s, e in br.overlapping(qs, qs + qn) for b in range(s, e)} == model & set(
        range(qs, qs + qn)
    )


# --------------------------------------------------------------------------------------------
# unreserved: memory the arch owns (Layout.owned) but never reserved


class ImageArch:
    """The toy arch of test_sequencer with a kernel image at pfns [17, 20) in its layout,
    reserved or (the bug the check exists for) forgotten."""

    def __new__(cls, reserve_image: bool):
        from test_sequencer import ToyArch

        from bootemu.models import PAGE_SIZE, OwnedRange

        class Arch(ToyArch):
            @hookimpl
            def bootemu_arch_layout(self, boot):
                lay = super().bootemu_arch_layout(boot)
                lay.owned = (OwnedRange(17 * PAGE_SIZE, 20 * PAGE_SIZE, "kernel image"),)
                return lay

            @hookimpl
            def bootemu_arch_reserve(self, boot, allocator):
                if reserve_image:
                    allocator.reserve(addr=17 * PAGE_SIZE, size=3 * PAGE_SIZE, node=None,
                                      exclusive=False, label="kernel image")
                super().bootemu_arch_reserve(boot, allocator)

        return Arch()


@pytest.mark.parametrize("backend", ["bootmem", "bootmem2", "bootmem2-perblock", "memblock"])
def test_a_forgotten_kernel_image_is_flagged(backend):
    from test_sequencer import _machine

    from bootemu.sequencer import boot_machine

    result = boot_machine(_machine(), allocator=backend, arch_plugin=ImageArch(False))
    found = [v for v in result.violations if v.kind == "unreserved"]
    # The image's three pages are free memory to every backend: they are handed off (and on
    # the bottom-up bootmem backends the toy's two-page allocation lands on pfns 17-18, just
    # above the bitmap page 16).
    assert found, result.violations
    assert all("kernel image" in v.detail for v in found)
    if backend != "memblock":
        assert any(v.detail.startswith("__alloc_bootmem: 8192 bytes at 0x11000 lie on kernel "
                                       "image at [0x11000, 0x13000)") for v in found)
    ok = boot_machine(_machine(), allocator=backend, arch_plugin=ImageArch(True))
    assert ok.violations == [] and ok.outcome == "ok"
