"""A test kit for plugin authors (public): boot an arch on every backend and hold it to the
checks; record what a backend hands off.

    from bootemu.testing import check_arch

    def test_my_arch_boots_everywhere():
        check_arch(MyArch, "machines/board.toml")

:func:`check_arch` needs no installed entry point for the arch: pass the plugin class (or a
factory) and a machine file or :class:`~bootemu.models.Machine`; the machine's arch tables are
validated by the class's ``MACHINE_SCHEMA``. :class:`RecordingSink` is a page sink for a
backend's ``bootemu_alloc_handoff(sink=..., node=...)`` under test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bootemu.machine import load_machine
from bootemu.models import BootemuError, Machine
from bootemu.plugins import ALLOCATOR_GROUP, discover
from bootemu.sequencer import BootResult, boot_machine


class RecordingSink:
    """A :class:`~bootemu.models.PageSink` that records every ``free_run()`` call, in order,
    as ``(node, start_pfn, end_pfn, order)`` in :attr:`runs`."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int, int, int]] = []

    def free_run(self, *, node: int, start_pfn: int, end_pfn: int, order: int) -> None:
        self.runs.append((node, start_pfn, end_pfn, order))

    def pages(self) -> int:
        """Pages released in all."""
        return sum(e - s for _, s, e, _ in self.runs)

    def pfns(self) -> set[int]:
        """Every pfn released (one Python int each: for small tests)."""
        return {p for _, s, e, _ in self.runs for p in range(s, e)}

    def expanded(self) -> list[tuple[int, int]]:
        """``(pfn, order)`` per kernel call: one per page, or one per chunk of 2**order pages."""
        return [(p, o) for _, s, e, o in self.runs for p in range(s, e, 1 << o)]


def _per_node(result: BootResult) -> dict[str, int]:
    """Handed-off pages by node (the zones may differ: backends place allocations apart)."""
    out: dict[str, int] = {}
    for key, pages in result.report["handoff"]["by_node_zone"].items():
        node = key.split("/")[0]
        out[node] = out.get(node, 0) + pages
    return out


def check_arch(
    arch: Callable[[], object],
    machine: Machine | str,
    *,
    backends: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, BootResult]:
    """Boot ``machine`` with a fresh ``arch()`` on each backend; the results by backend.

    ``backends`` defaults to every installed one (``bootemu.allocators`` entry points) that
    accepts the machine: a backend that refuses it as input it does not emulate (a
    :class:`~bootemu.models.BootemuError`, as bootmem2-rfc1 refuses memory that does not start
    at pfn 0) is left out of the result. Backends named in ``backends`` must all boot.
    Raises AssertionError, naming the backend, unless every boot ends ``ok`` with no
    violation and all backends hand off the same number of pages on each node.
    """
    if isinstance(machine, str):
        machine = load_machine(machine, overrides=overrides)
    names = list(backends) if backends is not None else list(discover(ALLOCATOR_GROUP))
    results: dict[str, BootResult] = {}
    refused: list[BootemuError] = []
    for name in names:
        try:
            results[name] = boot_machine(machine, allocator=name, arch_plugin=arch())
        except BootemuError as exc:
            if backends is not None:
                raise
            refused.append(exc)
    if not results:
        # Refused everywhere: bad input for the arch itself (or no backend installed).
        if refused:
            raise refused[0]
        raise AssertionError("check_arch: no allocator backend is installed")
    problems: list[str] = []
    for name, r in results.items():
        if r.outcome != "ok":
            problems.append(f"{name}: {r.outcome}: {r.report['panic_message']}")
        problems += [
            f"{name}: {v.kind} [{v.start_pfn:#x}, {v.end_pfn:#x}): {v.detail}" for v in r.violations
        ]
    if not problems:
        counts: dict[str, Any] = {
            n: (r.report["handoff"]["pages"], _per_node(r)) for n, r in results.items()
        }
        if len({repr(c) for c in counts.values()}) > 1:
            problems.append(f"handoff differs between backends (pages, by node): {counts}")
    if problems:
        raise AssertionError(f"check_arch({machine.name}):\n  " + "\n  ".join(problems))
    return results


__all__ = ["RecordingSink", "check_arch"]
