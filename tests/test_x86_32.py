"""x86_32, profile 2.6.25: expectations from the kernel sources and the reference notes.

Figures come from reference x86_32-early-memory.md §3, §4, §5, §7.2 (worked examples on the
Era A / Era B QEMU maps), boot-allocators.md §1.3, §5.3-§5.6 and the 2.6.24/2.6.25 sources
cited in arches/x86_32; the arithmetic is written next to each expectation.
"""

from __future__ import annotations

import pytest
from bootemu_arches.x86_32 import X86_32, make_profile
from hypothesis import given, settings
from hypothesis import strategies as st
from x86_32_harness import ACPI, USABLE, G, M, boot, era_a, era_b, machine

from bootemu.models import BootemuError, E820Entry
from bootemu.plugins import ALLOCATOR_GROUP, discover
from bootemu.sequencer import boot_machine

MAXMEM_PFN = 229376  # (0x100000000 - 0xC0000000 - 128M) >> 12 = 0x38000000 >> 12


def zone(b, name):
    return next(z for z in b.layout.zones if z.name == name)


# --------------------------------------------------------------------------------------------
# §7.2: max_pfn, max_low_pfn, highstart/highend and the HIGHMEM / LOWMEM lines

# (ram, map, raw max_pfn, highmem model, highend_pfn, HIGHMEM MB, warnings)
TABLE = [
    # 512M A: RAM ends 0x1fff0000 -> 131056 < MAXMEM_PFN: no highmem.
    (512 * M, era_a, 131056, "4G", 131056, 0, []),
    (512 * M, era_a, 131056, "64G", 131056, 0, []),
    (512 * M, era_b, 131040, "64G", 131040, 0, []),  # 0x1ffe0000 >> 12
    # 1G A: 0x3fff0000 >> 12 = 262128; (262128 - 229376) >> 8 = 32752 >> 8 = 127.
    (1 * G, era_a, 262128, "4G", 262128, 127, []),
    (1 * G, era_b, 262112, "64G", 262112, 127, []),
    # 3G A: 0xbfff0000 >> 12 = 786416; 557040 >> 8 = 2175.
    (3 * G, era_a, 786416, "64G", 786416, 2175, []),
    (3 * G, era_b, 786400, "4G", 786400, 2175, []),
    # 4G A: RAM to 0xdfff0000 and [4G, 0x120000000): max_pfn 0x120000 = 1179648.
    # HIGHMEM4G clips to MAX_NONPAE_PFN 1048576: (1048576 - 229376) >> 8 = 3200.
    (4 * G, era_a, 1179648, "4G", 1048576, 3200,
     ["Warning only 4GB will be used.", "Use a HIGHMEM64G enabled kernel."]),
    # PAE keeps it: (1179648 - 229376) >> 8 = 950272 >> 8 = 3712.
    (4 * G, era_a, 1179648, "64G", 1179648, 3712, []),
    # 4G B: [4G, 0x140000000): 1310720; PAE (1310720 - 229376) >> 8 = 4224.
    (4 * G, era_b, 1310720, "4G", 1048576, 3200,
     ["Warning only 4GB will be used.", "Use a HIGHMEM64G enabled kernel."]),
    (4 * G, era_b, 1310720, "64G", 1310720, 4224, []),
    # 8G A: 0x220000000 >> 12 = 2228224; PAE 1998848 >> 8 = 7808. 8G B: 2359296 -> 8320.
    (8 * G, era_a, 2228224, "4G", 1048576, 3200,
     ["Warning only 4GB will be used.", "Use a HIGHMEM64G enabled kernel."]),
    (8 * G, era_a, 2228224, "64G", 2228224, 7808, []),
    (8 * G, era_b, 2359296, "64G", 2359296, 8320, []),
]


@pytest.mark.parametrize("ram, era, raw, highmem, highend, high_mb, warnings", TABLE)
def test_lowmem_highmem_split(ram, era, raw, highmem, highend, high_mb, warnings):
    b = boot(machine(era(ram), highmem=highmem))
    max_low = min(raw, MAXMEM_PFN)
    highstart = max_low
    assert b.facts["e820_max_pfn"] == raw
    assert b.facts["max_low_pfn"] == max_low
    assert (b.facts["highstart_pfn"], b.facts["highend_pfn"]) == (highstart, highend)
    assert b.kind("layout.warning") == warnings
    # setup_memory(): the HIGHMEM line first (printed even for 0MB), then LOWMEM.
    assert b.kind("layout.highmem") + b.kind("layout.lowmem") == [
        f"{high_mb}MB HIGHMEM available.", f"{max_low >> 8}MB LOWMEM available."]
    assert b.result.outcome == "ok" and not b.result.violations


