"""Hypothesis strategies and the CLI property for the fuzz suite (tests/test_fuzz.py).

Machine files are generated as TOML text, valid or not: e820 tables with overlaps, zero
sizes, wrap-arounds past 2**64, huge and unsorted entries; command lines with every memory
parameter the arches parse and garbage values; NUMA affinity tables; workloads. Real boot logs
from tests/data are mutated line by line and fed to ``import-dmesg``. Everything runs through
:func:`bootemu.cli.main` in-process, and :func:`check_promise` holds the result to the README's
promise: exit 0, 1 or 2; nothing on stderr after a clean boot, exactly one ``bootemu:`` line
otherwise; no traceback (an exception escaping ``main`` fails the test with it); a JSON report
whenever a boot ran, whose outcome agrees with the exit code; bounded time and memory.
"""

from __future__ import annotations

import io
import json
import resource
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from bootemu.cli import main

DATA = Path(__file__).parent / "data"
#: Real boot logs the mutations start from (6.1 i386 and amd64, from tests/data).
LOGS = sorted((DATA / "real-boots").glob("*.log"))
LOGS = [p for p in LOGS if not p.name.endswith(".zoneinfo.log")]

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
#: Per boot: the time one case may take and the peak RSS of the whole test process. The
#: README's own targets are 60 s and 2 GiB for a 64 TiB machine; the bounds leave room for a
#: loaded 2-core machine and for pytest itself.
MAX_SECONDS = 120.0
MAX_RSS_BYTES = 3 * GiB

ALLOCATORS = ("bootmem", "bootmem2", "bootmem2-perblock", "bootmem2-rfc1", "memblock")
E820_TYPES = ("usable", "reserved", "acpi", "nvs", "unusable", "pmem", "pram", "soft-reserved")


# --------------------------------------------------------------------------------------------
# numbers


def addresses(top: int) -> st.SearchStrategy[int]:
    """Addresses below ``top``: the PC's landmarks and their neighbours, aligned and not."""
    marks = [
        0,
        0x1000,
        0x9F000,
        0x9FC00,
        0xA0000,
        0xF0000,
        0x100000,
        16 * MiB,
        896 * MiB,
        3 * GiB,
        4 * GiB,
        64 * GiB,
        TiB,
        64 * TiB,
        1 << 48,
        (1 << 63) - 1,
        1 << 63,
        (1 << 64) - 4096,
        (1 << 64) - 1,
    ]
    near = st.builds(
        lambda m, d: max(0, min(m + d, top)),
        st.sampled_from(marks),
        st.sampled_from([0, 0, 1, -1, 0x400, -0x400, 0x1000, -0x1000]),
    )
    return st.one_of(
        near.filter(lambda a: a <= top),
        st.integers(0, min(top, 4 * GiB)).map(lambda a: a & ~0xFFF),
        st.integers(0, top),
    )


def sizes(top: int) -> st.SearchStrategy[int]:
    """Sizes up to ``top``: landmarks (page, 639 KiB, 1 MiB ... 2**64) and any value."""
    return st.one_of(
        _capped(
            top,
            [
                0,
                1,
                0x1000,
                0x400 * 639,
                MiB,
                64 * MiB,
                512 * MiB,
                GiB,
                3 * GiB,
                4 * GiB,
                64 * GiB,
                TiB,
                64 * TiB,
                1 << 60,
                1 << 64,
            ],
        ),
        st.integers(0, top),
    )


def _capped(top: int, values: list[int]) -> st.SearchStrategy[int]:
    return st.sampled_from([v for v in values if v <= top])


def size_text() -> st.SearchStrategy[str]:
    """A memparse() argument, good or bad."""
    good = st.builds(
        lambda n, u: f"{n}{u}",
        st.integers(0, 5000),
        st.sampled_from(["", "k", "K", "M", "G", "T", "P", "E"]),
    )
    odd = st.sampled_from(
        [
            "0x9fc00",
            "010",
            "0",
            "-1",
            "",
            "abc",
            "1.5G",
            "4G4G",
            "0x",
            "99999999999999999999999G",
            "18446744073709551615",
            "1E",
            "\u00e9",
            "4G,",
            "@",
            "$",
            "#",
        ]
    )
    return st.one_of(good, odd)


