"""``bootemu explain``: where every page of a real boot's ``Memory:`` line went.

The kernel prints ``Memory: FREE/TOTAL available (..., RESERVED reserved, ...)``. explain
imports the log, boots it, and splits ``RESERVED`` (and ``TOTAL - FREE``) into rows by owner
(kernel image, boot page tables, the allocator's bitmap, mem_map, usemaps, wait tables,
hashes, per-cpu areas, firmware ranges, ...). The rows are counted with the arithmetic the
kernel uses for its figures (:mod:`bootemu.explain_rules` names it per profile), page by page
over the boot's final state, so they sum to the figures by construction:

- ``reserved`` = the RAM pages of the kernel's counting domain not handed to the page
  allocator; every such page is given to the first live reservation, allocation or bitmap that
  covers it, in boot order (bitmaps first: they are placed before any reservation);
- ``total - free`` = ``reserved`` + the pfns that are not RAM but counted in the total (holes,
  2.6.25) + RAM the kernel's page walk does not count (page 0 of 2.6.25's page_is_ram(),
  highmem it did not free) + pages handed off but not counted free (2.6.25's per-cpu lists).

Which boot is counted: when the log carries a trace and the kernel's own backend is
installed, the real kernel's calls replayed on it (:mod:`bootemu.replay`: every address is the
real one, so the state is the real kernel's); otherwise the emulation (the arch's own calls).
Each row says whether the real calls agree with the emulation, address by address:
``confirmed`` is True when every call of that owner the trace shows was made by the emulation
at the same address with the same size (bitmaps: the same first pfn), False when one was not,
None when the log has no trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bootemu.checks import ByteRanges, intersect, subtract
from bootemu.explain_rules import (
    Rec,
    Regions,
    counting_rules,
)
from bootemu.hookspecs import hookimpl
from bootemu.importers import strip_dmesg_prefix
from bootemu.models import PAGE_SIZE, Machine, pfn_up
from bootemu.plugins import ALLOCATOR_GROUP, ARCH_GROUP, discover, select
from bootemu.replay import replay_log
from bootemu.replay_calls import import_log, read_calls, traced_backend
from bootemu.sequencer import BootResult, boot_machine

__all__ = ["Explanation", "Row", "explain_log", "explain_machine", "render_json", "render_text"]

_MEMORY = re.compile(r"Memory: (\d+)[kK]/(\d+)[kK] available.*?(\d+)[kK] reserved")


@dataclass
class Row:
    """One line of the table: ``pages`` of ``owner``; ``counted_in`` is ``"reserved"`` for the
    rows of the reserved figure and ``"total-free"`` for the other lines of ``total - free``."""

    owner: str
    pages: int
    confirmed: bool | None
    counted_in: str = "reserved"
    note: str = ""

    @property
    def kib(self) -> int:
        return self.pages * PAGE_SIZE // 1024


@dataclass
class Explanation:
    """The table and the figures: the kernel's (from the log) and the boot's."""

    source: str
    arch: str
    profile: str
    allocator: str
    accounting: str  # "replay" (the real calls) or "emulation"
    kernel: tuple[int, int, int] | None  # (free, total, reserved) KiB from the log
    booted: tuple[int, int, int] | None  # the same, from the counted boot (None: no handoff)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The counted boot's: 1 when it panicked or a check found a violation.
    exit_code: int = 0
    #: The counted boot itself (for tools and tests; not printed).
    boot: BootResult | None = None

    def sum_kib(self, counted_in: Sequence[str]) -> int:
        return sum(r.kib for r in self.rows if r.counted_in in counted_in)

    @property
    def reserved_holds(self) -> bool | None:
        """Whether the reserved rows sum to the kernel's reserved figure."""
        if self.kernel is None:
            return None
        return self.sum_kib(("reserved",)) == self.kernel[2]

    @property
    def total_holds(self) -> bool | None:
        """Whether all rows sum to the kernel's total - free."""
        if self.kernel is None:
            return None
        return self.sum_kib(("reserved", "total-free")) == self.kernel[1] - self.kernel[0]


