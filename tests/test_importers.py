"""bootemu import-dmesg / import-memmap: reading real boot logs and sysfs firmware maps.

Expected values come from the real boots (``tests/data/real-boots/summary.json`` and the logs'
own lines), from the kernel's print formats (reference x86_32-early-memory.md §1.1, §1.5), or
from arithmetic written next to them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootemu import e820
from bootemu.cli import main
from bootemu.importers import (
    ARCH_32,
    ARCH_64,
    MEMMAP_TYPES,
    find_kernel_image,
    import_dmesg,
    import_memmap,
    infer_arch,
    infer_highmem,
    infer_profile,
    memory_cmdline,
    parse_e820_line,
    read_boot_log,
    read_memmap,
    strip_dmesg_prefix,
)
from bootemu.models import BootemuError, E820Entry, NumaMemory

DATA = Path(__file__).parent / "data"
REAL = DATA / "real-boots"
SUMMARY = json.loads((REAL / "summary.json").read_text())
CASES = sorted(SUMMARY["cases"])
BASE_APPEND = SUMMARY["base_append"]
TYPE_BY_SUMMARY_NAME = {"usable": 1, "reserved": 2}  # the only types QEMU's SeaBIOS reports


def real_log(case: str) -> str:
    return (REAL / f"{case}.log").read_text(errors="replace")


def summary_e820(case: str, key: str = "e820_bios") -> list[E820Entry]:
    """summary.json tables have inclusive ends, as the kernel prints them: end + 1 here."""
    rows = SUMMARY["cases"][case][key]
    return [E820Entry(s, last + 1, TYPE_BY_SUMMARY_NAME[t]) for s, last, t in rows]


def case_args(case: str) -> str:
    """The case's own kernel arguments: the QEMU ``-append`` string minus the common part."""
    append = re.search(r"-append '([^']*)'", SUMMARY["cases"][case]["command"]).group(1)
    assert append.startswith(BASE_APPEND)
    return append[len(BASE_APPEND) :].strip()


# --------------------------------------------------------------------------------------------
# Cleaning captured lines


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("[    0.000000] BIOS-provided physical RAM map:", "BIOS-provided physical RAM map:"),
        ("[    0.034462]   DMA      [mem 0x1000-0xffffff]", "  DMA      [mem 0x1000-0xffffff]"),
        ("[12345.678901] x\r", "x"),
        ("<6>[    0.000000] Linux version 6.1.0", "Linux version 6.1.0"),
        ("\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)", "SeaBIOS (version 1.16.2)"),
        (" BIOS-e820: 0000000000000000 - 000000000009f000 (usable)",
         " BIOS-e820: 0000000000000000 - 000000000009f000 (usable)"),
    ],
)
def test_strip_dmesg_prefix(raw: str, clean: str) -> None:
    assert strip_dmesg_prefix(raw) == clean


# --------------------------------------------------------------------------------------------
# e820 lines

#: A 2.6.2x i386 boot as printed by print_memory_map() (reference §1.5: leading space,
#: ``%016Lx - %016Lx``, exclusive end). The first two lines are the reference's example; the
#: rest follow the same format for a 1 GiB QEMU/Bochs machine of 2008 with ACPI tables.
OLD_DMESG = """\
Linux version 2.6.25-2-686 (Debian 2.6.25-7) (waldi@debian.org) (gcc version 4.1.3) #1 SMP
BIOS-provided physical RAM map:
 BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)
 BIOS-e820: 000000000009fc00 - 00000000000a0000 (reserved)
 BIOS-e820: 00000000000e8000 - 0000000000100000 (reserved)
 BIOS-e820: 0000000000100000 - 000000003fff0000 (usable)
 BIOS-e820: 000000003fff0000 - 000000003fff3000 (ACPI NVS)
 BIOS-e820: 000000003fff3000 - 0000000040000000 (ACPI data)
 BIOS-e820: 00000000fffbc000 - 0000000100000000 type 5
0MB HIGHMEM available.
1023MB LOWMEM available.
Kernel command line: root=/dev/hda1 ro mem=512M quiet
"""

