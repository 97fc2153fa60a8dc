"""bootmem2 backends (plugins/bootmem2.py): RFC v1 (global bitmap) and bootmem2 III (per block).

Expected values come from the RFC mails ("[rfc][patch 2/3] mm: bootmem2", 2008-05-05, and
"[PATCH 2/3] mm: bootmem2", 2008-05-09), the reference (boot-allocators.md §2, cases C1-C3) or
arithmetic written next to them; the property test compares against a set-of-pfns model
written here.
"""

from __future__ import annotations

import pluggy
import pytest
import structlog
from bootemu_plugins.bootmem2 import Bootmem2, Bootmem2PerBlock
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bootemu.boot import Boot, Tracer
from bootemu.contract import ArchInfo
from bootemu.hookspecs import PROJECT, AllocatorSpec
from bootemu.models import EBUSY, AllocRequest, KernelBug, KernelSpec, Machine
from bootemu.testing import RecordingSink

K, M, G = 1 << 10, 1 << 20, 1 << 30
P = 4096
BOTH = (Bootmem2, Bootmem2PerBlock)


def make_boot(bits_per_long: int = 32) -> Boot:
    machine = Machine(name="t", arch="x86_32", allocator="bootmem2", kernel=KernelSpec(), e820=())
    boot = Boot(machine=machine, allocator_name="bootmem2", arch_name="x86_32", trace=Tracer())
    boot.arch_info = ArchInfo(bits_per_long=bits_per_long, phys_addr_bits=64, numa=False,
                              memblks_per_node=1, smp_cache_bytes=64)
    return boot


def setup(cls, blocks, maps=None, bits_per_long=32, free_all=False):
    """Attach, register ``(node, start, end)`` blocks, enable with ``maps`` (key -> pfn).

    Without ``maps`` every bitmap goes to pfn 0x7000000 (beyond every block used here).
    """
    a = cls()
    a.bootemu_alloc_attach(boot=make_boot(bits_per_long))
    for node, start, end in blocks:
        a.bootemu_alloc_register_block(node=node, start_pfn=start, end_pfn=end)
    reqs = a.bootemu_alloc_bitmap_requests()
    placements = maps or {r.key: 0x7000000 + 0x1000 * i for i, r in enumerate(reqs)}
    a.bootemu_alloc_enable(placements=placements)
    if free_all:
        for _node, start, end in blocks:
            a.bootemu_alloc_free(addr=start * P, size=(end - start) * P, node=None)
    return a


def alloc(a, size, align, goal=0, node=None, wrapper=None):
    wrapper = wrapper or ("__alloc_bootmem_node" if node is not None else "__alloc_bootmem")
    return a.bootemu_alloc_alloc(
        request=AllocRequest(size=size, align=align, goal=goal, wrapper=wrapper, node=node)
    )


def reserved_pfns(a) -> set[int]:
    """White-box view of the bitmap(s): every reserved pfn inside a block (v1: inside the span)."""
    if isinstance(a, Bootmem2):
        return {a._min_pfn + i for i in a._map.search(1)}
    return {bm.block.start_pfn + i for bm in a._slots for i in bm.bits.search(1)}


# --------------------------------------------------------------------------------------------
# Bitmap sizing, setup message (C3)


def test_c3_one_block_map_pages_and_setup_message():
    # C3: register [0, 0x8000): 32768 pfns / 8 = 4096 bytes, ALIGN(4096, 4) = 4096 -> 1 page.
    with structlog.testing.capture_logs() as logs:
        a = Bootmem2()
        a.bootemu_alloc_attach(boot=make_boot())
        a.bootemu_alloc_register_block(node=0, start_pfn=0, end_pfn=0x8000)
        (req,) = a.bootemu_alloc_bitmap_requests()
        assert (req.key, req.node, req.start_pfn, req.end_pfn, req.nbytes) == (
            "global", None, 0, 0x8000, 4096)
        assert req.pages == 1
        a.bootemu_alloc_enable(placements={"global": 0x100})
    enable = [e for e in logs if e["event"] == "alloc.enable"]
    assert enable[0]["dmesg"] == "bootmem: 32768 pages on 1 block(s) - map @ pfn 100"
    assert [e["event"] for e in logs][:1] == ["alloc.block.register"]
    assert a.bootemu_alloc_overhead_bytes() == 4096