def kernel_figures(text: str) -> tuple[int, int, int] | None:
    """(free, total, reserved) in KiB from the log's ``Memory:`` line, or None."""
    for raw in text.splitlines():
        line = strip_dmesg_prefix(raw)
        if m := _MEMORY.search(line):
            free, total, reserved = (int(g) for g in m.groups())
            return free, total, reserved
    return None


class _BitmapSpy:
    """Observer: where the backend's bitmaps were placed (key -> (first pfn, pages))."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.bitmaps: dict[str, tuple[int, int]] = {}

    @hookimpl(wrapper=True)
    def bootemu_alloc_bitmap_requests(self) -> Any:
        result = yield
        for req in result or ():
            self.requests[req.key] = req.pages
        return result

    @hookimpl(wrapper=True)
    def bootemu_alloc_enable(self, placements: Any) -> Any:
        result = yield
        for key, pfn in sorted(placements.items()):
            self.bitmaps[key] = (pfn, self.requests.get(key, 0))
        return result


def _boot(machine: Any, allocator: str | None) -> tuple[BootResult, Any, _BitmapSpy]:
    arch = select(ARCH_GROUP, machine.arch, discover(ARCH_GROUP)).load()()
    spy = _BitmapSpy()
    result = boot_machine(machine, allocator=allocator, arch_plugin=arch, extra_plugins=[spy])
    return result, arch, spy


def _emulated_recs(result: BootResult, spy: _BitmapSpy) -> list[Rec]:
    """The emulated boot's bitmaps, reservations, allocations and frees, in order."""
    recs = [
        Rec("bitmap", pfn * PAGE_SIZE, (pfn + pages) * PAGE_SIZE, "", f"bitmap {key}")
        for key, (pfn, pages) in sorted(spy.bitmaps.items())
    ]
    for a in result.boot.allocations:
        if a.addr is None or a.size <= 0:
            continue
        if a.op == "reserve" and (a.result or 0) < 0:
            continue
        recs.append(Rec(a.op, a.addr, a.addr + a.size, a.caller, a.label))
    return recs


def _trace_recs(log: Any) -> list[Rec]:
    """The real kernel's calls as records: its bitmaps, then every reservation, allocation
    (at the address it returned) and free, in the log's order."""
    recs = [
        Rec("bitmap", pfn * PAGE_SIZE, (pfn + pages) * PAGE_SIZE, "", "bitmap")
        for _node, pfn, pages in log.real_maps
    ]
    for c in log.calls:
        caller = "memblock_dump" if c.name == "memblock_dump" else (c.caller or c.name)
        if c.op == "alloc" and c.result and c.size:
            recs.append(Rec("alloc", c.result, c.result + c.size, caller, "", entry=c.name))
        elif c.op in ("reserve", "free") and c.addr is not None and c.size:
            recs.append(Rec(c.op, c.addr, c.addr + c.size, caller, ""))
    return recs


