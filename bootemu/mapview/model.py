"""What ``bootemu map`` draws, read from boot reports: regions per band, owners, the axis.

Everything comes from the JSON report of each boot (``memory.e820``, ``nodes``, the
``allocations`` records with their labels, ``handoff.free_ranges``, ``violations``); nothing is
recomputed from the machine. Work is per record and per range, never per page.

The axis is a *broken* axis. The physical address space of an early boot mixes sizes across
eleven orders of magnitude (a 24-byte usemap, the 640 KiB low-memory hole, 4 TiB of RAM), so
neither a linear scale (the small things vanish) nor a plain log scale of the address (the
address 0 is at minus infinity and everything above 4 GiB is squeezed into the last
centimetre) shows both. Instead the addresses where something changes cut the space into
segments, and each segment gets a height that grows with the *logarithm of its size*:

- *coarse* segments are cut by the firmware map and the node blocks (the machine's structure);
  each gets ``COARSE_BASE + COARSE_PER_LOG2 * log2(pages)`` pixels, plus room for the detail
  inside it (``DETAIL_PX`` per fine segment, at most ``DETAIL_CAP``);
- inside a coarse segment, the *fine* segments cut by every region of every band share that
  height in proportion to ``1 + log2(1 + pages)``;
- a stretch no firmware entry and no region covers (a hole) is collapsed to ``HOLE_PX`` and
  drawn hatched with break marks.

So a 640 KiB hole, a 24-byte allocation and a 2 TiB run are all visible, the structure keeps
its order and rough proportions, and the tick labels (physical addresses in hex) say where
each boundary really is. A picture taller than ``MAX_HEIGHT`` is scaled down as a whole.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bootemu.e820 import type_name

PAGE_SIZE = 4096

HOLE_PX = 14.0
COARSE_BASE = 10.0
COARSE_PER_LOG2 = 2.5
DETAIL_PX = 5.0
DETAIL_CAP = 420.0
MAX_HEIGHT = 2400.0

#: Above this many allocation records in one band, neighbouring allocations of one owner are
#: drawn as one region (``data-count``): a 4 TiB boot makes 61 000 requests, and a picture
#: with a quarter of a million rectangles helps nobody. Below it every record is its own region.
DENSE_RECORDS = 2500

#: Owners, in legend order: ``(owner, colour, pattern)``. The first pattern that matches the
#: record's ``label``, ``caller`` and ``wrapper`` (joined) names the owner. The names follow
#: the kernel's own: what reserved or allocated the memory.
OWNERS: tuple[tuple[str, str, str], ...] = (
    ("kernel image", "#8c564b", r"kernel image|text data bss"),
    ("bootmem bitmap", "#e377c2", r"bitmap|bootmap"),
    ("node data", "#bcbd22", r"node_data|memnodemap|pgdat|numa_distance"),
    ("page tables", "#9467bd", r"page ?table|pgtable|\bpmd for|\bpte for|alloc_low_pages"),
    (
        "mem_map & usemaps",
        "#1f77b4",
        r"mem_?map|vmemmap|usemap|mem_section|section usage|sparse_",
    ),
    ("wait tables", "#6baed6", r"wait table"),
    ("hashes", "#ff7f0e", r"hash"),
    ("per-cpu", "#17becf", r"per-cpu|percpu|pcpu|unit_map|unit_off|group_offsets|group_sizes"),
    ("initrd", "#f7b6d2", r"initrd|ramdisk"),
    ("swiotlb", "#dbdb8d", r"swiotlb"),
    ("crashkernel", "#c5b0d5", r"crashkernel"),
    (
        "firmware / BIOS / low memory",
        "#c49c94",
        r"bios|ebda|\bmp |first \d|firmware|e820|resources|hpet|ioapic|nosave|trampoline|"
        r"real-mode|acpi|page 0",
    ),
    ("command line", "#9edae5", r"command_line"),
    ("workload", "#ffbb78", r"workload|buffer"),
    ("other", "#525252", r""),
)
_OWNER_RE = [(name, re.compile(pat, re.IGNORECASE)) for name, _, pat in OWNERS]
OWNER_COLOURS = {name: colour for name, colour, _ in OWNERS}


def owner_of(record: dict[str, Any]) -> str:
    """The owner of an allocation or reservation record, from its label, caller and wrapper."""
    get = record.get
    return _owner(str(get("label") or ""), str(get("caller") or ""), str(get("wrapper") or ""))


@functools.lru_cache(maxsize=4096)
def _owner(label: str, caller: str, wrapper: str) -> str:
    # Cached: a large boot repeats a few labels tens of thousands of times.
    text = f"{label} {caller} {wrapper}"
    for name, pattern in _OWNER_RE:
        if pattern.search(text):
            return name
    return "other"  # pragma: no cover - the last pattern matches everything


def human(size: int) -> str:
    """``640 KiB``, ``2 GiB``, ``24 B``: the largest binary unit that keeps a short number."""
    units = (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0))
    for i, (unit, shift) in enumerate(units):
        if size >= 1 << shift or unit == "B":
            if size % (1 << shift) == 0:
                return f"{size >> shift} {unit}"
            # Not whole: the next unit down when that is exact and short (2047 MiB), else
            # one decimal (1.5 GiB).
            finer, fshift = units[i + 1]
            if size % (1 << fshift) == 0 and size >> fshift < 10000:
                return f"{size >> fshift} {finer}"
            return f"{size / (1 << shift):.1f} {unit}"
    return f"{size} B"  # pragma: no cover - the loop returns


@dataclass(frozen=True, order=True)
class Region:
    """One rectangle: ``kind`` in a band, bytes ``[start, end)``, colour key ``owner``.

    ``attrs`` become ``data-*`` attributes; ``title`` is the hover text.
    """

    start: int
    end: int
    kind: str  # e820 | block | hole | reserve | alloc | free | violation
    owner: str
    title: str
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass
class Band:
    """One backend's boot: its regions by lane and what its header says."""

    name: str
    outcome: str
    panic: str | None
    findings: list[str]
    reserve: list[Region] = field(default_factory=list)
    alloc: list[Region] = field(default_factory=list)
    free: list[Region] = field(default_factory=list)
    violation: list[Region] = field(default_factory=list)
    dense: bool = False

    def regions(self) -> list[Region]:
        return [*self.reserve, *self.alloc, *self.free, *self.violation]