@pytest.mark.parametrize("ram, era, second", [
    (1 * G, era_a, "Use a HIGHMEM enabled kernel."),
    (3 * G, era_b, "Use a HIGHMEM enabled kernel."),
    (4 * G, era_a, "Use a HIGHMEM64G enabled kernel."),  # max_pfn 1179648 > 1048576
    (8 * G, era_b, "Use a HIGHMEM64G enabled kernel."),
])
def test_nohighmem_uses_only_896mb(ram, era, second):
    b = boot(machine(era(ram), highmem="off"))
    # MAXMEM >> 20 = 0x38000000 >> 20 = 896; max_pfn becomes MAXMEM_PFN.
    assert b.kind("layout.warning") == ["Warning only 896MB will be used.", second]
    assert b.kind("layout.highmem") == []
    assert b.kind("layout.lowmem") == ["896MB LOWMEM available."]
    assert b.layout.max_pfn == MAXMEM_PFN
    assert [z.name for z in b.layout.zones] == ["DMA", "Normal"]


# --------------------------------------------------------------------------------------------
# §5.1 / §5.2: zones, node map, memmap and batch lines


def test_zone_lines_512m_era_a():
    b = boot(machine(era_a(512 * M)))
    assert b.kind("zone.ranges") == [
        "Zone PFN ranges:",
        "  DMA             0 ->     4096",
        "  Normal       4096 ->   131056",
        "  HighMem    131056 ->   131056",
        "Movable zone start PFN for each node",
        "early_node_map[1] active PFN ranges",
        "    0:        0 ->   131056",
    ]
    assert b.kind("zone.node") == ["On node 0 totalpages: 131056"]
    assert b.kind("zone.init") == [
        "  DMA zone: 32 pages used for memmap",  # 4096 * 32 / 4096
        "  DMA zone: 0 pages reserved",
        "  DMA zone: 4064 pages, LIFO batch:0",  # 4064/1024 = 3, /4 = 0 -> 1, 2^1 - 1 = 0
        "  Normal zone: 991 pages used for memmap",  # 126960 * 32 / 4096 = 991.875
        "  Normal zone: 125969 pages, LIFO batch:31",  # 126960 - 991; 123/4 = 30, 45 -> 31
        "  HighMem zone: 0 pages used for memmap",
        "  Movable zone: 0 pages used for memmap",
    ]
    assert b.kind("zone.active") == [
        "Entering add_active_range(0, 0, 131056) 0 entries of 256 used"]


def test_zone_sizes_1g_era_a():
    b = boot(machine(era_a(1 * G)))
    assert "  Normal zone: 1760 pages used for memmap" in b.lines  # 225280 * 32 / 4096
    assert "  Normal zone: 223520 pages, LIFO batch:31" in b.lines
    assert "  HighMem zone: 255 pages used for memmap" in b.lines  # 32752 * 32 / 4096
    assert "  HighMem zone: 32497 pages, LIFO batch:7" in b.lines  # 31/4 = 7, 10 -> 7
    # 2.6.25: one active range from 0, holes included: present = spanned - memmap.
    assert (zone(b, "HighMem").spanned, zone(b, "HighMem").present) == (32752, 32497)
    assert zone(b, "DMA").start_pfn == 0 and zone(b, "DMA").present == 4064
    assert b.layout.zone_limits == (("DMA", 4096), ("Normal", 229376), ("HighMem", 262128))