OLD_TABLE = [
    E820Entry(0x0, 0x9FC00, 1),
    E820Entry(0x9FC00, 0xA0000, 2),
    E820Entry(0xE8000, 0x100000, 2),
    E820Entry(0x100000, 0x3FFF0000, 1),
    E820Entry(0x3FFF0000, 0x3FFF3000, 4),
    E820Entry(0x3FFF3000, 0x40000000, 3),
    E820Entry(0xFFFBC000, 0x100000000, 5),
]


def with_timestamps(text: str) -> str:
    return "".join(
        f"[{i * 0.000123:12.6f}] {line}\n" for i, line in enumerate(text.splitlines())
    )


@pytest.mark.parametrize("stamped", [False, True], ids=["plain", "timestamps"])
def test_2008_format_table(stamped: bool) -> None:
    text = with_timestamps(OLD_DMESG) if stamped else OLD_DMESG
    assert read_boot_log(text, source="old.log").e820 == OLD_TABLE


@pytest.mark.parametrize("case", CASES)
def test_modern_format_table_of_every_real_boot(case: str) -> None:
    assert read_boot_log(real_log(case), source=case).e820 == summary_e820(case)


def test_only_the_bios_table_is_read_not_the_user_map() -> None:
    # pae_1G_mem512M prints the BIOS table, then "user:" lines with RAM cut at 512 MiB.
    log = read_boot_log(real_log("pae_1G_mem512M"), source="x")
    assert log.e820 == summary_e820("pae_1G_mem512M")
    assert max(e.end for e in log.e820 if e.type == 1) == 0x40000000 - 0x20000  # 1G - 128K


MODERN_TYPES = [
    ("usable", 1),
    ("reserved", 2),
    ("ACPI data", 3),
    ("ACPI NVS", 4),
    ("unusable", 5),
    ("persistent (type 7)", 7),
    ("persistent (type 12)", 12),
    ("soft reserved", 0xEFFFFFFF),
    ("type 20", 20),
]
OLD_TYPES = [
    ("(usable)", 1),
    ("(reserved)", 2),
    ("(ACPI data)", 3),
    ("(ACPI NVS)", 4),
    ("(unusable)", 5),  # 2.6.28-3.x
    ("type 5", 5),  # 2.6.25 has no name for 5
    ("type 12", 12),
]


@pytest.mark.parametrize(("text", "etype"), MODERN_TYPES)
def test_every_modern_type_text(text: str, etype: int) -> None:
    line = f"BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] {text}"
    assert parse_e820_line(line) == E820Entry(0x100000000, 0x140000000, etype)


@pytest.mark.parametrize(("text", "etype"), OLD_TYPES)
def test_every_2008_type_text(text: str, etype: int) -> None:
    line = f" BIOS-e820: 0000000100000000 - 0000000140000000 {text}"
    assert parse_e820_line(line) == E820Entry(0x100000000, 0x140000000, etype)


def test_serial_noise_around_the_line() -> None:
    line = "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable  \r"
    assert parse_e820_line(strip_dmesg_prefix(line)) == E820Entry(0, 0x9FC00, 1)


def test_unknown_type_text_names_the_line() -> None:
    text = "Linux version 6.1.0\nBIOS-e820: [mem 0x0-0xfff] weird\n"
    with pytest.raises(BootemuError, match=r"^m\.log:2: unknown e820 type 'weird'$"):
        read_boot_log(text, source="m.log")


