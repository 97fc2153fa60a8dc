"""x86_32 2.6.25: the build-artifact reader of import-dmesg and the early-allocation sizes.

Expectations come from the 2.6.25 sources (arithmetic shown next to each), the kernels'
``.config`` / ``System.map`` and the traced boots of ``tests/data/real-boots-2008/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bootemu_arches.x86_32.kbuild import fixmap_slots, spinlock_size
from bootemu_arches.x86_32.v2_6_25_early import (
    boot_tables_end,
    dmi_string_len,
    init_map_beyond_end,
)
from hypothesis import given
from hypothesis import strategies as st
from x86_32_harness import G, M, boot, era_b, machine

from bootemu.cli import main
from bootemu.importers import import_dmesg
from bootemu.importers.kbuild import Kconfig, read_kconfig, read_system_map

DATA = Path(__file__).parent / "data" / "real-boots-2008"
KERNEL_OF = {
    "tpae_1G": "trace-pae",
    "tpae_smp_1G": "trace-pae-smp",
    "tg4_4G": "trace-4g",
    "tnohigh_4G": "trace-nohigh",
}


def log(case: str) -> str:
    return (DATA / "logs" / f"{case}.log").read_text(errors="replace")


def kconfig(**options: str) -> Kconfig:
    return Kconfig(path="k.config", options=dict(options), lines={k: 1 for k in options})


# --------------------------------------------------------------------------------------------
# Command line: the two artifacts, and bad ones


def test_cli_reads_kconfig_and_system_map(tmp_path: Path, capsys) -> None:
    from bootemu.machine import load_machine

    out = tmp_path / "m.toml"
    kernel = DATA / "kernels" / "trace-pae-smp"
    assert (
        main(
            [
                "import-dmesg",
                str(DATA / "logs" / "tpae_smp_1G.log"),
                "--kconfig",
                str(kernel / "config"),
                "--system-map",
                str(kernel / "System.map"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "CONFIG_HIGHMEM64G=y at " in err and "System.map: _end c026e674" in err
    m = load_machine(str(out))
    cfg = dict(m.kernel.config)
    # System.map: _end c026e674 - PAGE_OFFSET; per-cpu 0xc0256050 - 0xc0250000 (no MODULES).
    assert cfg["image_end"] == 0x26E674 and cfg["percpu_size"] == 0x6050
    # .config: SMP, NR_CPUS 8, X86_L1_CACHE_SHIFT 5, no HUGETLB_PAGE: MAX_ORDER - 1 = 10.
    assert (cfg["smp"], cfg["nr_cpus"], cfg["l1_cache_shift"], cfg["pageblock_order"]) == (
        True,
        8,
        5,
        10,
    )
    # fixmap_32.h: 4 + FIX_APIC_BASE + MAX_IO_APICS 64 + KM_TYPE_NR 13 * NR_CPUS 8 = 173.
    assert cfg["fixmap_slots"] == 173 and cfg["spinlock_size"] == 4


@pytest.mark.parametrize(
    "flag, text, message",
    [
        ("--kconfig", "CONFIG_SMP=y\nthis is not kconfig\n", r"k\.txt:2: not a Kconfig line"),
        ("--kconfig", "CONFIG_NR_CPUS=eight\nCONFIG_SMP=y\n", r"k\.txt:1: CONFIG_NR_CPUS=eight"),
        ("--system-map", "c0100000 T _text\nnonsense\n", r"k\.txt:2: not a System\.map line"),
        ("--system-map", "c0100000 T _text\n", r"k\.txt: no symbol _etext"),
    ],
)
def test_bad_artifact_is_exit_2_naming_file_and_line(
    tmp_path: Path, capsys, flag, text, message
) -> None:
    bad = tmp_path / "k.txt"
    bad.write_text(text)
    assert main(["import-dmesg", str(DATA / "logs" / "tpae_smp_1G.log"), flag, str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(message, err[0])


# --------------------------------------------------------------------------------------------
# The log alone


@pytest.mark.parametrize(
    "case, highmem, smp",
    [
        ("tpae_1G", "64G", False),  # pkmap 2048 kB: LAST_PKMAP 512 -> PAE
        ("tpae_smp_1G", "64G", True),  # "#1 SMP" in the version line
        ("tg4_4G", "4G", False),  # pkmap 4096 kB (and "Warning only 4GB will be used.")
        ("tnohigh_4G", "off", False),  # no pkmap area, no HIGHMEM line
    ],
)
def test_log_alone_says_highmem_model_and_smp(case, highmem, smp) -> None:
    m, notes = import_dmesg(log(case), source=case, arch=None, profile=None, overrides=())
    real = read_kconfig(DATA / "kernels" / KERNEL_OF[case] / "config")
    assert m.kernel.highmem == highmem
    assert real.enabled({"64G": "HIGHMEM64G", "4G": "HIGHMEM4G", "off": "NOHIGHMEM"}[highmem])
    cfg = dict(m.kernel.config)
    assert cfg["smp"] is smp is real.enabled("SMP")
    assert cfg["l1_cache_shift"] == real.value_int("X86_L1_CACHE_SHIFT")  # HWalign=32
    assert cfg["find_smp_config"] is real.enabled("X86_FIND_SMP_CONFIG")
    # The whole command line, trailing blank included: 68 bytes, the trace's 0x45 - 1.
    assert (
        m.kernel.cmdline == "console=ttyS0 earlyprintk=serial loglevel=8 ignore_loglevel panic=1 "
    )
    assert all("highmem model not in the log" not in n for n in notes)


def test_log_alone_image_from_the_virtual_layout() -> None:
    m, _ = import_dmesg(log("tpae_1G"), source="t", arch=None, profile=None, overrides=())
    sm = read_system_map(DATA / "kernels" / "trace-pae" / "System.map").image()
    cfg = dict(m.kernel.config)
    # ".text : 0xc0100000 - 0xc01c9ae0", ".data : 0xc01c9ae0 - 0xc0212388", ".init : ..."
    assert cfg["text_size"] == sm["_etext"] - sm["_text"]
    assert cfg["data_size"] == sm["_edata"] - sm["_etext"]
    assert cfg["init_size"] == sm["__init_end"] - sm["__init_begin"]
    # init_bootmem mapstart=248: the tables built from pg0 = PAGE_ALIGN(_end) end there.
    assert cfg["image_end"] == sm["pg0"] - 0xC0000000


def test_rfc_log_names_its_backend_and_base_profile() -> None:
    m, notes = import_dmesg(log("trfc_1G"), source="t", arch=None, profile=None, overrides=())
    assert any("bootmem2-rfc1" in n and "map @ pfn 266" in n for n in notes)
    # "map @ pfn 266" is PFN_UP(init_pg_tables_end): pg0 0x260000 + 6 PAE tables.
    assert dict(m.kernel.config)["image_end"] == 0x260000


# --------------------------------------------------------------------------------------------
# Kconfig arithmetic


@pytest.mark.parametrize(
    "options, size",
    [
        ({}, 0),  # UP: raw_spinlock_t is an empty struct
        ({"SMP": "y"}, 4),
        ({"SMP": "y", "GENERIC_LOCKBREAK": "y"}, 8),  # + break_lock
        ({"DEBUG_SPINLOCK": "y"}, 16),  # UP debug: slock + magic, owner_cpu, owner
        (
            {"SMP": "y", "DEBUG_SPINLOCK": "y", "DEBUG_LOCK_ALLOC": "y"},
            28,
        ),  # + lockdep_map (3 ptrs)
        ({"SMP": "y", "DEBUG_LOCK_ALLOC": "y", "LOCK_STAT": "y"}, 20),  # lockdep_map + cpu
    ],
)
def test_spinlock_size(options, size) -> None:
    assert spinlock_size(kconfig(**options)) == size


def test_fixmap_slots() -> None:
    # FIX_HOLE, FIX_VDSO, FIX_DBGP_BASE, FIX_EARLYCON_MEM_BASE + HIGHMEM KM_TYPE_NR * NR_CPUS.
    assert fixmap_slots(kconfig(HIGHMEM="y"), 1) == 4 + 13
    assert fixmap_slots(kconfig(HIGHMEM="y", DEBUG_HIGHMEM="y", ACPI="y"), 2) == 4 + 26 * 2 + 4


@pytest.mark.parametrize(
    "options, order",
    [
        ({"HUGETLB_PAGE": "y", "X86_PAE": "y"}, 9),  # 2 MiB pages: HPAGE_SHIFT 21 - 12
        ({"HUGETLB_PAGE": "y"}, 10),  # 4 MiB pages
        ({"X86_PAE": "y"}, 10),  # no huge pages: MAX_ORDER - 1
    ],
)
def test_pageblock_order(options, order) -> None:
    from bootemu_arches.x86_32.kbuild import from_kconfig

    from bootemu.importers.artifacts import KernelKeys

    out = KernelKeys()
    from_kconfig(kconfig(**options), out)
    assert out.get("pageblock_order") == order


# --------------------------------------------------------------------------------------------
# Early allocation sizes


def test_init_map_beyond_end() -> None:
    # PAE: 2^20 / 8 + (2^20 / 512 + 4 + 4) * 4096; non-PAE: 2^20 / 8 + (2^20 / 1024 + 4) * 4096.
    assert init_map_beyond_end(True) == 0x20000 + 2056 * 4096
    assert init_map_beyond_end(False) == 0x20000 + 1028 * 4096


@pytest.mark.parametrize(
    "pg0, pae, end",
    [
        (0x242000, True, 0x248000),  # trace-pae: init_bootmem mapstart=248
        (0x26F000, True, 0x275000),  # trace-pae-smp: mapstart=275
        (0x240000, False, 0x242000),  # trace-4g: mapstart=242
        (0x239000, False, 0x23B000),  # trace-nohigh: mapstart=23b
    ],
)
def test_boot_tables_end_of_the_real_kernels(pg0, pae, end) -> None:
    assert boot_tables_end(pg0, pae) == end


@given(pages=st.integers(min_value=0x100, max_value=0x8000), pae=st.booleans())
def test_boot_tables_end_is_the_first_that_covers_itself(pages, pae) -> None:
    pg0 = pages * 4096
    end = boot_tables_end(pg0, pae)
    step = (512 if pae else 1024) * 4096
    n = (end - pg0) // 4096
    assert end % 4096 == 0 and n >= 1
    assert n * step >= end + init_map_beyond_end(pae)
    assert (n - 1) * step < end - 4096 + init_map_beyond_end(pae)


@pytest.mark.parametrize(
    "text, size",
    [
        ("SeaBIOS", 8),
        ("", 1),
        ("Standard PC (i440FX + PIIX, 1996)", 34),
        ("        padded", None),  # dmi_empty_string: not copied
        ("  short", 8),
    ],
)
def test_dmi_string_len(text, size) -> None:
    assert dmi_string_len(text) == size


def test_dmi_keys() -> None:
    b = boot(machine(era_b(512 * M), smp=False, acpi_sleep=False))
    dmi = [a for a in b.report["allocations"] if a["caller"] in ("dmi_string", "dmi_decode")]
    # The SeaBIOS/QEMU pc strings: the sizes every real-boots-2008 trace shows.
    assert [a["size"] for a in dmi] == [8, 0x17, 0xB, 5, 0x22, 0xE, 1, 5, 4, 0xE, 1, 1]
    assert b.kind("dmi.present") == ["DMI 2.8 present."]
    none = boot(machine(era_b(512 * M), dmi_version=False))
    assert none.kind("dmi.present") == [] and not [
        a for a in none.report["allocations"] if a["caller"] == "dmi_string"
    ]
    absent = boot(machine(era_b(512 * M), dmi_version=""))
    assert absent.kind("dmi.absent") == ["DMI not present or invalid."]
    board = boot(
        machine(era_b(512 * M), dmi_board_vendor="ACME", dmi_board_name="", dmi_product_uuid=True)
    )
    sizes = [a["size"] for a in board.report["allocations"] if a["caller"].startswith("dmi_")]
    # type 1 gains the 37-byte UUID; type 2 appears with "ACME" (5) and "" (1), the board
    # fields left false are not saved.
    assert sizes == [8, 0x17, 0xB, 5, 0x22, 0xE, 1, 37, 5, 1, 5, 4, 0xE, 1, 1]


@pytest.mark.parametrize("smp, vc", [(False, 0x150), (True, 0x154)])
def test_con_init_and_wait_tables(smp, vc) -> None:
    # vc_data: 328 + wait_queue_head_t (8 UP, 12 SMP): the trace's con_init sizes.
    b = boot(machine(era_b(1 * G), smp=smp))
    con = [a["size"] for a in b.report["allocations"] if a["caller"] == "con_init"]
    assert con == [vc, 80 * 25 * 2]
    wait = [a["size"] for a in b.report["allocations"] if a["caller"] == "zone_wait_table_init"]
    # DMA 4096 pages -> 16 queues; Normal 225280 -> 1024; HighMem 32736 -> 128.
    assert wait == [n * (12 if smp else 8) for n in (16, 1024, 128)]


def test_no_console_no_con_init() -> None:
    b = boot(machine(era_b(1 * G), console_cols=0))
    assert not [a for a in b.report["allocations"] if a["caller"] == "con_init"]


def test_fixmap_past_512_slots_needs_two_pages() -> None:
    # NR_CPUS 64 with HIGHMEM: 4 + 13 * 64 = 836 slots; FIX_BTMAP_END = 1024, BEGIN = 1279,
    # __end_of_fixed_addresses = 1281: the range starts at (0xfffff000 - 1280 * 4096) & 2 MiB
    # mask = 0xffa00000: PMDs 0xffa00000 (the early_ioremap one), 0xffc00000 (empty) and
    # 0xffe00000 (swapper_pg_fixmap, present): two pages, then the pkmap PMD below.
    b = boot(machine(era_b(1 * G), fixmap_slots=836))
    tables = [a["label"] for a in b.report["allocations"] if a["caller"] == "one_page_table_init"]
    # PKMAP_BASE = (0xffaff000 - 513 * 4096) & 2 MiB mask = 0xff800000.
    assert tables == [
        "pte for fixmap at 0xffa00000",
        "pte for fixmap at 0xffc00000",
        "pte for pkmap at 0xff800000",
    ]
