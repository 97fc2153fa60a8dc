"""Issue 9 (i386): bootemu's ``2.6.25`` profile against 40 real Linux 2.6.25 i386 boots.

Sixteen are the shared ones; twenty-four more (``tests/data/real-boots-2008-i386-extra/``) were made
after the profile was written, to check it where the shared set cannot: the PAE kernel built
without the trace patch (fourteen boots: 128 MiB to 16 GiB, ``mem=``, ``highmem=``,
``vmalloc=``, ``memmap=``, ``mem=nopentium``, a longer command line), and four traced kernels
with other Kconfig choices (MODULES, HUGETLB_PAGE, PREEMPT, NR_CPUS 4; HIGHMEM4G SMP with
NR_CPUS 64; ACPI with ACPI_SLEEP, where ACPI's MADT gives the possible CPUs; a UP kernel
without a VT console that scans for the MP table). Untraced boots take part in the line
comparisons, not in the replay.

``tests/data/real-boots-2008/`` holds real boots of four 2.6.25 i386 kernels (PAE, PAE SMP,
HIGHMEM4G, NOHIGHMEM) under QEMU 7.2 / SeaBIOS 1.16.2, each kernel's ``.config`` and
``System.map``, and in every log one ``bootmem_trace:`` line per boot-allocator call. For each
boot:

1. **Memory lines, with the build artifacts**: import the log with the kernel's ``.config``
   and ``System.map``, boot it on ``bootmem`` and compare, kind by kind, every *memory line*
   (:data:`KINDS`) printed up to and including ``Memory:`` with what the kernel printed.
2. **Replay**: every traced call of the real kernel -- each ``free_bootmem``,
   ``reserve_bootmem`` and ``__alloc_bootmem*``, in order -- is made by bootemu with the same
   address and size, every allocation lands at the real address, and each allocation's
   ``caller`` is the function System.map resolves the real return address to;
   ``free_all_bootmem pages=N`` is the number of pages bootemu's handoff releases.
3. **From the log alone** (no ``.config``, no ``System.map``, and the ``bootmem_trace:`` lines
   removed, as from the same kernel built without the trace patch): every memory line except
   ``Memory:`` matches. ``Memory:`` is the one line that depends on the kernel image's size
   (the reserved figure counts the image and the boot page tables after ``_end``; the free
   figure follows), which an untraced log does not give.

"Memory lines" are the lines of the early memory set-up: the e820 tables (BIOS-provided,
``limit_regions``, user-defined), find_max_low_pfn()'s warnings, HIGHMEM/LOWMEM, the MP-table
line, the node/zone lines of free_area_init_nodes(), the PCI gap, ``Built N zonelists ...
Total pages``, the PID, dentry and inode hash lines and ``Memory:``. The single-line kinds
shared with the 6.1 test reuse its patterns (``test_real_boots._LINE_KINDS``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import structlog
from test_real_boots import _LINE_KINDS, classify_lines

from bootemu.importers import import_dmesg, strip_dmesg_prefix
from bootemu.importers.kbuild import read_kconfig, read_system_map
from bootemu.importers.trace import read_trace
from bootemu.sequencer import boot_machine

DATA = Path(__file__).parent / "data" / "real-boots-2008"
#: Boots made afterwards to check the profile on what the shared set lacks: a kernel built
#: without the trace patch, and kernels with other Kconfig choices (see its README).
EXTRA = Path(__file__).parent / "data" / "real-boots-2008-i386-extra"


def _cases(folder: Path, kernels: tuple[str, ...] | None) -> dict[str, tuple[Path, str]]:
    """cases.txt: boot name -> (data folder, kernel name), the 2.6.25 i386 kernels only."""
    out = {}
    for line in (folder / "cases.txt").read_text().splitlines():
        name, kernel = line.split()[:2]
        if kernels is None or kernel in kernels:
            out[name] = (folder, kernel)
    return out


SHARED = _cases(DATA, ("trace-pae", "trace-pae-smp", "trace-4g", "trace-nohigh"))
CASES = {**SHARED, **_cases(EXTRA, None)}
#: Boots whose log carries the bootmem_trace lines (kernels built with the trace patch).
TRACED = sorted(c for c, (_, kernel) in CASES.items() if kernel != "plain-pae")

# --------------------------------------------------------------------------------------------
# The memory lines

_SHARED = dict(_LINE_KINDS)
#: Single lines of the 2008 kernels: kind -> pattern (the whole stripped line).
LINE_KINDS_2008 = (
    ("BIOS-e820", _SHARED["BIOS-e820"]),
    ("limit_regions", re.compile(r" limit_regions (?:start|endfor|endfunc): .*")),
    ("user-map", re.compile(r"user-defined physical RAM map:| user: .*")),
    (
        "warnings",
        re.compile(
            r"Warning only \d+[MG]B will be used\.|Use a HIGHMEM(?:64G)? enabled "
            r"kernel\.|only \d+MB highmem pages available.*|highmem size .*|"
            r"ignoring highmem size on non-highmem kernel!"
        ),
    ),
    ("HIGHMEM-LOWMEM", _SHARED["HIGHMEM-LOWMEM"]),
    ("MP-table", _SHARED["MP-table"]),
    ("add_active_range", re.compile(r"Entering add_active_range\(.*")),
    ("totalpages", re.compile(r"On node \d+ totalpages: \d+")),
    ("zone lines", re.compile(r"  \w+ zone: .*")),
    ("PCI gap", re.compile(r"Allocating PCI resources starting at .*")),
    ("Total pages", _SHARED["Total pages"]),
    ("PID hash", re.compile(r"PID hash table entries: .*")),
    ("hash tables", _SHARED["hash tables"]),
    ("Memory", re.compile(r"Memory: \d+k/\d+k available .*")),
)
#: Sections: (header, kind, the pattern of the lines that belong to it).
SECTIONS_2008 = (
    (re.compile(r"Zone PFN ranges:"), "Zone PFN ranges", re.compile(r"  \w+\s+\d+ ->\s+\d+")),
    (
        re.compile(r"Movable zone start PFN for each node"),
        "Movable zone",
        re.compile(r"  Node \d+: \d+"),
    ),
    (
        re.compile(r"early_node_map\[\d+\] active PFN ranges"),
        "early_node_map",
        re.compile(r"\s+\d+:\s+\d+ ->\s+\d+"),
    ),
)
KINDS = tuple(k for k, _ in LINE_KINDS_2008) + ("Zone PFN ranges", "Movable zone", "early_node_map")
#: The kinds an image of another size changes (see the module docstring).
IMAGE_KINDS = ("Memory",)


def classify(lines: Iterable[str]) -> dict[str, list[str]]:
    """The memory lines of each kind, in order, up to and including ``Memory:``."""
    return classify_lines(lines, KINDS, LINE_KINDS_2008, SECTIONS_2008, stop=re.compile("Memory:"))


def real_text(case: str) -> str:
    folder = CASES[case][0]
    return (folder / "logs" / f"{case}.log").read_text(errors="replace")


def real_lines(case: str) -> dict[str, list[str]]:
    return classify(strip_dmesg_prefix(x) for x in real_text(case).splitlines())


# --------------------------------------------------------------------------------------------
# What bootemu prints


def artifacts(case: str) -> tuple[Any, Any]:
    folder, name = CASES[case]
    kernel = folder / "kernels" / name
    return read_kconfig(kernel / "config"), read_system_map(kernel / "System.map")


@functools.cache
def emulate(case: str, *, with_artifacts: bool = True, untraced: bool = False) -> dict[str, Any]:
    """Import the real log (with or without the build artifacts), boot it on bootmem."""
    text = real_text(case)
    if untraced:
        text = "\n".join(x for x in text.splitlines() if "bootmem_trace:" not in x)
    kconfig, system_map = artifacts(case) if with_artifacts else (None, None)
    machine, notes = import_dmesg(
        text,
        source=f"{case}.log",
        arch=None,
        profile=None,
        overrides=(),
        kconfig=kconfig,
        system_map=system_map,
    )
    with structlog.testing.capture_logs() as events:
        result = boot_machine(machine, allocator="bootmem")
    lines = [x for e in events if "dmesg" in e for x in str(e["dmesg"]).split("\n")]
    return {"machine": machine, "notes": notes, "result": result, "events": events, "lines": lines}


# --------------------------------------------------------------------------------------------
# 1. Memory lines with .config and System.map


def test_sixteen_shared_boots_and_twenty_four_more() -> None:
    assert len(SHARED) == 16 and len(CASES) == 40
    assert all(real_lines(case)["Memory"] for case in CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_memory_lines_match_with_artifacts(case: str) -> None:
    real, got = real_lines(case), classify(emulate(case)["lines"])
    for kind in KINDS:
        assert got[kind] == real[kind], kind
    assert emulate(case)["result"].outcome == "ok"


# --------------------------------------------------------------------------------------------
# 2. Replay: every traced call, in order


def _bootemu_calls(events: list[dict[str, Any]]) -> list[tuple[str, int, int, int | None]]:
    """(op, addr, size, result) of bootemu's free / reserve / alloc calls, in order."""
    out: list[tuple[str, int, int, int | None]] = []
    for e in events:
        if e["event"] == "alloc.free":
            out.append(("free", e["addr"], e["size"], None))
        elif e["event"] == "alloc.reserve":
            out.append(("reserve", e["addr"], e["size"], None))
        elif e["event"] == "alloc.request":
            out.append(("alloc", 0, e["size"], e["addr"]))
    return out


