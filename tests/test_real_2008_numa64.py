"""numa64 ``2.6.25`` against the real x86_64 2.6.25 boots of ``real-boots-2008`` (issue 10).

Each case is a real log (``tests/data/real-boots-2008/logs``) with the ``.config`` and
``System.map`` of the kernel that printed it. The test imports the log with both artifacts
(``import_dmesg(kconfig=..., system_map=...)``, read by :mod:`bootemu_arches.numa64.kbuild`) and
from the log alone, boots the machine on classic bootmem (the kernel's own allocator) and
compares:

- every memory line the kernel printed up to ``Memory:`` and the VFS hash lines after it (or
  up to the early ``PANIC``), one for one, the same filter reading both;
- every allocation of the ``bootmem_trace:`` lines: the address the kernel returned and the
  node bitmap that served it (``bootmem_trace:  core bdata_start=``), against bootemu's
  allocation of the same rank and its ``alloc.core`` trace event;
- the verdict: where the real kernel put every node allocation on its node's memory (per the
  SRAT ranges), bootemu's checks find nothing misplaced; where it panicked, bootemu panics.

The same checks run on the boots of ``tests/data/real-boots-2008-x86_64-extra`` (other layouts
on rebuilds of the same two kernels, each imported with its own kernel's artifacts).
Expectations come only from the real logs; nothing here was produced by bootemu. Run
``python tests/test_real_2008_numa64.py`` for a per-case summary with the first differences.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from bootemu.importers import import_dmesg, strip_dmesg_prefix
from bootemu.importers.kbuild import read_kconfig, read_system_map
from bootemu.importers.trace import TraceCall, read_trace

DATA = Path(__file__).parent / "data" / "real-boots-2008"
#: Other layouts booted on rebuilds of the same two kernels (issue 10): two plain nodes,
#: four alternating nodes with a memoryless one, ``numa=off``, ``mem=`` (its README).
EXTRA = Path(__file__).parent / "data" / "real-boots-2008-x86_64-extra"

#: log -> the kernel (``kernels/<name>/``) that printed it.
CASES = {
    "tn2625_seed_8g": "numa-2625-trace",
    "tn2625s_seed_8g": "numa-2625s-trace",
    "tn2625s_flat_4g": "numa-2625s-trace",
}
#: The extra boots, from the folder's ``cases.txt`` (``NAME KERNEL QEMU-ARGS|KERNEL-ARGS``).
EXTRA_CASES = {
    line.split()[0]: line.split()[1]
    for line in (EXTRA / "cases.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}
ALL_CASES = {**CASES, **EXTRA_CASES}


def folder(case: str) -> Path:
    """The data folder holding ``case``'s log and its kernel's artifacts."""
    return EXTRA if case in EXTRA_CASES else DATA


#: The lines of early memory set-up that x86_64 2.6.25 prints (format strings of e820_64.c,
#: page_alloc.c, srat_64.c, numa_64.c, init_64.c, setup64.c, pid.c, swiotlb.c, dcache.c,
#: inode.c); a line is kept when one of them matches it whole.
MEMORY_LINE = re.compile(
    "|".join(
        (
            r"BIOS-provided physical RAM map:",
            r" BIOS-e820: .*",
            r"user-defined physical RAM map:",
            r" user: .*",
            r"Entering add_active_range\(.*",
            r"end_pfn_map = \d+",
            r"kernel direct mapping tables up to .*",
            r"SRAT: .*",
            r"NUMA: .*",
            r"Your memory is not aligned .*",
            r"No NUMA configuration found",
            r"NUMA turned off",
            r"Faking a node at .*",
            r"Bootmem setup node .*",
            r"  NODE_DATA \[.*",
            r"  bootmap \[.*",
            r"Cannot find \d+ bytes in node \d+",
            r"early res: .*",
            r"Zone PFN ranges:",
            r"  (?:DMA|DMA32|Normal)\s+\d+ ->\s+\d+",
            r"Movable zone start PFN for each node",
            r"  Node \d+: \d+",
            r"early_node_map\[\d+\] active PFN ranges",
            r"\s+\d+:\s+\d+ ->\s+\d+",
            r"On node \d+ totalpages: \d+",
            r"  \w+ zone: .*",
            r"Allocating PCI resources .*",
            r"SMP: Allowing .*",
            r"PERCPU: .*",
            r"Built \d+ zonelists .*",
            r"Policy zone: .*",
            r"PID hash table entries: .*",
            r"PCI-DMA: Using software bounce buffering .*",
            r"Placing software IO TLB .*",
            r"Memory: .*",
            r"reserve_bootmem: illegal .*",
            r"(?:Dentry cache|Inode-cache) hash table entries: .*",
            r"PANIC: early exception \w+",
        )
    )
)
#: The kernel prints the exception's registers, which an emulator cannot know: compared up to
#: the vector (06: invalid opcode, the ud2 of BUG()).
_PANIC = re.compile(r"(PANIC: early exception \w+).*")


def memory_lines(lines: list[str]) -> list[str]:
    """The memory lines of a boot, through ``Memory:`` and the two hash lines (or the panic)."""
    out: list[str] = []
    hashes, after_memory = 0, False
    for raw in lines:
        line = _PANIC.sub(r"\1", raw.rstrip())
        if not MEMORY_LINE.fullmatch(line):
            continue
        is_hash = line.startswith(("Dentry cache", "Inode-cache"))
        if after_memory and not is_hash:
            continue
        out.append(line)
        after_memory = after_memory or line.startswith("Memory:")
        hashes += is_hash
        if hashes == 2 or line.startswith("PANIC:"):
            break
    return out


def real_log(case: str) -> str:
    return (folder(case) / "logs" / f"{case}.log").read_text(errors="replace")


def real_lines(case: str) -> list[str]:
    text = real_log(case)
    lines: list[str] = []
    booted = False
    for raw in text.splitlines():
        line = strip_dmesg_prefix(raw)
        # A second "Linux version" would be a reboot (the banner may follow the BIOS's
        # "Booting from ROM.." on its line or start one of its own).
        if "Linux version " in line:
            if booted:
                break
            booted = True
        lines.append(line)
    return memory_lines(lines)


def real_allocs(case: str) -> list[TraceCall]:
    return [c for c in read_trace(real_log(case)) if c.op == "alloc"]


def import_with(case: str, kernel: str | None) -> Any:
    """The machine of ``case``'s log, imported with ``kernel``'s .config and System.map (or
    from the log alone when ``kernel`` is None)."""
    art = folder(case) / "kernels" / kernel if kernel is not None else None
    return import_dmesg(
        real_log(case),
        source=f"{case}.log",
        arch=None,
        profile=None,
        overrides=(),
        kconfig=read_kconfig(art / "config") if art is not None else None,
        system_map=read_system_map(art / "System.map") if art is not None else None,
    )[0]


@functools.cache
def emulate(
    case: str, artifacts: bool = True
) -> tuple[dict[str, Any], tuple[str, ...], tuple[int, ...], Any]:
    """Import (with the kernel's .config and System.map, or from the log alone), boot on
    bootmem: the report, the dmesg lines, the ``bdata_start`` of each served allocation, and
    the machine."""
    from bootemu.sequencer import boot_machine

    machine = import_with(case, ALL_CASES[case] if artifacts else None)
    with structlog.testing.capture_logs() as events:
        result = boot_machine(machine, allocator="bootmem")
    lines = tuple(ln for e in events if "dmesg" in e for ln in str(e["dmesg"]).split("\n"))
    served = tuple(e["bdata_start"] for e in events if e.get("event") == "alloc.core")
    return result.report, lines, served, machine


def emulated_lines(case: str, artifacts: bool = True) -> list[str]:
    return memory_lines(list(emulate(case, artifacts)[1]))


def emulated_allocs(case: str, artifacts: bool = True) -> list[tuple[int | None, int | None]]:
    """(address, serving bitmap's start) of each allocation, in order."""
    report, _, served, _ = emulate(case, artifacts)
    allocs = [a for a in report["allocations"] if a["op"] == "alloc"]
    out: list[tuple[int | None, int | None]] = []
    it = iter(served)
    for a in allocs:
        out.append((a["addr"], next(it) if a["addr"] is not None else None))
    return out


# --------------------------------------------------------------------------------------------


ARTIFACTS = pytest.mark.parametrize("artifacts", [True, False], ids=["kbuild", "log-only"])


@ARTIFACTS
@pytest.mark.parametrize("case", ALL_CASES)
def test_memory_lines_match_the_real_boot(case: str, artifacts: bool) -> None:
    """With the .config and System.map, and from the log alone (its early res, PERCPU,
    NODE_DATA, SRAT and Memory: lines say the same)."""
    real, got = real_lines(case), emulated_lines(case, artifacts)
    assert real, "the filter finds the real kernel's lines"
    assert got == real


@ARTIFACTS
@pytest.mark.parametrize("case", ALL_CASES)
def test_every_allocation_at_the_real_address_from_the_real_bitmap(
    case: str, artifacts: bool
) -> None:
    real = [(c.result, c.core_starts[-1] if c.core_starts else None) for c in real_allocs(case)]
    assert emulated_allocs(case, artifacts) == real


def test_importer_reads_the_srat_code_and_the_build() -> None:
    """The SRAT switch from the System.map symbol of 6ec6e0d9f2f (node_memblk_range), and
    from the shape of the SRAT lines without it; the hull lines turned back into ranges."""
    hull = dict(emulate("tn2625_seed_8g")[3].kernel.config)
    patched = dict(emulate("tn2625s_seed_8g")[3].kernel.config)
    assert hull["srat_check"] == "hulls" and patched["srat_check"] == "memblks"
    assert dict(emulate("tn2625_seed_8g", False)[3].kernel.config)["srat_check"] == "hulls"
    assert dict(emulate("tn2625s_seed_8g", False)[3].kernel.config)["srat_check"] == "memblks"
    # System.map: _text 0xffffffff80200000, _end 0xffffffff8044e698; per-cpu section
    # 0xffffffff8041e000-0xffffffff80424168; .config X86_L1_CACHE_SHIFT=7, NODES_SHIFT=6.
    assert patched["image_start"] == 0x200000 and patched["image_size"] == 0x24E698
    assert patched["percpu_size"] == 0x6168 == 24936
    assert patched["smp_cache_bytes"] == 128 and patched["nodes_shift"] == 6
    # "SRAT: Node 0 PXM 0 0-180000000" after "0-80000000": the range [4G, 6G) (past node 1's
    # hull [2G, 4G)); "SRAT: Node 1 PXM 1 80000000-240000000": [6G, 9G).
    ranges = [(m.node, m.start, m.end) for m in emulate("tn2625_seed_8g")[3].numa]
    assert ranges == [
        (0, 0, 2 << 30),
        (1, 2 << 30, 4 << 30),
        (0, 4 << 30, 6 << 30),
        (1, 6 << 30, 9 << 30),
    ]


@pytest.mark.parametrize("case", [c for c in ALL_CASES if "PANIC: early exception" in real_log(c)])
def test_bugs_in_the_routine_of_the_real_call_trace(case: str) -> None:
    """The routine of the real Call Trace's first frame (where the ud2 of BUG() is) is the
    one bootemu's panic names."""
    frame = re.search(r"Call Trace:\n \[<[0-9a-f]+>\] (\w+)\+", real_log(case))
    assert frame is not None
    report = emulate(case)[0]
    assert report["outcome"] == "panic"
    assert f"{frame.group(1)}()" in report["panic_message"]


def test_importer_reads_the_rejected_srat_entry() -> None:
    """tn2625s_overlap_4g prints node 0's range, then "SRAT: PXM 1 (40000000-140000000)
    overlaps with PXM 0 (0-80000000)" and "SRAT: SRAT not used.": the second entry is only in
    the error line (PXM 1 is node 1 by its "SRAT: PXM 1 -> APIC 1 -> Node 1" line)."""
    for artifacts in (True, False):
        numa = [(m.node, m.start, m.end) for m in emulate("tn2625s_overlap_4g", artifacts)[3].numa]
        assert numa == [(0, 0, 2 * G), (1, 1 * G, 5 * G)]


def _node_of(machine: Any, addr: int) -> int | None:
    for m in machine.numa:
        if m.start <= addr < m.end:
            return m.node
    return None


@pytest.mark.parametrize("case", ALL_CASES)
def test_checks_give_the_real_verdict(case: str) -> None:
    """Real verdict: a traced allocation served by node N's bitmap ("core bdata_start", the
    start of node N's bootmem in a "Bootmem setup node N" line) that ends on RAM of another
    SRAT node is misplaced node memory. bootemu's verdict: its "misplaced" violations."""
    report, _, _, machine = emulate(case)
    text = real_log(case)
    panicked = "PANIC: early exception" in text
    assert (report["outcome"] == "panic") == panicked
    starts = {
        int(m.group(2), 16): int(m.group(1))
        for m in re.finditer(r"Bootmem setup node (\d+) ([0-9a-f]+)-", text)
    }
    misplaced = 0
    for c in real_allocs(case):
        if not c.result or not c.core_starts or not machine.numa:
            continue
        node = starts[c.core_starts[-1]]
        if {_node_of(machine, c.result), _node_of(machine, c.result + c.size - 1)} - {node}:
            misplaced += 1
    got = [v for v in report["violations"] if v["kind"] == "misplaced"]
    assert (misplaced == 0) == (got == [])


def test_the_hull_kernel_bugs_where_the_real_one_did() -> None:
    report, lines, _, _ = emulate("tn2625_seed_8g")
    assert report["outcome"] == "panic"
    assert "__absent_pages_in_range" in report["panic_message"]
    # The real Call Trace: __absent_pages_in_range <- acpi_scan_nodes (nodes_cover_memory).
    assert "__absent_pages_in_range+" in real_log("tn2625_seed_8g")


def main(argv: list[str]) -> int:  # pragma: no cover - a tool for people, not a test
    for case in argv[1:] or list(ALL_CASES):
        real, got = real_lines(case), emulated_lines(case)
        same = sum(1 for a, b in zip(real, got, strict=False) if a == b)
        ra = [(c.result, c.core_starts[-1] if c.core_starts else None) for c in real_allocs(case)]
        ga = emulated_allocs(case)
        at = sum(1 for a, b in zip(ra, ga, strict=False) if a == b)
        print(
            f"{case}: memory lines {same}/{len(real)} (bootemu {len(got)}), "
            f"allocations {at}/{len(ra)} (bootemu {len(ga)})"
        )
        for i, (a, b) in enumerate(zip(real + [""] * 3, got + [""] * 3, strict=False)):
            if a != b:
                print(f"  line {i}: real {a!r}\n          bootemu {b!r}")
                break
        for i, (a, b) in enumerate(zip(ra, ga, strict=False)):
            if a != b:
                print(
                    f"  alloc {i}: real {a[0]:#x} from {a[1]:#x}, bootemu "
                    f"{b[0] or 0:#x} from {b[1] or 0:#x}"
                )
                break
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv))