def _toml_int(n: int) -> str:
    """A TOML integer, or a hex string where TOML integers end (2**63)."""
    if -(1 << 63) <= n < 1 << 63:
        return hex(n) if n >= 0 else str(n)
    return json.dumps(hex(n) if n >= 0 else str(n))


# --------------------------------------------------------------------------------------------
# machine files


#: True one time in 25: where a generated value may be bad input (a machine has many values,
#: so about a third of the machines carry one error; the rest boot).
rare = st.sampled_from([False] * 24 + [True])


@st.composite
def extents(draw: Any, start: int, top: int) -> dict[str, int]:
    """``end`` or ``size`` for a range at ``start``: mostly a positive extent, sometimes zero,
    an end at or below the start, or one wrapping past 2**64."""
    if draw(rare):
        bad = [{"size": 0}, {"end": start}, {"size": 1 << 64}, {"end": max(start - 1, 0)}]
        return draw(st.sampled_from(bad))
    size = draw(sizes(top).filter(lambda n: n > 0))
    return {"size": size} if draw(st.booleans()) else {"end": start + size}


@st.composite
def e820_tables(draw: Any, top: int, ram_cap: int) -> list[dict[str, Any]]:
    """A firmware map: often the PC's low map plus RAM up to a drawn top, plus random
    entries (overlapping, unsorted, zero-sized, wrapping, huge), sometimes shuffled. A usable
    entry holds at most ``ram_cap`` bytes (it may start anywhere below ``top``)."""
    out: list[dict[str, Any]] = []
    if draw(st.booleans()):
        tops = _capped(ram_cap, [64 * MiB, 512 * MiB, GiB, 3 * GiB, 5 * GiB, 64 * GiB, TiB])
        ram_top = draw(st.one_of(tops, st.integers(2 * MiB, ram_cap)))
        out += [
            {"start": 0, "end": 0x9FC00, "type": "usable"},
            {"start": 0x9FC00, "end": 0xA0000, "type": "reserved"},
            {"start": 0xF0000, "end": 0x100000, "type": "reserved"},
            {"start": 0x100000, "end": max(ram_top, 0x100001), "type": "usable"},
        ]
    for _ in range(draw(st.integers(0 if out else 1, 6))):
        start = draw(addresses(top))
        if draw(rare):
            bad = st.sampled_from(["ram", 0, 1 << 33, -1, 12, 20, "soft-reserved", "pmem"])
            kind = draw(st.one_of(bad, st.sampled_from(E820_TYPES)))
        else:
            kind = draw(st.sampled_from(["usable", "usable", "reserved", "acpi", "nvs"]))
        cap = ram_cap if kind == "usable" else top
        out.append({"start": start, "type": kind, **draw(extents(start, cap))})
    if draw(st.booleans()):
        out = draw(st.permutations(out))
    return out


def cmdline_params(arch: str) -> st.SearchStrategy[str]:
    """One command-line word: a memory parameter with a good or bad value, or garbage."""
    memmap = st.builds(
        lambda a, sep, b: f"memmap={a}{sep}{b}",
        size_text(),
        st.sampled_from(["@", "$", "#", "!", "%", ""]),
        size_text(),
    )
    retype = st.builds(
        lambda a, b, t1, t2: f"memmap={a}%{b}-{t1}+{t2}",
        size_text(),
        size_text(),
        st.integers(0, 13),
        st.integers(0, 13),
    )
    return st.one_of(
        st.builds(lambda v: f"mem={v}", size_text()),
        memmap,
        retype,
        st.sampled_from(
            [
                "memmap=exactmap",
                "mem=nopentium",
                "numa=off",
                "numa=noacpi",
                "numa=fake=2",
                "memblock=debug",
                "nosmp",
                "highmem",
                "=",
                "mem",
                "memmap",
                '"quoted arg"',
                "console=ttyS0",
            ]
        ),
        st.builds(lambda v: f"highmem={v}", size_text()),
        st.builds(lambda v: f"vmalloc={v}", size_text()),
        st.text(st.characters(codec="ascii", exclude_characters='"\\'), max_size=12),
    )