@pytest.mark.parametrize("case", TRACED)
def test_replay_every_traced_call(case: str) -> None:
    traced = [c for c in read_trace(real_text(case)) if c.op in ("free", "reserve", "alloc")]
    want = [(c.op, c.addr or 0, c.size, c.result if c.op == "alloc" else None) for c in traced]
    events = emulate(case)["events"]
    assert _bootemu_calls(events) == want
    # Each allocation's caller is the function the real return address resolves to.
    system_map = artifacts(case)[1]
    requests = [e for e in events if e["event"] == "alloc.request"]
    real_callers = [
        system_map.resolve(int(c.caller, 16)).split("+")[0] for c in traced if c.op == "alloc"
    ]
    assert [e["caller"] for e in requests] == real_callers
    # and each its wrapper and alignment (the trace prints both)
    assert [(e["wrapper"], e["align"]) for e in requests] == [
        (c.name, c.align) for c in traced if c.op == "alloc"
    ]


@pytest.mark.parametrize("case", TRACED)
def test_free_all_bootmem_pages(case: str) -> None:
    (free_all,) = [c for c in read_trace(real_text(case)) if c.op == "free_all"]
    facts = emulate(case)["result"].report["facts"]
    assert facts["totalram_pages"] - facts["totalhigh_pages"] == free_all.pages


