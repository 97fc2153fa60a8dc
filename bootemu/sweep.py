"""``bootemu bench --sweep``: whole boots of ever larger machines, time and peak RSS per size.

The machines are generated, not presets: N TiB of address space with the PC's low map (640K,
the BIOS area, 1M-3G, the 3G-4G PCI hole) and the rest usable, in 16 stripes of N/16 TiB dealt
to 8 nodes the way ``numa-4t`` deals them (node n owns stripes n and n + 8, so classic bootmem's
node spans overlap over most of the machine). The top GiB is left out so that the largest,
64 TiB, stays below 2.6.25's MAXMEM (64 TiB - 1, include/asm-x86/pgtable_64.h) and 6.1's
MAX_PHYSMEM_BITS (46): every kernel keeps all of its RAM. Each boot runs in a fresh child
process (tracing off), which reports its wall time and its peak RSS (``getrusage``), so one
boot's memory is not hidden by another's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

from bootemu.models import BootemuError, Machine

TiB = 1 << 40
GiB = 1 << 30
SIZES_TIB = (1, 4, 16, 64)
PROFILES = ("2.6.25", "6.1")
ALLOCATORS = ("bootmem", "bootmem2", "bootmem2-perblock", "memblock")
NODES, STRIPES = 8, 16


def sweep_toml(tib: int, profile: str) -> str:
    """The machine file of the ``tib`` TiB sweep machine on kernel ``profile``."""
    if tib < 1 or tib > 64:
        raise BootemuError(f"--sizes: {tib} TiB is outside 1..64 (x86_64 keeps 46 bits)")
    top = tib * TiB - GiB
    lines = [
        "[machine]",
        f'name = "sweep-{tib}t"',
        'arch = "numa64"',
        f'description = "{tib} TiB, 8 nodes interleaved in 16 stripes (bench --sweep)"',
        "[kernel]",
        f'profile = "{profile}"',
    ]
    e820 = [
        (0, 0x9FC00, "usable"),
        (0x9FC00, 0xA0000, "reserved"),
        (0xF0000, 0x100000, "reserved"),
        (0x100000, 3 * GiB, "usable"),
        (3 * GiB, 4 * GiB, "reserved"),
        (4 * GiB, top, "usable"),
    ]
    for start, end, kind in e820:
        lines += ["[[firmware.e820]]", f"start = {start:#x}", f"end = {end:#x}", f'type = "{kind}"']
    stripe = tib * TiB // STRIPES
    for i in range(STRIPES):
        lines += [
            "[[numa.memory]]",
            f"node = {i % NODES}",
            f"start = {i * stripe:#x}",
            f"end = {(i + 1) * stripe:#x}",
        ]
    return "\n".join(lines) + "\n"


def sweep_machine(tib: int, profile: str) -> Machine:
    """:func:`sweep_toml`, loaded and validated."""
    from bootemu.machine import machine_from_toml

    return machine_from_toml(sweep_toml(tib, profile), source=f"sweep-{tib}t")


def measure(tib: int, profile: str, allocator: str) -> dict[str, object]:
    """Boot one sweep machine in this process; time it, report the process's peak RSS."""
    import resource
    import time

    from bootemu import tracing
    from bootemu.sequencer import boot_machine

    tracing.configure(None)
    machine = sweep_machine(tib, profile)
    t0, c0 = time.perf_counter(), time.process_time()
    result = boot_machine(machine, allocator=allocator)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "tib": tib,
        "profile": profile,
        "allocator": allocator,
        "seconds": round(seconds, 3),
        "cpu": round(cpu, 3),
        "rss_mib": round(rss_kib / 1024, 1),
        "outcome": result.report["outcome"],
        "ram_pages": result.report["memory"]["ram_pages"] or 0,
        "requests": len(result.report["allocations"]),
    }


def _child(tib: int, profile: str, allocator: str) -> None:  # pragma: no cover - subprocess
    print(json.dumps(measure(tib, profile, allocator)))


def run_sweep(sizes: Sequence[int], profiles: Sequence[str], allocators: Sequence[str]) -> str:
    """One child process per size, profile and backend; a text table, one row each."""
    head = (
        f"{'TiB':>4} {'profile':<7} {'allocator':<18} {'RAM GiB':>9} {'requests':>9} "
        f"{'outcome':>8} {'seconds':>8} {'CPU s':>7} {'peak RSS MiB':>13}"
    )
    lines = [head]
    for tib in sizes:
        sweep_toml(tib, PROFILES[0])  # validate the size before spawning anything
    for profile in profiles:
        for alloc in allocators:
            for tib in sizes:
                code = f"from bootemu.sweep import _child; _child({tib}, {profile!r}, {alloc!r})"
                proc = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=False
                )
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    lines.append(f"{tib:>4} {profile:<7} {alloc:<18} failed: {last}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                lines.append(
                    f"{tib:>4} {profile:<7} {alloc:<18} {r['ram_pages'] / (1 << 18):>9.1f} "
                    f"{r['requests']:>9} {r['outcome']:>8} {r['seconds']:>8.2f} {r['cpu']:>7.2f} "
                    f"{r['rss_mib']:>13.1f}"
                )
    return "\n".join(lines) + "\n"


__all__ = ["SIZES_TIB", "measure", "run_sweep", "sweep_machine", "sweep_toml"]