# --------------------------------------------------------------------------------------------
# Other layouts on the same kernels (no real boot of them is shared: the expectations are the
# kernel's arithmetic, written out)

G = 1 << 30


def variant(
    kernel: str,
    numa: list[tuple[int, int, int]],
    cmdline: str = "",
    cpus: str | None = None,
    **config: object,
) -> tuple[Any, list[str]]:
    """The seed guest (its e820, CPUs, image) imported with ``kernel``'s artifacts, with
    another SRAT and command line; booted on bootmem."""
    import dataclasses

    from bootemu.models import NumaMemory
    from bootemu.sequencer import boot_machine

    art = DATA / "kernels" / kernel
    machine = import_with("tn2625s_seed_8g", art.name)
    cfg = dict(machine.kernel.config)
    cfg["command_line_size"] += len(cmdline) + 1 if cmdline else 0  # appended to the real one
    if cpus:
        cfg["cpu_nodes"] = cpus
    cfg.update(config)
    kernel_spec = dataclasses.replace(machine.kernel, cmdline=cmdline, config=tuple(cfg.items()))
    machine = dataclasses.replace(
        machine, kernel=kernel_spec, numa=tuple(NumaMemory(n, s, e) for n, s, e in numa)
    )
    with structlog.testing.capture_logs() as events:
        result = boot_machine(machine, allocator="bootmem")
    return result, [ln for e in events if "dmesg" in e for ln in str(e["dmesg"]).split("\n")]