# --------------------------------------------------------------------------------------------
# 3. From the log alone


@pytest.mark.parametrize("case", sorted(CASES))
def test_memory_lines_match_from_the_log_alone(case: str) -> None:
    real = real_lines(case)
    got = classify(emulate(case, with_artifacts=False, untraced=True)["lines"])
    for kind in KINDS:
        if kind not in IMAGE_KINDS:
            assert got[kind] == real[kind], kind


@pytest.mark.parametrize("case", TRACED)
def test_traced_log_alone_gives_the_image_too(case: str) -> None:
    # A traced log carries init_bootmem's mapstart (where the boot page tables end), so the
    # importer recovers the image's end and every line, Memory: included, matches.
    real = real_lines(case)
    got = classify(emulate(case, with_artifacts=False)["lines"])
    assert got == real


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_printed_line_is_the_kernels_in_its_order(case: str) -> None:
    # Not only the memory lines: each line bootemu prints (the DMI and MP-scan lines, the
    # command line ...) is one the real kernel printed, in the same order; nothing from
    # another arch or era.
    real = [strip_dmesg_prefix(x).rstrip() for x in real_text(case).splitlines()]
    at = 0
    for line in emulate(case)["lines"]:
        assert line.rstrip() in real[at:], line
        at = real.index(line.rstrip(), at) + 1
