"""``bootemu explain``: every page of a real boot's ``Memory:`` line, by owner.

The expected figures are the log's own ``Memory:`` line (parsed here with a regular
expression of the test, not with bootemu's parser), the trace's addresses and sizes, the
kernel's ``System.map``, and the arithmetic written next to each assertion.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bitarray import bitarray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootemu.cli import main
from bootemu.explain import explain_log, explain_machine
from bootemu.machine import load_machine

DATA = Path(__file__).parent / "data"
LOGS_2008 = DATA / "real-boots-2008" / "logs"
LOGS_61 = DATA / "real-boots"
KERNEL_OF = dict(
    line.split("|")[0].split()[:2]
    for line in (DATA / "real-boots-2008" / "cases.txt").read_text().splitlines()
    if line.strip()
)

I386_61 = sorted(
    p.stem
    for p in LOGS_61.glob("*.log")
    if p.stem.startswith(("pae", "nopae")) and "zoneinfo" not in p.stem
)
AMD64_61 = sorted(p.stem for p in LOGS_61.glob("amd64*.log") if "zoneinfo" not in p.stem)
BOOTMEM_2008 = sorted(
    p.stem
    for p in LOGS_2008.glob("*.log")
    if p.stem.startswith(("tpae", "tnohigh", "tg4", "tn2625s"))
)
RFC_2008 = sorted(p.stem for p in LOGS_2008.glob("trfc_*.log"))


def memory_line(path: Path) -> tuple[int, int, int]:
    """(free, total, reserved) KiB, straight from the log."""
    m = re.search(
        r"Memory: (\d+)[kK]/(\d+)[kK] available \(.*?(\d+)[kK] reserved", path.read_text()
    )
    assert m, path
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def system_map(case: str) -> str:
    return str(DATA / "real-boots-2008" / "kernels" / KERNEL_OF[case] / "System.map")


def artifacts(case: str) -> dict[str, str]:
    """The kernel's .config and System.map, as a user who built it has them."""
    kernel = DATA / "real-boots-2008" / "kernels" / KERNEL_OF[case]
    return {"kconfig": str(kernel / "config"), "system_map": str(kernel / "System.map")}


def explain(path: Path, **kw):
    return explain_log(path.read_text(), source=path.name, **kw)


def sums(expl) -> tuple[int, int]:
    reserved = sum(r.kib for r in expl.rows if r.counted_in == "reserved")
    return reserved, reserved + sum(r.kib for r in expl.rows if r.counted_in == "total-free")


def check_sums(expl, path: Path) -> None:
    free, total, reserved = memory_line(path)
    assert expl.kernel == (free, total, reserved)
    assert sums(expl) == (reserved, total - free)
    assert not [r for r in expl.rows if r.owner.startswith("not attributed")]
    assert all(r.pages > 0 and r.kib == r.pages * 4 for r in expl.rows)


@pytest.mark.parametrize("case", I386_61)
def test_i386_61_rows_sum_to_the_memory_line(case):
    path = LOGS_61 / f"{case}.log"
    expl = explain(path)
    check_sums(expl, path)
    assert expl.accounting == "replay"
    # 6.1 counts no holes in its total and nothing handed off is missing from free: every
    # line of total - free is a reserved page (reserved = total - free on i386 6.1).
    assert [r for r in expl.rows if r.counted_in != "reserved"] == []
    assert all(r.confirmed is not None for r in expl.rows)


@pytest.mark.parametrize("case", BOOTMEM_2008)
def test_2008_rows_sum_to_the_memory_line(case):
    path = LOGS_2008 / f"{case}.log"
    expl = explain(path, **artifacts(case))
    check_sums(expl, path)
    assert expl.accounting == "replay"