SEED = [(0, 0, 2 * G), (1, 2 * G, 4 * G), (0, 4 * G, 6 * G), (1, 6 * G, 9 * G)]
#: Four nodes alternating by GiB; node 3's only range is [3G, 4G), the PCI hole of the guest.
MEMORYLESS = [
    (0, 0, G),
    (1, G, 2 * G),
    (2, 2 * G, 3 * G),
    (3, 3 * G, 4 * G),
    (0, 4 * G, 5 * G),
    (1, 5 * G, 6 * G),
    (2, 6 * G, 7 * G),
    (0, 7 * G, 8 * G),
    (1, 8 * G, 9 * G),
]


def test_memoryless_node_bugs_the_srat_patch_kernel() -> None:
    """setup_node_bootmem(3, 3G, 4G): find_e820_area() finds no RAM in [3G, 4G), so
    early_node_mem() falls back to __alloc_bootmem_nopanic(0x7000, 128, 16 MiB), served by
    the first bitmap of bdata_list (node 0's) at the goal, 16 MiB; the bootmap then comes from
    find_e820_area(16 MiB + 0x7000, 4G): right after it, 0x40000 pfns / 8 = 8 pages; then
    reserve_bootmem_node(NODE_DATA(3), 16 MiB, ...) BUG()s: addr < node_boot_start (3G)."""
    result, lines = variant("numa-2625s-trace", MEMORYLESS, cpus="0,1,2,3")
    assert result.outcome == "panic"
    assert "reserve_bootmem_core" in result.report["panic_message"]
    i = lines.index("Bootmem setup node 3 00000000c0000000-0000000100000000")
    assert lines[i + 1 : i + 4] == [
        "  NODE_DATA [0000000001000000 - 0000000001006fff]",
        "  bootmap [0000000001007000 -  000000000100efff] pages 8",
        "PANIC: early exception 06 (invalid opcode: BUG() in reserve_bootmem_core())",
    ]


