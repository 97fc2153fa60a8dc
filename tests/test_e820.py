"""bootemu.e820 against kernel facts: the rules of sanitize_e820_map() (reference
x86_32-early-memory.md §1.3, and the sample map drawn in the kernel's own comment), the
dmesg lines of real 6.1 boots (tests/data/e820/real-boots-e820.json, copied from
tests/data/real-boots) and the 2008 formats and worked examples of the reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootemu.e820 import (
    E820_ACPI,
    E820_NVS,
    E820_PRAM,
    E820_RAM,
    E820_RESERVED,
    E820_UNUSABLE,
    ULLONG_MAX,
    end_of_ram_pfn,
    find_area,
    find_max_pfn_2625,
    format_entry,
    format_remove,
    format_table,
    format_update,
    limit_regions_2625,
    mem_limit,
    pci_gap,
    pci_gap_2624,
    ram_pfn_ranges,
    remove_range,
    sanitize,
    type_text,
    update_range,
    update_range_2625,
)
from bootemu.models import E820Entry as E
from bootemu.models import KernelBug

DATA = json.loads((Path(__file__).parent / "data" / "e820" / "real-boots-e820.json").read_text())
CASES = DATA["cases"]
TYPES = {"usable": E820_RAM, "reserved": E820_RESERVED}

M = 1 << 20
G = 1 << 30


def bios_table(case: str) -> list[E]:
    """The firmware map of a real boot; summary.json gives inclusive ends."""
    return [E(s, e + 1, TYPES[t]) for s, e, t in CASES[case]["e820_bios"]]


def lines(case: str, prefix: str) -> list[str]:
    return [ln for ln in CASES[case]["lines"] if ln.startswith(prefix)]


#: SeaBIOS map of a 1 GiB QEMU pc (pae_1G), written out from its BIOS-e820 lines.
SEABIOS_1G = [
    E(0x0, 0x9FC00, E820_RAM),
    E(0x9FC00, 0xA0000, E820_RESERVED),
    E(0xF0000, 0x100000, E820_RESERVED),
    E(0x100000, 0x3FFE0000, E820_RAM),
    E(0x3FFE0000, 0x40000000, E820_RESERVED),
    E(0xFFFC0000, 0x100000000, E820_RESERVED),
]


# --------------------------------------------------------------------------------------------
# sanitize: the rules


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_overlap_higher_type_wins(profile):
    # RAM [0, 64K) overlapped by reserved [32K, 96K): reserved (2) beats RAM (1).
    out = sanitize([E(0, 0x10000, E820_RAM), E(0x8000, 0x18000, E820_RESERVED)], profile=profile)
    assert out == [E(0, 0x8000, E820_RAM), E(0x8000, 0x18000, E820_RESERVED)]


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_nvs_beats_acpi_and_ram_inside_reserved_vanishes(profile):
    out = sanitize(
        [
            E(0x1000, 0x5000, E820_ACPI),
            E(0x3000, 0x4000, E820_NVS),
            E(0x10000, 0x20000, E820_RESERVED),
            E(0x11000, 0x12000, E820_RAM),
        ],
        profile=profile,
    )
    assert out == [
        E(0x1000, 0x3000, E820_ACPI),
        E(0x3000, 0x4000, E820_NVS),
        E(0x4000, 0x5000, E820_ACPI),
        E(0x10000, 0x20000, E820_RESERVED),
    ]


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_adjacent_and_overlapping_same_type_merge_and_order_is_restored(profile):
    out = sanitize(
        [E(0x2000, 0x3000, E820_RAM), E(0, 0x1000, E820_RAM), E(0x1000, 0x2800, E820_RAM)],
        profile=profile,
    )
    assert out == [E(0, 0x3000, E820_RAM)]


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_zero_size_entries_are_ignored_but_counted(profile):
    # Two entries (one empty) pass the "fewer than 2" test; the empty one leaves no trace.
    assert sanitize([E(0, 0x1000, E820_RAM), E(0x800, 0x800, E820_NVS)], profile=profile) == [
        E(0, 0x1000, E820_RAM)
    ]


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_gaps_give_no_entry(profile):
    out = sanitize([E(0, 0x1000, E820_RAM), E(0x3000, 0x4000, E820_RAM)], profile=profile)
    assert out == [E(0, 0x1000, E820_RAM), E(0x3000, 0x4000, E820_RAM)]


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_fewer_than_two_entries_is_refused(profile):
    assert sanitize([], profile=profile) is None
    assert sanitize([E(0, 0x1000, E820_RAM)], profile=profile) is None


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_wrapping_entry_is_refused(profile):
    ok = E(0, 0x1000, E820_RAM)
    assert sanitize([ok, E(0x5000, 0x4000, E820_RAM)], profile=profile) is None
    # addr + size == 2**64 wraps to 0 in u64, which is below addr: refused.
    assert sanitize([ok, E(0x10000, 1 << 64, E820_RESERVED)], profile=profile) is None
    # Ending exactly at 2**64 - 1 does not wrap.
    assert sanitize([ok, E(0x10000, ULLONG_MAX, E820_RESERVED)], profile=profile) == [
        ok,
        E(0x10000, ULLONG_MAX, E820_RESERVED),
    ]


def test_pram_never_merges_in_61_but_does_in_2625():
    entries = [E(0, 0x1000, E820_PRAM), E(0x1000, 0x2000, E820_PRAM)]
    assert sanitize(entries, profile="2.6.25") == [E(0, 0x2000, E820_PRAM)]
    assert sanitize(entries, profile="6.1") == entries


def test_table_size_caps_output():
    # 300 adjacent pages alternating RAM / reserved never merge: 300 output entries wanted.
    entries = [E(i * 0x1000, (i + 1) * 0x1000, 1 + i % 2) for i in range(300)]
    assert sanitize(entries, profile="2.6.25") == entries[:128]  # E820MAX
    assert sanitize(entries, profile="6.1") == entries  # 128 + 3 * 64 = 320 > 300


# The sample map drawn in the comment above sanitize_e820_map() (e820_32.c 2.6.25 and e820.c):
# one row per entry, one column per address unit, the digit is the type.
KERNEL_SAMPLE = """
____22__________________
______________________4_
____1111________________
_44_____________________
11111111________________
____________________33__
___________44___________
__________33333_________
______________22________
___________________2222_
_________111111111______
_____________________11_
_________________4______
"""
KERNEL_SANITIZED = """
1_______________________
_44_____________________
___1____________________
____22__________________
______11________________
_________1______________
__________3_____________
___________44___________
_____________33_________
_______________2________
________________1_______
_________________4______
___________________2____
____________________33__
______________________4_
"""


def rows_to_entries(drawing: str) -> list[E]:
    out = []
    for row in drawing.split():
        m = re.search(r"(\d)\1*", row)
        assert m
        out.append(E(m.start() * 0x1000, m.end() * 0x1000, int(m.group(1))))
    return out


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_the_kernel_comment_sample_map(profile):
    assert sanitize(rows_to_entries(KERNEL_SAMPLE), profile=profile) == rows_to_entries(
        KERNEL_SANITIZED
    )


# --------------------------------------------------------------------------------------------
# sanitize: property against a brute-force model

entry_st = st.builds(
    lambda s, n, t: E(s, s + n, t),
    st.integers(0, 40),
    st.integers(0, 12),
    st.sampled_from([1, 2, 3, 4, 5, 7, 12]),
)


def brute_force(entries: list[E], pram_split: bool) -> list[E]:
    """Type of each elementary interval = highest type covering it; then merge runs."""
    live = [e for e in entries if e.size]
    cuts = sorted({e.start for e in live} | {e.end for e in live})
    pieces = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        t = max((e.type for e in live if e.start <= lo and hi <= e.end), default=0)
        if t:
            pieces.append(E(lo, hi, t))
    merged: list[E] = []
    for p in pieces:
        prev = merged[-1] if merged else None
        if prev and prev.end == p.start and prev.type == p.type and not (
            pram_split and p.type == E820_PRAM
        ):
            merged[-1] = E(prev.start, p.end, p.type)
        else:
            merged.append(p)
    return merged


@settings(max_examples=300, deadline=None)
@given(st.lists(entry_st, min_size=2, max_size=12), st.sampled_from(["2.6.25", "6.1"]))
def test_sanitize_matches_brute_force(entries, profile):
    out = sanitize(entries, profile=profile)
    assert out is not None
    assert out == brute_force(entries, pram_split=profile == "6.1")
    for a, b in zip(out, out[1:], strict=False):
        assert a.end <= b.start  # sorted, non-overlapping
        if a.end == b.start and a.type == b.type:
            assert profile == "6.1" and a.type == E820_PRAM
    assert all(e.size > 0 for e in out)


# --------------------------------------------------------------------------------------------
# Printing


@pytest.mark.parametrize("case", sorted(CASES))
def test_bios_e820_lines_of_real_boots(case):
    assert format_table("BIOS-e820", bios_table(case), profile="6.1") == lines(case, "BIOS-e820:")


def test_2008_format_from_the_reference():
    # x86_32-early-memory.md §1.5 (print_memory_map() of 2.6.24/25): leading space, exclusive end.
    assert format_table(
        "BIOS-e820", [E(0, 0x9FC00, E820_RAM), E(0x9FC00, 0xA0000, E820_RESERVED)],
        profile="2.6.25",
    ) == [
        " BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)",
        " BIOS-e820: 000000000009fc00 - 00000000000a0000 (reserved)",
    ]
    assert format_entry("user", E(0x100000, 0x200000, E820_ACPI), profile="2.6.25") == (
        " user: 0000000000100000 - 0000000000200000 (ACPI data)"
    )


def test_type_texts_by_generation():
    # Reference §1.1: 2.6.24/25 know types 1-4 only; modern e820_print_type().
    assert [type_text(t, profile="2.6.25") for t in (4, 5, 7, 12)] == [
        "(ACPI NVS)", "type 5", "type 7", "type 12",
    ]
    assert [type_text(t, profile="6.1") for t in (1, 3, 4, 5, 7, 12, 128, 0xEFFFFFFF, 99)] == [
        "usable", "ACPI data", "ACPI NVS", "unusable", "persistent (type 7)",
        "persistent (type 12)", "usable", "soft reserved", "type 99",
    ]


# --------------------------------------------------------------------------------------------
# Range edits, checked against what the real kernels printed next


def early_edits(table: list[E]) -> list[E]:
    """What every real 6.1 boot did: page 0 usable ==> reserved, drop [0xa0000, 1M) RAM."""
    table = update_range(table, 0, 0x1000, E820_RAM, E820_RESERVED)
    table = remove_range(table, 0xA0000, 0x60000, E820_RAM)
    out = sanitize(table, profile="6.1")
    assert out is not None
    return out


def memblock_memory(case: str) -> list[tuple[int, int]]:
    """The `MEMBLOCK configuration: memory[...]` ranges of a boot, as pfn ranges."""
    out = []
    for ln in lines(case, " memory[0x"):
        if "on node" in ln:  # x86_64 prints the table twice; the node copy is the same
            continue
        lo, hi = re.search(r"\[(0x[0-9a-f]+)-(0x[0-9a-f]+)\]", ln).groups()
        out.append((int(lo, 16) >> 12, (int(hi, 16) + 1) >> 12))
    return out


def test_update_and_remove_messages_match_real_lines():
    assert format_update(0, 0x1000, E820_RAM, E820_RESERVED) == (
        "e820: update [mem 0x00000000-0x00000fff] usable ==> reserved"
    )
    assert format_remove(0xA0000, 0x60000, E820_RAM) == (
        "e820: remove [mem 0x000a0000-0x000fffff] usable"
    )
    # parse_memopt(): e820__range_remove(mem_size, ULLONG_MAX - mem_size, RAM, 1)
    assert format_remove(0x20000000, ULLONG_MAX - 0x20000000, E820_RAM) == lines(
        "pae_1G_mem512M", "e820: remove [mem 0x2"
    )[0]


def test_pae_1g_edits_give_the_memblock_memory_ranges():
    table = early_edits(bios_table("pae_1G"))
    # memory[0x0] [0x1000-0x9efff], memory[0x1] [0x100000-0x3ffdffff] (page-rounded)
    assert ram_pfn_ranges(table) == [(0x1, 0x9F), (0x100, 0x3FFE0)]
    assert ram_pfn_ranges(table) == memblock_memory("pae_1G")


def user_table(case: str) -> list[E]:
    """The table after the case's mem= / memmap= option (6.1 rules), sanitized."""
    table = bios_table(case)
    if case == "pae_1G_mem512M":
        table = sanitize(mem_limit(table, 512 * M), profile="6.1")
    elif case == "amd64_4G_mem2G":
        table = sanitize(mem_limit(table, 2 * G), profile="6.1")
    elif case == "pae_1G_memmap64M_reserved":  # memmap=64M$0x10000000
        table = sanitize([*table, E(0x10000000, 0x14000000, E820_RESERVED)], profile="6.1")
    assert table is not None
    return table


