"""``bootemu replay``: the real kernels' allocator calls replayed on every backend.

Expectations come from the logs themselves: each traced allocation's real address (the
``= ADDR`` of a ``bootmem_trace:`` line, the ``memblock_reserve:`` that follows a 6.1
``memblock_alloc*`` line) and the log's ``Memory:`` line. A replay on the backend the kernel
ran must give every call its real address; on the others it must end (ok or an emulated panic)
with the checks' verdict, never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bootemu.cli import main
from bootemu.importers.trace import read_trace
from bootemu.replay import render_replay, replay_log

DATA = Path(__file__).parent / "data"
LOGS_2008 = DATA / "real-boots-2008" / "logs"
LOGS_61 = DATA / "real-boots"

BOOTMEM_2008 = sorted(
    p.stem
    for p in LOGS_2008.glob("*.log")
    if p.stem.startswith(("tpae", "tg4", "tnohigh", "tn2625s"))
)
RFC_2008 = sorted(p.stem for p in LOGS_2008.glob("trfc_*.log"))
MEMBLOCK_61 = sorted(p.stem for p in LOGS_61.glob("*.log") if "zoneinfo" not in p.stem)
BACKENDS = ("bootmem", "bootmem2", "bootmem2-perblock", "bootmem2-rfc1", "memblock")


def replay(path: Path, allocator: str):
    return replay_log(path.read_text(), source=path.name, allocator=allocator)


def real_allocs(path: Path) -> list[int]:
    """The address of every traced allocation, straight from the log's lines."""
    return [c.result for c in read_trace(path.read_text()) if c.op == "alloc" and c.size]


@pytest.mark.parametrize("case", BOOTMEM_2008)
def test_2008_logs_on_bootmem_reproduce_every_address(case):
    path = LOGS_2008 / f"{case}.log"
    res = replay(path, "bootmem")
    want = real_allocs(path)
    assert [r.got or 0 for r in res.allocs] == want
    assert res.calls == res.same == len(want) > 20
    assert res.result.outcome == "ok" and not res.result.violations


@pytest.mark.parametrize("case", MEMBLOCK_61)
def test_61_logs_on_memblock_reproduce_every_address(case):
    path = LOGS_61 / f"{case}.log"
    res = replay(path, "memblock")
    want = real_allocs(path)
    assert [r.got or 0 for r in res.allocs] == want
    assert res.calls == res.same == len(want) > 30
    assert res.exit_code == 0


@pytest.mark.parametrize("case", RFC_2008)
def test_rfc_logs_on_bootmem2_rfc1_reproduce_every_address(case):
    """The RFC kernel's calls on the RFC's code as posted: every address, including the first
    alloc_low_node() returning physical 0, which the log reserved two lines before
    (``reserve addr=0 size=1000``, then ``alloc_low_node ... = 0``): the checks report that
    page as an overlap, and the replay exits 1."""
    path = LOGS_2008 / f"{case}.log"
    res = replay(path, "bootmem2-rfc1")
    want = real_allocs(path)
    assert [r.got for r in res.allocs] == want and want[0] == 0
    assert res.calls == res.same == len(want)
    assert [(v.kind, v.start_pfn, v.end_pfn) for v in res.result.violations] == [("overlap", 0, 1)]
    assert res.exit_code == 1


@pytest.mark.parametrize("case", ["tpae_1G", "tpae_8G", "tnohigh_512M", "tg4_1G"])
def test_2008_replay_gives_the_real_free_figure(case):
    """The replay hands off what the real kernel's calls left free: the Memory: line's first
    figure (2.6.25's mem_init() arithmetic is the arch's) equals the log's."""
    path = LOGS_2008 / f"{case}.log"
    res = replay(path, "bootmem")
    real = re.search(r"Memory: (\d+)k/", res.real_memory).group(1)
    assert re.search(r"Memory: (\d+)k/", res.replay_memory).group(1) == real


@pytest.mark.parametrize("case", ["amd64_4G", "amd64_numa2_sym", "pae_1G", "nopae_4G"])
def test_61_replay_gives_the_real_reserved_figure(case):
    """On amd64 the free figure is printed before deferred page init (not comparable), but
    reserved = present - totalram_pages is: the replay's equals the log's."""
    res = replay(LOGS_61 / f"{case}.log", "memblock")
    pattern = r"(\d+)K reserved"
    assert re.search(pattern, res.replay_memory).group(1) == re.search(
        pattern, res.real_memory
    ).group(1)


