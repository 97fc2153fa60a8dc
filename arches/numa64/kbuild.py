"""x86_64 2.6.25 boots read for numa64: a log, and the kernel's .config and System.map, to
``[kernel]`` keys of the ``2.6.25`` profile.

:func:`kernel_keys` is numa64's reader of :mod:`bootemu.importers.artifacts` (what
``import-dmesg --kconfig --system-map`` calls; the log alone works too). Every key says where
it came from (a note each). Order of trust: the System.map (exact image layout, per-cpu
section, which SRAT code was linked in), then the .config (the Kconfig choices that change
early memory), then the lines of the log itself (which the kernel printed from the same
numbers); a key nothing speaks for keeps the profile default.

The SRAT memory lines of 2.6.25 as released print each node's *hull* so far, not the table's
range (srat_64.c acpi_numa_memory_affinity_init()); :func:`srat_ranges` turns them back into
ranges (an inference, see there). A kernel with commit 6ec6e0d9f2f prints the ranges as they
are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bootemu.importers.kbuild import Kconfig, SystemMap
from bootemu.models import NumaMemory

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.importers.artifacts import ArtifactInput, KernelKeys

__all__ = ["derive_2625", "kernel_keys", "srat_ranges"]

#: include/asm-x86/page_64.h: __START_KERNEL_map, the kernel's virtual base.
START_KERNEL_MAP = 0xFFFFFFFF80000000
#: include/linux/percpu.h, 2.6.25: PERCPU_MODULE_RESERVE with CONFIG_MODULES.
PERCPU_MODULE_RESERVE = 8 << 10

_NODE_DATA = re.compile(r"^\s+NODE_DATA \[([0-9a-f]+) - ([0-9a-f]+)\]")
_EARLY_RES = re.compile(r"^early res: \d+ \[([0-9a-f]+)-([0-9a-f]+)\] (.*)$")
_PERCPU = re.compile(r"^PERCPU: Allocating (\d+) bytes of per cpu data")
_CONSOLE = re.compile(r"^Console: colour \S+ (\d+)x(\d+)")
_CMDLINE = re.compile(r"^Command line: (.*)$")
_SRAT_CPU = re.compile(r"^SRAT: PXM \d+ -> APIC \d+ -> Node \d+")
_ALLOWING = re.compile(r"^SMP: Allowing (\d+) CPUs")
_SRAT_LINE = re.compile(r"SRAT: Node (\d+) PXM \d+ ([0-9a-f]+)-([0-9a-f]+)\s*$")


def srat_ranges(printed: Sequence[NumaMemory], hulls: bool) -> list[NumaMemory]:
    """The SRAT's memory ranges behind its printed lines.

    With the patch (``hulls`` False) the lines are the ranges. 2.6.25 as released prints the
    node's hull after each range: a line that grows a node's hull stands for a range that
    begins where the old hull ended (or ends where it began) and, since the kernel accepted it
    without a conflict, does not reach into another node's hull: it starts past every other
    hull that lies between. [Inference: the table may have had a gap there; the hull, the
    active ranges and every later figure are the same either way, except the memnodemap of a
    rejected table.]
    """
    if not hulls:
        return list(printed)
    seen: dict[int, tuple[int, int]] = {}
    out: list[NumaMemory] = []
    for m in printed:
        old = seen.get(m.node)
        seen[m.node] = (m.start, m.end)
        if old is None:
            out.append(m)
            continue
        others = [v for n, v in seen.items() if n != m.node]
        if m.end > old[1]:
            start = max([old[1]] + [e for s, e in others if old[1] < e <= m.end])
            out.append(NumaMemory(m.node, start, m.end))
        if m.start < old[0]:
            end = min([old[0]] + [s for s, e in others if m.start <= s < old[0]])
            out.append(NumaMemory(m.node, m.start, end))
    return out


def _hull_lines(printed: Sequence[NumaMemory]) -> bool | None:
    """True when a node's later line contains its earlier one (2.6.25 hulls), False when a
    node has two disjoint lines (ranges), None when no node has two lines."""
    seen: dict[int, tuple[int, int]] = {}
    verdict: bool | None = None
    for m in printed:
        if m.node in seen:
            s, e = seen[m.node]
            if m.start <= s and m.end >= e:
                return True
            verdict = False
        seen[m.node] = (m.start, m.end)
    return verdict


def kernel_keys(inp: ArtifactInput) -> KernelKeys:
    """The reader of :mod:`bootemu.importers.artifacts` for numa64 (``READERS["numa64"]``):
    the 2.6.25 keys from the log's lines and the artifacts (nothing for 6.1, whose keys the
    importer's generic code fills)."""
    from bootemu.importers.artifacts import KernelKeys

    out = KernelKeys()
    if inp.profile != "2.6.25":
        if inp.kconfig is not None or inp.system_map is not None:
            out.notes.append(
                f"numa64 {inp.profile} reads no build artifacts: --kconfig/--system-map unused"
            )
        return out
    printed = [entry for entry, _flags in inp.log.srat]
    keys, _numa, notes = derive_2625(inp.log.lines, printed, inp.kconfig, inp.system_map)
    for key, (value, why) in keys.items():
        out.set(key, value, why)  # type: ignore[arg-type]
    out.notes.extend(notes)
    return out