@pytest.mark.parametrize("ram, era, highmem, end, memmap, present", [
    (3 * G, era_a, "64G", 786416, 4351, 552689),  # 557040*32/4096 = 4351; 557040 - 4351
    (4 * G, era_a, "4G", 1048576, 6400, 812800),  # span 819200 (PCI hole included)
    (4 * G, era_a, "64G", 1179648, 7424, 942848),  # span 950272
    (8 * G, era_a, "64G", 2228224, 15616, 1983232),  # span 1998848
    (4 * G, era_b, "64G", 1310720, 8448, 1072896),  # span 1081344
    (8 * G, era_b, "64G", 2359296, 16640, 2113280),  # span 2129920
])
def test_highmem_zone(ram, era, highmem, end, memmap, present):
    b = boot(machine(era(ram), highmem=highmem))
    hm = zone(b, "HighMem")
    assert (hm.start_pfn, hm.end_pfn, hm.present) == (229376, end, present)
    assert f"  HighMem zone: {memmap} pages used for memmap" in b.lines
    assert b.kind("zone.node") == [f"On node 0 totalpages: {end}"]


def test_mem_map_is_allocated_in_lowmem():
    b = boot(machine(era_a(8 * G)))
    # alloc_node_mem_map(): ALIGN(2228224, 1024) * 32 bytes = 68 MiB, goal 16 MiB.
    (mem_map,) = b.allocs("mem_map")
    assert mem_map["size"] == 2228224 * 32 == 68 * M
    assert (mem_map["goal"], mem_map["align"], mem_map["wrapper"]) == (
        16 * M, 128, "__alloc_bootmem_node")  # SMP_CACHE_BYTES = 1 << 7
    assert mem_map["addr"] + mem_map["size"] <= MAXMEM_PFN << 12


# --------------------------------------------------------------------------------------------
# §4.1 / §4.3: the bitmap after the boot page tables, and setup_bootmem_allocator()'s reserves


def test_bitmap_placement_and_reserve_order():
    b = boot(machine(era_a(1 * G)))
    # _end = 0x5c0a20: pg0 = 0x5c1000. head_32.S (PAE): INIT_MAP_BEYOND_END = 0x20000 +
    # (2^20/512 + 4 + 4) * 4096 = 0x828000; k tables map k * 2 MiB and stop once that is >=
    # 0x5c1000 + k * 0x1000 + 0x828000: k = 6 gives 0xc00000 < 0xdef000, k = 7 gives 0xe00000
    # >= 0xdf0000, so init_pg_tables_end = 0x5c8000 and min_low_pfn = 0x5c8.
    assert b.facts["min_low_pfn"] == 0x5C8
    calls = b.backend.calls
    assert calls[0] == ("register", 0, 0, MAXMEM_PFN)
    assert calls[1] == ("enable", {"node0": 0x5C8})
    # register_bootmem_low_pages(): the two RAM entries, rounded inward, clipped to lowmem.
    assert calls[2:4] == [("free", 0, 0x9F000, None), ("free", 0x100000, (MAXMEM_PFN << 12)
                                                       - 0x100000, None)]
    reserves = [c[1:3] for c in calls if c[0] == "reserve"]
    bitmap = 229376 // 8  # 28672 bytes, 7 pages (boot-allocators §1.3)
    assert reserves[:4] == [
        (0x100000, 0x5C8000 + bitmap + 4095 - 0x100000),  # kernel .. bitmap (+1 page)
        (0, 4096),  # page 0
        (0x9FC00, 4096),  # reserve_ebda_region(), 2.6.25: the EBDA's page
        (4096, 4096),  # CONFIG_SMP: page 1
    ]
    # find_smp_config(): the MP floating pointer's page and one page of its table.
    assert reserves[4:] == [(0xF5BA0, 4096), (0xF5BB0, 4096)]
    # smp_scan_config(): each area scanned until the pointer turns up in the BIOS 64K.
    assert b.kind("smp.scan") == ["Scan SMP from c0000000 for 1024 bytes.",
                                  "Scan SMP from c009fc00 for 1024 bytes.",
                                  "Scan SMP from c00f0000 for 65536 bytes."]
    assert b.kind("smp.mptable") == ["found SMP MP-table at [c00f5ba0] 000f5ba0"]


@pytest.mark.parametrize("ebda, reserved", [
    (0x9FC00, [(0x9FC00, 4096)]),  # QEMU/SeaBIOS: the word at 0x40E gives 0x9fc00
    (0x9D000, [(0x9D000, 4096)]),
    (0, []),  # no EBDA: nothing
])
def test_reserve_ebda_region(ebda, reserved):
    b = boot(machine(era_b(512 * M), ebda=ebda, smp=False, acpi_sleep=False))
    reserves = [c[1:3] for c in b.backend.calls if c[0] == "reserve"]
    assert reserves[2:] == reserved  # after the kernel and page 0


