"""The sequencer, the lifecycle hooks and the panic path, with a toy arch and toy backend.

The toy arch is the smallest thing that implements every arch hook: one node, RAM pfns
[16, 1024), one zone. The toy backend keeps a Python set of reserved pfns: it is tiny on
purpose, so that what is tested here is the sequencer, not an allocator.
"""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from bootemu.boot import PHASES
from bootemu.contract import ArchInfo
from bootemu.hookspecs import hookimpl
from bootemu.models import (
    PAGE_SIZE,
    BitmapRequest,
    Block,
    BootemuError,
    KernelPanic,
    KernelSpec,
    Layout,
    Machine,
    WorkloadOp,
    Zone,
    pfn_down,
    pfn_up,
)
from bootemu.report import dumps
from bootemu.sequencer import boot_machine

RAM = (16, 1024)


class ToyArch:
    """One node, RAM [16, 1024), zone "Normal"; reserves page 16, allocates two pages."""

    def __init__(self, panic_in: str | None = None) -> None:
        self.panic_in = panic_in
        self.calls: list[str] = []
        self.bitmaps: dict[str, tuple[int, int]] = {}

    def _maybe_panic(self, phase: str) -> None:
        self.calls.append(phase)
        if self.panic_in == phase:
            raise KernelPanic("Toy panic", printk=["toy: about to panic"])

    @hookimpl
    def bootemu_arch_check_machine(self, machine):
        pass

    @hookimpl
    def bootemu_arch_info(self, machine):
        return ArchInfo(
            bits_per_long=32, phys_addr_bits=32, numa=False, memblks_per_node=1, smp_cache_bytes=64
        )

    @hookimpl
    def bootemu_arch_firmware(self, boot):
        self._maybe_panic("firmware")
        boot.printk("e820.table", "toy firmware")

    @hookimpl
    def bootemu_arch_cmdline(self, boot):
        self._maybe_panic("cmdline")

    @hookimpl
    def bootemu_arch_layout(self, boot):
        self._maybe_panic("layout")
        return Layout(
            max_pfn=RAM[1],
            ram=(RAM,),
            blocks=(Block(RAM[0], RAM[1], 0),),
            zones=(Zone(0, "Normal", 0, RAM[1], RAM[1] - RAM[0]),),
            zone_limits=(("Normal", RAM[1]),),
        )

    @hookimpl
    def bootemu_arch_register(self, boot, allocator):
        self._maybe_panic("register")
        allocator.register_block(node=0, start_pfn=RAM[0], end_pfn=RAM[1])

    @hookimpl
    def bootemu_arch_enable(self, boot, allocator):
        self._maybe_panic("enable")
        # One bitmap on bootmem and bootmem2 (128 bytes: one page at RAM[0], which the
        # reserve phase keeps); none on memblock.
        self.bitmaps = {req.key: (RAM[0], req.pages) for req in allocator.bitmap_requests()}
        allocator.enable(placements={key: pfn for key, (pfn, _) in self.bitmaps.items()})
        allocator.free(addr=RAM[0] * PAGE_SIZE, size=(RAM[1] - RAM[0]) * PAGE_SIZE, node=None)

    @hookimpl
    def bootemu_arch_reserve(self, boot, allocator):
        self._maybe_panic("reserve")
        for pfn, pages in self.bitmaps.values():
            allocator.reserve(addr=pfn * PAGE_SIZE, size=pages * PAGE_SIZE, node=None,
                              exclusive=False)

    @hookimpl
    def bootemu_arch_allocate(self, boot, allocator):
        self._maybe_panic("allocate")
        from bootemu.models import AllocRequest

        allocator.alloc(request=AllocRequest(size=2 * PAGE_SIZE, align=PAGE_SIZE, goal=0))

    @hookimpl
    def bootemu_arch_handoff(self, boot, allocator, pagealloc):
        self._maybe_panic("handoff")
        return allocator.handoff(sink=pagealloc, node=None)

    @hookimpl
    def bootemu_arch_summary(self, boot, pagealloc):
        self._maybe_panic("report")
        boot.summary.append(f"toy: {pagealloc.free_pages()} pages free")


class ToyBackend:
    """A set of reserved pfns; first fit; one 'bitmap' page that is released last."""

    def __init__(self) -> None:
        self.reserved: set[int] = set()
        self.span = (0, 0)
        self.map_pfn = None

    @hookimpl
    def bootemu_alloc_attach(self, boot):
        return True

    @hookimpl
    def bootemu_alloc_register_block(self, node, start_pfn, end_pfn):
        self.span = (start_pfn, end_pfn)
        return True

    @hookimpl
    def bootemu_alloc_bitmap_requests(self):
        return [BitmapRequest("toy", 0, *self.span, nbytes=PAGE_SIZE)]

    @hookimpl
    def bootemu_alloc_enable(self, placements):
        self.map_pfn = placements["toy"]
        self.reserved = set(range(*self.span))
        return True

    @hookimpl
    def bootemu_alloc_free(self, addr, size, node):
        self.reserved -= set(range(pfn_up(addr), pfn_down(addr + size)))
        return True

    @hookimpl
    def bootemu_alloc_reserve(self, addr, size, node, exclusive):
        self.reserved |= set(range(pfn_down(addr), pfn_up(addr + size)))
        return 0

    @hookimpl
    def bootemu_alloc_alloc(self, request):
        pages = pfn_up(request.size)
        for start in range(self.span[0], self.span[1] - pages + 1):
            if not self.reserved & set(range(start, start + pages)):
                self.reserved |= set(range(start, start + pages))
                return start * PAGE_SIZE
        if request.panics:
            raise KernelPanic(
                "Out of memory", printk=[f"bootmem alloc of {request.size} bytes failed!"]
            )
        return None

    @hookimpl
    def bootemu_alloc_handoff(self, sink, node):
        free = [p for p in range(*self.span) if p not in self.reserved]
        for p in free:
            sink.free_run(node=0, start_pfn=p, end_pfn=p + 1, order=0)
        sink.free_run(node=0, start_pfn=self.map_pfn, end_pfn=self.map_pfn + 1, order=0)
        return len(free) + 1

    @hookimpl
    def bootemu_alloc_overhead_bytes(self):
        return PAGE_SIZE

    @hookimpl
    def bootemu_alloc_stats(self):
        return {"variant": "toy"}