@pytest.mark.parametrize("case", ["pae_1G_mem512M", "amd64_4G_mem2G", "pae_1G_memmap64M_reserved"])
def test_user_defined_maps_of_real_boots(case):
    assert format_table("user", user_table(case), profile="6.1") == lines(case, "user:")


@pytest.mark.parametrize("case", sorted(CASES))
def test_memblock_memory_last_pfn_and_pci_gap_of_real_boots(case):
    table = early_edits(user_table(case))
    max_arch_pfn = CASES[case]["max_arch_pfn"]
    # last_pfn = e820__end_of_ram_pfn()
    assert end_of_ram_pfn(table, max_arch_pfn) == CASES[case]["last_pfn"][0]
    assert lines(case, "last_pfn = ")[0] == (
        f"last_pfn = {end_of_ram_pfn(table, max_arch_pfn):#x} max_arch_pfn = {max_arch_pfn:#x}"
    )
    # e820__memblock_setup() adds only entries whose end fits phys_addr_t (32 bits non-PAE).
    limit = (1 << 20) if max_arch_pfn == 1 << 20 else None
    assert ram_pfn_ranges(table, limit_pfn=limit) == memblock_memory(case)
    gap = pci_gap(table)
    assert gap is not None
    start, size = gap
    assert lines(case, "[mem ")[0] == (
        f"[mem {start:#010x}-{start + size - 1:#010x}] available for PCI devices"
    )