def _record_title(rec: dict[str, Any], owner: str, index: int, freed: bool) -> str:
    start, end = rec["addr"], rec["addr"] + rec["size"]
    what = rec["label"] or rec["caller"] or rec["wrapper"] or rec["op"]
    lines = [f"{what} [{start:#x}-{end:#x}) {human(rec['size'])}", f"owner: {owner}"]
    if rec["op"] == "alloc":
        lines.append(f"{rec['wrapper']} from {rec['caller'] or '?'}, align {rec['align']:#x}")
    else:
        lines.append("reserve" + (f", result {rec['result']}" if rec.get("result") else ""))
    node = rec.get("node")
    touched = ",".join(str(n) for n in rec.get("nodes_touched") or ())
    lines.append(f"node asked {'-' if node is None else node}, lies on node(s) {touched or '-'}")
    if freed:
        lines.append("freed later (free_bootmem)")
    lines.append(f"report allocations[{index}]")
    return "\n".join(lines)


def _freed(records: Sequence[dict[str, Any]]) -> set[int]:
    """Indexes of the records that a later ``free`` record overlaps (drawn as freed)."""
    frees = [
        (i, r["addr"], r["addr"] + r["size"])
        for i, r in enumerate(records)
        if r["op"] == "free" and r["addr"] is not None and r["size"] > 0
    ]
    # Only frees made *after* a record matter to it: those are a suffix of ``frees``. One
    # union per suffix (frees are few), then one bisect per record.
    order = [j for j, _, _ in frees]
    unions = [_union((fs, fe) for _, fs, fe in frees[k:]) for k in range(len(frees))]
    out: set[int] = set()
    for i, r in enumerate(records):
        if r["op"] == "free" or r["addr"] is None or r["size"] <= 0:
            continue
        k = bisect.bisect_right(order, i)
        if k < len(frees) and _covered(unions[k], r["addr"], r["addr"] + r["size"]):
            out.add(i)
    return out