@pytest.mark.parametrize(
    ("span", "bits_per_long", "nbytes", "pages"),
    [
        # 1 GiB map minus 32 pages: ceil(262112 / 8) = 32764, ALIGN(32764, 4) = 32764 bytes,
        # 32764 / 4096 = 7.999 -> 8 pages.
        (262112, 32, 32764, 8),
        # same on 64-bit: ALIGN(32764, 8) = 32768 -> exactly 8 pages.
        (262112, 64, 32768, 8),
        # 3 pfns: ceil(3 / 8) = 1 byte, ALIGN(1, 4) = 4 bytes (ALIGN(1, 8) = 8) -> 1 page.
        (3, 32, 4, 1),
        (3, 64, 8, 1),
        # 4 GiB + 1 page: ceil(1048577 / 8) = 131073, ALIGN(.., 4) = 131076 -> 33 pages.
        (0x100001, 32, 131076, 33),
    ],
)
def test_global_bitmap_size(span, bits_per_long, nbytes, pages):
    a = Bootmem2()
    a.bootemu_alloc_attach(boot=make_boot(bits_per_long))
    a.bootemu_alloc_register_block(node=0, start_pfn=0x10, end_pfn=0x10 + span)
    (req,) = a.bootemu_alloc_bitmap_requests()
    assert (req.nbytes, req.pages) == (nbytes, pages)
    assert a.bootemu_alloc_overhead_bytes() == pages * 4096
    stats = a.bootemu_alloc_stats()
    assert (stats["variant"], stats["map_pages"], stats["map_bytes"], stats["span_pfns"]) == (
        "global", pages, nbytes, span)


def test_global_map_spans_holes_per_block_maps_do_not():
    # Blocks [0, 0x100) on node 0 and [0x100000, 0x100100) on node 1 (4 GiB apart).
    blocks = [(0, 0, 0x100), (1, 0x100000, 0x100100)]
    # v1: span 0x100100 = 1048832 pfns -> 131104 bytes -> 32.0078 -> 33 pages (Linus' point).
    v1 = Bootmem2()
    # III: 256 pfns -> 32 bytes -> 1 page per block -> 2 pages.
    v3 = Bootmem2PerBlock()
    for a in (v1, v3):
        for node, s, e in blocks:
            a.bootemu_alloc_register_block(node=node, start_pfn=s, end_pfn=e)
    assert v1.bootemu_alloc_overhead_bytes() == 33 * 4096
    assert v3.bootemu_alloc_overhead_bytes() == 2 * 4096
    reqs = v3.bootemu_alloc_bitmap_requests()
    assert [(r.key, r.node, r.start_pfn, r.end_pfn, r.nbytes) for r in reqs] == [
        ("block0", 0, 0, 0x100, 32), ("block1", 1, 0x100000, 0x100100, 32)]
    assert v3.bootemu_alloc_stats()["variant"] == "per-block"


# --------------------------------------------------------------------------------------------
# C1, C2: block locality and ranges crossing blocks


@pytest.mark.parametrize("cls", BOTH)
def test_c1_node_request_must_fit_one_block_of_the_node(cls):
    # node 0: [0, 16) all free; node 1: [16, 24) and [32, 40), 5 free pages each (17-21, 33-37).
    a = setup(cls, [(0, 0, 16), (1, 16, 24), (1, 32, 40)])
    a.bootemu_alloc_free(addr=0, size=16 * P, node=None)
    a.bootemu_alloc_free(addr=17 * P, size=5 * P, node=None)
    a.bootemu_alloc_free(addr=33 * P, size=5 * P, node=None)
    # 6 pages: node 1 has 10 free pages but no block with 6; no fallback to node 0, no panic.
    assert alloc(a, 6 * P, P, 0, node=1) is None
    # 5 pages fit the first block of node 1.
    assert alloc(a, 5 * P, P, 0, node=1) == 17 * P


@pytest.mark.parametrize("cls", BOTH)
def test_failure_never_panics_even_for_panicking_wrappers(cls):
    a = setup(cls, [(0, 0, 16)], free_all=True)
    for wrapper in ("__alloc_bootmem", "__alloc_bootmem_low", "__alloc_bootmem_nopanic"):
        assert alloc(a, 17 * P, P, 0, wrapper=wrapper) is None
    assert alloc(a, 17 * P, P, 0, node=0) is None