def test_update_range_modern_split_and_trim():
    # Range strictly inside: head kept in place, middle then tail appended.
    assert update_range([E(0, 0x100000, E820_RAM)], 0x1000, 0x1000, E820_RAM, E820_RESERVED) == [
        E(0, 0x1000, E820_RAM),
        E(0x1000, 0x2000, E820_RESERVED),
        E(0x2000, 0x100000, E820_RAM),
    ]
    # Overlap at the entry's tail and at the next entry's head; a reserved entry untouched.
    table = [E(0, 0x3000, E820_RAM), E(0x3000, 0x4000, E820_ACPI), E(0x4000, 0x8000, E820_RAM)]
    assert update_range(table, 0x2000, 0x4000, E820_RAM, E820_UNUSABLE) == [
        E(0, 0x2000, E820_RAM),
        E(0x3000, 0x4000, E820_ACPI),
        E(0x6000, 0x8000, E820_RAM),
        E(0x2000, 0x3000, E820_UNUSABLE),
        E(0x4000, 0x6000, E820_UNUSABLE),
    ]
    # BUG_ON(old_type == new_type) is an emulated kernel BUG, not a Python error.
    with pytest.raises(KernelBug, match=r"BUG_ON\(old_type == new_type\)"):
        update_range(table, 0, 0x1000, E820_RAM, E820_RAM)


