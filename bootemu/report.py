"""The boot report: a JSON document with stable keys (docs/ARCHITECTURE.md, "The report")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot
    from bootemu.checks import Violation
    from bootemu.pagealloc import PageAllocModel


def _zones_without_handoff(boot: Boot) -> list[dict[str, Any]]:
    """Zones as the layout planned them, for a boot that never reached the handoff."""
    from bootemu.pagealloc import zone_entry

    return [zone_entry(z, 0, 0) for z in boot.layout.zones] if boot.layout is not None else []


def build_report(
    boot: Boot,
    *,
    outcome: str,
    panic_message: str | None,
    pagealloc: PageAllocModel | None,
    violations: Sequence[Violation],
    overhead_bytes: int,
    allocator_stats: dict[str, Any],
    handoff_count: int | None,
) -> dict[str, Any]:
    """Assemble the report of one boot. Key order is fixed, so the JSON is byte-stable."""
    layout = boot.layout
    memory: dict[str, Any] = {
        "max_pfn": layout.max_pfn if layout else None,
        "max_low_pfn": layout.max_low_pfn if layout else None,
        "lowmem_mb": layout.lowmem_mb if layout else None,
        "highmem_mb": layout.highmem_mb if layout else None,
        "ram_pages": layout.ram_pages if layout else None,
        "e820": [[e.start, e.end, e.type] for e in boot.e820],
    }
    nodes = []
    if layout is not None:
        for node in layout.nodes:
            blocks = [[b.start_pfn, b.end_pfn] for b in layout.blocks if b.node == node]
            nodes.append({"id": node, "blocks": blocks})
    handoff: dict[str, Any] = {"pages": 0, "by_node_zone": {}, "buddyinfo": []}
    if pagealloc is not None:
        handoff = {
            "pages": pagealloc.received,
            "arch_counted": handoff_count,
            "by_node_zone": pagealloc.by_node_zone(),
            "buddyinfo": pagealloc.buddyinfo(),
            "by_chunk_order": {str(k): v for k, v in sorted(pagealloc.released_by_order.items())},
            # Added for `bootemu map`: where the handed-off pages are, [start_pfn, end_pfn, node].
            "free_ranges": pagealloc.free_ranges(),
        }
    return {
        "machine": boot.machine.name,
        "arch": boot.arch_name,
        "allocator": boot.allocator_name,
        "profile": boot.profile,
        "outcome": outcome,
        "panic_message": panic_message,
        "memory": memory,
        "nodes": nodes,
        "zones": pagealloc.zones_report()
        if pagealloc is not None
        else _zones_without_handoff(boot),
        "allocations": [
            {
                "op": a.op,
                "size": a.size,
                "align": a.align,
                "goal": a.goal,
                "limit": a.limit,
                "node": a.node,
                "addr": a.addr,
                "nodes_touched": list(a.nodes_touched),
                "wrapper": a.wrapper,
                "caller": a.caller,
                "label": a.label,
                "result": a.result,
            }
            for a in boot.allocations
        ],
        "handoff": handoff,
        "allocator_overhead_bytes": overhead_bytes,
        "allocator_stats": allocator_stats,
        "violations": [
            {"kind": v.kind, "start_pfn": v.start_pfn, "end_pfn": v.end_pfn, "detail": v.detail}
            for v in violations
        ],
        "facts": dict(sorted(boot.facts.items())),
        "summary": list(boot.summary),
    }


def dumps(report: dict[str, Any] | list[dict[str, Any]]) -> str:
    """The report as JSON text (2-space indent, trailing newline)."""
    return json.dumps(report, indent=2) + "\n"
