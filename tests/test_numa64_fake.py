"""numa64 6.1: NUMA emulation, ``numa=fake=`` (issue 13 item 4).

No real boot with ``numa=fake=`` exists in tests/data, so every expectation below is derived
from the Linux 6.1 sources (arch/x86/mm/numa_emulation.c split_nodes_interleave(),
split_nodes_size_interleave_uniform(), numa_emulation(); arch/x86/mm/numa.c numa_init(),
numa_cleanup_meminfo(), numa_set_distance(), numa_alloc_distance(), numa_register_memblks()),
with the arithmetic written out next to each expectation. The machine is the real two-node
QEMU guest ``amd64_numa2_sym`` (4 GiB of RAM: [4K, 0x9f000), [1M, 0xbffe0000) and [4G, 5G);
node 0 = [0, 2G), node 1 = [2G, 5G) after the SRAT merges), or the same map without an SRAT
(``amd64_4G``: one dummy node [0, 5G)). The real boots themselves, without ``numa=fake``,
stay exactly as before (test_numa64.py / test_real_boots.py compare them line by line).

Sizes used throughout: RAM = 158 + 786144 + 262144 = 1048446 pages; max_pfn = 0x140000 =
1310720; holes below max_pfn = 1310720 - 1048446 = 262274 pages. FAKE_NODE_MIN_SIZE = 32 MiB.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bootemu_arches.numa64.numa_emu_61 import FAKE_NODE_MIN_SIZE, numa_emulation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bootemu.machine import load_machine
from bootemu.models import BootemuError
from bootemu.sequencer import boot_machine

DATA = Path(__file__).parent / "data" / "numa64"
SYM = str(DATA / "amd64_numa2_sym.toml")
ONE = str(DATA / "amd64_4G.toml")
M, G = 1 << 20, 1 << 30
#: The guest's RAM (pfn ranges) and max_pfn.
RAM = [(1, 0x9F), (0x100, 0xBFFE0), (0x100000, 0x140000)]
MAX_PFN = 0x140000
_FAKING = re.compile(r"Faking node (\d+) at \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] \((\d+)MB\)")


def boot(path: str, cmdline: str, *overrides: str):
    m = load_machine(path, overrides=(f"kernel.cmdline=console=ttyS0 {cmdline}", *overrides))
    with capture_logs() as events:
        result = boot_machine(m, allocator="memblock")
    lines = [ln for e in events if "dmesg" in e for ln in str(e["dmesg"]).split("\n")]
    return result, lines


def faked(lines: list[str]) -> list[tuple[int, int, int]]:
    """(nid, start, end) of every ``Faking node`` line."""
    out = []
    for ln in lines:
        m = _FAKING.fullmatch(ln)
        if m:
            nid, s, e, mb = int(m[1]), int(m[2], 16), int(m[3], 16) + 1, int(m[4])
            assert mb == (e - s) >> 20
            out.append((nid, s, e))
    return out


def starting(lines: list[str], prefix: str) -> list[str]:
    return [ln for ln in lines if ln.startswith(prefix)]


# --------------------------------------------------------------------------------------------
# The four option forms on the two-node layout


def test_fake_2_interleave():
    # split_nodes_interleave(nr_nodes 2): size = PFN_PHYS(1048446 // 2) = 524223 pages =
    # 0x7ffbf000; big = (0x7ffbf000 % 32M) * 2 // 32M = 0x3f7e000 // 0x2000000 = 1; size
    # rounded down to 32M: 0x7e000000 (2016 MiB).
    # Phys node 0 [0, 2G): nid 0 < big, end = 0x7e000000 + 32M = 2G, whose RAM (524190 pages)
    # >= size; 2G - 2G of RAM is left (< size), so end = limit = 2G: 2048MB.
    # Phys node 1 [2G, 5G): end = 2G + 0x7e000000, then +32M steps until the RAM inside
    # reaches 0x7e000000: [2G, 3G - 128K) gives 0x3ffe0000, so 0x3e020000 more above 4G is
    # needed: end = 5G (= the limit): 3072MB.
    result, lines = boot(SYM, "numa=fake=2")
    assert result.outcome == "ok" and result.violations == []
    assert faked(lines) == [(0, 0, 2 * G), (1, 2 * G, 5 * G)]
    assert "NUMA: Initialized distance table, cnt=2" in lines
    # The table (4 bytes, PAGE_SIZE aligned, top-down below max_pfn) takes the page under the
    # 3 page-table pages at the top of RAM, so NODE_DATA(1) (0x2b000 bytes) moves one page
    # down from the real boot's [mem 0x13ffd2000-0x13fffcfff].
    assert starting(lines, "NODE_DATA") == [
        "NODE_DATA(0) allocated [mem 0x7ffd5000-0x7fffffff]",
        "NODE_DATA(1) allocated [mem 0x13ffd1000-0x13fffbfff]",
    ]
    # Fake node i sits on physical node i: distances 10 on the diagonal, 20 elsewhere.
    assert result.report["facts"]["numa_distance"] == "10,20;20,10"


def test_fake_4_interleave():
    # size = PFN_PHYS(1048446 // 4) = 262111 pages = 0x3ffdf000; big = 0x1fdf000 * 4 //
    # 0x2000000 = 3; size = 0x3e000000 (992 MiB). Round 1: nid 0 (big) on phys 0: end =
    # 0x3e000000 + 32M = 1G, RAM 262046 pages >= size: [0, 1G). nid 1 (big) on phys 1: end =
    # 2G + 1G = 3G; the RAM left in [3G, 4G) is 0 < 32M, so the node runs to the DMA32
    # boundary: [2G, 4G). Round 2: nid 2 (big) on phys 0: [1G, 2G), and 0 is left: end =
    # limit. nid 3 on phys 1: end = 4G + 0x3e000000 leaves 32M < size: end = limit = 5G.
    result, lines = boot(SYM, "numa=fake=4")
    assert result.outcome == "ok" and result.violations == []
    assert faked(lines) == [(0, 0, 1 * G), (1, 2 * G, 4 * G), (2, 1 * G, 2 * G), (3, 4 * G, 5 * G)]
    assert starting(lines, "  node ") == [
        "  node   0: [mem 0x0000000000001000-0x000000000009efff]",
        "  node   0: [mem 0x0000000000100000-0x000000003fffffff]",
        "  node   2: [mem 0x0000000040000000-0x000000007fffffff]",
        "  node   1: [mem 0x0000000080000000-0x00000000bffdffff]",
        "  node   3: [mem 0x0000000100000000-0x000000013fffffff]",
    ]
    assert starting(lines, "Initmem setup node") == [
        "Initmem setup node 0 [mem 0x0000000000001000-0x000000003fffffff]",
        "Initmem setup node 1 [mem 0x0000000080000000-0x00000000bffdffff]",
        "Initmem setup node 2 [mem 0x0000000040000000-0x000000007fffffff]",
        "Initmem setup node 3 [mem 0x0000000100000000-0x000000013fffffff]",
    ]
    # memmap_init(): the hole [0xbffe0, 0x100000) now lies before node 3's Normal range; only
    # the 32 pages in the present section 0xb8000-0xc0000 are counted.
    assert starting(lines, "On node") == [
        "On node 0, zone DMA: 1 pages in unavailable ranges",
        "On node 0, zone DMA: 97 pages in unavailable ranges",
        "On node 3, zone Normal: 32 pages in unavailable ranges",
    ]
    assert starting(lines, "setup_percpu:") == [
        "setup_percpu: NR_CPUS:8192 nr_cpumask_bits:2 nr_cpu_ids:2 nr_node_ids:4"
    ]
    assert starting(lines, "Built") == [
        "Built 4 zonelists, mobility grouping on.  Total pages: 1031904"
    ]
    # emu_nid_to_phys = 0, 1, 0, 1.
    assert result.report["facts"]["numa_distance"] == (
        "10,20,10,20;20,10,20,10;10,20,10,20;20,10,20,10"
    )
    # __apicid_to_node[]: CPU 0 (phys 0) -> fake 0, CPU 1 (phys 1) -> fake 1; the per-cpu
    # first chunk is allocated on those nodes.
    nodes = {
        a["label"]: a["node"]
        for a in result.report["allocations"]
        if a["label"].startswith("per-cpu area")
    }
    assert nodes == {"per-cpu area cpu 0": 0, "per-cpu area cpu 1": 1}


def test_fake_256m_size_interleave():
    # split_nodes_size_interleave(): min_size = PFN_PHYS(1048446 // MAX_NUMNODES (1024)) =
    # 1023 pages -> max(4 MiB, 32M) = 32M <= 256M: no message. find_end_of_node() on phys 0:
    # [0, 256M) holds 65438 pages < 65536, +32M: 288MB. Then 256M pieces alternate between
    # the nodes. Phys 1's 4th piece starts at 0xb0000000: [0xb0000000, 4G) holds 0xffe0
    # pages, so it grows in 32M steps to 4G + 32M: 1312MB. The last piece of each node would
    # leave 224M < 256M: it runs to the limit (480MB each).
    result, lines = boot(SYM, "numa=fake=256M")
    assert result.outcome == "ok" and result.violations == []
    mb = 256 * M
    want = [(0, 0, 288 * M), (1, 2 * G, 2 * G + mb)]
    for k in range(1, 6):
        want.append((2 * k, 288 * M + (k - 1) * mb, 288 * M + k * mb))
        if k < 3:
            want.append((2 * k + 1, 2 * G + k * mb, 2 * G + (k + 1) * mb))
        elif k == 3:
            want.append((7, 0xB0000000, 4 * G + 32 * M))
        else:
            start = 4 * G + 32 * M + (k - 4) * mb
            want.append((2 * k + 1, start, start + mb))
    want += [(12, 288 * M + 5 * mb, 2 * G), (13, 4 * G + 32 * M + 2 * mb, 5 * G)]
    assert faked(lines) == want
    assert starting(lines, "Built") == [
        "Built 14 zonelists, mobility grouping on.  Total pages: 1031904"
    ]


def test_fake_2u_uniform():
    # numa_emulation() 'U': per physical node (pi.blk[0] each time), uniform_size() =
    # (end_pfn - start_pfn) / 2, ALIGN()ed to 32M. Phys 0 [0, 2G): 1G pieces. Phys 1
    # [2G, 5G): 1.5G pieces; the first ends at 3.5G, where [3.5G, 4G) holds no RAM (< 32M),
    # so it runs to 4G (2048MB); the second is [4G, 5.5G) cut at the limit 5G (1024MB).
    # Each physical node got its 2: no "only got" failure.
    result, lines = boot(SYM, "numa=fake=2U")
    assert result.outcome == "ok" and result.violations == []
    assert faked(lines) == [(0, 0, 1 * G), (1, 1 * G, 2 * G), (2, 2 * G, 4 * G), (3, 4 * G, 5 * G)]
    assert not [ln for ln in lines if "too small" in ln]
    assert result.report["facts"]["numa_distance"] == (
        "10,10,20,20;10,10,20,20;20,20,10,10;20,20,10,10"
    )


# --------------------------------------------------------------------------------------------
# Without an SRAT, messages, parse errors, the distance list


def test_dummy_node_split_and_cpus_dealt_round_robin():
    # dummy_numa_init(): one block [0, 5G), then the same arithmetic as test_fake_2_interleave
    # on a single physical node: nid 0 (big): end = 0x7e000000 + 32M = 2G; 3G - 128K of RAM is
    # left (> size) so it stays; nid 1: the rest, [2G, 5G).
    result, lines = boot(ONE, "numa=fake=2", "kernel.cpu_nodes=0,0,0")
    assert lines[lines.index("No NUMA configuration found") + 1] == (
        "Faking a node at [mem 0x0000000000000000-0x000000013fffffff]"
    )
    assert faked(lines) == [(0, 0, 2 * G), (1, 2 * G, 5 * G)]
    assert result.report["facts"]["numa_distance"] == "10,10;10,10"  # one physical node
    # No SRAT: every CPU is NUMA_NO_NODE, so numa_init_array() deals them over the online
    # nodes 0, 1, 0.
    nodes = [
        a["node"] for a in result.report["allocations"] if a["label"].startswith("per-cpu area")
    ]
    assert nodes == [0, 1, 0]
    assert starting(lines, "setup_percpu:") == [
        "setup_percpu: NR_CPUS:8192 nr_cpumask_bits:3 nr_cpu_ids:3 nr_node_ids:2"
    ]


def test_uniform_split_that_comes_short_fails():
    # 8U on the dummy [0, 5G): 640M pieces; the 5th, [2560M, 3200M), leaves no RAM below 4G
    # (RAM ends at 3G - 128K), so it runs to 4G; then [4G, 4G + 640M) and [4G + 640M, 5G):
    # 7 nodes < 8, numa_emulation() fails and the dummy node stays.
    result, lines = boot(ONE, "numa=fake=8U")
    assert "numa_emulation: phys: 0 only got 7 of 8 nodes, failing" in lines
    assert len(faked(lines)) == 7
    assert starting(lines, "Initmem setup node") == [
        "Initmem setup node 0 [mem 0x0000000000001000-0x000000013fffffff]"
    ]
    assert "numa_emulated_nodes" not in result.report["facts"]


def test_messages_of_the_splits():
    # 3U: 1310720 // 3 = 436906 pages = 1706.66 MiB -> ALIGN to 1728 MiB, printed by
    # pr_err() as the uniform path always does when the quotient is not 32M-aligned.
    _, lines = boot(ONE, "numa=fake=3U")
    assert "Fake node size 1706MB too small, increasing to 1728MB" in lines
    # 16M: below min_size = 32M.
    _, lines = boot(ONE, "numa=fake=16M")
    assert "Fake node size 16MB too small, increasing to 32MB" in lines
    # 2000 > MAX_NUMNODES (1024, CONFIG_NODES_SHIFT 10): reduced; then 1048446 // 1024 =
    # 1023 pages = 4 MiB, which rounds down to 0: no emulation.
    _, lines = boot(ONE, "numa=fake=2000")
    assert [
        "numa=fake=2000 too large, reducing to 1024",
        "Not enough memory for each node.  NUMA emulation disabled.",
    ] == [ln for ln in lines if "numa=fake" in ln or "Not enough" in ln]
    assert faked(lines) == []


def test_garbage_after_fake_is_what_the_kernel_makes_of_it():
    plain = boot(ONE, "")[1]
    # simple_strtoul("abc") = 0 and "0": split_nodes_interleave() returns -1 without a word.
    for spec in ("abc", "0", ""):
        assert boot(ONE, f"numa=fake={spec}")[1] == plain
    # 6.1 quirk: only upper-case M/G select the size form; "2m" is simple_strtoul() = 2 nodes.
    assert faked(boot(ONE, "numa=fake=2m")[1]) == [(0, 0, 2 * G), (1, 2 * G, 5 * G)]
    # The last numa= wins (numa_emu_cmdline() keeps the last string).
    assert faked(boot(ONE, "numa=fake=4 numa=fake=2")[1]) == [(0, 0, 2 * G), (1, 2 * G, 5 * G)]


def test_distance_list_after_colon():
    # get_option() per pair (0,0), (0,1), (1,0), (1,1): "10," and "25," are taken (ret 2);
    # "35" has no comma after it (ret 1): 6.1 quirk, it is read and then replaced by the
    # default (LOCAL: both fake nodes are on the one dummy node); then the string is empty.
    result, _ = boot(ONE, "numa=fake=2:10,25,35")
    assert result.report["facts"]["numa_distance"] == "10,25;10,10"
    # A diagonal other than LOCAL_DISTANCE is refused once by numa_set_distance().
    result, lines = boot(ONE, "numa=fake=2:11,")
    assert "Warning: invalid distance parameter, from=0 to=0 distance=11" in lines
    assert result.report["facts"]["numa_distance"] == "10,10;10,10"


def test_failed_srat_round_leaves_no_spec_for_the_dummy_round():
    # The SRAT's node 1 loses [4G + 1M, 5G) (test_numa64.test_61_coverage_check): the
    # emulated nodes cover no more, numa_register_memblks() refuses them, and the dummy round
    # calls numa_emulation() again with emu_cmdline already past "2" (6.1 quirk): "" -> 0
    # nodes, silently. One dummy node results.
    _, lines = boot(SYM, "numa=fake=2", "numa.memory.3.end=0x100100000")
    i = lines.index("NUMA: nodes only cover 3072MB of your 4095MB e820 RAM. Not used.")
    assert faked(lines[:i]) and not faked(lines[i:])
    assert starting(lines, "Initmem setup node") == [
        "Initmem setup node 0 [mem 0x0000000000001000-0x000000013fffffff]"
    ]


# --------------------------------------------------------------------------------------------
# Properties of the splits (numa_emulation() on generated physical layouts)


class Printk:
    """A stand-in for Boot: collects the printed lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def printk(self, event: str, line: str, **fields: object) -> None:
        self.lines.append(line)