@given(
    st.lists(
        st.tuples(
            st.integers(0, (1 << 52) - 1),
            st.integers(1, 1 << 40),
            st.sampled_from([1, 2, 3, 4, 5, 7, 12, 20, 0xEFFFFFFF]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(e820.PROFILES),
)
def test_parse_reads_back_what_the_kernel_formats_print(rows, profile) -> None:
    # bootemu.e820.format_entry() follows print_memory_map() / e820__print_table(); parsing
    # its lines must give the entries back, in both formats, for every type.
    entries = [E820Entry(s, s + size, t) for s, size, t in rows]
    text = "\n".join(e820.format_entry("BIOS-e820", e, profile=profile) for e in entries)
    assert read_boot_log(text, source="p").e820 == entries


# --------------------------------------------------------------------------------------------
# SRAT, command line, kernel image


def test_srat_lines_of_the_interleaved_numa_boot() -> None:
    # real-boots README: node 0 = [0,1G) + [2G,3G), node 1 = [1G,2G) + [4G,5G).
    g = 1 << 30
    log = read_boot_log(real_log("amd64_numa_interleave"), source="x")
    assert [e for e, _ in log.srat] == [
        NumaMemory(0, 0, g),
        NumaMemory(1, g, 2 * g),
        NumaMemory(0, 2 * g, 3 * g),
        NumaMemory(1, 4 * g, 5 * g),
    ]


@pytest.mark.parametrize("case", [c for c in CASES if SUMMARY["cases"][c]["srat"]])
def test_srat_matches_summary(case: str) -> None:
    log = read_boot_log(real_log(case), source=case)
    rows = SUMMARY["cases"][case]["srat"]  # node, pxm, start, inclusive end, flags
    expected = [NumaMemory(n, s, last + 1) for n, _pxm, s, last, _ in rows]
    assert [e for e, _ in log.srat] == expected


def test_srat_flags_and_2008_format() -> None:
    text = (
        "ACPI: SRAT: Node 1 PXM 3 [mem 0x100000000-0x1ffffffff] hotplug\n"
        "SRAT: Node 0 PXM 0 0-a0000\n"  # srat_64.c 2.6.2x: exclusive end, no 0x
    )
    log = read_boot_log(text, source="s")
    assert log.srat == [
        (NumaMemory(1, 0x100000000, 0x200000000), "hotplug"),
        (NumaMemory(0, 0, 0xA0000), ""),
    ]


def test_command_line_sources() -> None:
    # x86_64 prints "Command line:" (setup_arch) and "Kernel command line:" (start_kernel);
    # i386 prints only the latter.
    amd64 = read_boot_log(real_log("amd64_4G_mem2G"), source="x")
    assert amd64.cmdline_64 == f"{BASE_APPEND} mem=2G"
    pae = read_boot_log(real_log("pae_1G_mem512M"), source="x")
    assert pae.cmdline_64 is None
    assert pae.cmdline_all == f"{BASE_APPEND} mem=512M"


def test_memory_cmdline_keeps_memory_parameters_verbatim() -> None:
    kept, dropped = memory_cmdline(
        f"{BASE_APPEND} memmap=64M$0x10000000 vmalloc=256M highmem=512M numa=off mem=1G",
        profile="6.1",
    )
    assert kept == "memmap=64M$0x10000000 vmalloc=256M highmem=512M numa=off mem=1G"
    assert dropped == BASE_APPEND.split()


def test_kernel_image_from_memblock_debug() -> None:
    # pae_1G: reserve_brk() prints [0x1f0b000-0x1f23fff] from setup_arch; the MEMBLOCK dump's
    # reserved[0x2] = [0x1000000-0x1f23fff] is the image plus brk: the image is
    # [0x1000000, 0x1f0b000) (CONFIG_PHYSICAL_START = 16 MiB, nokaslr).
    image = find_kernel_image(read_boot_log(real_log("pae_1G"), source="x"))
    assert (image.start, image.end, image.brk_end) == (0x1000000, 0x1F0B000, 0x1F24000)
    assert dict(image.sections_k) == {
        "code": 9423, "rwdata": 1265, "rodata": 3188, "init": 928, "bss": 476
    }
    # amd64: reserve_brk() [0x4400000-0x4410fff], reserved[0x2] [0x1000000-0x4410fff].
    image = find_kernel_image(read_boot_log(real_log("amd64_4G"), source="x"))
    assert (image.start, image.end, image.brk_end) == (0x1000000, 0x4400000, 0x4411000)


def test_kernel_image_absent_from_a_plain_log() -> None:
    image = find_kernel_image(read_boot_log(OLD_DMESG, source="x"))
    assert (image.start, image.end, image.sections_k) == (None, None, ())


# --------------------------------------------------------------------------------------------
# arch, profile, highmem


EXPECTED_ARCH = {
    "686-pae": (ARCH_32, "64G"),  # max_arch_pfn = 0x1000000
    "686": (ARCH_32, "4G"),  # max_arch_pfn = 0x100000, HIGHMEM lines printed
    "amd64": (ARCH_64, None),  # max_arch_pfn = 0x400000000
}


@pytest.mark.parametrize("case", CASES)
def test_arch_profile_highmem_of_every_real_boot(case: str) -> None:
    log = read_boot_log(real_log(case), source=case)
    arch, highmem = EXPECTED_ARCH[SUMMARY["cases"][case]["kernel"]]
    assert infer_profile(log, None, source=case)[0] == "6.1"
    got_arch, note = infer_arch(log, None, source=case)
    assert got_arch == arch
    assert f"max_arch_pfn = {SUMMARY['cases'][case]['max_arch_pfn']:#x}" in note
    if arch == ARCH_32:
        assert infer_highmem(log)[0] == highmem


def test_2008_log_without_max_arch_pfn() -> None:
    log = read_boot_log(OLD_DMESG, source="old.log")
    assert infer_profile(log, None, source="old.log") == (
        "2.6.25", "profile 2.6.25 ('Linux version 2.6.25-2-686')"
    )
    arch, note = infer_arch(log, None, source="old.log")
    assert arch == ARCH_32 and "LOWMEM" in note
    # HIGHMEM and LOWMEM lines, a plain -686 release: highmem is on, PAE unknown.
    highmem, note = infer_highmem(log)
    assert highmem is None and "--set kernel.highmem" in note


@pytest.mark.parametrize(
    ("text", "highmem"),
    [
        ("Linux version 2.6.25-2-686-bigmem\n100MB LOWMEM available.\n", "off"),
        ("Linux version 2.6.25-2-686-bigmem\n0MB HIGHMEM available.\n", "64G"),
        ("Linux version 2.6.25.4-pae\n0MB HIGHMEM available.\n", "64G"),
        ("last_pfn = 0x1ffe0 max_arch_pfn = 0x100000\n0MB HIGHMEM available.\n", "4G"),
        ("last_pfn = 0x1ffe0 max_arch_pfn = 0x100000\n511MB LOWMEM available.\n", "off"),
    ],
)
def test_highmem_evidence(text: str, highmem: str) -> None:
    assert infer_highmem(read_boot_log(text, source="h"))[0] == highmem


def test_command_line_marks_x86_64_in_a_2008_log() -> None:
    log = read_boot_log("Linux version 2.6.25-1-generic\nCommand line: ro\n", source="c")
    assert infer_arch(log, None, source="c")[0] == ARCH_64


def test_options_win_and_the_notes_say_so() -> None:
    log = read_boot_log(real_log("pae_1G"), source="pae_1G.log")
    arch, note = infer_arch(log, ARCH_64, source="pae_1G.log")
    assert arch == ARCH_64
    assert note == (
        "arch numa64 (from --arch; the log suggests x86_32: max_arch_pfn = 0x1000000: "
        "i386 with PAE)"
    )
    profile, note = infer_profile(log, "2.6.25", source="pae_1G.log")
    assert profile == "2.6.25" and note.startswith("profile 2.6.25 (from --profile;")


def test_undecidable_log_needs_options() -> None:
    log = read_boot_log("Linux version 4.19.0-generic\n", source="u.log")
    with pytest.raises(BootemuError, match=r"^u\.log: cannot tell the profile .*--profile"):
        infer_profile(log, None, source="u.log")
    with pytest.raises(BootemuError, match=r"^u\.log: cannot tell i386 from x86_64 .*--arch"):
        infer_arch(log, None, source="u.log")
    assert infer_profile(log, "6.1", source="u.log")[0] == "6.1"
    with pytest.raises(BootemuError, match="unknown profile"):
        infer_profile(log, "5.4", source="u.log")


def test_only_the_first_boot_of_a_capture_is_read() -> None:
    text = real_log("pae_512M") + real_log("pae_4G")
    log = read_boot_log(text, source="two")
    assert log.boots == 2
    assert log.e820 == summary_e820("pae_512M")


# --------------------------------------------------------------------------------------------
# Not a boot log


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello\nworld\n", "no BIOS-e820 lines: not a boot log of an x86 kernel"),
        (
            "[    0.000000] Linux version 6.1.0-arm64 (gcc)\n[    0.000000] Machine model: x\n",
            "'Linux version 6.1.0-arm64' but no BIOS-e820 lines",
        ),
    ],
)
def test_not_a_boot_log(text: str, message: str) -> None:
    with pytest.raises(BootemuError, match=re.escape(message)):
        import_dmesg(text, source="n.log", arch=None, profile=None, overrides=())


def test_not_a_boot_log_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    log = tmp_path / "notes.txt"
    log.write_text("just some text\n")
    assert main(["import-dmesg", str(log)]) == 2
    err = capsys.readouterr().err
    assert err == f"bootemu: {log}: no BIOS-e820 lines: not a boot log of an x86 kernel\n"


# --------------------------------------------------------------------------------------------
# /sys/firmware/memmap


def memmap_section(case: str) -> list[tuple[str, str, str, str]]:
    """The ``/sys/firmware/memmap`` dump of a .zoneinfo.log: ``N start end type`` lines."""
    text = (REAL / f"{case}.zoneinfo.log").read_text(errors="replace")
    body = text.split("=== BEGIN /sys/firmware/memmap ===\n", 1)[1]
    body = body.split("=== END /sys/firmware/memmap ===", 1)[0]
    return [tuple(line.split(" ", 3)) for line in body.splitlines() if line.strip()]


def build_tree(root: Path, rows) -> Path:
    for n, start, end, etype in rows:
        d = root / n
        d.mkdir(parents=True)
        (d / "start").write_text(start + "\n")
        (d / "end").write_text(end + "\n")
        (d / "type").write_text(etype + "\n")
    return root


@pytest.mark.parametrize("case", CASES)
def test_memmap_of_every_real_boot_is_its_bios_table(case: str, tmp_path: Path) -> None:
    got = read_memmap(build_tree(tmp_path / "memmap", memmap_section(case)))
    # The kernel exposes the firmware table in sysfs unchanged (mem=, memmap= do not touch
    # it): the BIOS-e820 lines of the same boot, the non-PAE boot's entry above 4 GiB
    # included. (The .zoneinfo boot is a second boot; pae_4G's ran under
    # qemu-system-x86_64, which adds a reserved entry at 0xfd00000000 that the first boot
    # lacks, so compare with the second boot's own table.)
    zoneinfo_boot = (REAL / f"{case}.zoneinfo.log").read_text(errors="replace")
    assert got == read_boot_log(zoneinfo_boot, source=case).e820
    assert len(got) >= len(summary_e820(case))


def test_memmap_entries_sort_numerically(tmp_path: Path) -> None:
    # Twelve 1 MiB entries written out of order: 10 and 11 must come after 9.
    rows = [(str(i), f"{i << 20:#x}", f"{((i + 1) << 20) - 1:#x}", "System RAM") for i in range(12)]
    got = read_memmap(build_tree(tmp_path / "m", reversed(rows)))
    assert [e.start >> 20 for e in got] == list(range(12))


@pytest.mark.parametrize(("text", "etype"), sorted(MEMMAP_TYPES.items()))
def test_memmap_type_strings(text: str, etype: int, tmp_path: Path) -> None:
    got = read_memmap(build_tree(tmp_path / "m", [("0", "0x0", "0xfff", text)]))
    assert got == [E820Entry(0, 0x1000, etype)]


def test_memmap_type_strings_of_older_kernels(tmp_path: Path) -> None:
    # 2.6.2x-3.x e820_type_to_string() returned "reserved" in lower case.
    got = read_memmap(build_tree(tmp_path / "m", [("0", "0x0", "0xfff", "reserved")]))
    assert got == [E820Entry(0, 0x1000, 2)]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: (d / "0" / "end").unlink(), r"0/end: missing$"),
        (lambda d: (d / "0" / "start").write_text("4096\n"), r"0/start: expected a hex address"),
        (lambda d: (d / "0" / "type").write_text("Magic\n"), r"0/type: unknown type 'Magic'"),
        (lambda d: (d / "0" / "end").write_text("0x0\n"), r"0/end: 0x0 is below start 0x1000"),
    ],
)
def test_memmap_bad_files_name_the_path(mutate, message: str, tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "m", [("0", "0x1000", "0x1fff", "System RAM")])
    mutate(tree)
    with pytest.raises(BootemuError, match=message):
        read_memmap(tree)


