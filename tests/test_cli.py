"""The command line as a user meets it: exit codes, one-line errors, reports, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bootemu.cli import main

GOOD = """\
[machine]
name = "tiny"
arch = "x86_32"

[[firmware.e820]]
start = 0
end = 0x9fc00
type = "usable"

[[firmware.e820]]
start = 0x100000
end = "64M"
type = "usable"
"""


def _one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_malformed_toml_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[machine]\narch = "x86_32"\nname = \n')
    line = _one_line_error(capsys, main(["boot", str(path)]))
    assert str(path) in line and "line 3" in line


def test_unknown_e820_type_names_the_key(tmp_path, capsys):
    path = tmp_path / "m.toml"
    path.write_text(
        GOOD.replace('type = "usable"\n\n[[firmware.e820]]', 'type = "ram"\n\n[[firmware.e820]]', 1)
    )
    line = _one_line_error(capsys, main(["boot", str(path)]))
    assert "firmware.e820[0].type" in line and "'ram'" in line and str(path) in line


def test_negative_size_names_the_key(tmp_path, capsys):
    path = tmp_path / "m.toml"
    path.write_text(GOOD + '\n[[workload]]\nop = "alloc"\nsize = -4096\n')
    line = _one_line_error(capsys, main(["boot", str(path)]))
    assert "workload[0].size" in line and str(path) in line


def test_unknown_backend_lists_the_known_ones(capsys):
    line = _one_line_error(capsys, main(["boot", "qemu-pc-1g-i386", "--allocator", "slab"]))
    assert "unknown allocator 'slab'" in line
    for known in ("bootmem", "bootmem2", "bootmem2-perblock"):
        assert known in line


def test_compare_names_the_option_that_gave_an_unknown_backend(capsys):
    line = _one_line_error(
        capsys, main(["compare", "qemu-pc-1g-i386", "--allocators", "bootmem,slab"])
    )
    assert line.startswith("bootemu: --allocators: unknown allocator 'slab'")


def test_unknown_arch_and_unknown_preset(capsys):
    line = _one_line_error(capsys, main(["boot", "qemu-pc-1g-i386", "--arch", "mips"]))
    assert "unknown arch 'mips'" in line and "x86_32" in line
    line = _one_line_error(capsys, main(["boot", "no-such-machine"]))
    assert "no-such-machine" in line and "qemu-pc-1g-i386" in line


def test_usage_error_is_one_line(capsys):
    line = _one_line_error(capsys, main(["boot", "--log-format", "xml", "qemu-pc-1g-i386"]))
    assert "xml" in line


def test_bad_set_override(capsys):
    line = _one_line_error(capsys, main(["boot", "qemu-pc-1g-i386", "--set", "kernel.highmem=8G"]))
    assert "kernel.highmem" in line


@pytest.mark.parametrize("preset", ["seed-numa-8g", "qemu-pc-1g-i386"])
def test_a_typo_in_an_arch_key_is_exit_2_naming_it(preset, capsys):
    """Issue 12: ``--set kernel.typo_key=yes`` used to boot; the arch's schema rejects it."""
    line = _one_line_error(capsys, main(["boot", preset, "--set", "kernel.typo_key=yes"]))
    assert f"presets/{preset}.toml: kernel.typo_key: unknown key (known: " in line


def test_boot_writes_report_with_stable_keys(tmp_path, capsys):
    report = tmp_path / "boot.json"
    assert main(["boot", "qemu-pc-1g-i386", "--log-format", "json", "--report", str(report)]) == 0
    doc = json.loads(report.read_text())
    for key in (
        "machine",
        "arch",
        "allocator",
        "profile",
        "outcome",
        "panic_message",
        "memory",
        "nodes",
        "zones",
        "allocations",
        "handoff",
        "allocator_overhead_bytes",
        "violations",
    ):
        assert key in doc
    for key in ("max_pfn", "max_low_pfn", "lowmem_mb", "highmem_mb", "e820"):
        assert key in doc["memory"]
    assert set(doc["zones"][0]) >= {
        "node",
        "name",
        "start_pfn",
        "end_pfn",
        "spanned",
        "present",
        "managed",
        "free",
    }
    assert set(doc["handoff"]) >= {"pages", "by_node_zone", "buddyinfo"}
    # the JSON trace: one object per line, numbered from 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_same_machine_gives_the_same_trace_and_report_byte_for_byte(tmp_path, capsys):
    outs = []
    for i in range(2):
        report = tmp_path / f"r{i}.json"
        main(
            [
                "boot",
                "qemu-pc-4g-i386",
                "--allocator",
                "bootmem",
                "--log-format",
                "json",
                "--report",
                str(report),
            ]
        )
        outs.append((capsys.readouterr().out, report.read_bytes()))
    assert outs[0] == outs[1]


def test_panic_is_a_result_trace_and_report_still_written(tmp_path, capsys):
    # A 1 GiB request cannot fit in 64 MiB: __alloc_bootmem() prints
    # "bootmem alloc of 1073741824 bytes failed!" and panics "Out of memory"
    # (mm/bootmem.c, 2.6.25), under the classic backend.
    path = tmp_path / "m.toml"
    path.write_text(GOOD + '\n[[workload]]\nop = "alloc"\nsize = "1G"\nalign = 4096\n')
    report = tmp_path / "boot.json"
    code = main(
        [
            "boot",
            str(path),
            "--allocator",
            "bootmem",
            "--log-format",
            "dmesg",
            "--report",
            str(report),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-2:] == [
        "bootmem alloc of 1073741824 bytes failed!",
        "Kernel panic - not syncing: Out of memory",
    ]
    doc = json.loads(report.read_text())
    assert doc["outcome"] == "panic" and doc["panic_message"] == "Out of memory"


def test_machines_and_plugins_list(capsys):
    assert main(["machines"]) == 0
    out = capsys.readouterr().out
    for name in ("qemu-pc-512m-i386", "qemu-pc-1g-i386", "qemu-pc-4g-i386", "pae-64g"):
        assert name in out
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "bootemu_plugins.bootmem2:Bootmem2" in out and "bootemu_arches.x86_32:X86_32" in out
    assert "bootemu 0.1.0" in out


def test_python_dash_m_works_and_errors_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "bootemu", "boot", "nope-not-a-machine"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["console", "json", "dmesg"])
def test_every_log_format_renders(fmt, capsys):
    assert main(["boot", "qemu-pc-512m-i386", "--log-format", fmt]) == 0
    out = capsys.readouterr().out
    assert "BIOS-e820" in out