def derive_2625(
    lines: list[str],
    printed_srat: Sequence[NumaMemory],
    kconfig: Kconfig | None,
    system_map: SystemMap | None,
) -> tuple[dict[str, tuple[object, str]], list[NumaMemory], list[str]]:
    """Each key with its value and where it came from, the SRAT ranges, other notes."""
    keys: dict[str, tuple[object, str]] = {}
    notes: list[str] = []

    def put(key: str, value: object, why: str) -> None:
        keys[key] = (value, why)

    # --- which SRAT code: the symbol, the option, else the shape of the lines
    hulls: bool | None = None
    if system_map is not None:
        hulls = system_map.address("node_memblk_range") is None
        why = f"{system_map.path}: " + (
            "no node_memblk_range: 2.6.25 hull SRAT code"
            if hulls
            else "node_memblk_range: commit 6ec6e0d9f2f"
        )
    elif kconfig is not None:
        hulls = not kconfig.enabled("NODES_SPAN_OTHER_NODES")
        why = f"{kconfig.where('NODES_SPAN_OTHER_NODES')}: CONFIG_NODES_SPAN_OTHER_NODES " + (
            "not set" if hulls else "=y (commit 6ec6e0d9f2f)"
        )
    else:
        hulls = _hull_lines(printed_srat)
        why = {
            True: "a node's SRAT line contains its earlier one: hulls (2.6.25)",
            False: "a node has two disjoint SRAT lines: ranges (commit 6ec6e0d9f2f)",
            None: "no node has two SRAT lines; both SRAT codes print the same",
        }[hulls]
    if hulls is not None:
        put("srat_check", "hulls" if hulls else "memblks", why)
    numa = srat_ranges(printed_srat, bool(hulls))

    # --- the image and the per-cpu section
    if system_map is not None:
        sym = system_map.image()
        text_start = sym["_text"] - START_KERNEL_MAP
        src = f"{system_map.path}"
        put("image_start", text_start, f"{src}: _text")
        put("image_size", sym["_end"] - sym["_text"], f"{src}: _end - _text")
        put("text_size", sym["_etext"] - sym["_text"], f"{src}: _etext - _text")
        put("data_size", sym["_edata"] - sym["_etext"], f"{src}: _edata - _etext")
        put(
            "init_size",
            sym["__init_end"] - sym["__init_begin"],
            f"{src}: __init_end - __init_begin",
        )
        lo, hi = system_map.address("__per_cpu_start"), system_map.address("__per_cpu_end")
        if lo is not None and hi is not None:
            extra = (
                PERCPU_MODULE_RESERVE if kconfig is not None and kconfig.enabled("MODULES") else 0
            )
            put(
                "percpu_size",
                hi - lo + extra,
                f"{src}: __per_cpu_end - __per_cpu_start"
                + (" + PERCPU_MODULE_RESERVE" if extra else ""),
            )

    # --- Kconfig choices
    if kconfig is not None:
        src = kconfig.path
        shift = kconfig.value_int("X86_L1_CACHE_SHIFT")
        if shift is not None:
            put("smp_cache_bytes", 1 << shift, f"{src}: CONFIG_X86_L1_CACHE_SHIFT={shift}")
        put(
            "pageblock_order",
            9 if kconfig.enabled("HUGETLB_PAGE") else 10,
            f"{src}: CONFIG_HUGETLB_PAGE "
            + (
                "=y: HUGETLB_PAGE_ORDER"
                if kconfig.enabled("HUGETLB_PAGE")
                else "not set: MAX_ORDER - 1"
            ),
        )
        nodes_shift = kconfig.value_int("NODES_SHIFT")
        if nodes_shift is not None:
            put("nodes_shift", nodes_shift, f"{src}: CONFIG_NODES_SHIFT")
        for key, option in (
            ("smp", "SMP"),
            ("acpi_sleep", "ACPI_SLEEP"),
            ("hotplug_cpu", "HOTPLUG_CPU"),
        ):
            put(key, kconfig.enabled(option), f"{src}: CONFIG_{option}")
        if not kconfig.enabled("HPET_TIMER"):
            put("hpet", False, f"{src}: CONFIG_HPET_TIMER not set")
        if not kconfig.enabled("VGA_CONSOLE"):
            put("vga_cols", 0, f"{src}: CONFIG_VGA_CONSOLE not set")
        if kconfig.enabled("SPARSEMEM_VMEMMAP") or not kconfig.enabled("SPARSEMEM"):
            notes.append(
                f"{src}: not SPARSEMEM without VMEMMAP: numa64 2.6.25 models only "
                "that memory model; the mem_map figures will differ"
            )

    # --- the log's own lines
    ioapics = hpet = 0
    for line in lines:
        if m := _CMDLINE.match(line):
            put(
                "command_line_size",
                len(m.group(1).encode()),
                "strlen() of the 'Command line:' text, trailing blanks included",
            )
        elif m := _NODE_DATA.match(line):
            if "pgdat_size" not in keys:
                put(
                    "pgdat_size",
                    int(m.group(2), 16) + 1 - int(m.group(1), 16),
                    "the first '  NODE_DATA [...]' line",
                )
        elif m := _EARLY_RES.match(line):
            start, end, name = int(m.group(1), 16), int(m.group(2), 16) + 1, m.group(3)
            if name == "EBDA":
                put("ebda", start, "'early res: ... EBDA'")
                put(
                    "ebda_kb",
                    (end - start - start % 4096) // 1024 or 1,
                    "'early res: ... EBDA': its size less the page offset",
                )
            elif name == "TEXT DATA BSS" and system_map is None:
                put("image_start", start, "'early res: ... TEXT DATA BSS'")
                put("image_size", end - start, "'early res: ... TEXT DATA BSS'")
        elif (m := _PERCPU.match(line)) and "percpu_size" not in keys:
            put("percpu_size", int(m.group(1)), "'PERCPU: Allocating ...'")
        elif m := _CONSOLE.match(line):
            if keys.get("vga_cols", (1, ""))[0]:
                put("vga_cols", int(m.group(1)), "'Console: colour ...'")
                put("vga_rows", int(m.group(2)), "'Console: colour ...'")
        elif line.startswith("IOAPIC["):
            ioapics += 1
        elif line.startswith("ACPI: HPET id:"):
            hpet += 1
    if ioapics:
        put("nr_ioapics", ioapics, "'IOAPIC[N]: ...' lines")
    srat_cpus = sum(1 for line in lines if _SRAT_CPU.match(line))
    allowing = next((int(m.group(1)) for line in lines if (m := _ALLOWING.match(line))), None)
    if srat_cpus and allowing is not None and allowing != srat_cpus:
        put(
            "possible_cpus",
            allowing,
            f"'SMP: Allowing {allowing} CPUs' beside {srat_cpus} SRAT processor entries",
        )
    # acpi_boot_init() prints the MADT's LAPIC lines and, just after, the HPET table's line.
    if "hpet" not in keys and any(line.startswith("ACPI: LAPIC") for line in lines):
        put(
            "hpet",
            bool(hpet),
            "an 'ACPI: HPET id:' line"
            if hpet
            else "'ACPI: LAPIC' lines but no 'ACPI: HPET id:' line",
        )
    return keys, numa, notes