class _Reserves:
    def __init__(self):
        self.got = []

    def reserve(self, *, addr, size, node, exclusive, label=""):
        self.got.append((addr, size))
        return 0


@pytest.mark.parametrize("kb, ebda, start", [
    (639, 0x9FC00, 0x9FC00),  # QEMU: EBDA right at the reported top
    (640, 0x9D000, 0x9D000),  # EBDA within 64K below 640K: lowmem lowered to it
    (640, 0x80000, 0xA0000),  # EBDA far below: lowmem (640K) kept
    (640, 0, 0x9F000),  # no EBDA and lowmem >= 0x9f000: old Dell rule
    (0, 0, 0x9F000),  # nonsense: 0x9f000
])
def test_reserve_bios_lowmem_to_1m_for_later_trees(kb, ebda, start):
    # The 2.6.26 rule a later profile selects: [lowmem, 1 MiB).
    profile = make_profile(machine(era_b(512 * M), bios_lowmem_kb=kb, ebda=ebda))
    fake = _Reserves()
    profile.reserve_bios_lowmem_to_1m(fake)
    assert fake.got == [(start, 0x100000 - start)]


def test_up_kernel_has_no_trampoline():
    smp = boot(machine(era_b(512 * M)))
    up = boot(machine(era_b(512 * M), smp=False, acpi_sleep=False))
    assert (4096, 4096) in [c[1:3] for c in smp.backend.calls if c[0] == "reserve"]
    assert (4096, 4096) not in [c[1:3] for c in up.backend.calls if c[0] == "reserve"]
    (tramp,) = smp.allocs("AP trampoline")
    assert tramp["wrapper"] == "__alloc_bootmem_low" and tramp["addr"] < 0x9F000
    assert up.allocs("AP trampoline") == []
    assert up.allocs("setup_per_cpu_areas: per-cpu areas") == []


@pytest.mark.parametrize("mp_cpus, nr_cpus, cpus", [(4, 8, 4), (4, 2, 2), (1, 8, 1)])
def test_per_cpu_areas_one_per_possible_cpu(mp_cpus, nr_cpus, cpus):
    # init/main.c setup_per_cpu_areas(): one alloc_bootmem_pages() of ALIGN(41628, 4096) =
    # 45056 bytes per possible CPU (the MP table's processors, at most NR_CPUS); no message.
    b = boot(machine(era_b(1 * G), nr_cpus=nr_cpus, mp_cpus=mp_cpus))
    assert b.kind("percpu.setup") == []
    areas = b.allocs("setup_per_cpu_areas: per-cpu areas")
    assert [(a["size"], a["align"], a["goal"], a["caller"]) for a in areas] == [
        (45056 * cpus, 4096, 16 * M, "start_kernel")]


@pytest.mark.parametrize("highmem, nopentium, expected", [
    # PAE: the kernel pgds point at the static swapper_pg_pmd (no pmd pages); the fixmap's
    # early_ioremap PMD (cleared by early_ioremap_clear()) and the pkmap PMD get a page each.
    ("64G", False, 2),
    # + ceil(229376 / 512) = 448 lowmem PTE pages minus the 7 head_32.S built (above).
    ("64G", True, 441 + 2),
    # non-PAE: head_32.S: k * 4 MiB >= 0x5c1000 + k * 0x1000 + 0x424000 first at k = 3;
    # 229376 / 1024 = 224 PTE pages, minus those 3.
    ("4G", True, 221 + 2),
    ("off", False, 1),  # fixmap only
])
def test_paging_init_page_tables(highmem, nopentium, expected):
    b = boot(machine(era_a(1 * G), highmem=highmem,
                     cmdline="mem=nopentium" if nopentium else ""))
    tables = [a for a in b.report["allocations"] if a["caller"] == "one_page_table_init"]
    assert len(tables) == expected
    assert {(a["size"], a["align"], a["wrapper"]) for a in tables} == {
        (4096, 4096, "__alloc_bootmem_low")}


# --------------------------------------------------------------------------------------------
# start_kernel(): hash tables (alloc_large_system_hash, pidhash_init)