def test_memmap_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(BootemuError, match="nope: no such directory$"):
        read_memmap(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BootemuError, match=r"empty: no entries"):
        read_memmap(tmp_path / "empty")
    with pytest.raises(BootemuError, match=r"no such directory"):
        import_memmap(tmp_path / "nope", arch=ARCH_32, overrides=())


# --------------------------------------------------------------------------------------------
# Whole machines


@pytest.mark.parametrize("case", CASES)
def test_import_every_real_boot(case: str) -> None:
    facts = SUMMARY["cases"][case]
    machine, notes = import_dmesg(
        real_log(case), source=f"logs/{case}.log", arch=None, profile=None, overrides=()
    )
    arch, highmem = EXPECTED_ARCH[facts["kernel"]]
    assert machine.name == case
    assert machine.arch == arch
    assert machine.kernel.profile == "6.1"
    assert machine.kernel.highmem == highmem
    assert machine.e820 == tuple(summary_e820(case))
    assert machine.kernel.cmdline == case_args(case)  # every case argument is a memory one
    expected_numa = [NumaMemory(n, s, last + 1) for n, _pxm, s, last, _ in facts["srat"]]
    assert list(machine.numa) == (expected_numa if arch == ARCH_64 else [])
    assert any(note.startswith(f"arch {arch} (max_arch_pfn = ") for note in notes)


