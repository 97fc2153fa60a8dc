"""Issue 5's acceptance test: bootemu's ``6.1`` profile against fifteen real Linux 6.1 boots.

For every case in ``tests/data/real-boots/``: import the real log with ``import_dmesg``, boot
the machine, and compare, kind of line by kind of line, what bootemu prints (the ``dmesg``
field of its trace events) with what the real kernel printed. The same line-kind filter reads
both; timestamps are stripped from the real log. Per-zone ``spanned`` / ``present`` /
``start_pfn`` of the boot report are compared with ``/proc/zoneinfo`` of the case's second
boot (``<case>.zoneinfo.log``).

Lines the emulator does not model are listed in :data:`NOT_MODELLED` with the reason, per case
and kind; such an entry must really mismatch (a listed kind that starts matching fails, so the
list stays true). Cases that still mismatch in a modelled kind are in :data:`XFAIL`
(``strict``: a case that starts passing fails until it is removed from the list).

Run ``python tests/test_real_boots.py`` for a per-case, per-kind report with the diffs.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import structlog

from bootemu.importers import import_dmesg, strip_dmesg_prefix

REAL = Path(__file__).parent / "data" / "real-boots"

CASES = (
    "pae_512M",
    "pae_1G",
    "pae_2G",
    "pae_4G",
    "nopae_4G",
    "pae_1G_highmem512M",
    "pae_1G_mem512M",
    "pae_1G_memmap64M_reserved",
    "pae_1G_vmalloc256M",
    "amd64_512M",
    "amd64_4G",
    "amd64_4G_mem2G",
    "amd64_numa2_sym",
    "amd64_numa_interleave",
    "amd64_numa2_off",
)
AMD64 = tuple(c for c in CASES if c.startswith("amd64"))

# --------------------------------------------------------------------------------------------
# The line-kind filter (applied to the real log and to bootemu's output alike)

#: Kinds of line compared: first those issue 5 names, in the order the kernel prints them, then
#: further memory lines that bootemu also prints (:data:`EXTRA_KINDS`). A "section" kind is a
#: header line plus the indented lines that follow it.
REQUIRED_KINDS = (
    "BIOS-e820",
    "user-map",
    "e820-update-remove",
    "last_pfn",
    "HIGHMEM-LOWMEM",
    "NODE_DATA",
    "Zone ranges",
    "Movable zone",
    "Early memory node ranges",
    "Initmem setup node",
    "unavailable ranges",
    "Memory-total",
    "Memory-first-figure",
)
EXTRA_KINDS = (
    "SRAT",
    "NUMA",
    "MP-table",
    "low ram",
    "PCI gap",
    "setup_percpu",
    "Total pages",
    "hash tables",
    "Initializing HighMem",
)
KINDS = REQUIRED_KINDS + EXTRA_KINDS

#: Single lines: kind → pattern (matched against the whole stripped line).
_LINE_KINDS = (
    ("BIOS-e820", re.compile(r"(?:e820: )?BIOS-provided physical RAM map:|BIOS-e820: .*")),
    ("user-map", re.compile(r"(?:e820: )?user-defined physical RAM map:|user: \[mem .*")),
    ("e820-update-remove", re.compile(r"e820: (?:update|remove) \[mem .*")),
    ("last_pfn", re.compile(r"last_pfn = .*")),
    ("HIGHMEM-LOWMEM", re.compile(r"\d+MB (?:HIGHMEM|LOWMEM) available\.")),
    ("NODE_DATA", re.compile(r"\s*NODE_DATA\(\d+\) .*")),
    ("Initmem setup node", re.compile(r"Initmem setup node \d+ .*")),
    ("unavailable ranges", re.compile(r"On node \d+, zone \w+: \d+ pages in unavailable ranges")),
    ("SRAT", re.compile(r"ACPI: SRAT: Node \d+ PXM \d+ \[mem .*")),
    ("NUMA", re.compile(r"NUMA: .*|NUMA turned off|No NUMA configuration found|Faking a node .*")),
    ("MP-table", re.compile(r"found SMP MP-table at .*")),
    ("low ram", re.compile(r"  (?:mapped )?low ram: .*")),
    ("PCI gap", re.compile(r"\[mem .*\] available for PCI devices")),
    ("setup_percpu", re.compile(r"setup_percpu: .*")),
    ("Total pages", re.compile(r"Built \d+ zonelists.*")),
    ("hash tables", re.compile(r"(?:Dentry cache|Inode-cache) hash table entries: .*")),
    ("Initializing HighMem", re.compile(r"Initializing (?:HighMem|Movable) for node .*")),
)
#: Sections: (header, kind, the pattern of the lines that belong to it); headers match whole.
_SECTIONS = (
    (re.compile(r"Zone ranges:"), "Zone ranges", re.compile(r"  \w+\s+(?:\[mem .*\]|empty)")),
    (
        re.compile(r"Movable zone start for each node"),
        "Movable zone",
        re.compile(r"  Node \d+: .*"),
    ),
    (
        re.compile(r"Early memory node ranges"),
        "Early memory node ranges",
        re.compile(r"  node\s+\d+: \[mem .*\]"),
    ),
)
#: mm/page_alloc.c mem_init_print_info(): ``Memory: %luK/%luK available (...``: the free
#: pages at that moment, then all present pages.
_MEMORY = re.compile(r"Memory: (\d+)K/(\d+)K available")

Section = tuple[re.Pattern[str], str, re.Pattern[str]]


def classify_lines(
    lines: Iterable[str],
    kinds: Iterable[str],
    line_kinds: Iterable[tuple[str, re.Pattern[str]]],
    sections: Iterable[Section],
    *,
    special: Any = None,
    stop: re.Pattern[str] | None = None,
) -> dict[str, list[str]]:
    """The lines of each kind, in order (``lines`` already stripped of timestamps).

    A section header line and the lines after it that its pattern matches go to its kind;
    ``special(line, out)`` may take a line (returning True); otherwise the first single-line
    kind that matches takes it. With ``stop``, classification ends after a line it matches.
    """
    out: dict[str, list[str]] = {kind: [] for kind in kinds}
    line_kinds, sections = tuple(line_kinds), tuple(sections)
    section: tuple[str, re.Pattern[str]] | None = None
    for line in lines:
        line = line.rstrip()
        if section is not None and section[1].fullmatch(line):
            out[section[0]].append(line)
            continue
        section = next(((k, pat) for head, k, pat in sections if head.fullmatch(line)), None)
        if section is not None:
            out[section[0]].append(line)
            continue
        if special is not None and special(line, out):
            continue
        for kind, pattern in line_kinds:
            if pattern.fullmatch(line):
                out[kind].append(line)
                break
        if stop is not None and stop.match(line):
            break
    return out


def _memory_figures(line: str, out: dict[str, list[str]]) -> bool:
    """The 6.1 ``Memory:`` line, as its two figures."""
    m = _MEMORY.match(line)
    if m:
        out["Memory-first-figure"].append(f"{m.group(1)}K")
        out["Memory-total"].append(f"{m.group(2)}K")
    return m is not None


def classify(lines: Iterable[str]) -> dict[str, list[str]]:
    """The lines of each kind, in order. ``lines`` are already stripped of timestamps."""
    return classify_lines(lines, KINDS, _LINE_KINDS, _SECTIONS, special=_memory_figures)


def real_lines(case: str) -> dict[str, list[str]]:
    text = (REAL / f"{case}.log").read_text(errors="replace")
    return classify(strip_dmesg_prefix(line) for line in text.splitlines())


# --------------------------------------------------------------------------------------------
# /proc/zoneinfo of the second boot


def real_zones(case: str) -> dict[tuple[int, str], tuple[int, int, int]]:
    """``(node, zone) → (start_pfn, spanned, present)`` of every non-empty zone."""
    text = (REAL / f"{case}.zoneinfo.log").read_text(errors="replace")
    body = text.split("=== BEGIN /proc/zoneinfo ===", 1)[1].split("=== END /proc/zoneinfo", 1)[0]
    zones: dict[tuple[int, str], dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in body.splitlines():
        m = re.match(r"Node (\d+), zone\s+(\w+)$", line)
        if m:
            current = zones.setdefault((int(m.group(1)), m.group(2)), {})
            continue
        m = re.match(r"\s+(spanned|present|start_pfn:)\s+(\d+)$", line)
        if m and current is not None:
            current[m.group(1).rstrip(":")] = int(m.group(2))
    return {
        key: (z["start_pfn"], z["spanned"], z["present"])
        for key, z in sorted(zones.items())
        if z.get("spanned", 0) > 0
    }


def report_zones(report: dict[str, Any]) -> dict[tuple[int, str], tuple[int, int, int]]:
    return {
        (z["node"], z["name"]): (z["start_pfn"], z["spanned"], z["present"])
        for z in sorted(report["zones"], key=lambda z: (z["node"], z["start_pfn"], z["name"]))
        if z["spanned"] > 0
    }


# --------------------------------------------------------------------------------------------
# What bootemu prints


@functools.cache
def emulate(case: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Import the real log, boot it, and return the report and the dmesg lines printed."""
    from bootemu.sequencer import boot_machine

    text = (REAL / f"{case}.log").read_text(errors="replace")
    machine, _notes = import_dmesg(
        text, source=f"{case}.log", arch=None, profile=None, overrides=()
    )
    with structlog.testing.capture_logs() as events:
        result = boot_machine(machine)
    lines = tuple(
        line for event in events if "dmesg" in event for line in str(event["dmesg"]).split("\n")
    )
    return result.report, lines