def test_hash_tables_1g():
    b = boot(machine(era_a(1 * G)))
    # nr_kernel_pages = 4064 + 223520 = 227584 (889 MiB exactly); megabytes * 4 = 3556,
    # fls = 12 -> 4096 buckets of 4 bytes; dentry: 227584 >> (13 - 12) = 113792 -> 131072;
    # inode: >> 2 = 56896 -> 65536.
    assert b.kind("hash.pid") == ["PID hash table entries: 4096 (order: 12, 16384 bytes)"]
    assert b.kind("hash.table") == [
        "Dentry cache hash table entries: 131072 (order: 7, 524288 bytes)",
        "Inode-cache hash table entries: 65536 (order: 6, 262144 bytes)",
    ]
    assert [a["size"] for a in b.report["allocations"] if a["caller"] ==
            "alloc_large_system_hash"] == [524288, 262144]


def test_hash_tables_512m_and_cmdline_override():
    b = boot(machine(era_a(512 * M), cmdline="dhash_entries=1000"))
    # nr_kernel_pages = 4064 + 125969 = 130033, 507 MiB: 2028 -> fls 11 -> 2048 buckets.
    assert b.kind("hash.pid") == ["PID hash table entries: 2048 (order: 11, 8192 bytes)"]
    # dhash_entries=1000 -> roundup_pow_of_two = 1024; inode: 130048 >> 2 = 32512 -> 32768.
    assert b.kind("hash.table") == [
        "Dentry cache hash table entries: 1024 (order: 0, 4096 bytes)",
        "Inode-cache hash table entries: 32768 (order: 5, 131072 bytes)",
    ]


# --------------------------------------------------------------------------------------------
# mem_init(): handoff and the Memory: line (§5.3, boot-allocators §5.6)


def test_memory_line_512m():
    b = boot(machine(era_a(512 * M)))
    (line,) = b.result.boot.summary
    # num_physpages = highend_pfn = 131056 -> 524224k, as the 2.6.18 log of this map shows.
    assert "k/524224k available (2572k kernel code, " in line
    assert line.endswith(", 1160k data, 424k init, 0k highmem)")


def test_memory_line_1g_counts_highmem_and_reserved():
    b = boot(machine(era_a(1 * G)))
    (line,) = b.result.boot.summary
    # 262128 * 4 = 1048512k; highmem RAM [229376, 262128) = 32752 pages = 131008k.
    assert "/1048512k available" in line and line.endswith("131008k highmem)")
    assert b.facts["totalhigh_pages"] == 32752
    # page_is_ram(): [1, 0x9f) (page 0 is "BIOS owned") + [0x100, 229376)
    lowmem_ram = 0x9F - 1 + (MAXMEM_PFN - 0x100)
    handed_low = b.result.pagealloc.handed.count(1, 0, MAXMEM_PFN)
    assert b.facts["reservedpages"] == lowmem_ram - handed_low
    assert f"{b.facts['reservedpages'] * 4}k reserved" in line


def test_free_figure_leaves_per_cpu_pages_out():
    b = boot(machine(era_a(1 * G)))
    pa = b.result.pagealloc
    # The fake backend frees everything as single pages: the hot lists keep, per zone,
    # high - batch + (N - high) mod batch pages (batch 31: high 186; HighMem batch 7: 42).
    held = 0
    for name, batch in (("DMA", 0), ("Normal", 31), ("HighMem", 7)):
        n = b.arch.profile.order0.get(name, 0)
        high = 6 * batch
        held += (n if n < high else high - max(batch, 1) + (n - high) % max(batch, 1)) if batch \
            else 0
    (line,) = b.result.boot.summary
    assert line.startswith(f"Memory: {(pa.free_pages() - held) * 4}k/")


# --------------------------------------------------------------------------------------------
# The command line (§2): mem=, memmap=, highmem=, vmalloc=