@pytest.mark.parametrize("cls", BOTH)
def test_c2_free_crossing_the_node_boundary(cls):
    # b0 = node 0 [0, 2G) = pfns [0, 0x80000); b1 = node 1 [2G, 4G) = [0x80000, 0x100000).
    a = setup(cls, [(0, 0, 0x80000), (1, 0x80000, 0x100000)],
              maps={"global": 0x1000, "block0": 0x1000, "block1": 0xF0000})
    # free_bootmem(1.5G, 1.5G): pfns [0x60000, 0xC0000), 0x60000 = 393216 pages.
    a.bootemu_alloc_free(addr=3 * G // 2, size=3 * G // 2, node=None)
    assert reserved_pfns(a) == set(range(0x60000)) | set(range(0xC0000, 0x100000))
    sink = RecordingSink()
    count = a.bootemu_alloc_handoff(sink=sink, node=None)
    # Map pages: v1 0x100000 pfns / 8 = 131072 bytes = 32 pages; III 2 x 65536 bytes = 2 x 16.
    assert count == 0x60000 + 32
    free = [r for r in sink.runs if r[1] >= 0x60000 and r[2] <= 0xC0000]
    # Block 0: words end at min(0x80000, 0x7ffff) // 32 * 32 = 0x7ffe0; the last word stays
    # single pages (the RFC's strict "start + BITS_PER_LONG < end"). Block 1: one word piece.
    assert free == [(0, 0x60000, 0x7FFE0, 5), (0, 0x7FFE0, 0x80000, 0), (1, 0x80000, 0xC0000, 5)]


def test_c2_node_specific_free_crossing_blocks_is_a_bug_in_iii_not_in_v1():
    blocks = [(0, 0, 0x80000), (1, 0x80000, 0x100000)]
    v3 = setup(Bootmem2PerBlock, blocks)
    with pytest.raises(KernelBug, match="find_node_block"):
        v3.bootemu_alloc_free(addr=3 * G // 2, size=3 * G // 2, node=0)
    assert reserved_pfns(v3) == set(range(0x100000))  # BUG before anything was marked
    # v1's free_bootmem_node() is bootmem_free(): the node is ignored.
    v1 = setup(Bootmem2, blocks)
    v1.bootemu_alloc_free(addr=3 * G // 2, size=3 * G // 2, node=0)
    assert 0x60000 not in reserved_pfns(v1)


def test_iii_find_node_block_accepts_a_range_ending_at_the_block_end():
    # The posted find_node_block() tests end < block->end; the intended test is <=.
    a = setup(Bootmem2PerBlock, [(0, 0, 0x100), (1, 0x100, 0x200)])
    a.bootemu_alloc_free(addr=0x80 * P, size=0x80 * P, node=0)  # pfns [0x80, 0x100)
    assert a.bootemu_alloc_reserve(addr=0x80 * P, size=0x80 * P, node=0, exclusive=True) == 0


def test_iii_generic_range_over_a_gap_is_a_bug():
    a = setup(Bootmem2PerBlock, [(0, 0, 0x100), (0, 0x200, 0x300)])
    with pytest.raises(KernelBug, match="find_block"):
        a.bootemu_alloc_free(addr=0, size=0x300 * P, node=None)
    with pytest.raises(KernelBug, match="find_block"):
        a.bootemu_alloc_reserve(addr=0x180 * P, size=P, node=None, exclusive=False)
    # An empty range (free smaller than a page) is a no-op, even at a block end.
    a.bootemu_alloc_free(addr=0x100 * P - 100, size=50, node=None)


# --------------------------------------------------------------------------------------------
# v1 range checks and exclusive reserve


def test_v1_out_of_range_and_double_free_print_the_rfc_text():
    a = setup(Bootmem2, [(0, 0x100, 0x200)])
    with pytest.raises(KernelBug) as exc:
        a.bootemu_alloc_free(addr=0, size=0x200 * P, node=None)
    text = "bootmem request out of range: 0-200, usable: 100-200"
    assert exc.value.reason == text and exc.value.printk == (text,)
    a.bootemu_alloc_free(addr=0x150 * P, size=P, node=None)
    with pytest.raises(KernelBug) as exc:
        a.bootemu_alloc_free(addr=0x14F * P, size=3 * P, node=None)
    assert exc.value.printk == ("bootmem: double free of pfn 150",)
    with pytest.raises(KernelBug, match="out of range: 1ff-201"):
        a.bootemu_alloc_reserve(addr=0x1FF * P, size=2 * P, node=None, exclusive=False)


@pytest.mark.parametrize("cls", BOTH)
def test_exclusive_reserve_conflict_rolls_back(cls):
    # reserve(8 * 4K, 8K) then exclusive reserve(6 * 4K, 16K): pfns 6-9 overlap 8-9 -> -EBUSY,
    # and the roll-back leaves 6 and 7 free, 8 and 9 reserved.
    a = setup(cls, [(0, 0, 64)], free_all=True)
    assert a.bootemu_alloc_reserve(addr=8 * P, size=8 * K, node=None, exclusive=False) == 0
    assert a.bootemu_alloc_reserve(addr=6 * P, size=16 * K, node=None, exclusive=True) == EBUSY
    assert EBUSY == -16
    assert reserved_pfns(a) == {8, 9}
    # Non-exclusive reserve over reserved pages is fine; rounding is outward: 100 bytes at
    # 0x6ff0 touch pfns 6 and 7.
    assert a.bootemu_alloc_reserve(addr=0x6FF0, size=100, node=None, exclusive=False) == 0
    assert reserved_pfns(a) == {6, 7, 8, 9}


# --------------------------------------------------------------------------------------------
# Allocation: merging, goal, limit


@pytest.mark.parametrize("cls", BOTH)
def test_sub_page_merging(cls):
    a = setup(cls, [(0, 0, 1024)], free_all=True)
    a.bootemu_alloc_reserve(addr=0, size=P, node=None, exclusive=False)
    # First request: pfn 0 reserved -> 0x1000. last_end starts at 0, which must NOT merge into
    # pfn 0 (posted code: PFN_DOWN(0) + 1 == 1 -> would return 0x0).
    assert alloc(a, 100, 8) == 0x1000
    # last_end 0x1064 mid-page 1, free run found at pfn 2 -> ALIGN(0x1064, 8) = 0x1068.
    assert alloc(a, 100, 8) == 0x1068
    # 5000 bytes need PFN_UP(5000) = 2 free pages at pfn 2; merged: 0x10cc -> 0x10d0 (align 8),
    # end 0x10d0 + 0x1388 = 0x2458, reserving pfn 2 only.
    assert alloc(a, 5000, 8) == 0x10D0
    # last_end 0x2458 mid-page 2, run at pfn 3 -> ALIGN(0x2458, 8) = 0x2458; ends 0x2460.
    assert alloc(a, 8, 8) == 0x2458
    # pfn 3 stayed free: a page-aligned request lands there.
    assert alloc(a, P, P) == 0x3000
    # align >= PAGE_SIZE never merges: last_end 0x4000 is page aligned anyway; 100 bytes at
    # 0x4000 then 100 bytes page aligned -> 0x5000.
    assert alloc(a, 100, 8) == 0x4000
    assert alloc(a, 100, P) == 0x5000
    assert reserved_pfns(a) == {0, 1, 2, 4, 5, 3}
    assert a.bootemu_alloc_stats()["merges"] == 3


@pytest.mark.parametrize("cls", BOTH)
def test_page_aligned_last_end_does_not_merge(cls):
    # 2.6.27's B15 sequence: p = alloc(4096, 64), q = alloc(64, 64), free(p), p = alloc(4096,
    # 64), r = alloc(64, 64). p ends at 0x2000 exactly (page aligned), so r must not merge
    # into q's page 2: r = 0x3000, not q.
    a = setup(cls, [(0, 0, 1024)], free_all=True)
    a.bootemu_alloc_reserve(addr=0, size=P, node=None, exclusive=False)
    p = alloc(a, P, 64)
    q = alloc(a, 64, 64)
    assert (p, q) == (0x1000, 0x2000)
    a.bootemu_alloc_free(addr=p, size=P, node=None)
    assert alloc(a, P, 64) == 0x1000
    assert alloc(a, 64, 64) == 0x3000


@pytest.mark.parametrize("cls", BOTH)
def test_goal_then_fallback_to_the_bottom(cls):
    a = setup(cls, [(0, 0, 1024)], free_all=True)
    a.bootemu_alloc_reserve(addr=0, size=P, node=None, exclusive=False)
    # goal 1M = pfn 256, free -> 0x100000.
    assert alloc(a, P, P, goal=1 * M) == 0x100000
    # reserve [2M, 4M) = pfns [512, 1024); goal 3M has nothing above -> retried from the
    # bottom -> first free page 0x1000.
    a.bootemu_alloc_reserve(addr=2 * M, size=2 * M, node=None, exclusive=False)
    assert alloc(a, P, P, goal=3 * M) == 0x1000
    # goal beyond every block (16M) is ignored -> 0x2000.
    assert alloc(a, P, P, goal=16 * M) == 0x2000


def test_v1_tries_goal_block_and_following_only_iii_tries_all():
    # node 0 blocks [0, 256) and [512, 768), both free except pfn 0; goal in the second block,
    # which is then filled up. v1: only the goal block and the following ones -> None.
    # III: goal block fails -> every block of the node in slot order -> 0x1000.
    blocks = [(0, 0, 256), (0, 512, 768)]
    for cls, expected in ((Bootmem2, None), (Bootmem2PerBlock, 0x1000)):
        a = setup(cls, blocks, free_all=True)
        a.bootemu_alloc_reserve(addr=0, size=P, node=None, exclusive=False)
        a.bootemu_alloc_reserve(addr=512 * P, size=256 * P, node=None, exclusive=False)
        assert alloc(a, P, P, goal=600 * P, node=0) == expected


def test_v1_goal_below_a_following_block_is_not_used():
    # node 1: [256, 384) (full) and [512, 640); node 0: [384, 512) free. Goal pfn 300 lies in
    # node 1's first block; the next block is searched from its own start, not from pfn 300
    # (posted code: from 300 in the absolute map -> pfn 384, node 0 memory).
    a = setup(Bootmem2, [(1, 256, 384), (0, 384, 512), (1, 512, 640)])
    a.bootemu_alloc_free(addr=384 * P, size=256 * P, node=None)  # pfns [384, 640)
    assert alloc(a, P, P, goal=300 * P, node=1) == 512 * P


def test_v1_node_request_never_merges_into_another_nodes_page():
    # node 1 [0, 16), node 0 [16, 32), all free. A node-less request of 15 pages + 100 bytes
    # takes PFN_UP = 16 pages from pfn 0 and ends mid-page 15 (node 1). It used bid -1's slot,
    # which the posted code maps to bid 0 = node 0's block. A node-0 request then finds pfn 16
    # = 15 + 1: unguarded it would merge to 15 * 4096 + ALIGN(100, 8) = 0xf068 (node 1
    # memory); the merge must stay inside the block -> 16 * 4096 = 0x10000.
    a = setup(Bootmem2, [(1, 0, 16), (0, 16, 32)], free_all=True)
    assert alloc(a, 15 * P + 100, 8) == 0
    assert alloc(a, 100, 8, node=0) == 0x10000
    # a node-less request may merge there: it searches [min_pfn, max_pfn) -> 0x10068
    assert alloc(a, 100, 8) == 0x10068


@pytest.mark.parametrize("cls", BOTH)
def test_goal_on_another_node_starts_at_the_nodes_first_block(cls):
    # node 0 [0, 0x80000), node 1 [0x80000, 0x100000); __alloc_bootmem_node(node 1) with the
    # default goal __pa(MAX_DMA_ADDRESS) = 16M (node 0): v1 resets goal := 0 and uses node 1's
    # first block; III drops the goal (the posted III code tried no block and gave NULL).
    a = setup(cls, [(0, 0, 0x80000), (1, 0x80000, 0x100000)], free_all=True)
    assert alloc(a, P, P, goal=16 * M, node=1) == 0x80000 * P


@pytest.mark.parametrize("cls", BOTH)
def test_low_limit_is_exclusive_at_pfn_down(cls):
    # One block [0xffff0, 0x100100) straddling 4G; free only pfn 0xfffff and above.
    # __alloc_bootmem_low: limit 0xffffffff -> search end PFN_DOWN = 0xfffff (exclusive), so
    # neither 0xfffff nor anything above 4G qualifies -> None. (Posted v1 code compared the
    # byte limit with a pfn and never clamped.)
    a = setup(cls, [(0, 0xFFFF0, 0x100100)])
    a.bootemu_alloc_free(addr=0xFFFFF * P, size=0x101 * P, node=None)
    assert alloc(a, P, P, wrapper="__alloc_bootmem_low") is None
    assert alloc(a, P, P, wrapper="__alloc_bootmem") == 0xFFFFF * P
    # BUG_ON(limit && goal + size > limit): 0xfffff000 + 0x1000 > 0xffffffff.
    with pytest.raises(KernelBug, match="goal \\+ size > limit"):
        alloc(a, P, P, goal=0xFFFFF000, wrapper="__alloc_bootmem_low")


@pytest.mark.parametrize("cls", BOTH)
def test_alignment_is_absolute(cls):
    # Block [3, 67) all free; 16K alignment = 4-page steps on absolute pfns -> pfn 4.
    a = setup(cls, [(0, 3, 67)], free_all=True)
    assert alloc(a, P, 16 * K) == 4 * P
    # pfn 5 reserved: 3 pages at 16K alignment cannot start at 4 (4-6 hits 5) -> pfn 8.
    a2 = setup(cls, [(0, 3, 67)], free_all=True)
    a2.bootemu_alloc_reserve(addr=5 * P, size=P, node=None, exclusive=False)
    assert alloc(a2, 3 * P, 16 * K) == 8 * P


@pytest.mark.parametrize("cls", BOTH)
def test_bad_alignment_is_a_bug(cls):
    a = setup(cls, [(0, 0, 64)], free_all=True)
    with pytest.raises(KernelBug, match="align"):
        alloc(a, P, 3 * P)


# --------------------------------------------------------------------------------------------
# Handoff: chunk orders, bitmap pages, messages


@pytest.mark.parametrize(
    ("block", "bits_per_long", "runs"),
    [
        # [0, 100): words [0,32) [32,64) [64,96) end before 100 -> order 5; 96-99 single.
        ((0, 100), 32, [(0, 96, 5), (96, 100, 0)]),
        # [0, 96): the word [64, 96) ends AT the block end: 96 < 96 fails -> single pages.
        ((0, 96), 32, [(0, 64, 5), (64, 96, 0)]),
        # start 3 is not word aligned -> every page single.
        ((3, 70), 32, [(3, 70, 0)]),
        # 64-bit: words of 64 pages (order 6): min(200, 199) // 64 * 64 = 192.
        ((0, 200), 64, [(0, 192, 6), (192, 200, 0)]),
        # start 32 is word aligned on 32-bit.
        ((32, 129), 32, [(32, 128, 5), (128, 129, 0)]),
    ],
)
@pytest.mark.parametrize("cls", BOTH)
def test_release_chunks(cls, block, bits_per_long, runs):
    start, end = block
    a = setup(cls, [(0, start, end)], maps={"global": 0x1000, "block0": 0x1000},
              bits_per_long=bits_per_long, free_all=True)
    sink = RecordingSink()
    count = a.bootemu_alloc_handoff(sink=sink, node=None)
    # the bitmap (under 200 pfns -> 1 page) goes last, order 0, node 0 (no block holds 0x1000)
    assert sink.runs == [(0, s, e, o) for s, e, o in runs] + [(0, 0x1000, 0x1001, 0)]
    assert count == end - start + 1


@pytest.mark.parametrize("cls", BOTH)
def test_release_splits_a_run_into_leading_words_trailing(cls):
    # block [0, 128), pfns 0-4 and 100-127 reserved: free run [5, 100) ->
    # singles [5, 32), words [32, 96), singles [96, 100).
    a = setup(cls, [(0, 0, 128)], maps={"global": 0x1000, "block0": 0x1000})
    a.bootemu_alloc_free(addr=5 * P, size=95 * P, node=None)
    sink = RecordingSink()
    assert a.bootemu_alloc_handoff(sink=sink, node=None) == 95 + 1
    assert sink.runs[:3] == [(0, 5, 32, 0), (0, 32, 96, 5), (0, 96, 100, 0)]


def test_v1_release_per_node_messages_and_bitmap_last():
    # node 0 [0, 64), node 1 [64, 128); map at pfn 100 (inside node 1's block, reserved).
    with structlog.testing.capture_logs() as logs:
        a = setup(Bootmem2, [(0, 0, 64), (1, 64, 128)], maps={"global": 100})
        a.bootemu_alloc_free(addr=0, size=100 * P, node=None)  # pfns [0, 100) free
        sink = RecordingSink()
        # node 1 first: pfns [64, 100) free: 64 is word aligned, word [64, 96) ends before
        # 128 -> order 5; 96-99 single. 36 pages, not the last block -> no bitmap yet.
        assert a.bootemu_alloc_handoff(sink=sink, node=1) == 36
        # node 0: [0, 64): word [0, 32) order 5; [32, 64) ends at the block end -> single.
        # Last block: + 1 bitmap page (128 pfns -> 16 bytes -> 1 page), filed under node 1.
        assert a.bootemu_alloc_handoff(sink=sink, node=0) == 65
    assert sink.runs == [(1, 64, 96, 5), (1, 96, 100, 0), (0, 0, 32, 5), (0, 32, 64, 0),
                         (1, 100, 101, 0)]
    lines = [e["dmesg"] for e in logs if e["event"] == "alloc.handoff.block"]
    assert lines == ["bootmem: 36 pages released on block 1",
                     "bootmem: 65 pages released on block 0"]
    # bootmem_release_block() disabled the allocator.
    with pytest.raises(KernelBug, match="bootmem_functional"):
        a.bootemu_alloc_free(addr=0, size=P, node=None)


def test_iii_each_block_releases_its_own_bitmap():
    # block0 = node 0 [0, 64) map at pfn 10 (in the block), block1 = node 1 [64, 128) map at
    # pfn 0x500 (no block: filed under the block's node 1). Each map: 64 pfns -> 1 page.
    a = setup(Bootmem2PerBlock, [(0, 0, 64), (1, 64, 128)], maps={"block0": 10, "block1": 0x500})
    a.bootemu_alloc_free(addr=32 * P, size=P, node=None)
    a.bootemu_alloc_free(addr=64 * P, size=P, node=None)
    sink = RecordingSink()
    assert a.bootemu_alloc_handoff(sink=sink, node=1) == 2
    assert a.bootemu_alloc_handoff(sink=sink, node=0) == 2
    assert sink.runs == [(1, 64, 65, 0), (1, 0x500, 0x501, 0), (0, 32, 33, 0), (0, 10, 11, 0)]


# --------------------------------------------------------------------------------------------
# Hooks through pluggy


@pytest.mark.parametrize("cls", BOTH)
def test_every_allocator_hook_is_implemented_and_validates(cls):
    specs = {n for n in dir(AllocatorSpec) if n.startswith("bootemu_")}
    impls = {n for n in dir(cls) if hasattr(getattr(cls, n), f"{PROJECT}_impl")}
    assert impls == specs
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(AllocatorSpec)
    pm.register(cls(), name="backend")
    pm.check_pending()
    hook = pm.hook
    assert hook.bootemu_alloc_attach(boot=make_boot()) is True
    hook.bootemu_alloc_register_block(node=0, start_pfn=0, end_pfn=64)
    (req,) = hook.bootemu_alloc_bitmap_requests()
    hook.bootemu_alloc_enable(placements={req.key: 0x100})
    hook.bootemu_alloc_free(addr=0, size=64 * P, node=None)
    assert hook.bootemu_alloc_reserve(addr=0, size=P, node=0, exclusive=True) == 0
    assert hook.bootemu_alloc_alloc(request=AllocRequest(size=P, align=P, goal=0)) == P
    assert hook.bootemu_alloc_overhead_bytes() == 4096
    assert hook.bootemu_alloc_stats()["blocks"] == 1
    # 62 free pages [2, 64) single (start 2 is inside the first word) + 1 bitmap page
    sink = RecordingSink()
    assert hook.bootemu_alloc_handoff(sink=sink, node=None) == 63


@pytest.mark.parametrize("cls", BOTH)
def test_large_fragmented_map_search(cls):
    # 64 GiB = 16 M pfns; everything reserved except every 1024th page and the top 64 pages:
    # a 64-page request must jump over 16 K single-page holes (find, not a per-pfn loop).
    top = 1 << 24
    a = setup(cls, [(0, 0, top)])
    for pfn in range(0, top - 1024, 1024):
        a.bootemu_alloc_free(addr=pfn * P, size=P, node=None)
    a.bootemu_alloc_free(addr=(top - 64) * P, size=64 * P, node=None)
    assert alloc(a, 64 * P, P) == (top - 64) * P


# --------------------------------------------------------------------------------------------
# Property: any sequence of reserve / free / alloc against a set-of-pfns model


class Bootmem2Model(RuleBasedStateMachine):
    """Random blocks on random nodes, both variants; the model is a set of reserved pfns."""

    @initialize(
        cls=st.sampled_from(BOTH),
        bits_per_long=st.sampled_from([32, 64]),
        # (gap, length, node); word-sized gaps and lengths reach the word-chunk rules
        layout=st.lists(st.tuples(st.sampled_from([0, 32]) | st.integers(0, 24),
                                  st.sampled_from([32, 64]) | st.integers(1, 80),
                                  st.integers(0, 2)),
                        min_size=1, max_size=5),
        freed=st.lists(st.booleans(), min_size=5, max_size=5),
    )
    def start(self, cls, bits_per_long, layout, freed):
        self.cls, self.bpl = cls, bits_per_long
        self.blocks, pos = [], 0
        for gap, length, node in layout:
            self.blocks.append((node, pos + gap, pos + gap + length))
            pos += gap + length
        self.lo, self.hi = self.blocks[0][1], pos
        self.a = setup(cls, self.blocks, bits_per_long=bits_per_long,
                       maps={"global": pos + 8, **{f"block{i}": pos + 8 + 2 * i
                                                   for i in range(len(self.blocks))}})
        in_blocks = {p for _n, s, e in self.blocks for p in range(s, e)}
        self.universe = set(range(self.lo, self.hi)) if cls is Bootmem2 else in_blocks
        self.in_blocks = in_blocks
        self.reserved = set(self.universe)
        self.owner: dict[int, int] = {}  # pfn -> allocation that took it from free
        self.allocs: dict[int, tuple[int, int, object]] = {}  # id -> (start, end, slot)
        self.done = False
        for (_node, s, e), free in zip(self.blocks, freed, strict=False):
            if free:  # as an arch frees usable RAM after enable
                self.a.bootemu_alloc_free(addr=s * P, size=(e - s) * P, node=None)
                self.reserved -= set(range(s, e))

    # ---- the model's own rules (from the RFC text, not from the plugin)

    def _block_of(self, pfn):
        return next((b for b in self.blocks if b[1] <= pfn < b[2]), None)

    def _valid(self, s, e, node):
        """Would the range BUG before touching the map?"""
        if self.cls is Bootmem2:  # check_bootmem_parms(), node ignored
            return not (s < self.lo or e > self.hi)
        if e <= s:
            return True
        if node is None:  # find_block(): contiguous blocks covering [s, e)
            return all(p in self.in_blocks for p in range(s, e))
        return any(n == node and bs <= s and e <= be for n, bs, be in self.blocks)

    def _addr_size(self, data):
        pfn = data.draw(st.integers(max(self.lo - 4, 0), self.hi + 4))
        addr = pfn * P + data.draw(st.sampled_from([0, 0, 1, 100, 4095]))
        size = data.draw(st.integers(0, 24) | st.integers(0, 80)) * P + data.draw(
            st.sampled_from([0, 0, 1, 2000]))
        node = data.draw(st.sampled_from([None, 0, 1, 2]))
        return addr, size, node

    @precondition(lambda self: not self.done)
    @rule(data=st.data())
    def free(self, data):
        addr, size, node = self._addr_size(data)
        s, e = -(-addr // P), (addr + size) // P
        touched = {p for p in self.owner}
        if any(p in touched for p in range(s, e)):
            return  # freeing allocated pages would leave a stale merge hint (documented)
        if not self._valid(s, e, node) or any(p not in self.reserved for p in range(s, e)):
            with pytest.raises(KernelBug):
                self.a.bootemu_alloc_free(addr=addr, size=size, node=node)
            return
        self.a.bootemu_alloc_free(addr=addr, size=size, node=node)
        self.reserved -= set(range(s, e))

    @precondition(lambda self: not self.done)
    @rule(data=st.data(), exclusive=st.booleans())
    def reserve(self, data, exclusive):
        addr, size, node = self._addr_size(data)
        s, e = addr // P, -(-(addr + size) // P)
        if not self._valid(s, e, node):
            with pytest.raises(KernelBug):
                self.a.bootemu_alloc_reserve(addr=addr, size=size, node=node, exclusive=exclusive)
            return
        busy = exclusive and any(p in self.reserved for p in range(s, e))
        got = self.a.bootemu_alloc_reserve(addr=addr, size=size, node=node, exclusive=exclusive)
        assert got == (EBUSY if busy else 0)
        if not busy:
            self.reserved |= set(range(s, e))

    def _fits(self, lo, hi, n, step):
        return any(all(q not in self.reserved for q in range(p, p + n))
                   for p in range(-(-lo // step) * step, hi - n + 1, step))

    @precondition(lambda self: not self.done)
    @rule(data=st.data())
    def allocate(self, data):
        # page multiples end allocations on a page boundary (no merge may follow)
        size = data.draw(st.sampled_from([P, 2 * P, 8 * P, 100, 2000]) | st.integers(1, 3 * P + 10))
        align = data.draw(st.sampled_from([0, 8, 64, P, 2 * P, 4 * P]))
        goal = data.draw(st.sampled_from(["none", "block", "any"]))
        if goal == "block":  # a pfn inside a block: exercises goal blocks on multi-block nodes
            _n, bs, be = data.draw(st.sampled_from(self.blocks))
            goal = data.draw(st.integers(bs, be - 1)) * P
        else:
            goal = 0 if goal == "none" else data.draw(st.integers(0, self.hi + 8)) * P
        node = data.draw(st.sampled_from([None, 0, 1, 2]))
        n, step = -(-size // P), max(align // P, 1)
        # Where may it land? (v1 node: goal block and the following ones of the node)
        if node is None:
            areas = ([(self.lo, self.hi)] if self.cls is Bootmem2
                     else [(s, e) for _n, s, e in self.blocks])
        else:
            areas = sorted((s, e) for nd, s, e in self.blocks if nd == node)
            if self.cls is Bootmem2:
                first = next((i for i, (s, e) in enumerate(areas) if s <= goal // P < e), 0)
                areas = areas[first:]
        got = alloc(self.a, size, align, goal, node=node)
        assert (got is None) == (not any(self._fits(s, e, n, step) for s, e in areas))
        if got is None:
            return
        end = got + size
        first_pfn, last_pfn = got // P, -(-end // P)
        area = next(ar for ar in areas if ar[0] <= first_pfn and last_pfn <= ar[1])  # placement
        if align:
            assert got % align == 0
        # Merge slots: one per block; v1's node-less requests borrow bid 0 = node 0's first block
        node0 = sorted((s, e) for nd, s, e in self.blocks if nd == 0)
        slot = area if (node is not None or self.cls is Bootmem2PerBlock) else (
            node0[0] if node0 else "global")
        for other_start, other_end, _slot in self.allocs.values():
            assert end <= other_start or got >= other_end  # no overlap between allocations
        for p in range(first_pfn, last_pfn):
            if p in self.reserved:  # only the merge page of an earlier request of this slot
                assert p == first_pfn and got % P and p in self.owner
                assert self.allocs[self.owner[p]][2] == slot
            else:
                self.owner[p] = len(self.allocs)
                self.reserved.add(p)
        self.allocs[len(self.allocs)] = (got, end, slot)

    @precondition(lambda self: not self.done)
    @rule(data=st.data())
    def handoff(self, data):
        nodes = data.draw(st.permutations(sorted({n for n, _s, _e in self.blocks})))
        sink, count = RecordingSink(), 0
        for node in nodes:
            count += self.a.bootemu_alloc_handoff(sink=sink, node=node)
        self.done = True
        seen: dict[int, int] = {}
        for node, s, e, order in sink.runs:
            assert e > s and order in (0, self.bpl.bit_length() - 1)
            block = self._block_of(s)
            if order:  # whole words of a word-aligned block, never its last word
                assert s % self.bpl == 0 and (e - s) % self.bpl == 0 and block[1] % self.bpl == 0
                assert e < block[2]
            for p in range(s, e):
                assert p not in seen  # each pfn released once
                seen[p] = node
        free = {p for p in self.in_blocks if p not in self.reserved}
        if self.cls is Bootmem2:
            # bootmem_map_pages(): ALIGN(ceil(span / 8), sizeof(long)) bytes in whole pages
            word = self.bpl // 8
            nbytes = ((self.hi - self.lo + 7) // 8 + word - 1) // word * word
            pages = -(-nbytes // P)
            maps = {self.hi + 8 + i: 0 for i in range(pages)}
        else:
            maps = {self.hi + 8 + 2 * i: n for i, (n, s, e) in enumerate(sorted(
                self.blocks, key=lambda b: b[1]))}
        assert {p: n for p, n in seen.items() if p in maps} == maps
        assert set(seen) - set(maps) == free
        assert all(seen[p] == self._block_of(p)[0] for p in free)
        assert count == len(seen)

    @precondition(lambda self: self.done)
    @rule()
    def after_handoff(self):
        # v1: bootmem_release_block() cleared bootmem_functional; III keeps no such flag.
        if self.cls is Bootmem2:
            with pytest.raises(KernelBug, match="bootmem_functional"):
                alloc(self.a, P, P)

    @invariant()
    def bitmap_matches_model(self):
        if not self.done:
            assert reserved_pfns(self.a) & self.universe == self.reserved


Bootmem2Model.TestCase.settings = settings(
    max_examples=150, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_bootmem2_model = Bootmem2Model.TestCase