class PhaseWatcher:
    """A user plugin observing every phase (the kind docs/plugins.md describes)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.report = None

    @hookimpl
    def bootemu_before_phase(self, boot, phase):
        self.events.append(("before", phase))

    @hookimpl
    def bootemu_after_phase(self, boot, phase):
        self.events.append(("after", phase))

    @hookimpl
    def bootemu_on_phase_error(self, boot, phase, error):
        self.events.append(("error", phase))

    @hookimpl
    def bootemu_after_boot(self, boot, report):
        self.report = report


def _machine(workload=()) -> Machine:
    return Machine(
        name="toy", arch="toy", allocator="toy", kernel=KernelSpec(), e820=(), workload=workload
    )


def _boot(arch=None, machine=None, watcher=None):
    return boot_machine(
        machine or _machine(),
        arch_plugin=arch or ToyArch(),
        allocator_plugin=ToyBackend(),
        extra_plugins=[watcher] if watcher else [],
    )


def test_phases_run_in_order_with_lifecycle_hooks_around_each():
    watcher = PhaseWatcher()
    arch = ToyArch()
    result = _boot(arch=arch, watcher=watcher)
    assert result.outcome == "ok"
    assert arch.calls == list(PHASES)
    assert watcher.events == [(w, p) for p in PHASES for w in ("before", "after")]
    assert watcher.report is result.report


def test_toy_boot_conserves_every_page():
    result = _boot()
    # RAM [16, 1024) = 1008 pages. Page 16 holds the toy bitmap and is reserved by the arch,
    # the allocation takes pages 17-18 (first fit above page 16); so 1008 - 1 - 2 = 1005 free
    # pages plus the bitmap page released last = 1006 handed off; 2 stay reserved.
    assert result.report["handoff"]["pages"] == 1006
    assert result.violations == []
    assert result.exit_code == 0
    assert result.report["allocations"][-1]["addr"] == 17 * PAGE_SIZE


@pytest.mark.parametrize("backend", ["bootmem", "bootmem2", "bootmem2-perblock", "memblock"])
def test_toy_arch_boots_on_every_real_backend(backend):
    """The toy arch of the docs is complete: it boots on each built-in backend (memblock asks
    for no bitmap) with no violation, and every backend hands off the same pages: RAM
    [16, 1024) minus the two allocated pages = 1006 (the bootmem bitmaps are released at
    handoff; memblock has none)."""
    result = boot_machine(_machine(), allocator=backend, arch_plugin=ToyArch())
    assert result.outcome == "ok" and result.violations == []
    assert result.report["handoff"]["pages"] == 1008 - 2


def test_an_arch_without_arch_info_is_an_error_naming_it():
    class NoInfo(ToyArch):
        bootemu_arch_info = None

    with pytest.raises(BootemuError, match="arch info"):
        _boot(arch=NoInfo())


def test_panic_ends_the_boot_but_the_report_is_written():
    watcher = PhaseWatcher()
    with capture_logs() as logs:
        result = _boot(arch=ToyArch(panic_in="allocate"), watcher=watcher)
    assert result.outcome == "panic"
    assert result.report["panic_message"] == "Toy panic"
    assert result.exit_code == 1
    assert ("error", "allocate") in watcher.events
    assert ("before", "handoff") not in watcher.events
    dmesg = [e["dmesg"] for e in logs if "dmesg" in e]
    assert dmesg[-2:] == ["toy: about to panic", "Kernel panic - not syncing: Toy panic"]
    assert logs[-1]["event"] == "boot.end" and logs[-1]["outcome"] == "panic"
    json.loads(dumps(result.report))  # still a complete JSON report


def test_workload_runs_after_the_arch_allocations():
    big = WorkloadOp(op="alloc", size=4096 * 4096, label="too big")
    result = _boot(machine=_machine(workload=(big,)))
    # 4096 pages cannot fit in 1008: __alloc_bootmem panics with the kernel's text.
    assert result.outcome == "panic"
    assert result.report["panic_message"] == "Out of memory"


def test_trace_is_deterministic_and_numbered():
    def run():
        with capture_logs() as logs:
            _boot()
        return logs

    first, second = run(), run()
    assert first == second
    assert [e["seq"] for e in first] == list(range(1, len(first) + 1))
    assert first[0]["event"] == "boot.start"


@pytest.mark.parametrize("phase", PHASES)
def test_a_panic_in_any_phase_is_a_result(phase):
    result = _boot(arch=ToyArch(panic_in=phase))
    assert result.outcome == "panic"
