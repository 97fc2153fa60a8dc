"""numa64 6.1: deferred struct-page init and the ``Memory:`` line's free figure.

Expectations come from the 6.1 sources (mm/page_alloc.c defer_init(), memmap_init(),
memmap_init_zone_range(); mm/memblock.c memblock_free_pages() -> early_page_uninitialised();
arch/x86/mm/init_64.c mem_init() -> preallocate_vmalloc_pages()), with the arithmetic written
next to each. The six real amd64 boots themselves are compared line by line, free figure
included, in test_real_boots.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from bootemu_arches.numa64.v6_1_mm import VMALLOC_PGD_SLOTS, Mm61
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bootemu.machine import load_machine
from bootemu.models import Block, BootemuError, Layout, Zone
from bootemu.sequencer import boot_machine

DATA = Path(__file__).parent / "data" / "numa64"
SECTION = 0x8000  # PAGES_PER_SECTION on x86_64 (SECTION_SIZE_BITS 27)
_MEMORY = re.compile(r"Memory: (\d+)K/(\d+)K available .*?(\d+)K reserved")


def first_deferred(blocks: list[tuple[int, int, int]], zones: list[tuple[int, str, int, int]]):
    """Mm61.first_deferred_pfns() over a hand-made layout: blocks (start, end, node), zones
    (node, name, start, end) whose present pages are their blocks' pages."""
    blks = tuple(Block(s, e, n) for s, e, n in blocks)
    zs = tuple(
        Zone(
            n, name, zs, ze, sum(max(0, min(e, ze) - max(s, zs)) for s, e, bn in blocks if bn == n)
        )
        for n, name, zs, ze in zones
    )
    lay = Layout(
        max_pfn=max(e for _s, e, _n in blocks),
        ram=(),
        blocks=blks,
        zones=zs,
        zone_limits=(("DMA", 0x1000), ("DMA32", 0x100000), ("Normal", 1 << 40)),
    )
    return Mm61.first_deferred_pfns(SimpleNamespace(lay=lay))  # type: ignore[arg-type]


def test_single_node_defers_after_one_section_of_its_last_zone():
    """amd64_4G: Normal [0x100000, 0x140000) is node 0's last zone. The pfn at which
    defer_init() stops is the 0x8001st counted, 0x108000, section-aligned: the node's
    first_deferred_pfn. DMA and DMA32 end below the node's end: always initialised."""
    blocks = [(1, 0x9F, 0), (0x100, 0xBFFE0, 0), (0x100000, 0x140000, 0)]
    zones = [
        (0, "DMA", 1, 0x1000),
        (0, "DMA32", 0x1000, 0xBFFE0),
        (0, "Normal", 0x100000, 0x140000),
    ]
    assert first_deferred(blocks, zones) == {0: 0x108000}


def test_unaligned_zone_start_stops_at_the_next_section():
    """amd64_512M: the last zone DMA32 starts at 0x1000; 0x9000 is the 0x8001st pfn but not
    section-aligned, the next aligned pfn 0x10000 stops it. A zone too small to pass a
    section after 0x8000 pfns defers nothing."""
    blocks = [(1, 0x9F, 0), (0x100, 0x1FFE0, 0)]
    zones = [(0, "DMA", 1, 0x1000), (0, "DMA32", 0x1000, 0x1FFE0)]
    assert first_deferred(blocks, zones) == {0: 0x10000}
    assert (
        first_deferred(
            [(0x100, 0x9000, 0)], [(0, "DMA", 0x100, 0x1000), (0, "DMA32", 0x1000, 0x9000)]
        )
        == {}
    )


def test_interleaved_nodes():
    """amd64_numa_interleave: node 0 = [1, 0x9f) [0x100, 0x40000) [0x80000, 0xbffe0), node 1 =
    [0x40000, 0x80000) [0x100000, 0x140000). Node 0's last zone is DMA32 (ends 0xbffe0):
    0x10000 as on 512M. Node 1's DMA32 [0x40000, 0x100000) ends below its end (0x140000):
    initialised whole; its Normal stops at 0x108000."""
    blocks = [
        (1, 0x9F, 0),
        (0x100, 0x40000, 0),
        (0x40000, 0x80000, 1),
        (0x80000, 0xBFFE0, 0),
        (0x100000, 0x140000, 1),
    ]
    zones = [
        (0, "DMA", 1, 0x1000),
        (0, "DMA32", 0x1000, 0xBFFE0),
        (1, "DMA32", 0x40000, 0x100000),
        (1, "Normal", 0x100000, 0x140000),
    ]
    assert first_deferred(blocks, zones) == {0: 0x10000, 1: 0x108000}


def test_counter_restarts_when_another_zone_comes_between():
    """defer_init()'s count is a static reset whenever the zone end it is called with
    changes. Node 0's Normal [0x100000, 0x140000) has ranges [0x100001, 0x108001) and
    [0x10c000, 0x140000), node 1's Normal range [0x108001, 0x10c000) lies between. The first
    range counts 0x8000 pfns and never reaches an aligned pfn past them (0x108000 is the
    0x8000th, not more); node 1's zone resets the count, so the second range counts afresh
    from 0x10c000: 0x114000 is the 0x8001st, stop at the next aligned 0x118000. (Without the
    reset it would have stopped at 0x110000.) Node 1's range is shorter than a section."""
    blocks = [(0x100001, 0x108001, 0), (0x108001, 0x10C000, 1), (0x10C000, 0x140000, 0)]
    zones = [(0, "Normal", 0x100001, 0x140000), (1, "Normal", 0x108001, 0x10C000)]
    assert first_deferred(blocks, zones) == {0: 0x118000}


@given(st.integers(1, 1 << 22), st.integers(1, 1 << 20))
def test_matches_the_pfn_loop(start, length):
    """One node, one zone: the arithmetic equals defer_init() run pfn by pfn."""
    end = start + length
    got = first_deferred([(start, end, 0)], [(0, "Normal", start, end)])
    counted, want = 0, None
    for pfn in range(start, min(end, start + 2 * SECTION + 1)):  # stops within two sections
        counted += 1
        if counted > SECTION and pfn % SECTION == 0:
            want = pfn
            break
    assert got == ({} if want is None else {0: want})


def memory_figures(machine) -> tuple[int, int, int]:
    with capture_logs() as events:
        boot_machine(machine)
    line = next(str(e["dmesg"]) for e in events if str(e.get("dmesg", "")).startswith("Memory:"))
    m = _MEMORY.match(line)
    assert m, line
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_without_deferred_init_only_the_vmalloc_pud_pages_are_missing():
    """With ``deferred_struct_page_init = false`` memblock_free_all() frees every page at
    once: free = totalram_pages - the 64 PUD pages = total - reserved - 256K. The reserved
    figure does not change (totalram_pages counted deferred pages as released already)."""
    path = str(DATA / "amd64_4G.toml")
    free_d, total_d, reserved_d = memory_figures(load_machine(path))
    free, total, reserved = memory_figures(
        load_machine(path, overrides=["kernel.deferred_struct_page_init=false"])
    )
    assert (total, reserved) == (total_d, reserved_d)
    assert free == total - reserved - VMALLOC_PGD_SLOTS * 4
    assert free > free_d


def test_2625_has_no_deferred_init():
    """CONFIG_DEFERRED_STRUCT_PAGE_INIT came in 4.2: the 2.6.25 profile refuses the key."""
    machine = load_machine("seed-numa-8g", overrides=["kernel.deferred_struct_page_init=true"])
    assert machine.kernel.profile == "2.6.25"
    with pytest.raises(BootemuError, match="deferred_struct_page_init"):
        boot_machine(machine)