def compare(case: str) -> dict[str, tuple[list[str], list[str]]]:
    """Per kind: (real lines, bootemu's lines)."""
    real = real_lines(case)
    got = classify(emulate(case)[1])
    return {kind: (real[kind], got[kind]) for kind in KINDS}


def diff(kind: str, real: list[str], got: list[str]) -> str:
    body = difflib.unified_diff(real, got, "real", "bootemu", lineterm="", n=1)
    return f"--- {kind}\n" + "\n".join(list(body)[2:])


# --------------------------------------------------------------------------------------------
# What the emulator does not model (per case and kind), and what still mismatches

#: (case, kind) → why bootemu does not reproduce that line. Each entry must really mismatch.
#: Empty: the amd64 ``Memory:`` free figure, printed before deferred struct-page init has
#: freed most pages, is modelled (numa64 6.1 ``deferred_struct_page_init``).
NOT_MODELLED: dict[tuple[str, str], str] = {}

#: (case, kind) → a mismatch in a modelled kind, to be fixed in the arch; strict xfail, so a
#: fix makes the test fail until the entry is removed. Empty: every modelled kind matches.
XFAIL: dict[tuple[str, str], str] = {}


def _param(case: str, kind: str | None = None) -> Any:
    key = (case, kind) if kind is not None else (case, "")
    marks = [pytest.mark.xfail(strict=True, reason=XFAIL[key])] if key in XFAIL else []
    return pytest.param(case, *(() if kind is None else (kind,)), marks=marks,
                        id=case if kind is None else f"{case}-{kind}")