def drawn_records(report: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The report's reserve and alloc records that take memory: ``(index, record)``."""
    return [
        (i, r)
        for i, r in enumerate(report["allocations"])
        if r["op"] in ("reserve", "alloc") and r["addr"] is not None and r["size"] > 0
    ]


def region_key(r: Region) -> tuple[Any, ...]:
    """The dataclass order as a tuple: sorting by key is several times faster."""
    return (r.start, r.end, r.kind, r.owner, r.title, r.attrs)


def _coalesce(regions: list[Region]) -> list[Region]:
    """Dense mode: neighbours of one owner, no further apart than the larger of the two (or a
    page), become one region covering both (``data-count`` says how many records it stands
    for). The gap a merge hides is never larger than what is drawn beside it."""
    out: list[Region] = []
    counts: list[int] = []
    last_size: list[int] = []
    for r in sorted(regions, key=region_key):
        size = r.end - r.start
        if (
            out
            and out[-1].owner == r.owner
            and r.start - out[-1].end <= max(size, last_size[-1], PAGE_SIZE)
        ):
            prev = out[-1]
            counts[-1] += 1
            last_size[-1] = size
            out[-1] = Region(
                prev.start,
                max(prev.end, r.end),
                prev.kind,
                prev.owner,
                f"{counts[-1]} {prev.owner} allocations "
                f"[{prev.start:#x}-{max(prev.end, r.end):#x})",
                (("owner", prev.owner),),
            )
        else:
            out.append(r)
            counts.append(1)
            last_size.append(size)
    return [
        Region(r.start, r.end, r.kind, r.owner, r.title, (*r.attrs, ("count", str(n))))
        if n > 1
        else r
        for r, n in zip(out, counts, strict=True)
    ]


def band_of(report: dict[str, Any]) -> Band:
    """The regions of one boot report."""
    records = report["allocations"]
    freed = _freed(records)
    findings = [v for v in report["violations"] if v["end_pfn"] <= v["start_pfn"]]
    band = Band(
        name=report["allocator"],
        outcome=report["outcome"],
        panic=report["panic_message"],
        findings=[f"{v['kind']}: {v['detail']}" for v in findings],
    )
    for i, rec in drawn_records(report):
        owner = owner_of(rec)
        attrs = [("owner", owner), ("index", str(i))]
        if rec["label"]:
            attrs.append(("label", rec["label"]))
        if i in freed:
            attrs.append(("freed", "1"))
        region = Region(
            rec["addr"],
            rec["addr"] + rec["size"],
            rec["op"],
            owner,
            _record_title(rec, owner, i, i in freed),
            tuple(attrs),
        )
        (band.reserve if rec["op"] == "reserve" else band.alloc).append(region)
    band.reserve.sort(key=region_key)
    band.alloc.sort(key=region_key)
    if len(band.alloc) > DENSE_RECORDS:
        band.dense = True
        band.alloc = _coalesce(band.alloc)
    for s, e, node in report["handoff"].get("free_ranges", []):
        start, end = s * PAGE_SIZE, e * PAGE_SIZE
        band.free.append(
            Region(
                start,
                end,
                "free",
                f"node {node}",
                f"handed off to node {node}'s free lists [{start:#x}-{end:#x}) "
                f"{human(end - start)}, {e - s} pages",
                (("node", str(node)),),
            )
        )
    for v in report["violations"]:
        if v["end_pfn"] <= v["start_pfn"]:
            continue
        start, end = v["start_pfn"] * PAGE_SIZE, v["end_pfn"] * PAGE_SIZE
        band.violation.append(
            Region(
                start,
                end,
                "violation",
                v["kind"],
                f"VIOLATION {v['kind']} pfns [{v['start_pfn']:#x}, {v['end_pfn']:#x}) "
                f"{v['end_pfn'] - v['start_pfn']} pages: {v['detail']}",
                (("violation", v["kind"]),),
            )
        )
    band.violation.sort()
    return band


def machine_regions(report: dict[str, Any]) -> tuple[list[Region], list[Region]]:
    """The machine column: e820 entries (by type) and node blocks, from one report."""
    e820 = [
        Region(
            s,
            e,
            "e820",
            type_name(t),
            f"e820 {type_name(t)} [{s:#x}-{e:#x}) {human(e - s)}",
            (("type", type_name(t)),),
        )
        for s, e, t in report["memory"]["e820"]
        if e > s
    ]
    blocks = []
    for node in report["nodes"]:
        for s, e in node["blocks"]:
            start, end = s * PAGE_SIZE, e * PAGE_SIZE
            blocks.append(
                Region(
                    start,
                    end,
                    "block",
                    f"node {node['id']}",
                    f"node {node['id']} block pfns [{s:#x}, {e:#x}) {human(end - start)}",
                    (("node", str(node["id"])),),
                )
            )
    return sorted(e820), sorted(blocks)


def _union(ranges: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    ends: list[int] = []
    for s, e in sorted(ranges):
        if starts and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def _covered(union: tuple[list[int], list[int]], s: int, e: int) -> bool:
    """Does the union touch ``[s, e)`` at all?"""
    starts, ends = union
    i = bisect.bisect_right(ends, s)
    return i < len(starts) and starts[i] < e


@dataclass
class Axis:
    """Address -> y for every boundary, plus the segments as drawn."""

    y: dict[int, float]
    segments: list[tuple[int, int, float, float, str]]  # start, end, y0, y1, "hole"|"coarse"
    height: float
    coarse: list[int]

    def at(self, addr: int) -> float:
        return self.y[addr]


def build_axis(
    coarse_cuts: Iterable[int],
    fine_cuts: Iterable[int],
    e820: Sequence[Region],
    regions: Sequence[Region],
) -> Axis:
    """The broken axis (module docstring): coarse and fine cuts to heights in pixels."""
    fine = sorted(set(fine_cuts) | set(coarse_cuts) | {0})
    top = fine[-1]
    coarse = sorted({c for c in coarse_cuts if c <= top} | {0, top})
    firm = _union((r.start, r.end) for r in e820)
    drawn = _union((r.start, r.end) for r in regions)
    heights: list[tuple[int, int, float, str]] = []  # fine segment start, end, height, kind
    for c0, c1 in zip(coarse, coarse[1:], strict=False):
        i0, i1 = bisect.bisect_left(fine, c0), bisect.bisect_left(fine, c1)
        pieces = list(zip(fine[i0:i1], fine[i0 + 1 : i1 + 1], strict=True))
        if not _covered(firm, c0, c1) and not _covered(drawn, c0, c1):
            heights.append((c0, c1, HOLE_PX, "hole"))
            continue
        pages = max((c1 - c0) / PAGE_SIZE, 1.0)
        total = (
            COARSE_BASE
            + COARSE_PER_LOG2 * math.log2(pages)
            + min(DETAIL_CAP, DETAIL_PX * (len(pieces) - 1))
        )
        weights = [1.0 + math.log2(1.0 + (e - s) / PAGE_SIZE) for s, e in pieces]
        scale = total / sum(weights)
        heights += [(s, e, w * scale, "seg") for (s, e), w in zip(pieces, weights, strict=True)]
    full = sum(h for _, _, h, _ in heights)
    shrink = min(1.0, MAX_HEIGHT / full) if full else 1.0
    y = {0: 0.0}
    pos = 0.0
    segments = []
    for s, e, h, kind in heights:
        y0 = pos
        pos += h * shrink
        y[e] = pos
        segments.append((s, e, y0, pos, kind))
    return Axis(y=y, segments=segments, height=pos, coarse=coarse)