def test_remove_range_zeroes_splits_trims_and_any_type():
    table = [E(0, 0x1000, E820_RAM), E(0x1000, 0x2000, E820_RESERVED), E(0x2000, 0x9000, E820_RAM)]
    assert remove_range(table, 0, 0x1000, E820_RAM) == [E(0, 0, 0), table[1], table[2]]
    assert remove_range(table, 0x4000, 0x1000, E820_RAM) == [
        table[0], table[1], E(0x2000, 0x4000, E820_RAM), E(0x5000, 0x9000, E820_RAM)
    ]
    assert remove_range(table, 0x8000, 0x2000, E820_RAM) == [
        table[0], table[1], E(0x2000, 0x8000, E820_RAM)
    ]
    assert remove_range(table, 0x800, 0x1000, E820_RESERVED) == [
        table[0], E(0x1800, 0x2000, E820_RESERVED), table[2]
    ]
    # old_type None: every type goes.
    assert remove_range(table, 0x800, 0x2000, None) == [
        E(0, 0x800, E820_RAM), E(0, 0, 0), E(0x2800, 0x9000, E820_RAM)
    ]


def test_update_range_2625_appends_and_keeps_the_size_quirk():
    table = [E(0, 0x9FC00, E820_RAM), E(0x200000, 0x201000, E820_RAM)]
    out = update_range_2625(table, 0, 0x10000, E820_RAM, E820_RESERVED)
    # The first entry is only partly covered: the intersection is appended, the entry stays.
    # The second lies wholly *outside* [0, 64K) but starts above 0 and is not bigger than
    # 64K: "totally covered" by the size test, so it is retyped (2.6.25 quirk).
    assert out == [
        E(0, 0x9FC00, E820_RAM),
        E(0x200000, 0x201000, E820_RESERVED),
        E(0, 0x10000, E820_RESERVED),
    ]
    # update_e820() sanitizes next: reserved wins over the overlapped RAM.
    assert sanitize(out, profile="2.6.25") == [
        E(0, 0x10000, E820_RESERVED),
        E(0x10000, 0x9FC00, E820_RAM),
        E(0x200000, 0x201000, E820_RESERVED),
    ]