def zone_problem(case: str) -> str | None:
    real_z, got_z = real_zones(case), report_zones(emulate(case)[0])
    if real_z == got_z:
        return None
    return diff(
        "zones (node, zone): (start_pfn, spanned, present)",
        [f"{k}: {v}" for k, v in real_z.items()],
        [f"{k}: {v}" for k, v in got_z.items()],
    )


def problems(case: str) -> list[str]:
    """Every mismatch of ``case`` that NOT_MODELLED does not excuse, as readable diffs."""
    out: list[str] = []
    for kind, (real, got) in compare(case).items():
        reason = NOT_MODELLED.get((case, kind))
        if reason is not None:
            if real == got:
                out.append(f"{kind}: listed in NOT_MODELLED ({reason}) but matches: unlist it")
            continue
        if real != got:
            out.append(diff(kind, real, got))
    zones = zone_problem(case)
    if zones:
        out.append(zones)
    report = emulate(case)[0]
    if report["outcome"] != "ok" or report["violations"]:
        out.append(f"boot: outcome {report['outcome']}, violations {report['violations']}")
    return out


# --------------------------------------------------------------------------------------------
# The filter itself, held to the facts of summary.json


@pytest.mark.parametrize("case", CASES)
def test_filter_reads_the_real_logs(case: str) -> None:
    import json

    facts = json.loads((REAL / "summary.json").read_text())["cases"][case]
    real = real_lines(case)
    assert len(real["BIOS-e820"]) == 1 + len(facts["e820_bios"])  # header + entries
    user = facts.get("e820_user") or []
    assert len(real["user-map"]) == (1 + len(user) if user else 0)
    assert len(real["Zone ranges"]) == 1 + len(facts["zones"])
    assert len(real["Early memory node ranges"]) == 1 + len(facts["node_ranges"])
    assert len(real["Initmem setup node"]) == len(facts["initmem"])
    assert len(real["unavailable ranges"]) == len(facts["unavailable"])
    assert real["Memory-total"] == [f"{facts['memory']['total_k']}K"]
    assert real["Memory-first-figure"] == [f"{facts['memory']['available_k']}K"]
    assert real["Movable zone"] == ["Movable zone start for each node"]
    assert len(real["last_pfn"]) == len(facts["last_pfn"])
    expected_zones = {
        (z["node"], z["zone"]): (z["start_pfn"], z["spanned"], z["present"])
        for z in facts["after_boot"]["zoneinfo"]
        if z["spanned"] > 0
    }
    assert real_zones(case) == expected_zones