def test_memoryless_layout_bugs_the_hull_kernel_earlier() -> None:
    """2.6.25 as released registers node 0's hull [0, 5G) over nodes 1 and 2's RAM: the
    unsorted early_node_map makes __absent_pages_in_range() BUG() in nodes_cover_memory()."""
    result, lines = variant("numa-2625-trace", MEMORYLESS, cpus="0,1,2,3")
    assert result.outcome == "panic"
    assert "__absent_pages_in_range" in result.report["panic_message"]
    assert not any(line.startswith("Bootmem setup") for line in lines)


def test_numa_off_fakes_one_node() -> None:
    """numa=off: srat_disabled() silences the SRAT parsing, numa_initmem_init() prints "NUMA
    turned off" and fakes node 0 over [0, end_pfn << 12) = [0, 9G)."""
    result, lines = variant("numa-2625s-trace", SEED, cmdline="numa=off")
    assert result.outcome == "ok" and result.report["violations"] == []
    assert not any(line.startswith("SRAT: ") for line in lines)
    i = lines.index("NUMA turned off")
    assert lines[i + 1] == "Faking a node at 0000000000000000-0000000240000000"
    assert "Bootmem setup node 0 0000000000000000-0000000240000000" in lines


def test_mem_cuts_the_nodes_at_end_pfn() -> None:
    """mem=3G: end_user_pfn 786432 is above the last RAM page below the hole (786400), so
    end_pfn = 786400; the SRAT ranges above it register no active range; cutoff_node() cuts
    node 0 [0, 6G) and node 1 [2G, 9G) at 0xbffe0000; no swiotlb (end_pfn below 4 GiB)."""
    result, lines = variant("numa-2625s-trace", SEED, cmdline="mem=3G")
    assert result.outcome == "ok" and result.report["violations"] == []
    assert "Bootmem setup node 0 0000000000000000-00000000bffe0000" in lines
    assert "Bootmem setup node 1 0000000080000000-00000000bffe0000" in lines
    assert not any(line.startswith("Entering add_active_range(0, 1048576") for line in lines)
    memory = next(line for line in lines if line.startswith("Memory:"))
    assert memory.startswith("Memory: ") and f"/{786400 * 4}k available" in memory
    assert not any("software IO TLB" in line for line in lines)


