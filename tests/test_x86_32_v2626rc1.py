"""The x86_32 ``2.6.26-rc1`` profile (arches/x86_32/v2_6_26rc1.py): what v2.6.26-rc1 and the
bootmem2 RFC's x86_32 patch changed from 2.6.25.

Expected values: the v2.6.26-rc1 sources (setup_32.c reserve_ebda_region(), head_32.S,
acpi/sleep.c, setup.c setup_per_cpu_areas(); arithmetic written out), the RFC mail 3/3, and
the real boots of real-boots-2008 (the bitmap pfn each kernel's trace prints, with the ``pg0``
of its System.map; head_32.S is the same code in 2.6.25 and v2.6.26-rc1).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bootemu_arches.x86_32 import PROFILES
from bootemu_arches.x86_32.v2_6_26rc1 import Linux2626rc1
from x86_32_harness import M, boot, era_b, machine

from bootemu.importers.kbuild import read_system_map
from bootemu.importers.trace import read_trace

P = 4096
R2008 = Path(__file__).parent / "data" / "real-boots-2008"


def rfc(ram=256 * M, **config):
    return machine(era_b(ram), profile="2.6.26-rc1", **config)


def reserves(booted):
    return [(a["addr"], a["size"]) for a in booted.report["allocations"] if a["op"] == "reserve"]


def test_registered_under_its_name():
    assert PROFILES["2.6.26-rc1"] is Linux2626rc1


@pytest.mark.parametrize(
    ("lowmem_kb", "ebda", "start"),
    [
        # SeaBIOS: 639 KiB = 0x9fc00, EBDA 0x9fc00; 0x9fc00 - 0x9fc00 <= 0x10000 -> EBDA.
        (639, 0x9FC00, 0x9FC00),
        # An EBDA 64 KiB or more below lowmem is not taken: lowmem stays 0x9f000 (636K).
        (636, 0x80000, 0x9F000),
        # No EBDA and lowmem >= 0x9f000: 0x9f000 (old Dells).
        (640, 0, 0x9F000),
        # lowmem 0: "Paranoia": 0x9f000. (0 - ebda wraps: unsigned, above 0x10000.)
        (0, 0x9FC00, 0x9F000),
    ],
)
def test_ebda_reserved_up_to_1m(lowmem_kb, ebda, start):
    b = boot(rfc(bios_lowmem_kb=lowmem_kb, ebda=ebda))
    # setup_bootmem_allocator(): kernel, page 0, then reserve_ebda_region(): [lowmem, 1 MiB).
    assert reserves(b)[2] == (start, 0x100000 - start)


def test_bitmap_reservation_in_whole_pages():
    b = boot(rfc())
    # 256 MiB SeaBIOS map: max_low_pfn 0xffe0 (RAM to 0x0ffe0000); the map is 65504 bits =
    # 8188 bytes (ALIGN 4); patch 3/3: bootmap_size = bootmem_map_pages() << 12 = 8192.
    assert b.facts["bootmap_size"] == 2 * P
    start = b.facts["bootmap_start_pfn"]
    text = 0x100000
    assert reserves(b)[0] == (text, start * P + 2 * P + P - 1 - text)


@pytest.mark.parametrize(
    ("kernel", "case", "pae"),
    [
        ("trace-pae", "tpae_1G", True),
        ("trace-4g", "tg4_1G", False),
        ("trace-nohigh", "tnohigh_1G", False),
        ("rfc-trace-pae", "trfc_1G", True),
    ],
)
def test_boot_page_tables_end_where_each_real_kernel_put_its_bitmap(kernel, case, pae):
    # The bitmap starts at min_low_pfn = PFN_UP(init_pg_tables_end): "init_bootmem
    # mapstart=..." (2.6.25) / "map @ pfn ..." (the RFC) of each real boot.
    smap = read_system_map(R2008 / "kernels" / kernel / "System.map").image()
    calls = read_trace((R2008 / "logs" / f"{case}.log").read_text())
    init = next((c.mapstart for c in calls if c.op == "init"), None)
    if init is None:  # the RFC: the kernel reservation ends one page past the 7-page map
        kernel_res = next(c for c in calls if c.op == "reserve")
        init = (kernel_res.addr + kernel_res.size + 1 - P) // P - 7
    highmem = "64G" if pae else "4G"
    b = boot(rfc(ram=1 << 30, highmem=highmem, image_end=smap["_end"] - 0xC0000000))
    assert b.facts["bootmap_start_pfn"] == init


def test_acpi_wakeup_takes_wakeup_size():
    b = boot(rfc(acpi_sleep=True))
    acpi = [a for a in b.report["allocations"] if a["caller"] == "acpi_reserve_bootmem"]
    # arch/x86/kernel/acpi/realmode/wakeup.h: WAKEUP_SIZE 0x4000, alloc_bootmem_low().
    assert [(a["size"], a["wrapper"]) for a in acpi] == [(0x4000, "__alloc_bootmem_low")]


def test_smp_per_cpu_areas_one_per_cpu_with_a_percpu_line():
    # Three processors in the MP table of an NR_CPUS=4 kernel: cpu_possible_map has three.
    b = boot(rfc(smp=True, nr_cpus=4, mp_table=0xF5BA0, mp_cpus=3, percpu_size=0x6000))
    areas = [a for a in b.report["allocations"] if a["caller"] == "setup_per_cpu_areas"]
    # setup.c setup_per_cpu_areas(): alloc_bootmem_pages(PERCPU_ENOUGH_ROOM) for each
    # possible CPU (for_each_possible_cpu), not for each of NR_CPUS.
    assert [(a["size"], a["align"]) for a in areas] == [(0x6000, P)] * 3
    assert "PERCPU: Allocating 24576 bytes of per cpu data" in b.lines
    up = boot(rfc())
    assert not [x for x in up.lines if x.startswith("PERCPU:")]
