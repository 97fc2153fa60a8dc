"""The state of one emulated boot, handed to every arch and lifecycle hook.

A :class:`Boot` is created by the sequencer for each boot and thrown away afterwards; nothing in
it is shared between boots (``bootemu compare`` runs several boots side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from bootemu import tracing
from bootemu.contract import ArchInfo
from bootemu.models import AllocRequest, BootemuError, E820Entry, Layout, Machine

PHASES = (
    "firmware",
    "cmdline",
    "layout",
    "register",
    "enable",
    "reserve",
    "allocate",
    "handoff",
    "report",
)


@dataclass(slots=True)
class AllocationRecord:
    """One early request and what the backend answered (the report's ``allocations``)."""

    op: str  # "alloc" | "reserve" | "free"
    size: int
    align: int
    goal: int
    limit: int
    node: int | None
    addr: int | None
    nodes_touched: tuple[int, ...] = ()
    wrapper: str = ""
    caller: str = ""
    label: str = ""
    result: int | None = None  # reserve: 0 or -EBUSY


class Tracer:
    """Emits structured trace events through structlog, numbered by a per-boot ``seq``.

    Only the CLI configures structlog (renderers); this class just calls ``get_logger()``.
    Until something configures structlog, events are dropped: a library stays silent, and
    structlog's default console output (which stamps wall-clock time) never appears.
    Values stay integers. ``dmesg`` carries the kernel-style text line(s) the event stands for
    in the active profile; the ``dmesg`` renderer prints only that.
    """

    def __init__(self, **context: Any) -> None:
        self._log = structlog.get_logger("bootemu").bind(**context)
        self.seq = 0

    def __call__(
        self, event: str, *, dmesg: str | Sequence[str] | None = None, **fields: Any
    ) -> None:
        self.seq += 1
        if not structlog.is_configured() or tracing.is_silent():
            return  # silenced: do not even build the event (half a microsecond to ask)
        if dmesg is not None:
            fields["dmesg"] = dmesg if isinstance(dmesg, str) else "\n".join(dmesg)
        self._log.info(event, seq=self.seq, **fields)


@dataclass
class Boot:
    """Everything one boot knows. Arches read and update it in their phase hooks.

    - ``machine``: the validated machine file; ``profile`` its kernel profile.
    - ``e820``: the current memory map; the arch replaces it as firmware, command line and
      sanitizing change it.
    - ``layout``: set by the arch in the ``layout`` phase.
    - ``trace(event, dmesg=..., **fields)``: emit a trace event.
    - ``allocations``: every reserve / free / alloc the arch made, with its answer (filled by
      the core's recorder, which wraps the allocator hooks).
    - ``summary``: kernel-style summary lines for the end of the report (``Memory: ...``).
    - ``facts``: arch-specific values for the report (``min_low_pfn`` ...), integers or strings.
      Backends never read them: what a backend needs of the arch is :attr:`info`.
    - ``arch_info``: the arch's :class:`bootemu.contract.ArchInfo`, set by the sequencer from
      the ``bootemu_arch_info`` hook before any phase runs; read it as :attr:`info`.
    """

    machine: Machine
    allocator_name: str
    arch_name: str
    trace: Tracer
    e820: list[E820Entry] = field(default_factory=list)
    layout: Layout | None = None
    allocations: list[AllocationRecord] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    phase: str = ""
    arch_info: ArchInfo | None = None

    @property
    def info(self) -> ArchInfo:
        """The arch's build facts; an error naming the arch when it declared none."""
        if self.arch_info is None:
            raise BootemuError(
                f"arch {self.arch_name!r} declared no ArchInfo (implement bootemu_arch_info)"
            )
        return self.arch_info

    @property
    def profile(self) -> str:
        return self.machine.kernel.profile

    def printk(self, event: str, line: str | Sequence[str], **fields: Any) -> None:
        """Shorthand for a trace event whose main content is kernel text."""
        self.trace(event, dmesg=line, **fields)


__all__ = ["PHASES", "AllocRequest", "AllocationRecord", "Boot", "Tracer"]