@pytest.mark.parametrize("case", RFC_2008)
def test_rfc_rows_sum_to_the_memory_line(case):
    """The RFC kernel's calls replayed on bootmem2-rfc1 (the entry points it printed say so):
    the rows sum; the page-0 overlap the checks find makes the exit code 1."""
    path = LOGS_2008 / f"{case}.log"
    expl = explain(path, **artifacts(case))
    check_sums(expl, path)
    assert (expl.allocator, expl.accounting, expl.exit_code) == ("bootmem2-rfc1", "replay", 1)


@pytest.mark.parametrize("case", BOOTMEM_2008 + RFC_2008)
def test_2008_every_row_is_confirmed(case):
    """With the kernel's .config and System.map, the 2008 profiles (i386, the RFC kernel,
    x86_64 NUMA) make every call the real kernels made at the same address: each row of the
    table is confirmed by the trace (the lines of total - free that no call makes are not
    rows of calls: None)."""
    expl = explain(LOGS_2008 / f"{case}.log", **artifacts(case))
    assert all(r.confirmed is True for r in expl.rows if r.counted_in == "reserved")
    assert all(r.confirmed is None for r in expl.rows if r.counted_in == "total-free")


@pytest.mark.parametrize("case", AMD64_61)
def test_amd64_rows_sum_with_computed_deferred_pages(case):
    """amd64 6.1 prints Memory: before deferred struct-page init has freed most pages. The
    reserved rows (present - totalram_pages, which counts deferred pages as released) sum
    exactly; total - free is those rows plus two computed ones, neither sized from the
    kernel's figures: the deferred pages (the handed pages at or above each node's
    first_deferred_pfn) and the PUD pages preallocate_vmalloc_pages() takes, one per 512 GiB
    PGD slot of the 32 TiB vmalloc area (4-level paging): (32 << 40) >> 39 = 64."""
    path = LOGS_61 / f"{case}.log"
    expl = explain(path)
    check_sums(expl, path)
    others = [r for r in expl.rows if r.counted_in == "total-free"]
    assert [r.owner.split(":")[0] for r in others] == [
        "deferred struct-page init",
        "preallocate_vmalloc_pages()",
    ]
    assert others[1].pages == (32 << 40) >> 39 == 64
    assert not any(r.note for r in others)


def test_amd64_512M_deferred_row_arithmetic():
    """amd64_512M: one node, RAM [1, 0x9f) + [0x100, 0x1ffe0). Its last zone is DMA32, from
    pfn 0x1000: defer_init() counts pfns from there and stops at the first section-aligned
    pfn after more than 0x8000 of them: 0x9000 is the 0x8001st but not aligned, so
    first_deferred_pfn = 0x10000. Below it, memblock_free_all() frees the RAM outside the
    first MiB (158 + 0xff00 pages, all reserved up to 0x100) and the kernel image
    [0x1000000, 0x4411000) (0x3411 = 13329 pages): 0xff00 - 13329 = 51951 pages; less the 64
    vmalloc PUD pages: 51887 pages = 207548K, the log's free figure. The deferred row is the
    rest of totalram_pages = total - reserved."""
    path = LOGS_61 / "amd64_512M.log"
    free, total, reserved = memory_line(path)
    assert (0xFF00 - 0x3411 - 64) * 4 == free == 207548
    expl = explain(path)
    rows = {r.owner.split(":")[0]: r for r in expl.rows}
    assert rows["deferred struct-page init"].kib == total - reserved - (0xFF00 - 0x3411) * 4