@st.composite
def layouts(draw):
    """1-3 physical nodes, each a run of 1-3 RAM chunks of 16 MiB - 3 GiB with holes of
    0 - 1 GiB between them, then an option in one of the three forms."""
    pos, ram, meminfo = 0, [], []
    for node in range(draw(st.integers(1, 3))):
        start = pos
        for _ in range(draw(st.integers(1, 3))):
            pos += draw(st.integers(0, 64)) * 16 * M  # hole
            size = draw(st.integers(1, 192)) * 16 * M
            ram.append((pos >> 12, (pos + size) >> 12))
            pos += size
        meminfo.append([node, start, pos])
    spec = draw(
        st.one_of(
            st.integers(1, 40).map(str),
            st.integers(1, 6).map(lambda n: f"{n}U"),
            st.integers(32, 4096).map(lambda mb: f"{mb}M"),
        )
    )
    return ram, meminfo, spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_fake_nodes_tile_the_physical_nodes(case):
    ram, meminfo, spec = case
    log = Printk()
    max_pfn = ram[-1][1]
    emu, _ = numa_emulation(
        log,
        spec,
        [list(b) for b in meminfo],
        {n for n, _, _ in meminfo},
        ram,
        max_pfn,
        None,
        lambda size: 0x1000,
    )
    pieces = faked(log.lines)
    if emu is None:
        return
    # Every piece lies in one physical block, and together they tile each block exactly (a
    # fake nid may own pieces on several physical nodes: nid++ % nr_nodes wraps round).
    assert sum(any(s <= ps and pe <= e for _, s, e in meminfo) for _, ps, pe in pieces) == len(
        pieces
    )
    for _, s, e in meminfo:
        mine = sorted((ps, pe) for _, ps, pe in pieces if s <= ps < e)
        assert mine and mine[0][0] == s and mine[-1][1] == e
        assert all(a[1] == b[0] for a, b in zip(mine, mine[1:], strict=False))
        # No piece below FAKE_NODE_MIN_SIZE unless it is the end of its physical block (the
        # kernel's only way to make one: a block smaller than the size, or the uniform rest).
        assert all(pe - ps >= FAKE_NODE_MIN_SIZE or pe == e for ps, pe in mine)
    # The committed meminfo (after numa_cleanup_meminfo()) holds all RAM pages once.
    covered = sorted((s >> 12, e >> 12) for _, s, e in emu.meminfo)
    assert all(a[1] <= b[0] for a, b in zip(covered, covered[1:], strict=False))
    inside = sum(max(0, min(e, ce) - max(s, cs)) for s, e in ram for cs, ce in covered)
    assert inside == sum(e - s for s, e in ram)
    assert emu.nodes_parsed == {n for n, _, _ in emu.meminfo}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.one_of(
        st.integers(1, 12).map(str),
        st.integers(1, 4).map(lambda n: f"{n}U"),
        st.sampled_from(["64M", "300M", "1G", "2G"]),
    )
)
def test_fake_boots_hand_every_page_off_once(spec):
    result, lines = boot(SYM, f"numa=fake={spec}")
    assert result.outcome == "ok" and result.violations == []
    # The zones still count all 1048446 present pages, whatever the nodes.
    assert sum(z["present"] for z in result.report["zones"]) == 1048446
    assert starting(lines, "Memory:")[0].startswith("Memory: ")
    assert "/4193784K available" in starting(lines, "Memory:")[0]