def test_mem_limits_the_map_and_drops_later_entries():
    b = boot(machine(era_a(1 * G), cmdline="mem=512M"))
    tables = b.kind("e820.table")
    assert " limit_regions start: 000000003fff0000 - 0000000040000000 (ACPI data)" in tables
    # limit_regions(): the RAM entry is cut at 512M and every later entry dropped (quirk).
    assert tables[tables.index("user-defined physical RAM map:"):] == [
        "user-defined physical RAM map:",
        " user: 0000000000000000 - 000000000009fc00 (usable)",
        " user: 000000000009fc00 - 00000000000a0000 (reserved)",
        " user: 00000000000e8000 - 0000000000100000 (reserved)",
        " user: 0000000000100000 - 0000000020000000 (usable)",
    ]
    assert " limit_regions endfor: 0000000000100000 - 0000000020000000 (usable)" in tables
    assert b.kind("layout.highmem") + b.kind("layout.lowmem") == [
        "0MB HIGHMEM available.", "512MB LOWMEM available."]  # 0x20000 >> 8
    # The gap above 512M: 0xe0000000 bytes, rounded to 256M: 0x30000000.
    assert b.kind("e820.pci_gap") == [
        "Allocating PCI resources starting at 30000000 (gap: 20000000:e0000000)"]


def test_memmap_exactmap_prints_in_insertion_order():
    b = boot(machine(era_b(1 * G), cmdline="memmap=exactmap memmap=511M@1M memmap=640K@0"))
    assert b.kind("e820.table")[-3:] == [
        "user-defined physical RAM map:",
        " user: 0000000000100000 - 0000000020000000 (usable)",
        " user: 0000000000000000 - 00000000000a0000 (usable)",
    ]
    assert b.facts["e820_max_pfn"] == 0x20000  # 0x20000000 >> 12
    assert b.layout.ram == ((0, 0xA0), (0x100, 0x20000))


def test_memmap_reserved_is_silent_and_ignored_in_2625():
    plain = boot(machine(era_b(1 * G)))
    b = boot(machine(era_b(1 * G), cmdline="memmap=64M$0x10000000"))
    # 2.6.25 quirk: nn$ss appends without user_defined_memmap (no user map printed) and the
    # map is never sanitized, so the RAM entry still covers [256M, 320M): it is freed.
    assert "user-defined physical RAM map:" not in b.lines
    assert b.report["memory"]["e820"][-1] == [0x10000000, 0x14000000, 2]
    assert b.layout.ram == plain.layout.ram
    assert ("free", 0x100000, (MAXMEM_PFN << 12) - 0x100000, None) in b.backend.calls


def test_memmap_ram_over_ram_frees_twice_and_bugs():
    b = boot(machine(era_b(1 * G), cmdline="memmap=64M@0x1000000"))
    # register_bootmem_low_pages() frees both overlapping RAM entries; freeing a free page
    # is a BUG() in 2.6.25 free_bootmem_core().
    assert b.result.outcome == "panic"
    assert "free_bootmem_core" in b.report["panic_message"]


@pytest.mark.parametrize("ram, cmdline, lines", [
    # 1G A: highmem=512M -> 131072 + 229376 > 262128: "only (262128-229376)>>8 = 127MB".
    (1 * G, "highmem=512M", ["only 127MB highmem pages available, ignoring highmem size of "
                             "512MB.", "127MB HIGHMEM available.", "896MB LOWMEM available."]),
    # 512M A (131056 pfns): 32768 highmem pages below MAXMEM: max_low = 98288 (383 MB).
    (512 * M, "highmem=128M", ["128MB HIGHMEM available.", "383MB LOWMEM available."]),
    (512 * M, "highmem=1G", ["highmem size specified (1024MB) is bigger than pages available "
                             "(511MB)!.", "0MB HIGHMEM available.", "511MB LOWMEM available."]),
    # 131056 - 122880 = 8176 < 16384 pages (64 MB).
    (512 * M, "highmem=480M", ["highmem size 480MB results in smaller than 64MB lowmem, "
                               "ignoring it.", "0MB HIGHMEM available.",
                               "511MB LOWMEM available."]),
])
def test_highmem_parameter(ram, cmdline, lines):
    b = boot(machine(era_a(ram), cmdline=cmdline))
    assert b.kind("layout.warning") + b.kind("layout.highmem") + b.kind("layout.lowmem") == lines


def test_highmem_parameter_truncates_memory():
    b = boot(machine(era_b(8 * G), cmdline="highmem=1G"))
    # 262144 + 229376 = 491520 < 2359296: max_pfn = 491520, 1024 MB of highmem.
    assert b.kind("layout.highmem") == ["1024MB HIGHMEM available."]
    assert b.layout.max_pfn == 491520 and b.layout.ram[-1][1] <= 491520


