"""Kernel build artifacts (.config, System.map) and traced allocator calls of real logs.

Expected values are read off the files in tests/data/real-boots-2008 (the shared
2008 boots, copied) and tests/data/real-boots, as quoted in each test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bootemu.importers.kbuild import read_kconfig, read_system_map
from bootemu.importers.trace import read_trace
from bootemu.models import BootemuError

DATA = Path(__file__).parent / "data"
R2008 = DATA / "real-boots-2008"


def test_kconfig_trace_pae():
    cfg = read_kconfig(R2008 / "kernels/trace-pae/config")
    # "CONFIG_HIGHMEM64G=y", "# CONFIG_SMP is not set", "CONFIG_X86_L1_CACHE_SHIFT=5",
    # "CONFIG_PHYSICAL_START=0x100000"
    assert cfg.enabled("HIGHMEM64G") and not cfg.enabled("HIGHMEM4G")
    assert cfg.has("SMP") and not cfg.enabled("SMP")
    assert cfg.value_int("X86_L1_CACHE_SHIFT") == 5
    assert cfg.value_int("PHYSICAL_START") == 0x100000
    assert cfg.value_int("NR_CPUS", 1) == 1  # UP: Kconfig does not offer NR_CPUS
    assert cfg.where("SMP").startswith(str(R2008 / "kernels/trace-pae/config") + ":")


def test_kconfig_smp_kernel():
    cfg = read_kconfig(R2008 / "kernels/trace-pae-smp/config")
    assert cfg.enabled("SMP") and cfg.value_int("NR_CPUS") == 8  # README: NR_CPUS 8


def test_bad_kconfig_names_file_and_line(tmp_path):
    bad = tmp_path / "config"
    bad.write_text("CONFIG_SMP=y\nthis is not kconfig\n")
    with pytest.raises(BootemuError, match=r"config:2: not a Kconfig line"):
        read_kconfig(bad)
    num = tmp_path / "config2"
    num.write_text("CONFIG_NR_CPUS=eight\n")
    with pytest.raises(BootemuError, match=r"config2:1: CONFIG_NR_CPUS=eight: not a number"):
        read_kconfig(num).value_int("NR_CPUS")


def test_system_map_image_and_callers():
    smap = read_system_map(R2008 / "kernels/trace-pae/System.map")
    # System.map: c0100000 T _text, c01c9ae0 T _etext, c0212388 D _edata, c0216000 T
    # __init_begin, c022f000 B __init_end / __bss_start, c0241ff4 B _end, c0242000 B pg0
    assert smap.image() == {
        "_text": 0xC0100000,
        "_etext": 0xC01C9AE0,
        "_edata": 0xC0212388,
        "__init_begin": 0xC0216000,
        "__init_end": 0xC022F000,
        "__bss_start": 0xC022F000,
        "_end": 0xC0241FF4,
        "pg0": 0xC0242000,
    }
    # real-boots-2008/README: "c0218eea is one_page_table_init+0x20"
    assert smap.resolve(0xC0218EEA) == "one_page_table_init+0x20"


def test_bad_system_map(tmp_path):
    bad = tmp_path / "System.map"
    bad.write_text("c0100000 T _text\nnot a symbol line\n")
    with pytest.raises(BootemuError, match=r"System.map:2: not a System.map line"):
        read_system_map(bad)
    short = tmp_path / "short.map"
    short.write_text("c0100000 T _text\n")
    with pytest.raises(BootemuError, match=r"no symbol _etext"):
        read_system_map(short).image()
    with pytest.raises(BootemuError, match=r"missing"):
        read_system_map(tmp_path / "missing")


def test_trace_2625_i386():
    calls = read_trace((R2008 / "logs/tpae_1G.log").read_text(errors="replace"))
    first, last = calls[0], calls[-1]
    # "bootmem_trace: init_bootmem mapstart=248 pages=38000 caller=c02172cc" (%lx both)
    assert (first.op, first.mapstart, first.pages) == ("init", 0x248, 0x38000)
    # "bootmem_trace: free_all_bootmem pages=226699" (%lu)
    assert (last.op, last.pages) == ("free_all", 226699)
    low = calls[6]
    # "__alloc_bootmem_low nid=-1 size=1000 align=1000 goal=0 = 1000 caller=c0218eea"
    assert (low.name, low.nid, low.size, low.align, low.goal, low.result) == (
        "__alloc_bootmem_low",
        -1,
        0x1000,
        0x1000,
        0,
        0x1000,
    )
    assert low.caller == "c0218eea"
    assert sum(c.op == "alloc" for c in calls) == 28


def test_trace_rfc_and_x86_64():
    rfc = read_trace((R2008 / "logs/trfc_1G.log").read_text(errors="replace"))
    # "register_block bid=0 start=0 end=38000", "reserve addr=9fc00 size=60400 exclusive=0"
    assert (rfc[0].op, rfc[0].nid, rfc[0].start, rfc[0].end) == ("register", 0, 0, 0x38000)
    assert (rfc[5].op, rfc[5].addr, rfc[5].size, rfc[5].flags) == ("reserve", 0x9FC00, 0x60400, 0)
    # the page-0 finding: "alloc_low_node nid=-1 size=1000 align=1000 goal=0 = 0"
    assert (rfc[6].name, rfc[6].result) == ("alloc_low_node", 0)
    numa = read_trace((R2008 / "logs/tn2625s_seed_8g.log").read_text(errors="replace"))
    alloc = next(c for c in numa if c.op == "alloc")
    # "core bdata_start=0 size=2000 = 1000" precedes
    # "__alloc_bootmem_low nid=-1 size=2000 align=80 goal=0 = 1000"
    assert (alloc.core_starts, alloc.size, alloc.result) == ((0,), 0x2000, 0x1000)
    assert sum(c.op == "alloc" for c in numa) == 157  # issue 10: "its 157 allocations"


def test_trace_memblock_debug():
    calls = read_trace((DATA / "real-boots/pae_1G.log").read_text(errors="replace"))
    allocs = [c for c in calls if c.op == "alloc"]
    # tests/data/x86_32/pae_1G.memblock.txt: "memblock_alloc_try_nid_raw: 10485760 bytes
    # align=0x40 nid=0 ... memmap_alloc" then "memblock_reserve: [0x365fe000-0x36ffdfff]"
    mm = next(c for c in allocs if c.caller.startswith("memmap_alloc"))
    assert (mm.size, mm.align, mm.nid, mm.result) == (10485760, 0x40, 0, 0x365FE000)
    assert read_trace("no trace here\n") == []
