"""``bootemu compare``: boot one machine once per backend and show the boots side by side.

Each boot has its own plugin manager and its own backend instance; only the machine is shared.
The table puts one backend per column so that a disagreement stands out
(``misplaced  0  |  262144``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bootemu.models import Machine
from bootemu.plugins import ALLOCATOR_GROUP, discover, select
from bootemu.sequencer import BootResult, boot_machine

#: Address rows listed in full up to this many requests.
MAX_REQUEST_ROWS = 48

VIOLATION_KINDS = ("conservation", "double-handoff", "misplaced", "hole", "overlap")


def compare_machine(
    machine: Machine, allocators: Sequence[str], *, arch: str | None = None
) -> list[BootResult]:
    """One boot of ``machine`` per backend name, in the order given.

    Every name is checked before the first boot, so an unknown one is reported against the
    option that gave it (``--allocators``), not against the single-boot ``--allocator``."""
    found = discover(ALLOCATOR_GROUP)
    for name in allocators:
        select(ALLOCATOR_GROUP, name, found, where="--allocators")
    return [boot_machine(machine, allocator=name, arch=arch) for name in allocators]


def _violation_pages(report: dict[str, Any], kind: str) -> tuple[int, int]:
    hits = [v for v in report["violations"] if v["kind"] == kind]
    return len(hits), sum(v["end_pfn"] - v["start_pfn"] for v in hits)


def _request_key(a: dict[str, Any]) -> str:
    label = a["label"] or a["caller"] or a["wrapper"]
    if a["node"] is None or f"node {a['node']}" in label:
        return label
    return f"{label} node {a['node']}"


def _rows(results: Sequence[BootResult]) -> list[tuple[str, list[str]]]:
    reports = [r.report for r in results]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: Sequence[object]) -> None:
        rows.append((label, [str(v) for v in values]))

    row("outcome", [r["outcome"] for r in reports])
    if any(r["panic_message"] for r in reports):
        row("panic", [r["panic_message"] or "-" for r in reports])
    row("pages handed off", [r["handoff"]["pages"] for r in reports])
    keys: list[str] = []
    for r in reports:
        keys += [k for k in r["handoff"]["by_node_zone"] if k not in keys]
    for key in sorted(keys, key=lambda k: (int(k.split("/")[0][4:]), keys.index(k))):
        row(f"  {key}", [r["handoff"]["by_node_zone"].get(key, 0) for r in reports])
    ram = [r["memory"]["ram_pages"] for r in reports]
    row(
        "pages still reserved",
        [
            (ram_pages or 0) - r["handoff"]["pages"]
            for ram_pages, r in zip(ram, reports, strict=True)
        ],
    )
    row("allocator overhead bytes", [r["allocator_overhead_bytes"] for r in reports])
    for kind in VIOLATION_KINDS:
        counts = [_violation_pages(r, kind) for r in reports]
        row(f"{kind} (pages)", [f"{pages}" if n else "0" for n, pages in counts])
    # A backend that reproduces posted code with its defects (bootmem2-rfc1) counts the
    # defects that changed an answer: the row says why its column differs.
    defects = [(r.get("allocator_stats") or {}).get("defects") for r in reports]
    if any(d is not None for d in defects):
        row(
            "defects hit",
            [
                "-" if d is None else ", ".join(f"{k} {n}" for k, n in d.items()) or "0"
                for d in defects
            ],
        )

    # The addresses the same requests got: requests are matched by position among the allocs.
    allocs = [[a for a in r["allocations"] if a["op"] == "alloc"] for r in reports]
    count = max((len(a) for a in allocs), default=0)

    def where(a: list[dict[str, Any]], i: int) -> str:
        if i >= len(a):
            return "-"
        if a[i]["addr"] is None:
            return "failed"
        nodes = ",".join(str(n) for n in a[i]["nodes_touched"])
        return f"{a[i]['addr']:#x} n{nodes}" if nodes else f"{a[i]['addr']:#x}"

    cells = [[where(a, i) for a in allocs] for i in range(count)]
    differ = [i for i in range(count) if len(set(cells[i])) > 1]
    row("requests (differing)", [f"{len(a)} ({len(differ)})" for a in allocs])
    # Small boots list every request; large ones (sparse_init allocates per memory section)
    # list the first requests and then only those whose answers differ.
    shown = (
        list(range(count))
        if count <= MAX_REQUEST_ROWS
        else sorted(set(range(MAX_REQUEST_ROWS // 2)) | set(differ[: MAX_REQUEST_ROWS // 2]))
    )
    for i in shown:
        label = next((_request_key(a[i]) for a in allocs if i < len(a)), f"request {i}")
        row(f"{label} @", cells[i])
    if len(shown) < count:
        row(f"... {count - len(shown)} more requests", ["" for _ in allocs])
    return rows


def render_table(results: Sequence[BootResult], *, replays: Sequence[Any] = ()) -> str:
    """The comparison as a fixed-width text table, one backend per column.

    ``replays`` (:class:`bootemu.replay.ReplayResult`, one per result) add the replay's
    count of calls that got the real kernel's address.
    """
    header = [r.report["allocator"] for r in results]
    rows = _rows(results)
    if replays:
        rows.insert(
            1, ("replayed calls at the real address", [f"{r.same}/{r.calls}" for r in replays])
        )
    width0 = max([len("machine " + results[0].report["machine"])] + [len(k) for k, _ in rows])
    widths = [
        max([len(header[i])] + [len(vals[i]) for _, vals in rows]) for i in range(len(header))
    ]
    lines = [
        f"{'machine ' + results[0].report['machine']:<{width0}}  "
        + "  |  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True))
    ]
    lines.append("-" * len(lines[0]))
    for label, vals in rows:
        lines.append(
            f"{label:<{width0}}  "
            + "  |  ".join(f"{v:>{w}}" for v, w in zip(vals, widths, strict=True))
        )
    return "\n".join(lines) + "\n"