def test_highmem_parameter_on_nohighmem_kernel():
    b = boot(machine(era_a(512 * M), highmem="off", cmdline="highmem=128M"))
    assert b.kind("layout.warning") == ["ignoring highmem size on non-highmem kernel!"]


@pytest.mark.parametrize("cmdline, config, lowmem, highmem_mb", [
    ("vmalloc=256M", {}, 768, 255),  # MAXMEM 0x30000000 = 196608 pfns; 65520 >> 8 = 255
    ("vmalloc=64M", {}, 960, 63),  # MAXMEM 0x3c000000 = 245760 pfns; 16368 >> 8 = 63
    ("", {"page_offset": 0x80000000}, 1023, 0),  # VMSPLIT_2G: MAXMEM 1920 MB > 1G of RAM
])
def test_vmalloc_and_page_offset_move_maxmem(cmdline, config, lowmem, highmem_mb):
    b = boot(machine(era_a(1 * G), cmdline=cmdline, **config))
    assert b.kind("layout.highmem") + b.kind("layout.lowmem") == [
        f"{highmem_mb}MB HIGHMEM available.", f"{lowmem}MB LOWMEM available."]


# --------------------------------------------------------------------------------------------
# initrd and crashkernel


@pytest.mark.parametrize("start, size, reserved, message", [
    (0x2000000, 0x400000, (0x2000000, 0x400000), None),  # in lowmem: in place
    # ends above 0x38000000: moved to (0x38000000 - 8M) & PAGE_MASK
    (0x3C000000, 0x800000, (0x37800000, 0x800000), None),
    (0x4000000, 0x1C000000, None, "initrd too large to handle, disabling initrd"),  # >= 448M
])
def test_reserve_initrd(start, size, reserved, message):
    b = boot(machine(era_a(1 * G), initrd_start=start, initrd_size=size))
    reserves = [c[1:3] for c in b.backend.calls if c[0] == "reserve"]
    if reserved:
        assert reserved in reserves
    assert b.kind("initrd.disabled") == ([message] if message else [])