# --------------------------------------------------------------------------------------------
# mem=


def test_limit_regions_2625_examples():
    t = SEABIOS_1G
    # mem=512M: the first RAM entry reaching 512M is [1M, 1G-128K): shortened to end at 512M,
    # and every later entry (the reserved ones too) is dropped (reference §2).
    assert limit_regions_2625(t, 512 * M) == [*t[:3], E(0x100000, 512 * M, E820_RAM)]
    # mem=1M: [0, 639K) ends below 1M; [1M, ...) starts at 1M >= size: cut before it.
    assert limit_regions_2625(t, 1 * M) == t[:3]
    # mem=512K: the first entry is shortened; everything after it goes.
    assert limit_regions_2625(t, 0x80000) == [E(0, 0x80000, E820_RAM)]
    # An entry ending exactly at size counts as reaching it: nothing after it survives.
    assert limit_regions_2625(t, 0x9FC00) == [t[0]]
    # mem=2G: no RAM entry reaches 2G: unchanged.
    assert limit_regions_2625(t, 2 * G) == t


def test_mem_limit_modern_keeps_non_ram():
    out = sanitize(mem_limit(SEABIOS_1G, 512 * M), profile="6.1")
    assert out == [*SEABIOS_1G[:3], E(0x100000, 512 * M, E820_RAM), *SEABIOS_1G[4:]]


# --------------------------------------------------------------------------------------------
# Page frames