@pytest.mark.parametrize("kernel", ["numa-2625-trace", "numa-2625s-trace"])
def test_two_plain_nodes_boot_on_both_kernels(kernel: str) -> None:
    """One range per node: both SRAT codes print the same and the node hash has shift 32
    (starts 0 | 4G); node 0's bootmem is [0, 4G): 2^20 pfns = 32 (0x20) bitmap pages."""
    result, lines = variant(kernel, [(0, 0, 4 * G), (1, 4 * G, 9 * G)])
    assert result.outcome == "ok" and result.report["violations"] == []
    assert "NUMA: Using 32 for the hash shift." in lines
    assert "  bootmap [000000000000f000 -  000000000002efff] pages 20" in lines


def test_srat_lists_more_cpus_than_are_possible() -> None:
    """Four SRAT processor entries (printed, one per APIC) on a two-CPU guest: "SMP: Allowing
    2 CPUs" and two per-cpu areas, CPU 0 on node 0 and CPU 1 on node 1 (their APICs' nodes)."""
    result, lines = variant("numa-2625s-trace", SEED, cpus="0,1,0,1", possible_cpus=2)
    assert sum(line.startswith("SRAT: PXM") for line in lines) == 4
    assert "SMP: Allowing 2 CPUs, 0 hotplug CPUs" in lines
    percpu = [a for a in result.report["allocations"] if a["caller"] == "setup_per_cpu_areas"]
    assert [a["nodes_touched"] for a in percpu] == [[0], [1]]


