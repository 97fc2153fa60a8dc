"""Helpers for the x86_32 tests: machines, a small bootmem-like backend, a boot runner.

The backend here is deliberately tiny (one bitmap over the registered span, first fit from
the goal, everything released as single pages) so that the arch's tests do not depend on the
real backends; the arch never knows which backend is plugged in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from bitarray import bitarray
from bootemu_arches.x86_32 import X86_32

from bootemu.hookspecs import hookimpl
from bootemu.models import (
    PAGE_SIZE,
    AllocRequest,
    BitmapRequest,
    E820Entry,
    KernelBug,
    KernelPanic,
    KernelSpec,
    Machine,
    PageSink,
    pfn_down,
    pfn_up,
)
from bootemu.sequencer import BootResult, boot_machine

G = 1 << 30
M = 1 << 20
USABLE, RESERVED, ACPI = 1, 2, 3


def era_a(ram: int) -> tuple[E820Entry, ...]:
    """Reference x86_32-early-memory.md §7.1 Era A (QEMU/KVM with Bochs BIOS, 2008).

    RAM [0, 0x9fc00), reserved [0x9fc00, 0xa0000) and [0xe8000, 1M), RAM [1M, top-64K), ACPI
    data [top-64K, top), reserved [0xfffbd000, 4G); from 3.5 GiB on the low top is 0xe0000000
    and the rest of the RAM starts at 4 GiB.
    """
    low = ram if ram < 0xE0000000 else 0xE0000000
    e = [E820Entry(0, 0x9FC00, USABLE), E820Entry(0x9FC00, 0xA0000, RESERVED),
         E820Entry(0xE8000, 0x100000, RESERVED), E820Entry(0x100000, low - 0x10000, USABLE),
         E820Entry(low - 0x10000, low, ACPI), E820Entry(0xFFFBD000, 1 << 32, RESERVED)]
    if ram > low:
        e.append(E820Entry(1 << 32, (1 << 32) + ram - low, USABLE))
    return tuple(e)


def era_b(ram: int) -> tuple[E820Entry, ...]:
    """Reference §7.1 Era B (SeaBIOS, as in real-boots/): RAM [0, 0x9fc00), reserved
    [0x9fc00, 0xa0000) and [0xf0000, 1M), RAM [1M, low-128K), reserved [low-128K, low) and
    [0xfffc0000, 4G), RAM [4G, 4G+high); low = 3 GiB from 3.5 GiB of RAM on (pc >= 1.7)."""
    low = ram if ram < 0xE0000000 else 0xC0000000
    e = [E820Entry(0, 0x9FC00, USABLE), E820Entry(0x9FC00, 0xA0000, RESERVED),
         E820Entry(0xF0000, 0x100000, RESERVED), E820Entry(0x100000, low - 0x20000, USABLE),
         E820Entry(low - 0x20000, low, RESERVED), E820Entry(0xFFFC0000, 1 << 32, RESERVED)]
    if ram > low:
        e.append(E820Entry(1 << 32, (1 << 32) + ram - low, USABLE))
    return tuple(e)


def machine(e820: tuple[E820Entry, ...], *, profile: str = "2.6.25", highmem: str | None = "64G",
            cmdline: str = "", **config: Any) -> Machine:
    return Machine(
        name="test", arch="x86_32", allocator="fake",
        kernel=KernelSpec(profile=profile, cmdline=cmdline, highmem=highmem,
                          config=tuple(sorted(config.items()))),
        e820=e820, source="test.toml",
    )


class FakeBootmem:
    """A minimal bootmem: one bitmap over [0, max registered pfn), 1 = reserved.

    free() BUGs on a page already free (like 2.6.25 free_bootmem_core()), alloc() is page
    granular first fit from the goal then from 0, handoff() releases every free page and the
    bitmap's own pages as order-0 runs.
    """

    def __init__(self) -> None:
        self.end = 0
        self.bits = bitarray()
        self.map_at = 0
        self.map_bytes = 0
        self.calls: list[tuple[Any, ...]] = []

    @hookimpl
    def bootemu_alloc_register_block(self, node: int, start_pfn: int, end_pfn: int) -> bool:
        self.calls.append(("register", node, start_pfn, end_pfn))
        self.end = max(self.end, end_pfn)
        return True

    @hookimpl
    def bootemu_alloc_bitmap_requests(self) -> list[BitmapRequest]:
        # mm/bootmem.c get_mapsize(): bits rounded up to bytes, then to a 4-byte long.
        self.map_bytes = (-(-self.end // 8) + 3) & ~3
        return [BitmapRequest("node0", 0, 0, self.end, self.map_bytes)]

    @hookimpl
    def bootemu_alloc_enable(self, placements: Mapping[str, int]) -> bool:
        self.map_at = placements["node0"]
        self.bits = bitarray(self.end)
        self.bits.setall(1)
        self.calls.append(("enable", dict(placements)))
        return True

    @hookimpl
    def bootemu_alloc_free(self, addr: int, size: int, node: int | None) -> bool:
        self.calls.append(("free", addr, size, node))
        s, e = pfn_up(addr), pfn_down(addr + size)
        if s < e and self.bits.count(0, s, e):
            raise KernelBug("mm/bootmem.c: free_bootmem_core()", "page already free")
        self.bits[s:e] = 0
        return True

    @hookimpl
    def bootemu_alloc_reserve(self, addr: int, size: int, node: int | None, exclusive: bool) -> int:
        self.calls.append(("reserve", addr, size, node))
        self.bits[pfn_down(addr):pfn_up(addr + size)] = 1
        return 0

    @hookimpl
    def bootemu_alloc_alloc(self, request: AllocRequest) -> int | None:
        pages = pfn_up(request.size)
        step = max(1, request.align // PAGE_SIZE)
        need = bitarray(pages)
        need.setall(0)
        goal = pfn_down(request.goal) if pfn_down(request.goal) < self.end else 0
        for start in (goal, 0):
            pos = -(-start // step) * step
            while pos + pages <= self.end:
                found = self.bits.find(need, pos)
                if found < 0:
                    break
                if found % step:
                    pos = -(-found // step) * step
                    continue
                self.bits[found:found + pages] = 1
                self.calls.append(("alloc", request.label, found << 12, request.size))
                return found << 12
        if request.panics:
            raise KernelPanic("Out of memory", [f"bootmem alloc of {request.size} bytes failed!"])
        return None

    @hookimpl
    def bootemu_alloc_handoff(self, sink: PageSink, node: int | None) -> int:
        count = 0
        pos = 0
        while True:
            s = self.bits.find(0, pos)
            if s < 0:
                break
            e = self.bits.find(1, s)
            e = self.end if e < 0 else e
            sink.free_run(node=0, start_pfn=s, end_pfn=e, order=0)
            count += e - s
            pos = e
        pages = pfn_up(self.map_bytes)
        sink.free_run(node=0, start_pfn=self.map_at, end_pfn=self.map_at + pages, order=0)
        return count + pages

    @hookimpl
    def bootemu_alloc_overhead_bytes(self) -> int:
        return pfn_up(self.map_bytes) * PAGE_SIZE


@dataclass
class Booted:
    """A finished boot: the result, the dmesg lines, the trace events, the backend."""

    result: BootResult
    lines: list[str]
    events: list[dict[str, Any]]
    backend: Any
    arch: X86_32 = field(repr=False, default_factory=X86_32)

    @property
    def report(self) -> dict[str, Any]:
        return self.result.report

    @property
    def facts(self) -> dict[str, Any]:
        return self.result.boot.facts

    @property
    def layout(self) -> Any:
        return self.result.boot.layout

    def kind(self, event: str) -> list[str]:
        """The dmesg lines of every event named ``event``."""
        return [line for ev in self.events if ev["event"] == event and "dmesg" in ev
                for line in str(ev["dmesg"]).split("\n")]

    def allocs(self, label: str) -> list[dict[str, Any]]:
        return [a for a in self.report["allocations"] if a["op"] == "alloc" and a["label"] == label]


def boot(m: Machine, backend: Any = None) -> Booted:
    """Boot ``m`` on x86_32 with ``backend`` (default: :class:`FakeBootmem`)."""
    backend = backend if backend is not None else FakeBootmem()
    arch = X86_32()
    with structlog.testing.capture_logs() as events:
        result = boot_machine(m, arch_plugin=arch, allocator_plugin=backend)
    lines = [line for ev in events if "dmesg" in ev for line in str(ev["dmesg"]).split("\n")]
    return Booted(result, lines, events, backend, arch)