def test_imported_i386_kernel_image_keys() -> None:
    machine, _ = import_dmesg(
        real_log("pae_1G"), source="pae_1G.log", arch=None, profile=None, overrides=()
    )
    # [_text, _brk_end) = [0x1000000, 0x1f24000) (test_kernel_image_from_memblock_debug);
    # section sizes are the Memory: line's KiB figures times 1024.
    assert machine.kernel.get("image_start") == 0x1000000
    assert machine.kernel.get("image_end") == 0x1F24000
    assert machine.kernel.get("text_size") == 9423 * 1024
    assert machine.kernel.get("data_size") == 1265 * 1024
    assert machine.kernel.get("bss_size") == 476 * 1024


def test_overrides_apply_last_and_are_noted() -> None:
    machine, notes = import_dmesg(
        OLD_DMESG,
        source="old.log",
        arch=None,
        profile=None,
        overrides=["kernel.highmem=4G", "machine.name=thinkpad"],
    )
    assert (machine.arch, machine.kernel.profile) == (ARCH_32, "2.6.25")
    assert machine.kernel.highmem == "4G"
    assert machine.name == "thinkpad"
    # 2.6.25 keeps the whole line: setup_command_line() sizes two allocations by it.
    assert machine.kernel.cmdline == "root=/dev/hda1 ro mem=512M quiet"
    assert machine.e820 == tuple(OLD_TABLE)
    assert "kernel.highmem=4G (from --set)" in notes