def test_a_qemu_style_srat_needs_an_allocated_memnodemap() -> None:
    """A table as QEMU's -numa writes it (node 0 = [0, 640K) + [1M, 4G), node 1 = [4G, 9G))
    on the SRAT-patch kernel: the node hash is built from the ranges, whose starts have 1 MiB
    as lowest bit (shift 20), so the map has (9G >> 20) + 1 = 9217 two-byte entries, more than
    the 56 embedded ones: round_up(18434, 128) = 0x4880 bytes from find_e820_area(0x8000, ...),
    i.e. [0x8000, 0xc880), an early reservation; NODE_DATA then steps past it (0xc880)."""
    result, lines = variant(
        "numa-2625s-trace", [(0, 0, 640 << 10), (0, 1 << 20, 4 * G), (1, 4 * G, 9 * G)]
    )
    assert result.outcome == "ok" and result.report["violations"] == []
    assert "NUMA: Allocated memnodemap from 8000 - c880" in lines
    assert "NUMA: Using 20 for the hash shift." in lines
    assert "early res: 5 [8000-c87f] MEMNODEMAP" in lines
    assert "  NODE_DATA [000000000000c880 - 000000000001387f]" in lines
    assert "  bootmap [0000000000014000 -  0000000000033fff] pages 20" in lines