@st.composite
def numa_tables(draw: Any, top: int) -> list[dict[str, Any]]:
    """SRAT-style affinity entries: interleaved stripes of a drawn top, or random ones."""
    if draw(st.booleans()):
        nodes = draw(st.integers(1, 8))
        stripes = draw(st.integers(nodes, 16))
        end = draw(st.sampled_from([GiB, 8 * GiB, 64 * GiB, TiB, min(top, 64 * TiB)]))
        step = max(end // stripes, 1)
        return [
            {"node": i % nodes, "start": i * step, "end": (i + 1) * step} for i in range(stripes)
        ]
    out = []
    for _ in range(draw(st.integers(0, 5))):
        start = draw(addresses(top))
        node = draw(st.one_of(st.integers(0, 9), st.sampled_from([63, 64, 70000, -1])))
        out.append({"node": node, "start": start, **draw(extents(start, top))})
    return out


WRAPPERS = (
    "__alloc_bootmem",
    "__alloc_bootmem_nopanic",
    "__alloc_bootmem_node",
    "__alloc_bootmem_low",
    "__alloc_bootmem_low_node",
)


@st.composite
def workload_ops(draw: Any, top: int) -> dict[str, Any]:
    """One [[workload]] entry, mostly well formed for its op, sometimes with a key it may not
    take or a bad value."""
    op = draw(st.sampled_from(["alloc", "alloc", "reserve", "free"]))
    out: dict[str, Any] = {"op": op, "size": draw(sizes(top))}
    if op == "alloc":
        out["align"] = draw(st.sampled_from([0, 1, 3, 64, 4096, 1 << 21, 1 << 40]))
        out["goal"] = draw(addresses(top))
        wrapper = draw(st.sampled_from(WRAPPERS))
        out["wrapper"] = wrapper
        if wrapper.endswith("_node"):
            out["node"] = draw(st.integers(0, 9))
    else:
        out["addr"] = draw(addresses(top))
        if draw(st.booleans()):
            out["node"] = draw(st.integers(0, 9))
        if op == "reserve":
            out["exclusive"] = draw(st.booleans())
    if draw(rare):
        key = draw(st.sampled_from(["align", "addr", "node", "exclusive", "op", "wrapper"]))
        out[key] = draw(st.sampled_from([1, "free", True, -1, "__alloc_bootmem_node"]))
    return out


def workloads(top: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(workload_ops(top), max_size=4)


@st.composite
def machine_files(draw: Any, *, fast: bool) -> str:
    """A machine file as TOML text, addresses anywhere up to 2**64.

    A numa64 2.6.25 boot allocates per 128 MiB section of RAM below MAXMEM (a million
    requests and about 25 s for 64 TiB, as the sweep shows), so there each usable entry holds
    at most 256 GiB (``fast``) or 2 TiB (the campaign); RAM above MAXMEM costs nothing and is
    not capped."""
    arch = draw(st.sampled_from(["x86_32", "numa64"]))
    profiles = ["2.6.25", "6.1"] + (["2.6.26-rc1"] if arch == "x86_32" else [])
    profile = draw(st.sampled_from(profiles))
    top = 1 << 64
    ram_cap = top
    if arch == "numa64" and profile == "2.6.25":
        ram_cap = 256 * GiB if fast else 2 * TiB
    lines = [
        "[machine]",
        f'name = "fuzz-{arch}"',
        f'arch = "{arch}"',
        f'allocator = "{draw(st.sampled_from(ALLOCATORS))}"',
        "",
        "[kernel]",
        f'profile = "{profile}"',
    ]
    words = draw(st.lists(cmdline_params(arch), max_size=3)) if draw(st.booleans()) else []
    lines.append(f"cmdline = {json.dumps(' '.join(words))}")
    if arch == "x86_32":
        lines.append(f'highmem = "{draw(st.sampled_from(["off", "4G", "64G"]))}"')
        if draw(st.booleans()):
            lines.append(f"smp = {draw(st.sampled_from(['true', 'false']))}")
    else:
        if draw(st.booleans()) and profile == "2.6.25":
            lines.append(f'free_ram = "{draw(st.sampled_from(["node", "generic"]))}"')
        if draw(st.booleans()):
            lines.append(f'srat_check = "{draw(st.sampled_from(["memblks", "hulls"]))}"')
    for ent in draw(e820_tables(top, ram_cap)):
        lines += ["", "[[firmware.e820]]"]
        lines += [f"{k} = {_value(v)}" for k, v in ent.items()]
    if arch == "numa64":
        for ent in draw(numa_tables(top)):
            lines += ["", "[[numa.memory]]"]
            lines += [f"{k} = {_value(v)}" for k, v in ent.items()]
    for op in draw(workloads(top)):
        lines += ["", "[[workload]]"]
        lines += [f"{k} = {_value(v)}" for k, v in op.items()]
    return "\n".join(lines) + "\n"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return _toml_int(v)
    return json.dumps(v)


@st.composite
def text_mutations(draw: Any, text: str) -> str:
    """``text`` with a few lines deleted, duplicated, swapped, cut or edited."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "swap", "cut", "digit", "garbage"]))
        if how == "delete":
            del lines[i]
        elif how == "duplicate":
            lines.insert(i, lines[i])
        elif how == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif how == "digit":
            digits = [k for k, ch in enumerate(lines[i]) if ch in "0123456789abcdef"]
            if digits:
                k = draw(st.sampled_from(digits))
                new = draw(st.sampled_from("0123456789abcdef"))
                lines[i] = lines[i][:k] + new + lines[i][k + 1 :]
        else:
            lines.insert(i, draw(st.text(st.characters(codec="utf-8"), max_size=40)))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# running the CLI and the promise


def run_cli(argv: list[str]) -> tuple[int, str, str, float]:
    """``bootemu argv`` in-process: (exit code, stdout, stderr, seconds)."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - t0


def check_promise(code: int, err: str, seconds: float, report: Path | None) -> dict | None:
    """The README's promise for one ``boot`` (``report``: its --report file); returns the
    report when one was written."""
    assert code in (0, 1, 2), code
    if currently_in_test_context():
        event(f"exit {code}")  # shown by --hypothesis-show-statistics
    assert "Traceback" not in err
    lines = err.splitlines()
    if code == 0:
        assert lines == [], err
    else:
        assert len(lines) == 1 and lines[0].startswith("bootemu: "), err
    assert seconds < MAX_SECONDS, f"{seconds:.1f} s"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < MAX_RSS_BYTES
    if report is None or code == 2:
        return None
    assert report.exists(), "a boot ran but wrote no report"
    data = json.loads(report.read_text())
    assert data["outcome"] in ("ok", "panic")
    assert (code == 1) == (data["outcome"] != "ok" or bool(data["violations"]))
    return data


def boot_and_check(machine: Path, workdir: Path, extra: tuple[str, ...] = ()) -> dict | None:
    """Boot ``machine`` with a report and hold the result to the promise."""
    report = workdir / "report.json"
    report.unlink(missing_ok=True)
    code, _, err, seconds = run_cli(
        ["boot", str(machine), "--log-format", "dmesg", "--report", str(report), *extra]
    )
    return check_promise(code, err, seconds, report)


def compare_and_check(machine: Path, workdir: Path, allocators: str) -> dict | None:
    """``bootemu compare`` of ``machine``: the same promise, one report per backend."""
    report = workdir / "compare.json"
    report.unlink(missing_ok=True)
    code, _, err, seconds = run_cli(
        ["compare", str(machine), "--allocators", allocators, "--report", str(report)]
    )
    assert code in (0, 1, 2), code
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines == [] if code == 0 else len(lines) == 1 and lines[0].startswith("bootemu: ")
    assert seconds < MAX_SECONDS * 4
    if code == 2:
        return None
    data = json.loads(report.read_text())
    assert len(data["boots"]) == len(allocators.split(","))
    bad = [b for b in data["boots"] if b["outcome"] != "ok" or b["violations"]]
    assert (code == 1) == bool(bad)
    return data