# --------------------------------------------------------------------------------------------
# The acceptance test


MODELLED = [
    _param(case, kind) for case in CASES for kind in KINDS if (case, kind) not in NOT_MODELLED
]


@pytest.mark.parametrize(("case", "kind"), MODELLED)
def test_bootemu_prints_what_the_real_kernel_printed(case: str, kind: str) -> None:
    real, got = compare(case)[kind]
    assert got == real, diff(kind, real, got)


@pytest.mark.parametrize(("case", "kind"), sorted(NOT_MODELLED))
def test_not_modelled_lines_really_differ(case: str, kind: str) -> None:
    # Keeps the allow-list true: once bootemu reproduces a listed line, unlist it.
    real, got = compare(case)[kind]
    assert got != real, f"{kind} now matches the real boot: remove it from NOT_MODELLED"


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_zones_match_proc_zoneinfo(case: str) -> None:
    problem = zone_problem(case)
    assert problem is None, problem


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_real_machine_boots_cleanly(case: str) -> None:
    report = emulate(case)[0]
    assert (report["outcome"], report["violations"]) == ("ok", [])


@pytest.mark.parametrize("case", ["pae_1G_mem512M", "amd64_numa_interleave"])
def test_cli_import_then_boot(case: str, tmp_path: Path, capsys) -> None:
    from bootemu.cli import main

    toml = tmp_path / "m.toml"
    assert main(["import-dmesg", str(REAL / f"{case}.log"), "-o", str(toml)]) == 0
    capsys.readouterr()
    rc = main(["boot", str(toml), "--log-format", "dmesg"])
    printed = classify(capsys.readouterr().out.splitlines())
    real = real_lines(case)
    for kind in KINDS:
        if (case, kind) not in NOT_MODELLED and (case, kind) not in XFAIL:
            assert printed[kind] == real[kind], diff(kind, real[kind], printed[kind])
    assert rc == 0


# --------------------------------------------------------------------------------------------
# A readable status report: python tests/test_real_boots.py [CASE ...]


def main(argv: list[str]) -> int:  # pragma: no cover - a tool for people, not a test
    from bootemu import tracing

    tracing.configure(None)
    for case in argv or CASES:
        try:
            found = problems(case)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"== {case}: ERROR {type(exc).__name__}: {exc}")
            continue
        matched = [
            k for k, (r, g) in compare(case).items() if r == g and (case, k) not in NOT_MODELLED
        ]
        print(f"== {case}: {'OK' if not found else f'{len(found)} mismatch(es)'}")
        print(f"   matches: {', '.join(matched)}")
        for item in found:
            print("   " + item.replace("\n", "\n   "))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
