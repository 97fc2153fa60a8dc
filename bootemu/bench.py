"""``bootemu bench``: wall-clock time of whole boots of the largest presets.

Timing lives here and in the README, never in tests. Each figure is the best of ``repeat``
boots (the least disturbed by the rest of the machine), tracing off.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bootemu.machine import list_presets, load_machine
from bootemu.models import BootemuError
from bootemu.sequencer import boot_machine

#: The presets the README's figures are measured on, largest memory first.
DEFAULT_MACHINES = ("numa-4t", "pae-64g", "sgi-sparse", "seed-numa-8g", "qemu-pc-1g-i386")


def run_bench(machines: Sequence[str], allocators: Sequence[str], *, repeat: int = 3) -> str:
    """Boot every machine on every backend ``repeat`` times; return a text table."""
    presets = {name for name, _ in list_presets()}
    names = list(machines) or [m for m in DEFAULT_MACHINES if m in presets]
    if repeat < 1:
        raise BootemuError("--repeat: must be at least 1")
    lines = [
        f"{'machine':<20} {'allocator':<18} {'max_pfn':>12} {'RAM GiB':>8} "
        f"{'outcome':>8} {'seconds':>8}"
    ]
    for name in names:
        machine = load_machine(name)
        for alloc in allocators:
            best = float("inf")
            report = None
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = boot_machine(machine, allocator=alloc)
                best = min(best, time.perf_counter() - t0)
                report = result.report
            assert report is not None
            ram_gib = (report["memory"]["ram_pages"] or 0) / (1 << 18)
            lines.append(
                f"{name:<20} {alloc:<18} {report['memory']['max_pfn'] or 0:>12} "
                f"{ram_gib:>8.1f} {report['outcome']:>8} {best:>8.2f}"
            )
    return "\n".join(lines) + "\n"