def explain_log(
    text: str,
    *,
    source: str,
    allocator: str | None = None,
    kconfig: str | None = None,
    system_map: str | None = None,
) -> Explanation:
    """Import the log, boot it, and attribute every page of its ``Memory:`` figures."""
    from bootemu.importers.kbuild import read_kconfig, read_system_map

    symbols = None if system_map is None else read_system_map(system_map)
    config = None if kconfig is None else read_kconfig(kconfig)
    machine = import_log(text, source=source, kconfig=config, system_map=symbols)
    log = read_calls(text)
    trace = log.calls
    notes: list[str] = []
    native = traced_backend(trace)
    if native is not None and native not in discover(ALLOCATOR_GROUP):
        notes.append(f"the traced kernel ran {native}, which is not installed")
        native = None
    native = native or machine.allocator
    backend = allocator or native
    emu, arch, spy = _boot(machine, backend)
    traced = any(c.op == "alloc" for c in trace)
    emu_recs = _emulated_recs(emu, spy)
    real_recs = _with_labels(_trace_recs(log), emu_recs) if traced else None
    accounting, counted, counted_recs = "emulation", emu, emu_recs
    if real_recs is not None and backend == native:
        # The real calls on the kernel's own backend: the state is the real kernel's when
        # every call got its real address (the bitmaps are where the replay put them).
        res = replay_log(text, source=source, allocator=backend, machine=machine)
        if res.calls == res.same and res.result.outcome == "ok":
            bitmaps = [Rec("bitmap", s, e, "", "bitmap") for s, e in res.bitmaps]
            counted_recs = bitmaps + [r for r in real_recs if r.op != "bitmap"]
            accounting, counted = "replay", res.result
        else:
            notes.append(
                f"the replay of the real calls on {backend} does not reproduce them "
                f"({res.same}/{res.calls}): the emulation is counted"
            )
    # Confirmation compares the counted records with the other side: the emulation when the
    # real calls are counted, the real calls when the emulation is.
    other = None if real_recs is None else (emu_recs if accounting == "replay" else real_recs)
    rows, booted, _rules = _table(
        machine, arch, counted, counted_recs, symbols, emu_recs, other, notes
    )
    kernel = kernel_figures(text)
    if kernel is None:
        notes.append("the log has no Memory: line (the real boot did not get that far)")
    expl = Explanation(
        source=source,
        arch=machine.arch,
        profile=machine.kernel.profile,
        allocator=backend,
        accounting=accounting,
        kernel=kernel,
        booted=booted,
        rows=rows,
        notes=notes,
        exit_code=counted.exit_code,
        boot=counted,
    )
    return expl


def _table(
    machine: Machine,
    arch: Any,
    counted: BootResult,
    recs: list[Rec],
    symbols: Any,
    emu_recs: list[Rec],
    other: list[Rec] | None,
    notes: list[str],
) -> tuple[list[Row], tuple[int, int, int] | None, Any]:
    """The rows of a counted boot, or none when it never reached its Memory: line."""
    if counted.pagealloc is None or counted.boot.layout is None or not counted.boot.summary:
        notes.append(
            f"the boot ends before its Memory: line ({counted.report['panic_message']}): "
            "there is nothing to explain"
        )
        return [], None, None
    maps = [(r.start, r.end) for r in recs if r.op == "bitmap"]
    regions = Regions.of(machine, arch, maps, symbols)
    rules = counting_rules(machine, counted)
    rows, booted = _attribute(counted, recs, rules, regions, symbols, emu_recs, other)
    return rows, booted, rules


def explain_machine(
    machine: Machine, *, allocator: str | None = None, system_map: str | None = None
) -> Explanation:
    """The same table for a machine file or preset: its emulated boot, with no kernel
    figures to compare with (the rows sum to the boot's own Memory: line)."""
    from bootemu.importers.kbuild import read_system_map

    symbols = None if system_map is None else read_system_map(system_map)
    emu, arch, spy = _boot(machine, allocator)
    recs = _emulated_recs(emu, spy)
    notes: list[str] = []
    rows, booted, _rules = _table(machine, arch, emu, recs, symbols, recs, None, notes)
    return Explanation(
        source=machine.source,
        arch=machine.arch,
        profile=machine.kernel.profile,
        allocator=emu.boot.allocator_name,
        accounting="emulation",
        kernel=None,
        booted=booted,
        rows=rows,
        notes=notes,
        exit_code=emu.exit_code,
        boot=emu,
    )


def _with_labels(real: list[Rec], emu: list[Rec]) -> list[Rec]:
    """The emulation's label and caller on each real allocation: the emulation makes the same
    requests in the same order where it models them, so each real allocation takes the next
    emulated one of the same size (a greedy in-order match; sizes it never asks are left). A
    real reservation takes the label of an emulated one of the same range."""
    emu_allocs = [r for r in emu if r.op == "alloc"]
    reserves = {(r.start, r.end): r.label for r in emu if r.op == "reserve" and r.label}
    out: list[Rec] = []
    pos = 0
    for rec in real:
        if rec.op == "reserve" and (rec.start, rec.end) in reserves:
            rec = replace(rec, label=reserves[(rec.start, rec.end)])
        if rec.op == "alloc":
            size = rec.end - rec.start
            hit = next(
                (
                    i
                    for i in range(pos, len(emu_allocs))
                    if emu_allocs[i].end - emu_allocs[i].start == size
                ),
                None,
            )
            if hit is not None:
                twin = emu_allocs[hit]
                rec = replace(rec, label=twin.label, alias=twin.caller)
                pos = hit + 1
        out.append(rec)
    return out