def test_ram_pfn_ranges_rounds_inwards_and_clips():
    t = [E(0x800, 0x9FC00, E820_RAM), E(0x100000, 0x3FFE0000, E820_RAM), E(0, 0x800, 2)]
    assert ram_pfn_ranges(t) == [(1, 0x9F), (0x100, 0x3FFE0)]
    assert ram_pfn_ranges(t, limit_pfn=0x38000) == [(1, 0x9F), (0x100, 0x38000)]
    assert ram_pfn_ranges(t, limit_pfn=0x50) == [(1, 0x50)]
    # Adjacent RAM entries merge into one range.
    assert ram_pfn_ranges([E(0, 0x1000, 1), E(0x1000, 0x3000, 1)]) == [(0, 3)]


def test_find_max_pfn_2625_worked_examples():
    # Reference §7.2, Era B (SeaBIOS): 1G → 262112; 4G → 1310720 (RAM up to 0x140000000).
    assert find_max_pfn_2625(SEABIOS_1G) == 262112
    assert find_max_pfn_2625(bios_table("pae_4G")) == 1310720
    # An entry without one whole page does not count, even if it ends highest.
    assert find_max_pfn_2625([*SEABIOS_1G, E(0x50000800, 0x50001000, E820_RAM)]) == 262112


def test_end_of_ram_pfn_clamps_and_skips():
    # Non-PAE (max_arch_pfn 1 << 20): RAM at 4G is skipped (the real nopae_4G boot said 0xbffe0).
    assert end_of_ram_pfn(bios_table("nopae_4G"), 1 << 20) == 0xBFFE0
    # An entry crossing the limit makes it the limit.
    assert end_of_ram_pfn([E(0xF0000000, 0x110000000, E820_RAM)], 1 << 20) == 1 << 20
    # e820__end_of_low_ram_pfn(): limit 4G.
    assert end_of_ram_pfn(bios_table("pae_4G"), 1 << 24, limit_pfn=1 << 20) == 0xBFFE0
    # The start is not rounded: (addr + size) >> 12.
    assert end_of_ram_pfn([E(0x1800, 0x2800, E820_RAM)], 1 << 24) == 2


def test_find_area():
    t = [E(0, 0x9F000, E820_RAM), E(0x9F000, 0x100000, 2), E(0x100000, 0x1000000, E820_RAM)]
    # Lowest aligned address in RAM at or above start.
    assert find_area(t, 0x1000, 0x1000000, 0x2000, 0x1000, []) == 0x1000
    # Busy [0x1000, 0x5800): jump past it, rounded up to the alignment.
    assert find_area(t, 0x1000, 0x1000000, 0x2000, 0x1000, [(0x1000, 0x5800)]) == 0x6000
    # Does not fit below the reserved hole: next RAM entry, aligned to 2M.
    assert find_area(t, 0, 0x1000000, 0x100000, 0x200000, []) == 0x200000
    # A busy range that fills the rest of the first entry pushes into the second one.
    assert find_area(t, 0x1000, 0x1000000, 0x1000, 0x1000, [(0x1000, 0x9F000)]) == 0x100000
    # Nothing fits below `end`.
    assert find_area(t, 0x1000, 0x2000, 0x2000, 0x1000, []) is None


def test_pci_gap_2624_reference_example():
    # Reference §7.2 "PCI gap for 512M A" (Bochs BIOS map): the largest gap below 4G is
    # [0x20000000, 0xfffbd000); gapsize >> 4 = 0xdffbd00 stops the doubling at 256M, so
    # pci_mem_start = (0x20000000 + 0x10000000) & -0x10000000 = 0x30000000.
    bochs_512m = [
        E(0, 0x9FC00, E820_RAM),
        E(0x9FC00, 0xA0000, E820_RESERVED),
        E(0xE8000, 0x100000, E820_RESERVED),
        E(0x100000, 0x1FFF0000, E820_RAM),
        E(0x1FFF0000, 0x20000000, E820_ACPI),
        E(0xFFFBD000, 0x100000000, E820_RESERVED),
    ]
    assert pci_gap_2624(bochs_512m) == (0x30000000, 0x20000000, 0xDFFBD000)
