"""The generic arch base (bootemu.archbase): the phases made of steps, in order, by the
cross-backend rules; and the built-in profiles on it, replacing only the steps their kernels do
their own way (docs/plugins.md, "The built-in arches on the same base").

The expected calls below are worked out by hand from a two-node layout; nothing is pasted from a
run. That the built-in arches' output did not change in the move is bench/snapshot.py's proof
(and the real-boot tests', which still match every traced call).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from bootemu_arches.numa64 import PROFILES as NUMA64_PROFILES
from bootemu_arches.x86_32 import PROFILES as X86_32_PROFILES

from bootemu.archbase import BootSteps, GenericArch, ProfileArch
from bootemu.models import PAGE_SIZE, BitmapRequest, Block, Layout, OwnedRange

P = PAGE_SIZE
STEPS = ("register_blocks", "place_bitmaps", "free_ram", "reserve_bitmaps", "reserve_kept",
         "handoff_nodes")
PHASES = ("register", "enable", "reserve", "handoff")


class Recorder:
    """An allocator that records every call; bootmem-like: one 1-page bitmap per node."""

    def __init__(self, nodes: dict[int, tuple[int, int]]) -> None:
        self.nodes = nodes
        self.calls: list[tuple[Any, ...]] = []

    def register_block(self, *, node: int, start_pfn: int, end_pfn: int) -> None:
        self.calls.append(("register", node, start_pfn, end_pfn))

    def bitmap_requests(self) -> list[BitmapRequest]:
        return [BitmapRequest(f"node{n}", n, s, e, 32) for n, (s, e) in self.nodes.items()]

    def enable(self, *, placements: dict[str, int]) -> None:
        self.calls.append(("enable", dict(placements)))

    def free(self, *, addr: int, size: int, node: int | None) -> None:
        self.calls.append(("free", addr // P, (addr + size) // P, node))

    def reserve(self, *, addr: int, size: int, node: int | None, exclusive: bool,
                label: str = "") -> int:
        self.calls.append(("reserve", addr // P, (addr + size) // P, node, label))
        return 0

    def handoff(self, *, sink: Any, node: int | None) -> int:
        self.calls.append(("handoff", node))
        return 1


class TwoNodes(BootSteps):
    """Node 0: pfns [0, 100) and [110, 256) (a hole at 100); node 1: [256, 512). The kernel
    image is pfns [16, 32); one reservation straddles the node boundary, pfns [250, 260)."""

    def layout(self, boot: Any) -> Layout:
        blocks = (Block(0, 100, 0), Block(110, 256, 0), Block(256, 512, 1))
        return Layout(max_pfn=512, ram=((0, 100), (110, 512)), blocks=blocks, zones=(),
                      zone_limits=(("Normal", 512),),
                      owned=(OwnedRange(16 * P, 32 * P, "kernel image"),))

    def reservations(self, boot: Any) -> list[OwnedRange]:
        return [OwnedRange(250 * P, 260 * P, "initrd")]


def run(steps: BootSteps) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = []
    boot = SimpleNamespace(trace=lambda event, **kw: events.append((event, kw)))
    boot.layout = steps.layout(boot)
    alloc = Recorder({0: (0, 256), 1: (256, 512)})
    steps.register(boot, alloc)
    steps.enable(boot, alloc)
    steps.reserve(boot, alloc)
    assert steps.handoff(boot, alloc, pagealloc=None) == 2
    return alloc.calls


def test_the_generic_phases_run_the_steps_in_kernel_order() -> None:
    assert run(TwoNodes()) == [
        # register_blocks: every block, on its node, in address order
        ("register", 0, 0, 100), ("register", 0, 110, 256), ("register", 1, 256, 512),
        # place_bitmaps: the lowest free RAM page of the node, clear of [16, 32) and
        # [250, 260): pfn 0 on node 0; node 1's RAM starts at 256, busy to 260
        ("enable", {"node0": 0, "node1": 260}),
        # free_ram: every RAM page once, a free per block piece, with its node
        ("free", 0, 100, 0), ("free", 110, 256, 0), ("free", 256, 512, 1),
        # reserve_bitmaps: right after the frees (setup_node_bootmem()'s order)
        ("reserve", 0, 1, 0, "bootmem bitmap node0"), ("reserve", 260, 261, 1,
                                                       "bootmem bitmap node1"),
        # reserve_kept: the owned range, then the reservation cut at the node boundary
        ("reserve", 16, 32, 0, "kernel image"),
        ("reserve", 250, 256, 0, "initrd"), ("reserve", 256, 260, 1, "initrd"),
        # handoff_nodes: each node with blocks, ascending
        ("handoff", 0), ("handoff", 1),
    ]


def test_reserve_on_nodes_skips_holes_and_traces_each_piece() -> None:
    steps, events = TwoNodes(), []
    boot = SimpleNamespace(trace=lambda event, **kw: events.append((event, kw)))
    boot.layout = steps.layout(boot)
    alloc = Recorder({})
    # bytes 95 pages + 2 KiB .. 112 pages: the piece in the hole [100, 110) is left out
    steps.reserve_on_nodes(boot, alloc, 95 * P + 2048, 112 * P, "x", event="t.piece")
    assert alloc.calls == [("reserve", 95, 100, 0, "x"), ("reserve", 110, 112, 0, "x")]
    assert events == [("t.piece", {"name": "x", "start": 95 * P + 2048, "end": 100 * P,
                                   "node": 0}),
                      ("t.piece", {"name": "x", "start": 110 * P, "end": 112 * P, "node": 0})]


def test_a_kernel_overrides_one_step_and_keeps_the_rest() -> None:
    class FixedBitmap(TwoNodes):
        """A kernel that puts every bitmap at a fixed pfn (x86_32's init_bootmem() style)."""

        def place_bitmaps(self, boot: Any, allocator: Any) -> dict[str, tuple[int, int]]:
            return {r.key: (40 + i, 41 + i) for i, r in enumerate(allocator.bitmap_requests())}

    calls = run(FixedBitmap())
    assert ("enable", {"node0": 40, "node1": 41}) in calls
    # the generic reserve_bitmaps keeps them where they were put, each on its node
    assert ("reserve", 40, 41, 0, "bootmem bitmap node0") in calls
    assert ("reserve", 41, 42, 0, "bootmem bitmap node1") in calls
    assert calls[-2:] == [("handoff", 0), ("handoff", 1)]


def overridden(cls: type, names: tuple[str, ...]) -> set[str]:
    return {n for n in names if getattr(cls, n) is not getattr(BootSteps, n)}


ALL = set(STEPS)


@pytest.mark.parametrize(
    ("profile", "steps", "phases"),
    [
        # x86_32: init_bootmem() span, bitmap at min_low_pfn, register_bootmem_low_pages(),
        # the first reservation running on through the bitmap, setup_bootmem_allocator()'s
        # reservations, mem_init()'s highmem handover: every step is the kernel's own.
        (X86_32_PROFILES["2.6.25"], ALL, set()),
        (X86_32_PROFILES["2.6.26-rc1"], ALL, set()),
        (X86_32_PROFILES["6.1"], ALL, set()),
        # numa64 2.6.25: setup_node_bootmem() and early_res_to_bootmem(), every phase of
        # setup_arch() inside the early-exception handler (a wrapper, not a rewrite).
        (NUMA64_PROFILES["2.6.25"], ALL, {"register", "enable", "reserve"}),
        # numa64 6.1: memblock knows each range's node, the generic registration.
        (NUMA64_PROFILES["6.1"], ALL - {"register_blocks"}, set()),
    ],
    ids=["x86_32-2.6.25", "x86_32-2.6.26-rc1", "x86_32-6.1", "numa64-2.6.25", "numa64-6.1"],
)
def test_the_built_in_profiles_are_boot_steps(profile: type, steps: set[str],
                                              phases: set[str]) -> None:
    assert issubclass(profile, BootSteps)
    assert overridden(profile, STEPS) == steps
    assert overridden(profile, PHASES) == phases
    for name in steps:  # each replacement names the kernel routine it follows
        doc = getattr(profile, name).__doc__ or ""
        assert "(" in doc, f"{profile.__name__}.{name}: no kernel routine in its docstring"


def test_the_built_in_plugins_are_generic_arches() -> None:
    from bootemu_arches.numa64 import Numa64
    from bootemu_arches.x86_32 import X86_32

    for plugin in (X86_32, Numa64):
        assert issubclass(plugin, ProfileArch)
        assert issubclass(plugin, GenericArch)
