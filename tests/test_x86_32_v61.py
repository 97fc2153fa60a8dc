"""x86_32, profile 6.1, held to real Linux 6.1.176 boots (Debian 686-pae / 686 under QEMU).

Each fixture in ``tests/data/x86_32/`` holds, verbatim, the real log's lines of the kinds the
profile reproduces (copied from real-boots/extracted/<case>.txt) plus the zone figures of the
case's /proc/zoneinfo. The machine is built from the fixture's own ``BIOS-e820`` lines and
the case's command-line arguments; the profile's defaults are the Debian build's.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from bootemu_arches.x86_32.v6_1 import Linux61
from bootemu_plugins.memblock import Memblock
from hypothesis import given, settings
from hypothesis import strategies as st
from x86_32_harness import G, M, boot, era_b, machine

from bootemu.e820 import TYPE_BY_NAME
from bootemu.models import E820Entry

DATA = Path(__file__).parent / "data" / "x86_32"
CASES = ("pae_512M", "pae_1G", "pae_2G", "pae_4G", "nopae_4G", "pae_1G_highmem512M",
         "pae_1G_mem512M", "pae_1G_memmap64M_reserved", "pae_1G_vmalloc256M")

#: The kinds of line in the fixtures (what the profile prints for them must equal them).
KINDS = re.compile("|".join(f"(?:{k})" for k in (
    r"BIOS-provided physical RAM map:", r"BIOS-e820: .*", r"e820: (?:update|remove) \[mem .*",
    r"user-defined physical RAM map:", r"user: \[mem .*", r"last_pfn = .*",
    r"only \d+MB highmem pages available.*", r"highmem size .*", r"Warning.*",
    r"found SMP MP-table at .*", r"\d+MB (?:HIGHMEM|LOWMEM) available\.",
    r"  (?:mapped )?low ram: .*", r"Zone ranges:", r"  \w+\s+(?:\[mem .*\]|empty)",
    r"Movable zone start for each node", r"Early memory node ranges", r"  node\s+\d+: \[mem .*\]",
    r"Initmem setup node .*", r"On node \d+, zone \w+: \d+ pages in unavailable ranges",
    r"\[mem .*\] available for PCI devices", r"setup_percpu: .*", r"Built \d+ zonelists.*",
    r"(?:Dentry cache|Inode-cache) hash table entries: .*", r"software IO TLB: area num .*",
    r"Initializing (?:HighMem|Movable) for node .*", r"Memory: .*",
)))
_E820 = re.compile(r"BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (\w+)")
_MEMORY = re.compile(r"Memory: (\d+)K/(\d+)K available")


def fixture(case: str) -> tuple[dict[str, str], list[str], dict[str, tuple[int, int, int]]]:
    """(header fields, real lines, zone -> (start_pfn, spanned, present))."""
    text = (DATA / f"{case}.txt").read_text()
    body, zoneinfo = text.split("=== zoneinfo", 1)
    head = dict(re.findall(r"^# (\w+): (.*)$", body, re.M))
    lines = [line for line in body.splitlines() if line and not line.startswith("#")]
    zones = {}
    for line in zoneinfo.splitlines()[1:]:
        name, start, spanned, present = line.split()
        zones[name] = (int(start), int(spanned), int(present))
    return head, lines, zones


def real_machine(case: str):
    head, lines, _ = fixture(case)
    e820 = tuple(E820Entry(int(s, 16), int(e, 16) + 1, TYPE_BY_NAME[t])
                 for s, e, t in (_E820.fullmatch(line).groups() for line in lines
                                 if _E820.fullmatch(line)))
    highmem = "64G" if head["kernel"] == "686-pae" else "4G"
    return machine(e820, profile="6.1", highmem=highmem, cmdline=head.get("args", ""))


@pytest.mark.parametrize("case", CASES)
def test_lines_equal_the_real_log(case):
    _, real, _ = fixture(case)
    b = boot(real_machine(case))
    assert b.result.outcome == "ok" and not b.result.violations
    got = [line for line in b.lines if KINDS.fullmatch(line)]
    # The Memory: line: on this page-granular fake allocator only the total (all present
    # pages) is comparable; on memblock the whole line is (test_memory_line_on_memblock...).
    real_mem, got_mem = real.pop(), got.pop()
    assert _MEMORY.match(got_mem).group(2) == _MEMORY.match(real_mem).group(2)
    assert got == real


@pytest.mark.parametrize("case", CASES)
def test_zone_sizes_equal_zoneinfo(case):
    _, _, zones = fixture(case)
    b = boot(real_machine(case))
    got = {z.name: (z.start_pfn if z.spanned else 0, z.spanned, z.present)
           for z in b.layout.zones}
    # ZONE_MOVABLE (empty without kernelcore=) is not part of the layout.
    assert got == {k: v for k, v in zones.items() if k != "Movable"}


def test_lowmem_limits_come_from_vmalloc_end():
    # low ram: 0 - 36ffe000 (686-pae) and 0 - 36bfe000 (686): VMALLOC_END = MAXMEM +
    # PAGE_OFFSET + 128M = 0x36ffe000 + 0xc0000000 + 0x8000000 = 0xfeffe000, and 0xfebfe000.
    assert Linux61.defaults("64G")["vmalloc_end"] == 0x36FFE000 + 0xC0000000 + 128 * M
    assert Linux61.defaults("4G")["vmalloc_end"] == 0x36BFE000 + 0xC0000000 + 128 * M
    # vmalloc=256M costs 256M + VMALLOC_OFFSET (8M): 0xfeffe000 - 0xc0000000 - 264M =
    # 0x2e7fe000 -> 190462 pfns -> 743 MB.
    b = boot(machine(era_b(1 * G), profile="6.1", cmdline="vmalloc=256M"))
    assert b.kind("layout.lowmem") == ["743MB LOWMEM available."]
    assert b.facts["max_low_pfn"] == 0x2E7FE


def test_non_pae_drops_ram_above_4g_silently():
    b = boot(machine(era_b(8 * G), profile="6.1", highmem="4G"))
    # e820__end_of_ram_pfn(): the [4G, 9G) entry starts at max_arch_pfn 0x100000: skipped.
    assert b.kind("layout.last_pfn") == ["last_pfn = 0xbffe0 max_arch_pfn = 0x100000"]
    assert b.kind("layout.warning") == []
    assert b.layout.ram[-1][1] == 0xBFFE0


def test_non_pae_never_trims_at_4g():
    # A non-PAE kernel only sees RAM above 4 GiB if an entry crosses 4 GiB; end_of_ram_pfn()
    # then stops at max_arch_pfn, so highmem_pfn_init() never trims: no message either.
    crossing = (E820Entry(0, 0x9FC00, 1), E820Entry(0x9FC00, 0xA0000, 2),
                E820Entry(0x100000, (1 << 32) + G, 1))
    b = boot(machine(crossing, profile="6.1", highmem="4G"))
    assert b.kind("layout.last_pfn") == ["last_pfn = 0x100000 max_arch_pfn = 0x100000"]
    assert b.kind("layout.warning") == []
    # memblock drops the entry whole (its end does not fit a 32-bit phys_addr_t).
    assert b.kind("zone.ranges")[-1] == "  node   0: [mem 0x0000000000001000-0x000000000009efff]"


def test_memmap_percent_retypes_a_range():
    b = boot(machine(era_b(1 * G), profile="6.1", cmdline="memmap=16M%0x8000000-1+2"))
    assert "e820: update [mem 0x08000000-0x08ffffff] usable ==> reserved" in b.lines
    assert "user: [mem 0x0000000008000000-0x0000000008ffffff] reserved" in b.lines
    assert "On node 0, zone Normal: 4096 pages in unavailable ranges" in b.lines


def test_exactmap_without_entries_panics():
    b = boot(machine(era_b(1 * G), profile="6.1", cmdline="memmap=exactmap"))
    assert b.result.outcome == "panic"
    assert b.report["panic_message"] == "Invalid user supplied memory map"


def test_initrd_above_lowmem_is_moved():
    b = boot(machine(era_b(2 * G), profile="6.1", initrd_start=0x7000000 << 4,
                     initrd_size=0x1000000))
    # 0x70000000 is above max_low (0x36ffe000): reserve_initrd() prints the range, then
    # relocate_initrd() takes a new lowmem area and prints the move.
    assert b.kind("initrd.reserve") == ["RAMDISK: [mem 0x70000000-0x70ffffff]"]
    (moved,) = b.allocs("initrd")
    assert moved["size"] == 0x1000000 and moved["addr"] + moved["size"] <= 0x36FFE000
    assert b.kind("initrd.relocate")[1].startswith(
        "Move RAMDISK from [mem 0x70000000-0x70ffffff] to [mem ")


@pytest.mark.parametrize("cmdline, lines", [
    # lowmem_pfn_init(): 262144 highmem pages >= max_pfn 0x1ffe0 (511 MB): MSG_HIGHMEM_TOO_BIG.
    ("highmem=1G", ["highmem size (1024MB) is bigger than pages available (511MB)!",
                    "0MB HIGHMEM available.", "511MB LOWMEM available."]),
    # 0x1ffe0 - 122880 = 8160 < 16384 pages: MSG_LOWMEM_TOO_SMALL.
    ("highmem=480M", ["highmem size (480MB) results in <64MB lowmem, ignoring it!",
                      "0MB HIGHMEM available.", "511MB LOWMEM available."]),
    # 32768 pages of artificial highmem: max_low_pfn = 0x1ffe0 - 0x8000 = 98272 (383 MB).
    ("highmem=128M", ["128MB HIGHMEM available.", "383MB LOWMEM available."]),
])
def test_highmem_parameter_61(cmdline, lines):
    b = boot(machine(era_b(512 * M), profile="6.1", cmdline=cmdline))
    assert b.kind("layout.warning") + b.kind("layout.highmem") + b.kind("layout.lowmem") == lines


# --------------------------------------------------------------------------------------------
# memmap_init()'s last init_unavailable_range(): memblock.memory past max_pfn (issue 13 item 5)
#
# No real boot here has this line: pae_1G_highmem512M asks for more highmem than the 143 MB
# present, so highmem_pfn_init() ignores it ("only 143MB highmem pages available") and max_pfn
# stays at the end of RAM. Every expectation below is arithmetic from the 6.1 sources:
# highmem_pfn_init() makes max_pfn = MAXMEM_PFN + highmem_pages; memblock.memory still ends at
# the end of RAM (0x3ffe0 on the SeaBIOS 1 GiB map); memmap_init() (FLATMEM: no section
# rounding) calls init_unavailable_range(max_pfn, 0x3ffe0, HighMem, 0), which counts the pfns
# whose pageblock starts below max_mapnr (= highend_pfn = max_pfn), i.e. up to
# round_up(max_pfn, pageblock_nr_pages).


@pytest.mark.parametrize("highmem, cmdline, tail", [
    # PAE: MAXMEM_PFN 0x36ffe ("low ram: 0 - 36ffe000"), pageblock_order 9 (512 pages).
    # highmem=64M: 0x36ffe + 0x4000 = 0x3affe; round_up(0x3affe, 0x200) = 0x3b000: 2 pages,
    # the line issue 13 quotes.
    ("64G", "highmem=64M", ("HighMem", 2)),
    # highmem=65M: 0x36ffe + 0x4100 = 0x3b0fe; round_up to 0x3b200: 0x102 = 258 pages.
    ("64G", "highmem=65M", ("HighMem", 258)),
    # Non-PAE: MAXMEM_PFN 0x36bfe ("low ram: 0 - 36bfe000"), pageblock_order 10 (1024 pages).
    # highmem=33M: 0x36bfe + 0x2100 = 0x38cfe; round_up(0x38cfe, 0x400) = 0x39000: 770 pages.
    ("4G", "highmem=33M", ("HighMem", 770)),
    # No highmem= at all: max_pfn = 0x3ffe0 = the end of memblock.memory: no tail.
    ("64G", "", None),
])
def test_memblock_past_max_pfn_ends_in_an_unavailable_range(highmem, cmdline, tail):
    b = boot(machine(era_b(1 * G), profile="6.1", highmem=highmem, cmdline=cmdline))
    assert b.result.outcome == "ok"
    lines = b.kind("zone.unavailable")
    # The two DMA holes of every SeaBIOS map (pfn 0; 0x9f-0xff) stay as they were.
    assert lines[:2] == ["On node 0, zone DMA: 1 pages in unavailable ranges",
                         "On node 0, zone DMA: 97 pages in unavailable ranges"]
    expected = [] if tail is None else [
        f"On node 0, zone {tail[0]}: {tail[1]} pages in unavailable ranges"]
    assert lines[2:] == expected


@settings(max_examples=25, deadline=None)
@given(mb=st.integers(min_value=1, max_value=142))
def test_tail_is_the_rest_of_max_pfns_pageblock(mb):
    # Any accepted highmem= on the PAE 1 GiB map: max_pfn = 0x36ffe + mb * 256 (below the RAM
    # end 0x3ffe0); the tail is what is left of max_pfn's pageblock of 512 pages, if any.
    max_pfn = 0x36FFE + mb * 256
    tail = min(0x3FFE0, -(-max_pfn // 512) * 512) - max_pfn
    b = boot(machine(era_b(1 * G), profile="6.1", highmem="64G", cmdline=f"highmem={mb}M"))
    assert b.kind("zone.unavailable")[2:] == (
        [f"On node 0, zone HighMem: {tail} pages in unavailable ranges"] if tail else [])


def test_highmem_512m_on_1g_is_ignored_so_no_tail():
    # The real boot: highmem=512M > the 143 MB above lowmem, so max_pfn stays 0x3ffe0 and the
    # real log has only the two DMA lines (fixture pae_1G_highmem512M).
    _, real, _ = fixture("pae_1G_highmem512M")
    b = boot(real_machine("pae_1G_highmem512M"))
    assert b.kind("zone.unavailable") == [line for line in real if "unavailable" in line]
    assert len(b.kind("zone.unavailable")) == 2


# --------------------------------------------------------------------------------------------
# On the memblock backend: where every early allocation goes, and the Memory: line


_APPEND = re.compile(r"-append '([^']*)'")
_REQ = re.compile(r"memblock_\w+: (\d+) bytes align=0x([0-9a-f]+) .* (\w+)\+0x")
_RES = re.compile(r"memblock_(reserve|phys_free): \[0x([0-9a-f]+)-0x([0-9a-f]+)\]")


def memblock_boot(case: str):
    """Boot the case on memblock with the real boot's whole command line (its length sizes
    the setup_command_line() copies, its unknown options print_unknown_bootoptions())."""
    head, _, _ = fixture(case)
    m = real_machine(case)
    cmdline = _APPEND.search(head["command"]).group(1)
    m = replace(m, kernel=replace(m.kernel, cmdline=cmdline))
    return boot(m, Memblock())


@pytest.mark.parametrize("case", CASES)
def test_memory_line_on_memblock_is_the_real_one(case):
    # The free figure included: the profile makes the kernel's early requests in its order
    # and sizes, so top-down memblock leaves the same pages free as the real kernel.
    _, real, _ = fixture(case)
    b = memblock_boot(case)
    assert b.result.outcome == "ok" and not b.result.violations
    assert b.kind("summary.memory") == [real[-1]]


#: The number of allocations from memmap_alloc() to the Memory: line (``memblock_reserve``
#: lines of memblock_alloc_range_nid() in each fixture). pae_1G: 34. No HighMem usemap at
#: 512M (33); mem=512M also takes 1 alloc_low_pages() page, not 2 (32); memmap=$ adds a
#: nosave region (35); 4G adds a nosave region and a firmware map entry, and with PAE the 3
#: swiotlb requests (39), without PAE no alloc_low_pages() page (34).
ALLOCS = {"pae_512M": 33, "pae_1G": 34, "pae_2G": 34, "pae_4G": 39, "nopae_4G": 34,
          "pae_1G_highmem512M": 34, "pae_1G_mem512M": 32, "pae_1G_memmap64M_reserved": 35,
          "pae_1G_vmalloc256M": 34}


@pytest.mark.parametrize("case", CASES)
def test_allocations_land_where_the_real_kernel_put_them(case):
    """Every request from memmap_alloc() on: same size and alignment, in the same order, at
    the address of the real ``memblock_reserve`` line; and the same frees."""
    lines = [line for line in (DATA / f"{case}.memblock.txt").read_text().splitlines()
             if not line.startswith("#")]
    want_allocs, want_frees, pending = [], [], None
    for line in lines:
        if m := _REQ.match(line):
            pending = (int(m.group(1)), int(m.group(2), 16))
        elif m := _RES.match(line):
            start, end = int(m.group(2), 16), int(m.group(3), 16) + 1
            if m.group(1) == "reserve":
                want_allocs.append((*pending, start, end))
                pending = None
            elif end > start:  # pcpu_embed_first_chunk()'s empty tail: nothing freed
                want_frees.append((start, end))
    b = memblock_boot(case)
    ops = b.report["allocations"]
    got_allocs = [(a["size"], a["align"], a["addr"], a["addr"] + a["size"]) for a in ops
                  if a["op"] == "alloc"]
    first = next(i for i, a in enumerate(ops) if a["op"] == "alloc")
    got_frees = [(a["addr"], a["addr"] + a["size"]) for a in ops[first:] if a["op"] == "free"]
    assert len(want_allocs) == ALLOCS[case] and got_allocs == want_allocs
    assert got_frees == want_frees


@pytest.mark.parametrize("case, resources, firmware, nosave", [
    # e820__reserve_resources(): 40-byte resources x e820_table entries (the BIOS entries
    # plus trim_bios_range()'s page-0 split); firmware_map_add_early() x BIOS entries;
    # e820__register_nosave_regions(): one per gap between RAM entries below max_pfn that
    # does not continue the previous one (logs: 280/6/2, 320/7/3, 360/6/3, 256/7/3).
    ("pae_1G", 7 * 40, 6, 2),
    ("pae_4G", 8 * 40, 7, 3),  # the gap [bffe0000, 4G) before the RAM above 4 GiB
    ("pae_1G_memmap64M_reserved", 9 * 40, 6, 3),  # memmap=64M$ splits the usable entry
    # 32-bit resource_size_t: 32-byte resources; the RAM above 4 GiB, which memblock drops,
    # is still an e820 entry, so the gap before it is registered (past max_pfn 0xbffe0).
    ("nopae_4G", 8 * 32, 7, 3),
])
def test_setup_arch_requests_follow_the_e820_map(case, resources, firmware, nosave):
    b = memblock_boot(case)
    by_caller = {}
    for a in b.report["allocations"]:
        if a["op"] == "alloc":
            by_caller.setdefault(a["caller"], []).append(a["size"])
    assert by_caller["e820__reserve_resources"] == [resources]
    assert by_caller["firmware_map_add_early"] == [64] * firmware
    assert by_caller["register_nosave_region"] == [16] * nosave
    # acpi_parse_hpet(): resource + 9; io_apic_init_mappings(): resource + 11.
    res = resources // (9 if "memmap" in case else 8 if "4G" in case else 7)
    assert by_caller["acpi_parse_hpet"] == [res + 9]
    assert by_caller["io_apic_init_mappings"] == [res + 11]


@pytest.mark.parametrize("case, pages", [
    ("pae_1G", 2), ("pae_512M", 2), ("pae_1G_mem512M", 1), ("nopae_4G", 0),
])
def test_alloc_low_pages_after_the_hashes(case, pages):
    # Counts of ``alloc_low_pages`` lines in the logs; they come after the hashes.
    b = memblock_boot(case)
    callers = [a["caller"] for a in b.report["allocations"] if a["op"] == "alloc"]
    assert callers.count("alloc_low_pages") == pages
    if pages:
        assert callers.index("alloc_low_pages") > max(
            i for i, c in enumerate(callers) if c == "alloc_large_system_hash")


@pytest.mark.parametrize("cmdline, size", [
    ("console=ttyS0 nokaslr", 9),  # " nokaslr" + NUL
    ("console=ttyS0 foo=1 nokaslr bar", 1 + 6 + 8 + 4),  # argv and envp alike
    ("console=ttyS0 mod.param=1", None),  # module parameters are not reported
])
def test_unknown_boot_options_are_allocated_and_freed(cmdline, size):
    b = boot(machine(era_b(1 * G), profile="6.1", cmdline=cmdline), Memblock())
    got = b.allocs("unknown boot options")
    assert [a["size"] for a in got] == ([size] if size else [])
    frees = [a for a in b.report["allocations"] if a["op"] == "free"]
    assert all(any(f["addr"] == a["addr"] and f["size"] == a["size"] for f in frees)
               for a in got)


@pytest.mark.parametrize("backend", ["bootmem", "bootmem2"])
def test_early_requests_also_boot_on_bitmap_backends(backend):
    from bootemu.sequencer import boot_machine

    m = replace(real_machine("pae_1G"), allocator=backend)
    result = boot_machine(m)
    assert result.outcome == "ok" and result.violations == []
    callers = [a["caller"] for a in result.report["allocations"] if a["op"] == "alloc"]
    assert callers.count("firmware_map_add_early") == 6 and "alloc_low_pages" in callers