def test_crashkernel():
    b = boot(machine(era_a(1 * G), cmdline="crashkernel=64M@16M"))
    # total_mem = (229376 - 0x5c3) + (262128 - 229376) = 260653 pages = 1018 MB.
    assert b.kind("crashkernel.reserve") == [
        "Reserving 64MB of memory at 16MB for crashkernel (System RAM: 1018MB)"]
    assert (16 * M, 64 * M) in [c[1:3] for c in b.backend.calls if c[0] == "reserve"]
    b = boot(machine(era_a(1 * G), cmdline="crashkernel=64M"))
    assert b.kind("crashkernel.error") == [
        "crashkernel reservation failed - you have to specify a base address"]


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("kwargs, message", [
    ({"highmem": "8G"}, "test.toml: kernel.highmem: '8G' is not one of off, 4G, 64G"),
    ({"page_offset": 0x78000000}, "test.toml: kernel.page_offset: 0x78000000 depends on "
     "!X86_PAE"),
    ({"page_offset": 0x12345678}, "test.toml: kernel.page_offset: 0x12345678 is not a VMSPLIT"),
    ({"smp": "yes"}, "test.toml: kernel.smp: expected true or false, got 'yes'"),
    ({"smp": False, "nr_cpus": 2}, "test.toml: kernel.nr_cpus: 2 CPUs need smp = true"),
    ({"ebda": 0x100000}, "test.toml: kernel.ebda: 0x100000 is not below 1 MiB"),
    ({"image_end": 0x80000}, "test.toml: kernel.image_end: 0x80000 is not above image_start"),
    ({"profile": "2.6.30"}, "test.toml: kernel.profile: x86_32 has no profile '2.6.30'"),
])
def test_bad_machine(kwargs, message):
    with pytest.raises(BootemuError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        X86_32().bootemu_arch_check_machine(machine=machine(era_b(1 * G), **kwargs))


def test_one_entry_map_is_refused():
    m = machine((E820Entry(0, 512 * M, USABLE),))
    with pytest.raises(BootemuError, match=r"^test.toml: firmware.e820: 1 entries"):
        boot_machine(m, arch_plugin=X86_32(), allocator_plugin=object())


def test_defaults_follow_highmem_model():
    assert make_profile(machine(era_b(G), highmem="64G")).cfg.pageblock_order == 9
    assert make_profile(machine(era_b(G), highmem="4G")).cfg.pageblock_order == 10
    assert make_profile(machine(era_b(G), highmem=None)).cfg.highmem == "64G"


# --------------------------------------------------------------------------------------------
# The firmware table as printed (§1.5)


def test_bios_table_format():
    b = boot(machine(era_a(512 * M)))
    assert b.kind("e820.table") == [
        "BIOS-provided physical RAM map:",
        " BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)",
        " BIOS-e820: 000000000009fc00 - 00000000000a0000 (reserved)",
        " BIOS-e820: 00000000000e8000 - 0000000000100000 (reserved)",
        " BIOS-e820: 0000000000100000 - 000000001fff0000 (usable)",
        " BIOS-e820: 000000001fff0000 - 0000000020000000 (ACPI data)",
        " BIOS-e820: 00000000fffbd000 - 0000000100000000 (reserved)",
    ]
    assert ACPI == 3


# --------------------------------------------------------------------------------------------
# Properties over many machines, and the real backends


@settings(max_examples=25, deadline=None)
@given(mb=st.integers(min_value=32, max_value=12 * 1024), era=st.sampled_from([era_a, era_b]),
       highmem=st.sampled_from(["off", "4G", "64G"]))
def test_every_ram_page_is_accounted_for(mb, era, highmem):
    b = boot(machine(era(mb * M), highmem=highmem))
    assert b.result.outcome == "ok" and not b.result.violations
    lay, pa = b.layout, b.result.pagealloc
    low_ram = sum(max(0, min(e, lay.max_low_pfn) - s) for s, e in lay.ram)
    high_ram = lay.ram_pages - low_ram
    assert b.facts["totalhigh_pages"] == high_ram
    # mem_init() counts reserved pages among page_is_ram() ones: not page 0, not 640K-1M.
    bios = sum(max(0, min(e, 0x100) - max(s, 0xA0)) for s, e in lay.ram) + (lay.ram[0][0] == 0)
    assert b.facts["reservedpages"] + pa.handed.count(1, 1, lay.max_low_pfn) == low_ram - bios
    assert b.facts["totalram_pages"] == pa.received
    assert sum(z.spanned for z in lay.zones) == lay.max_pfn  # one range from pfn 0
    physpages = lay.max_pfn if highmem != "off" else lay.max_low_pfn
    assert f"/{physpages * 4}k available" in b.result.boot.summary[0]


def _installed_backends() -> list[str]:
    return sorted(discover(ALLOCATOR_GROUP))


@pytest.mark.parametrize("backend", _installed_backends())
def test_boots_on_every_installed_backend(backend):
    m = machine(era_b(2 * G))
    result = boot_machine(m, allocator=backend, arch_plugin=X86_32())
    if backend == "memblock":
        # memblock searches top-down, so 2.6.25's smp_alloc_memory() gets its "low" trampoline
        # page at the top of lowmem and hits its own BUG() (the address must be below 0x9f000;
        # kernels that ran on memblock searched [0, 1M) explicitly). Without SMP it boots.
        assert result.outcome == "panic"
        assert "smp_alloc_memory(): trampoline at" in result.report["panic_message"]
        m = machine(era_b(2 * G), smp=False)
        result = boot_machine(m, allocator=backend, arch_plugin=X86_32())
    assert result.outcome == "ok", result.report["panic_message"]
    assert not result.violations
    # Era B 2G: highend = 0x7ffe0 = 524256 pfns -> 2097024k.
    assert "/2097024k available" in result.boot.summary[0]


def test_pae_64g_preset_boots():
    from bootemu.machine import load_machine

    b = boot(load_machine("pae-64g"))
    # max_pfn = 0x1040000 = 17039360; highmem RAM = [229376, 786400) + [1048576, 17039360)
    # = 557024 + 15990784 = 16547808 pages = 66191232k.
    assert b.kind("layout.highmem") == [f"{(17039360 - MAXMEM_PFN) >> 8}MB HIGHMEM available."]
    assert b.facts["totalhigh_pages"] == 16547808
    assert b.result.boot.summary[0].endswith("66191232k highmem)")
    assert "/68157440k available" in b.result.boot.summary[0]
    assert not b.result.violations