TRACED = [LOGS_2008 / f"{c}.log" for c in BOOTMEM_2008 + RFC_2008] + [
    LOGS_61 / f"{c}.log" for c in MEMBLOCK_61
]


@pytest.mark.parametrize("path", TRACED, ids=lambda p: p.stem)
def test_every_traced_log_runs_on_every_backend(path):
    """To the end or to an emulated panic, with the checks' verdict as the exit code; the
    calls counted are the allocations replayed (all of them unless a panic stopped it)."""
    want = len(real_allocs(path))
    for backend in BACKENDS:
        res = replay(path, backend)
        ok = res.result.outcome == "ok"
        assert res.exit_code == (0 if ok and not res.result.violations else 1)
        assert res.calls == want if ok else res.calls <= want  # the panicking call counts
        assert render_replay(res).splitlines()[-1] == (
            f"replayed {res.calls} calls: {res.same} at the real address"
        )


def test_memblock_on_a_2008_log_is_top_down():
    """memblock searches from the top of lowmem: no 2.6.25 allocation keeps its address (the
    kernel's goals of 16 MiB were bottom-up hints), and the boot still ends clean."""
    res = replay(LOGS_2008 / "tpae_1G.log", "memblock")
    assert res.same == 0 and res.calls == 28
    assert all(r.got > 16 << 20 for r in res.allocs if r.request.wrapper != "__alloc_bootmem_low")


def test_x86_64_node_comes_from_the_core_line():
    """x86_64 2.6.25 prints nid=0 for node 1's early allocations; the ``core bdata_start``
    line (node 1's bootmem starts at 0x80000000 on the seed layout) names the node."""
    res = replay(LOGS_2008 / "tn2625s_seed_8g.log", "bootmem")
    on_node1 = [r for r in res.allocs if r.call.core_starts[:1] == (0x80000000,)]
    assert on_node1 and all(r.request.node == 1 for r in on_node1)


def test_cli_last_line_and_exit_codes(capsys):
    assert main(["replay", str(LOGS_2008 / "tpae_1G.log"), "--allocator", "bootmem"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "replayed 28 calls: 28 at the real address"
    # An untraced log is bad input.
    assert main(["replay", str(LOGS_2008 / "tn2625_seed_8g.log"), "--allocator", "bootmem"]) == 2
    assert "no traced allocator calls" in capsys.readouterr().err


def test_cli_exit_1_on_an_emulated_panic(capsys):
    """bootmem2-perblock BUG()s on the reservation of [0x9fc00, 0xa0c00): pfn 0xa0 is in no
    block (the RFC's mark_bootmem())."""
    rc = main(
        ["replay", str(LOGS_2008 / "tn2625s_flat_4g.log"), "--allocator", "bootmem2-perblock"]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "outcome: panic" in captured.out
    assert captured.out.splitlines()[-1] == "replayed 0 calls: 0 at the real address"


def test_compare_replay_column(capsys, tmp_path):
    machine = tmp_path / "m.toml"
    assert main(["import-dmesg", str(LOGS_2008 / "tpae_1G.log"), "-o", str(machine)]) == 0
    capsys.readouterr()
    rc = main(
        [
            "compare",
            str(machine),
            "--allocators",
            "bootmem,memblock",
            "--replay",
            str(LOGS_2008 / "tpae_1G.log"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    row = next(line for line in out.splitlines() if line.startswith("replayed calls"))
    assert row.split()[-3:] == ["28/28", "|", "0/28"]


def test_cli_machine_file_and_set(capsys, tmp_path):
    """--machine takes the machine from a file (here the log's own, written by import-dmesg);
    --set edits the imported one: mem=512M drops the top half of the 1 GiB guest, so the real
    mem_map request (8 MiB at 16 MiB) still fits but the replay is a different boot."""
    log = LOGS_2008 / "tpae_1G.log"
    machine = tmp_path / "m.toml"
    assert main(["import-dmesg", str(log), "-o", str(machine)]) == 0
    capsys.readouterr()
    assert main(["replay", str(log), "--allocator", "bootmem", "--machine", str(machine)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "replayed 28 calls: 28 at the real address"
    main(["replay", str(log), "--allocator", "bootmem", "--set", "kernel.cmdline=mem=512M"])
    out = capsys.readouterr().out
    assert "replay: Memory: " in out and "/524288k available" in out
