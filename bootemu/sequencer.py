"""The sequencer: one boot as a fixed list of phases (docs/ARCHITECTURE.md "One boot").

Deterministic by construction: the phases run in a fixed order, every trace event carries a
per-boot sequence number, and nothing reads the clock. An emulated ``panic()`` or ``BUG()``
ends the boot with outcome ``"panic"``; the report is still built.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bootemu.boot import PHASES, Boot, Tracer
from bootemu.checks import Recorder, Violation, run_checks
from bootemu.machine import apply_schema, schema_of
from bootemu.models import AllocRequest, BootemuError, KernelPanic, Machine
from bootemu.pagealloc import PageAllocModel
from bootemu.plugins import (
    ALLOCATOR_GROUP,
    ARCH_GROUP,
    OBSERVER_GROUP,
    AllocatorFacade,
    ArchFacade,
    LifecycleFacade,
    discover,
    make_manager,
    select,
)
from bootemu.report import build_report


@dataclass
class BootResult:
    """What one boot produced: the report, and the live objects for tests and tools."""

    report: dict[str, Any]
    boot: Boot
    pagealloc: PageAllocModel | None
    violations: list[Violation] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return str(self.report["outcome"])

    @property
    def exit_code(self) -> int:
        """0: booted with no violation; 1: panic or a check found a violation."""
        return 0 if self.outcome == "ok" and not self.violations else 1


def _workload_request(op: Any) -> AllocRequest:
    wrapper = op.wrapper or ("__alloc_bootmem_node" if op.node is not None else "__alloc_bootmem")
    return AllocRequest(
        size=op.size,
        align=op.align,
        goal=op.goal,
        wrapper=wrapper,
        node=op.node,
        caller="workload",
        label=op.label or f"workload {op.op}",
    )


def run_workload(boot: Boot, allocator: AllocatorFacade) -> None:
    """The machine file's ``[[workload]]`` requests, in order, after the arch's own."""
    for op in boot.machine.workload:
        if op.op == "alloc":
            allocator.alloc(request=_workload_request(op))
        elif op.op == "reserve":
            allocator.reserve(
                addr=op.addr,
                size=op.size,
                node=op.node,
                exclusive=op.exclusive,
                label=op.label or "workload reserve",
            )
        elif op.op == "free":
            allocator.free(addr=op.addr, size=op.size, node=op.node)
        else:  # machine.py validates op; this is a programming error
            raise BootemuError(f"{boot.machine.source}: workload: unknown op {op.op!r}")


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one boot (reference counting still frees).

    A boot keeps a few container objects per early request (the ledger's records, the
    requests), and every full pass of the collector walks all of them again: at 4 TiB (65 000
    requests) five passes cost an eighth of the boot, finding nothing. The collector runs
    again once the boot returns; it never changes what a boot computes.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@_no_cycle_collection()
def boot_machine(
    machine: Machine,
    *,
    allocator: str | None = None,
    arch: str | None = None,
    extra_plugins: Sequence[object] = (),
    disabled: Sequence[str] = (),
    arch_plugin: object | None = None,
    allocator_plugin: object | None = None,
) -> BootResult:
    """Boot ``machine`` once on the chosen arch and allocator backend.

    ``allocator`` / ``arch`` override the machine file; ``extra_plugins`` are observer plugin
    instances to register for this boot (tests, tools); ``disabled`` names observer plugins from
    the ``bootemu.plugins`` entry-point group to leave out. ``arch_plugin`` /
    ``allocator_plugin`` inject ready instances instead of discovering them by name (tests and
    tools that bring their own arch or backend).
    """
    arch_name = arch or machine.arch
    alloc_name = allocator or machine.allocator
    # A bad name is reported against what gave it: the option, or the machine file's key.
    if arch_plugin is None:
        where = "--arch" if arch else f"{machine.source}: machine.arch"
        arch_plugin = select(ARCH_GROUP, arch_name, discover(ARCH_GROUP), where=where).load()()
    if machine.raw is not None and machine.validated_for != arch_name:
        # Loaded before its arch was known (or for another one): the arch's tables are
        # validated by the schema of the arch that boots it.
        machine = apply_schema(machine, schema_of(arch_plugin), arch_name)
    if allocator_plugin is None:
        where = "--allocator" if allocator else f"{machine.source}: machine.allocator"
        info = select(ALLOCATOR_GROUP, alloc_name, discover(ALLOCATOR_GROUP), where=where)
        allocator_plugin = info.load()()
    observers = [
        (info.load()(), f"observer:{name}")
        for name, info in discover(OBSERVER_GROUP, disabled=disabled).items()
    ]

    boot = Boot(
        machine=machine,
        allocator_name=alloc_name,
        arch_name=arch_name,
        trace=Tracer(allocator=alloc_name),
    )
    recorder = Recorder(boot)
    plugins: list[tuple[object, str]] = [
        (arch_plugin, f"arch:{arch_name}"),
        (allocator_plugin, f"allocator:{alloc_name}"),
        (recorder, "core:recorder"),
        *observers,
        *((p, f"extra:{i}:{type(p).__name__}") for i, p in enumerate(extra_plugins)),
    ]
    pm = make_manager(plugins)
    arch_hooks, alloc_hooks, life = ArchFacade(pm), AllocatorFacade(pm), LifecycleFacade(pm)

    arch_hooks.check_machine(machine=machine)
    boot.arch_info = arch_hooks.info(machine=machine)
    alloc_hooks.attach(boot=boot)
    boot.trace(
        "boot.start",
        machine=machine.name,
        arch=arch_name,
        allocator=alloc_name,
        profile=machine.kernel.profile,
    )

    pagealloc: PageAllocModel | None = None
    violations: list[Violation] = []
    handoff_count: int | None = None
    outcome, panic_message = "ok", None

    for phase in PHASES:
        boot.phase = phase
        boot.trace("boot.phase.start", phase=phase)
        life.before_phase(boot=boot, phase=phase)
        try:
            if phase == "firmware":
                arch_hooks.firmware(boot=boot)
            elif phase == "cmdline":
                arch_hooks.cmdline(boot=boot)
            elif phase == "layout":
                boot.layout = arch_hooks.layout(boot=boot)
            elif phase == "register":
                arch_hooks.register(boot=boot, allocator=alloc_hooks)
            elif phase == "enable":
                arch_hooks.enable(boot=boot, allocator=alloc_hooks)
            elif phase == "reserve":
                arch_hooks.reserve(boot=boot, allocator=alloc_hooks)
            elif phase == "allocate":
                arch_hooks.allocate(boot=boot, allocator=alloc_hooks)
                run_workload(boot, alloc_hooks)
            elif phase == "handoff":
                assert boot.layout is not None
                pagealloc = PageAllocModel(boot.layout, trace=boot.trace)
                handoff_count = arch_hooks.handoff(
                    boot=boot, allocator=alloc_hooks, pagealloc=pagealloc
                )
                violations = run_checks(
                    boot.layout, pagealloc, recorder, handoff_count=handoff_count, trace=boot.trace
                )
            elif phase == "report":
                arch_hooks.summary(boot=boot, pagealloc=pagealloc)
        except KernelPanic as exc:
            outcome, panic_message = "panic", exc.message
            for line in exc.printk:
                boot.trace("kernel.printk", dmesg=line)
            boot.trace(
                "kernel.panic",
                phase=phase,
                message=exc.message,
                dmesg=f"Kernel panic - not syncing: {exc.message}",
            )
            life.on_phase_error(boot=boot, phase=phase, error=exc)
            life.after_phase(boot=boot, phase=phase)
            boot.trace("boot.phase.end", phase=phase, outcome="panic")
            break
        life.after_phase(boot=boot, phase=phase)
        boot.trace("boot.phase.end", phase=phase)

    report = build_report(
        boot,
        outcome=outcome,
        panic_message=panic_message,
        pagealloc=pagealloc,
        violations=violations,
        overhead_bytes=alloc_hooks.overhead_bytes(),
        allocator_stats=alloc_hooks.stats(),
        handoff_count=handoff_count,
    )
    boot.trace(
        "boot.end",
        outcome=outcome,
        violations=len(violations),
        handoff_pages=report["handoff"]["pages"],
    )
    life.after_boot(boot=boot, report=report)
    return BootResult(report=report, boot=boot, pagealloc=pagealloc, violations=violations)