def test_bad_override_is_a_one_line_error() -> None:
    with pytest.raises(BootemuError, match=r"^old\.log: .*highmem"):
        import_dmesg(
            OLD_DMESG, source="old.log", arch=None, profile=None,
            overrides=["kernel.highmem=128G"],
        )


def test_cli_import_dmesg_writes_a_loadable_file(tmp_path: Path, capsys) -> None:
    from bootemu.machine import load_machine

    out = tmp_path / "m.toml"
    assert main(["import-dmesg", str(REAL / "pae_1G_vmalloc256M.log"), "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "bootemu: highmem 64G (PAE: max_arch_pfn = 0x1000000)" in err
    machine = load_machine(str(out))
    assert machine.name == "pae_1G_vmalloc256M"  # the log's stem, written into the file
    assert machine.kernel.cmdline == "vmalloc=256M"


def test_cli_import_memmap_of_the_static_tree(tmp_path: Path, capsys) -> None:
    from bootemu.machine import load_machine

    out = tmp_path / "here.toml"
    tree = DATA / "memmap" / "qemu-amd64-4G"
    assert main(["import-memmap", str(tree), "--arch", "numa64", "-o", str(out)]) == 0
    machine = load_machine(str(out))
    assert machine.arch == "numa64"
    assert machine.kernel.profile == "6.1"
    assert machine.e820 == tuple(summary_e820("amd64_4G"))


def test_cli_import_memmap_missing_dir_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["import-memmap", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"bootemu: {tmp_path / 'none'}: no such directory\n"


def test_kernel_sections_from_a_2008_memory_line() -> None:
    # 2.6.25 mem_init(): "Memory: %luk/%luk available (%dk kernel code, %dk reserved,
    # %dk data, %dk init, %ldk highmem)" (reference boot-allocators.md §5.6).
    text = OLD_DMESG + (
        "Memory: 1033344k/1048512k available (1941k kernel code, 14532k reserved, "
        "913k data, 284k init, 131008k highmem)\n"
    )
    image = find_kernel_image(read_boot_log(text, source="x"))
    assert dict(image.sections_k) == {"code": 1941, "rwdata": 913, "init": 284}
    machine, _ = import_dmesg(text, source="x.log", arch=None, profile=None, overrides=())
    assert machine.kernel.get("text_size") == 1941 * 1024
    assert machine.kernel.get("data_size") == 913 * 1024
    assert machine.kernel.get("image_start") is None  # no memblock=debug in 2008


def test_imported_numa64_kernel_image_keys() -> None:
    machine, _ = import_dmesg(
        real_log("amd64_4G"), source="amd64_4G.log", arch=None, profile=None, overrides=()
    )
    # [_text, _brk_end) = [0x1000000, 0x4411000) (test_kernel_image_from_memblock_debug):
    # numa64 reads it as image_start and image_size = 0x4411000 - 0x1000000.
    assert machine.kernel.get("image_start") == 0x1000000
    assert machine.kernel.get("image_size") == 0x3411000
    assert machine.kernel.get("text_size") is None  # numa64 reads section sizes in 2.6.25 only


def test_journalctl_prefixes_are_tolerated() -> None:
    # `journalctl -k` puts a date, the host and "kernel:" before each printk line.
    text = (
        "Nov 25 09:00:00 host kernel: Linux version 6.1.0-50-amd64 (debian-kernel@lists)\n"
        "Nov 25 09:00:00 host kernel: Command line: BOOT_IMAGE=/vmlinuz mem=2G quiet\n"
        "Nov 25 09:00:00 host kernel: BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff]"
        " usable\n"
        "Nov 25 09:00:00 host kernel: BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff]"
        " usable\n"
    )
    machine, notes = import_dmesg(text, source="j.log", arch=None, profile=None, overrides=())
    assert machine.e820 == (E820Entry(0, 0x9FC00, 1), E820Entry(0x100000, 0x80000000, 1))
    assert (machine.arch, machine.kernel.cmdline) == (ARCH_64, "mem=2G")
    assert "arch numa64 (64-bit kernel: 'Linux version 6.1.0-50-amd64')" not in notes
    assert "arch numa64 ('Command line:' is printed by x86_64 kernels only)" in notes


# --------------------------------------------------------------------------------------------
# CPUs: numa64's kernel.cpu_nodes


def test_cpu_nodes_from_srat_processor_lines():
    # amd64_numa2_sym prints "SRAT: PXM 0 -> APIC 0x00 -> Node 0" and "... 0x01 -> Node 1".
    text = (REAL / "amd64_numa2_sym.log").read_text()
    machine, notes = import_dmesg(text, source="sym.log", arch=None, profile=None, overrides=())
    assert machine.kernel.get("cpu_nodes") == "0,1"
    assert any("SRAT processor-affinity" in n for n in notes)


def test_cpu_count_from_smpboot_when_numa_is_off():
    # numa=off: no SRAT lines at all; "smpboot: Allowing 2 CPUs, 0 hotplug CPUs" -> 2 CPUs,
    # both on node 0 (the only node with NUMA off).
    text = (REAL / "amd64_numa2_off.log").read_text()
    machine, _ = import_dmesg(text, source="off.log", arch=None, profile=None, overrides=())
    assert machine.kernel.get("cpu_nodes") == "0,0"


def test_cpu_lines_2008_format_and_possible_cpus():
    text = "\n".join(
        [
            "Linux version 2.6.25-1-amd64 (x86_64)",
            "Command line: root=/dev/sda1",
            " BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)",
            " BIOS-e820: 0000000000100000 - 0000000080000000 (usable)",
            "SRAT: PXM 0 -> APIC 0 -> Node 0",
            "SRAT: PXM 1 -> APIC 1 -> Node 1",
            "SRAT: PXM 1 -> APIC 2 -> Node 1",
        ]
    )
    machine, _ = import_dmesg(text, source="old.log", arch="numa64", profile=None, overrides=())
    assert machine.kernel.get("cpu_nodes") == "0,1,1"
    from bootemu.importers.bootlog import read_boot_log

    log = read_boot_log("smpboot: Allowing 8 CPUs, 6 hotplug CPUs\n", source="x")
    # prefill_possible_map(): "Allowing %d CPUs" counts possible CPUs (hotplug slots
    # included), which is what nr_cpu_ids and the per-cpu areas follow.
    assert log.possible_cpus == 8