def test_tpae_1G_arithmetic():
    """tpae_1G: Memory: 1037488k/1048448k available (..., 10316k reserved, ...).

    - mem_map: ``__alloc_bootmem_node size=800000 = 1000000``: 8 MiB = 2048 pages, at the
      address the emulation gives it too (confirmed);
    - kernel code: System.map _text c0100000, _etext: PFN_UP(_etext - PAGE_OFFSET) - 0x100;
    - holes: num_physpages = max_pfn 0x3ffe0 = 262112 pfns; RAM = pfns 0..0x9f (159, the
      e820 entry ends at 0x9fc00) + 0x100..0x3ffe0 (261856) = 262015; 97 pfns are holes;
    - page 0 is RAM that page_is_ram() denies: 1 page;
    - total - free = 1048448 - 1037488 = 10960 KiB = 10316 + 388 + 4 + the per-cpu lists.
    """
    path = LOGS_2008 / "tpae_1G.log"
    expl = explain(path, system_map=system_map("tpae_1G"))
    rows = {r.owner: r for r in expl.rows}
    assert rows["mem_map (struct page arrays)"].pages == 0x800000 // 4096 == 2048
    assert rows["mem_map (struct page arrays)"].confirmed is True
    sym = {
        name: int(addr, 16)
        for addr, _type, name in (
            line.split() for line in Path(system_map("tpae_1G")).read_text().splitlines()
        )
    }
    text, etext = (sym[k] - 0xC0000000 for k in ("_text", "_etext"))
    code = rows["kernel code (_text.._etext)"]
    assert code.pages == -(-etext // 4096) - text // 4096
    assert (
        rows["holes: pfns that are not RAM, counted in the total"].pages
        == 262112 - (159 + (0x3FFE0 - 0x100))
        == 97
    )
    assert rows["page 0: RAM that page_is_ram() denies, so not in reserved"].pages == 1
    pcp = rows["per-cpu page lists (order-0 frees that nr_free_pages() misses)"]
    assert 10316 + 388 + 4 + pcp.kib == 1048448 - 1037488


def test_pae_1G_mem_map_is_confirmed():
    """pae_1G: ``memblock_alloc_try_nid_raw: 10485760 bytes ... memmap_alloc`` reserved at
    [0x365fe000-0x36ffdfff]: 2560 pages, which the emulation's memmap_alloc() also takes."""
    expl = explain(LOGS_61 / "pae_1G.log")
    row = next(r for r in expl.rows if r.owner.startswith("mem_map"))
    assert row.pages == 10485760 // 4096 == 2560 and row.confirmed is True


def test_untraced_log_without_memory_line(capsys):
    """tn2625_seed_8g: 2.6.25 as released BUG()s in __absent_pages_in_range() before Memory:
    and prints no trace: the emulation is counted, nothing can be confirmed, the kernel's
    figures are unknown. Where the emulation BUG()s as the real kernel did, there is no table
    and the exit code is 1."""
    expl = explain(LOGS_2008 / "tn2625_seed_8g.log")
    assert expl.kernel is None and expl.accounting == "emulation"
    assert all(r.confirmed is None for r in expl.rows)
    assert expl.reserved_holds is None
    if expl.boot.outcome == "panic":
        assert expl.rows == [] and expl.booted is None and expl.exit_code == 1
        assert any("__absent_pages_in_range" in note for note in expl.notes)
    else:
        assert expl.rows and expl.exit_code == 0
    assert main(["explain", str(LOGS_2008 / "tn2625_seed_8g.log"), "--format", "json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["total_kib"] is None


def test_other_backend_counts_the_emulation():
    """On a backend the kernel did not run, the emulation's own calls are counted; the rows
    still sum to the figures of that boot (same arithmetic), and are confirmed or not."""
    expl = explain(LOGS_61 / "pae_1G.log", allocator="bootmem2")
    assert expl.accounting == "emulation"
    free, total, reserved = expl.booted
    assert sums(expl) == (reserved, total - free)
    assert all(r.confirmed in (True, False) for r in expl.rows)


def test_cli_text_and_json(capsys):
    assert main(["explain", str(LOGS_61 / "pae_1G.log")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "reserved sum holds; total - free sum holds"
    case = "tpae_smp_1G"
    assert (
        main(
            [
                "explain",
                str(LOGS_2008 / f"{case}.log"),
                "--system-map",
                system_map(case),
                "--format",
                "json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    free, total, reserved = memory_line(LOGS_2008 / f"{case}.log")
    assert (doc["total_kib"], doc["free_kib"], doc["reserved_kib"]) == (total, free, reserved)
    assert all(set(r) >= {"owner", "kib", "pages", "confirmed"} for r in doc["rows"])
    assert sum(r["kib"] for r in doc["rows"] if r["counted_in"] == "reserved") == reserved
    assert sum(r["kib"] for r in doc["rows"]) == total - free


def test_cli_bad_input(capsys, tmp_path):
    bad = tmp_path / "x.log"
    bad.write_text("not a boot log\n")
    assert main(["explain", str(bad)]) == 2
    assert "x.log" in capsys.readouterr().err
    assert main(["explain", str(LOGS_61 / "pae_1G.log"), "--system-map", str(bad)]) == 2


# --------------------------------------------------------------------------------------------
# The attribution on any machine: a partition of the pages the kernel's arithmetic counts


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mem_mb=st.integers(min_value=48, max_value=1024),
    profile=st.sampled_from(["2.6.25", "6.1"]),
    allocator=st.sampled_from(["bootmem", "bootmem2", "bootmem2-perblock", "memblock"]),
)
def test_rows_partition_the_counted_pages(mem_mb, profile, allocator):
    """On the 1 GiB QEMU PC with any mem=, each profile and backend, the reserved rows sum to
    the pages of the kernel's counting domain that were not handed off, counted here with a
    bitarray: 2.6.25 mem_init() walks pfns below max_low_pfn that page_is_ram() accepts (not
    pfn 0, not 640K-1M); 6.1 counts every present page. All rows sum to total - free of the
    boot's own Memory: line."""
    machine = load_machine(
        "qemu-pc-1g-i386",
        overrides=[
            f"kernel.profile={profile}",
            f"kernel.cmdline=mem={mem_mb}M",
            "kernel.smp=false",
        ],
    )
    expl = explain_machine(machine, allocator=allocator)
    result = expl.boot
    if result.outcome != "ok":
        return  # an emulated panic: no Memory: line to explain
    layout = result.boot.layout
    domain = bitarray(layout.max_pfn)
    domain.setall(0)
    for s, e in layout.ram:
        domain[s:e] = 1
    if profile == "2.6.25":
        domain[0:1] = 0
        domain[0xA0:0x100] = 0
        domain[layout.max_low_pfn :] = 0
    handed = bitarray(layout.max_pfn)  # the page-allocator model's pages, as bits
    handed.setall(0)
    for s, e in result.pagealloc.handed.runs(1, 0, layout.max_pfn):
        handed[s:e] = 1
    reserved = (domain & ~handed).count()
    rows = [r for r in expl.rows if r.counted_in == "reserved"]
    assert not [r for r in rows if r.owner.startswith("not attributed")]
    assert sum(r.pages for r in rows) == reserved
    m = re.search(r"Memory: (\d+)[kK]/(\d+)[kK] .*?(\d+)[kK] reserved", result.boot.summary[0])
    free, total = int(m.group(1)) // 4, int(m.group(2)) // 4
    assert sum(r.pages for r in expl.rows) == total - free
    if profile == "6.1":  # present - totalram_pages(): the arch's own figure
        assert reserved == int(m.group(3)) // 4


def test_deterministic(capsys):
    """The same log gives the same table and the same replay, byte for byte."""
    outs = []
    for _ in range(2):
        main(["explain", str(LOGS_61 / "amd64_numa2_sym.log"), "--format", "json"])
        main(["replay", str(LOGS_2008 / "tn2625s_seed_8g.log"), "--allocator", "bootmem2"])
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]


def test_explain_a_preset(capsys):
    """A preset has no kernel figures: the rows sum to its own boot's Memory: line."""
    assert main(["explain", "qemu-pc-1g-i386", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reserved_kib"] is None and doc["reserved_sum_holds"] is None
    booted = doc["booted"]
    assert sum(r["kib"] for r in doc["rows"]) == booted["total_kib"] - booted["free_kib"]