def test_what_is_not_modelled_is_a_clear_error():
    # 2.6.25 (numa_64.c's own numa_emulation() of 2008) is not modelled.
    with pytest.raises(BootemuError, match=r"numa=fake= .* not modelled by numa64 profile 2\.6"):
        boot(SYM, "numa=fake=2", "kernel.profile=2.6.25")
    # A node whose hull is below NODE_MIN_SIZE (4 MiB): 6.1's numa_register_memblks() gives it
    # no NODE_DATA and leaves it offline (dropped in v6.5); numa64 refuses it. Here the SRAT's
    # first range [0, 640K) is given to a node 2 of its own.
    with pytest.raises(BootemuError, match=r"node 2 spans \[mem 0x0-0x9ffff\], less than NODE_MIN"):
        boot(SYM, "", "numa.memory.0.node=2")


def test_no_fake_node_at_all_is_the_kernels_null_dereference():
    # Every SRAT range lies above the RAM: numa_cleanup_meminfo() moves them all out, the
    # split finds no physical block and creates nothing; setup_emu2phys_nid() leaves
    # dfl_phys_nid NUMA_NO_NODE and the distance loop reads phys_dist[-1] of the NULL table.
    moved = [
        f"numa.memory.{i}.{k}={hex((2 + i) << 32 | (v << 20))}"
        for i in range(4)
        for k, v in (("start", 0), ("end", 1))
    ]
    result, _ = boot(SYM, "numa=fake=2", *moved)
    assert result.outcome == "panic"
    assert "numa_emulation()" in result.report["panic_message"]