def _attribute(
    counted: BootResult,
    recs: list[Rec],
    rules: Any,
    regions: Regions,
    symbols: Any,
    emu_recs: list[Rec],
    other: list[Rec] | None,
) -> tuple[list[Row], tuple[int, int, int]]:
    """Give each counted page its first live owner; rows per owner, then the other lines."""
    # Live bytes of every record after the frees that follow it (bitmaps are never freed by
    # a call: the kernel frees RAM around them and reserves them).
    live: list[tuple[Rec, list[tuple[int, int]]]] = []
    for rec in recs:
        if rec.op == "free":
            for _r, ranges in live:
                if _r.op != "bitmap":
                    ranges[:] = subtract(ranges, [(rec.start, rec.end)])
            continue
        live.append((rec, [(rec.start, rec.end)]))
    layout = counted.boot.layout
    assert layout is not None
    ram_bytes = [(s * PAGE_SIZE, e * PAGE_SIZE) for s, e in layout.ram]
    agree = None if other is None else _Agreement(other, ram_bytes)
    owned = ByteRanges()  # pfns already given to an owner
    pieces: dict[str, list[tuple[int, int]]] = {}
    members: dict[str, list[Rec]] = {}  # the records (or parts) each owner row holds
    for rec, ranges in live:
        for seg_start, seg_end, owner in regions.split(rec, ranges, symbols):
            pr = (seg_start // PAGE_SIZE, pfn_up(seg_end))
            new = subtract([pr], owned.overlapping(*pr))
            # A reservation is judged on the bytes this row got of it (a reservation that
            # spans the kernel and a bitmap agrees on the kernel part on its own).
            part = replace(rec, start=seg_start, end=seg_end) if rec.op == "reserve" else rec
            members.setdefault(owner, []).append(part)
            for s, e in new:
                owned.add(s, e)
                pieces.setdefault(owner, []).append((s, e))
    pa = counted.pagealloc
    assert pa is not None
    handed = pa.handed

    def unhanded(ranges: list[tuple[int, int]]) -> int:
        total = 0
        for s, e in ranges:
            hi = min(e, len(handed))
            total += (e - s) - (handed.count(1, s, hi) if s < hi else 0)
        return total

    domain = rules.domain
    rows: list[Row] = []
    for owner, owner_pieces in pieces.items():
        n = unhanded(intersect(sorted(owner_pieces), domain))
        if n:
            confirmed = None if agree is None else all(agree(r) for r in members[owner])
            rows.append(Row(owner, n, confirmed))
    rows.sort(key=lambda r: (-r.pages, r.owner))
    reserved = unhanded(domain)
    lost = reserved - sum(r.pages for r in rows)
    if lost:
        rows.append(Row("not attributed: reserved RAM no call or bitmap covers", lost, None))
    others = rules.other_rows(counted, unhanded, owned)
    rows += others
    total, free = rules.total, rules.free
    return rows, (free * PAGE_SIZE // 1024, total * PAGE_SIZE // 1024, reserved * PAGE_SIZE // 1024)


class _Agreement:
    """Whether the other side (the real calls, or the emulation) made a record too: an
    allocation at the same address with the same size, a reservation whose bytes it reserved
    as well (reservations split differently still agree), a bitmap on the same pages."""

    def __init__(self, other: list[Rec], ram: list[tuple[int, int]]) -> None:
        self.ram = ram  # byte ranges: only reserved RAM is counted, so only it is compared
        self.allocs = {(r.start, r.end) for r in other if r.op == "alloc"}
        self.bitmaps = {(r.start // PAGE_SIZE, pfn_up(r.end)) for r in other if r.op == "bitmap"}
        self.reserved = ByteRanges()
        for r in other:
            if r.op in ("reserve", "bitmap"):
                self.reserved.add(r.start, r.end)

    def __call__(self, rec: Rec) -> bool:
        if rec.op == "alloc":
            return (rec.start, rec.end) in self.allocs
        if rec.op == "bitmap":
            return (rec.start // PAGE_SIZE, pfn_up(rec.end)) in self.bitmaps
        if rec.op == "reserve":
            for s, e in intersect([(rec.start, rec.end)], self.ram):
                if sum(b - a for a, b in self.reserved.overlapping(s, e)) != e - s:
                    return False
            return True
        return True


# --------------------------------------------------------------------------------------------
# Output


def render_text(expl: Explanation) -> str:
    lines = [
        f"explain {expl.source} ({expl.arch} {expl.profile} on {expl.allocator}; counted: "
        + (
            "the real kernel's traced calls, replayed"
            if expl.accounting == "replay"
            else "the emulation's own calls"
        )
        + ")",
        f"{'owner':<62} {'KiB':>10} {'pages':>9}  confirmed",
    ]

    def mark(c: bool | None) -> str:
        return {True: "yes", False: "no", None: "-"}[c]

    for r in (r for r in expl.rows if r.counted_in == "reserved"):
        lines.append(f"{r.owner:<62} {r.kib:>10} {r.pages:>9}  {mark(r.confirmed)}")
    res_kib = expl.sum_kib(("reserved",))
    want = f"kernel: {expl.kernel[2]}K" if expl.kernel else "kernel: -"
    lines.append(f"{'= reserved (' + want + ')':<62} {res_kib:>10} {res_kib // 4:>9}")
    for r in (r for r in expl.rows if r.counted_in == "total-free"):
        lines.append(f"{r.owner:<62} {r.kib:>10} {r.pages:>9}  {mark(r.confirmed)}")
        if r.note:
            lines.append(f"    {r.note}")
    all_kib = expl.sum_kib(("reserved", "total-free"))
    if expl.kernel:
        want = f"kernel: {expl.kernel[1]}K - {expl.kernel[0]}K = {expl.kernel[1] - expl.kernel[0]}K"
    lines.append(f"{'= total - free (' + want + ')':<62} {all_kib:>10} {all_kib // 4:>9}")
    for note in expl.notes:
        lines.append(f"note: {note}")
    if expl.kernel is not None and expl.booted is not None:
        names = ("free", "total", "reserved")
        diff = [
            f"{n} {b}K (kernel {k}K)"
            for n, b, k in zip(names, expl.booted, expl.kernel, strict=True)
            if b != k
        ]
        deferred = any(r.owner.startswith("deferred") for r in expl.rows)
        if diff and not (deferred and len(diff) == 1 and diff[0].startswith("free")):
            lines.append(f"note: this profile does not reproduce the figures: {', '.join(diff)}")
    holds = {True: "holds", False: "does not hold", None: "cannot be checked"}
    lines.append(
        f"reserved sum {holds[expl.reserved_holds]}; total - free sum {holds[expl.total_holds]}"
    )
    return "\n".join(lines) + "\n"


def render_json(expl: Explanation) -> str:
    free, total, reserved = expl.kernel if expl.kernel else (None, None, None)
    doc = {
        "log": expl.source,
        "arch": expl.arch,
        "profile": expl.profile,
        "allocator": expl.allocator,
        "counted": expl.accounting,
        "total_kib": total,
        "free_kib": free,
        "reserved_kib": reserved,
        "booted": None
        if expl.booted is None
        else dict(zip(("free_kib", "total_kib", "reserved_kib"), expl.booted, strict=True)),
        "rows": [
            {
                "owner": r.owner,
                "kib": r.kib,
                "pages": r.pages,
                "confirmed": r.confirmed,
                "counted_in": r.counted_in,
                **({"note": r.note} if r.note else {}),
            }
            for r in expl.rows
        ],
        "reserved_sum_holds": expl.reserved_holds,
        "total_minus_free_sum_holds": expl.total_holds,
        "notes": expl.notes,
    }
    return json.dumps(doc, indent=1) + "\n"
