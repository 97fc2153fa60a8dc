"""``bootemu replay``: a real kernel's boot-allocator calls, replayed on any backend.

A traced log (the 2008 ``bootmem_trace:`` lines, 6.1 ``memblock=debug``) lists every call the
real kernel made to its boot allocator, with sizes, alignments, goals, limits, nodes and the
address each allocation got (:func:`bootemu.importers.trace.read_trace`). :func:`replay_log`
boots the log's machine (:func:`bootemu.importers.import_dmesg`, or a machine file) with a
:class:`ReplayArch` in front of the machine's arch: firmware, command line, layout, block
registration, handoff and the ``Memory:`` line are the arch's own; the bitmaps are placed where
the real kernel put its own, and the reserve and allocate phases are the trace's calls, in
order, through the same allocator hooks as any boot. The checks run over the result, so the
answer to "what would this real boot have done on bootmem2?" is the address of every call on
that backend, side by side with the real one, and the checks' verdict.

How trace calls map onto the hooks:

- ``init`` / ``register`` lines place nothing by themselves: the arch registers the blocks; the
  ``mapstart`` (2008 bootmem) or ``map @ pfn`` (the RFC's printk) says where the real kernel
  put its bitmap, and a backend's bitmap goes there when it is no larger than the real one;
  otherwise (or with no such line: 6.1) in the lowest registered pages on its node that no
  traced call ever touched.
- ``free`` -> ``free`` (free_bootmem(), free_bootmem_node(), memblock_phys_free()), minus the
  target backend's bitmap pages, which the kernel never frees.
- ``add`` (memblock_add()) makes memory without releasing reservations: it frees what of the
  range lies in a registered block and is neither reserved by an earlier call nor a bitmap.
- ``reserve`` -> ``reserve``; the reservations memblock made before ``memblock=debug`` took
  effect are read from its ``reserved[...]`` dump and reserved where no call did already. A
  6.1 allocation printed without its request line (memblock_phys_alloc_try_nid() of
  NODE_DATA) can only be reserved where the kernel put it; it is listed, not counted.
- ``alloc`` -> ``alloc`` with an :class:`~bootemu.models.AllocRequest` naming the wrapper the
  entry point is (``__alloc_bootmem_node`` ...), its node, goal and any explicit limit
  (``max_addr``). On x86_64 2.6.25 the printed ``nid=`` of early node allocations is not
  reliable (pgdat->node_id is set later): the first ``core bdata_start`` names the node.
- ``free_all`` lines are the real kernel's handoff; the arch's handoff does it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bootemu.checks import ByteRanges, intersect, subtract
from bootemu.hookspecs import hookimpl
from bootemu.importers.trace import TraceCall
from bootemu.models import (
    PAGE_SIZE,
    AllocRequest,
    BootemuError,
    KernelPanic,
    Machine,
    pfn_phys,
    pfn_up,
)
from bootemu.plugins import ARCH_GROUP, discover, select
from bootemu.replay_calls import import_log, read_calls, real_memory_line, request_for
from bootemu.sequencer import BootResult, boot_machine

__all__ = [
    "ReplayArch",
    "ReplayResult",
    "ReplayRow",
    "render_replay",
    "replay_log",
]


@dataclass
class ReplayRow:
    """One traced call and what the replay made of it.

    ``real`` is the address the real kernel returned (allocations; 0 = it failed), ``got`` the
    replay's (None = the backend returned NULL), ``status`` one of ``"same"``, ``"differs"``,
    ``"panic"`` (the backend panicked here), ``"not replayed"`` (after a panic) or ``"done"``
    (a call that places nothing: reserve, free, add, init).
    """

    call: TraceCall
    request: AllocRequest | None = None
    real: int | None = None
    got: int | None = None
    status: str = "not replayed"
    note: str = ""

    @property
    def is_alloc(self) -> bool:
        return self.request is not None


@dataclass
class ReplayResult:
    """A replay: the boot's result, a row per traced call, the real and replayed Memory: lines."""

    source: str
    allocator: str
    result: BootResult
    rows: list[ReplayRow]
    real_memory: str | None
    #: Byte ranges of the bitmaps the replay placed for the backend.
    bitmaps: list[tuple[int, int]] = field(default_factory=list)

    @property
    def allocs(self) -> list[ReplayRow]:
        return [r for r in self.rows if r.is_alloc and r.status != "not replayed"]

    @property
    def calls(self) -> int:
        """N: the allocation calls replayed (each has a real address to compare with)."""
        return len(self.allocs)

    @property
    def same(self) -> int:
        """M: the replayed allocation calls that got the real kernel's address."""
        return sum(1 for r in self.allocs if r.status == "same")

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def replay_memory(self) -> str | None:
        return self.result.boot.summary[0] if self.result.boot.summary else None


# --------------------------------------------------------------------------------------------
# The arch in front of the real one


class ReplayArch:
    """An arch plugin that runs the machine's arch but replaces reserve/allocate by the trace.

    ``inner`` is a fresh instance of the machine's arch plugin; its phase hooks are called for
    firmware, cmdline, layout, register, handoff and summary.
    """

    def __init__(
        self,
        inner: Any,
        calls: Sequence[TraceCall],
        rows: list[ReplayRow],
        *,
        real_maps: Sequence[tuple[int | None, int, int]],
        arch64: bool,
    ) -> None:
        self.inner = inner
        self.calls = list(calls)
        self.rows = rows
        self.real_maps = list(real_maps)  # (node or None, first pfn, pages of bitmap)
        self.arch64 = arch64
        self.blocks: list[tuple[int, int, int]] = []  # (node, start_pfn, end_pfn)
        self.registered: list[tuple[int, int]] = []  # the blocks' bytes, merged
        self.bitmap_bytes: list[tuple[int, int]] = []
        self.reserved = ByteRanges()
        self.placed: list[tuple[int, int, int]] = []  # (real address, size, replayed address)
        self.pos = 0
        self.boot: Any = None

    # -- the arch's own phases -----------------------------------------------------------------

    @hookimpl
    def bootemu_arch_check_machine(self, machine: Machine) -> bool:
        return bool(self.inner.bootemu_arch_check_machine(machine=machine))

    @hookimpl
    def bootemu_arch_info(self, machine: Machine) -> Any:
        return self.inner.bootemu_arch_info(machine=machine)

    @hookimpl
    def bootemu_arch_firmware(self, boot: Any) -> bool:
        self.boot = boot
        return bool(self.inner.bootemu_arch_firmware(boot=boot))

    @hookimpl
    def bootemu_arch_cmdline(self, boot: Any) -> bool:
        return bool(self.inner.bootemu_arch_cmdline(boot=boot))

    @hookimpl
    def bootemu_arch_layout(self, boot: Any) -> Any:
        return self.inner.bootemu_arch_layout(boot=boot)

    @hookimpl
    def bootemu_arch_register(self, boot: Any, allocator: Any) -> bool:
        self.inner.bootemu_arch_register(boot=boot, allocator=_Capture(allocator, self.blocks))
        self.registered = _merge((pfn_phys(s), pfn_phys(e)) for _n, s, e in self.blocks)
        return True

    @hookimpl
    def bootemu_arch_handoff(self, boot: Any, allocator: Any, pagealloc: Any) -> int:
        return int(
            self.inner.bootemu_arch_handoff(boot=boot, allocator=allocator, pagealloc=pagealloc)
        )

    @hookimpl
    def bootemu_arch_summary(self, boot: Any, pagealloc: Any) -> bool:
        self.inner.bootemu_arch_summary(boot=boot, pagealloc=pagealloc)
        return True

    # -- the replayed phases -------------------------------------------------------------------

    @hookimpl
    def bootemu_arch_enable(self, boot: Any, allocator: Any) -> bool:
        """Place the backend's bitmaps (module docstring) and enable it.

        The arch's own enable runs first against a facade that makes no call (its frees,
        reservations and placements are the trace's business): arches keep state from it
        that their handoff reads (numa64 2.6.25's online nodes).
        """
        try:
            self.inner.bootemu_arch_enable(boot=boot, allocator=_Shadow(allocator))
        except KernelPanic:
            pass  # the trace, not the arch's own set-up, decides whether this boot panics
        placements: dict[str, int] = {}
        busy = self._touched()
        used: dict[int | None, int] = {}
        for req in allocator.bitmap_requests():
            pfn = self._real_spot(req, used)
            if pfn is None:
                pfn = self._untouched(req, busy)
            placements[req.key] = pfn
            self.bitmap_bytes.append((pfn_phys(pfn), pfn_phys(pfn + req.pages)))
            busy.append((pfn, pfn + req.pages))
            busy.sort()
        self.bitmap_bytes.sort()
        allocator.enable(placements=placements)
        return True

    def _real_spot(self, req: Any, used: dict[int | None, int]) -> int | None:
        """Where the real kernel's bitmap for this node sat, if this one fits in it."""
        for node, pfn, pages in self.real_maps:
            if node is not None and req.node is not None and node != req.node:
                continue
            offset = used.get(node, 0)
            if offset + req.pages <= pages:
                used[node] = offset + req.pages
                return pfn + offset
        return None

    def _touched(self) -> list[tuple[int, int]]:
        """Pfn ranges any traced call reserved or got (real addresses)."""
        out = []
        for c in self.calls:
            if c.op == "reserve" and c.addr is not None and c.size:
                out.append((c.addr // PAGE_SIZE, pfn_up(c.addr + c.size)))
            elif c.op == "alloc" and c.result and c.size:
                out.append((c.result // PAGE_SIZE, pfn_up(c.result + c.size)))
        for _node, pfn, pages in self.real_maps:
            out.append((pfn, pfn + pages))
        return sorted(out)

    def _untouched(self, req: Any, busy: list[tuple[int, int]]) -> int:
        """The lowest registered pages of the request's node (within its range) that no
        traced call touched."""
        need = req.pages
        ranges = sorted(
            (max(s, req.start_pfn), min(e, req.end_pfn))
            for n, s, e in self.blocks
            if req.node is None or n == req.node
        )
        merged = [r for r in ranges if r[0] < r[1]]
        # When the request's own range has no such pages (6.1 reserves all of the first MiB,
        # a block of its own on x86_64), any registered pages of its node, then any at all.
        others = sorted((s, e) for n, s, e in self.blocks if req.node is None or n == req.node)
        for candidates in (merged, others, sorted((s, e) for _n, s, e in self.blocks)):
            for s, e in subtract(_merge(candidates), _merge(busy)):
                if e - s >= need:
                    return s
        raise KernelPanic(f"replay: no {need} untouched pages for the {req.key} bitmap")

    @hookimpl
    def bootemu_arch_reserve(self, boot: Any, allocator: Any) -> bool:
        """The traced calls up to the first allocation."""
        while self.pos < len(self.calls) and self.calls[self.pos].op != "alloc":
            self._step(allocator)
        return True

    @hookimpl
    def bootemu_arch_allocate(self, boot: Any, allocator: Any) -> bool:
        """Every traced call from the first allocation on."""
        while self.pos < len(self.calls):
            self._step(allocator)
        return True

    # -- one call ------------------------------------------------------------------------------

    def _step(self, allocator: Any) -> None:
        call, row = self.calls[self.pos], self.rows[self.pos]
        self.pos += 1
        row.status = "panic"  # until the call returns
        if row.request is not None:
            self._alloc(allocator, row)
            return
        row.status = "done"
        if call.op == "alloc" or call.addr is None or call.size is None:
            return  # init, register, free_all, a zero-byte allocation: nothing to call
        lo, hi = call.addr, call.addr + call.size
        # memblock calls may name bytes that are no memory (memblock_reserve() of the BIOS
        # area, memblock_phys_free() of unreserved bytes: both harmless in mm/memblock.c);
        # the bitmap backends BUG on those, so only the registered part is passed on, and a
        # memblock free only releases what is reserved.
        memblock = call.name.startswith("memblock_")
        mine = self.registered
        if call.op == "reserve":
            pieces = [(lo, hi)]
            if call.name == "memblock_dump":  # only what no traced call reserved
                pieces = subtract(pieces, self.reserved.ranges)
            if memblock:
                pieces = intersect(pieces, mine)
            if call.caller and call.caller.startswith("memblock_alloc_range_nid"):
                row.note = "allocation printed without its request: reserved where it was"
            for s, e, node in self._by_node(call, pieces):
                allocator.reserve(addr=s, size=e - s, node=node, exclusive=False)
                self.reserved.add(s, e)
        elif call.op == "free":
            pieces = self._moved(lo, hi)
            if memblock:
                pieces = intersect(intersect(pieces, self.reserved.ranges), mine)
            for s, e, node in self._by_node(call, subtract(pieces, self.bitmap_bytes)):
                allocator.free(addr=s, size=e - s, node=node)
            for s, e in pieces:
                self.reserved.remove(s, e)
        elif call.op == "add":
            new = subtract(
                intersect([(lo, hi)], mine), _merge([*self.reserved.ranges, *self.bitmap_bytes])
            )
            for s, e in new:
                allocator.free(addr=s, size=e - s, node=None)

    def _moved(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """A free of (part of) a replayed allocation frees it where the replay put it."""
        for real, size, got in reversed(self.placed):
            if real <= lo and hi <= real + size:
                return [(got + lo - real, got + hi - real)] if hi > lo else []
        return [(lo, hi)]

    def _by_node(
        self, call: TraceCall, pieces: list[tuple[int, int]]
    ) -> list[tuple[int, int, int | None]]:
        """Byte ranges with the node to name in the hook. A memblock call has no node: on a
        layout of several nodes each piece goes to the node it lies on, as x86_64's
        reserve_bootmem_generic() did (2.6.25 reserve_bootmem() knows node 0 only)."""
        layout = self.boot.layout if self.boot is not None else None
        if not call.name.startswith("memblock_") or layout is None or len(layout.nodes) < 2:
            return [(s, e, self._node(call, s)) for s, e in pieces]
        out: list[tuple[int, int, int | None]] = []
        for s, e in pieces:
            for ps, pe, node in layout.node_pieces(s // PAGE_SIZE, pfn_up(e)):
                out.append((max(s, pfn_phys(ps)), min(e, pfn_phys(pe)), node))
        return out

    def _node(self, call: TraceCall, addr: int) -> int | None:
        """The node of a ``*_node`` reserve or free: the printed nid, except on x86_64 where
        it is not reliable and the node the address lies on is the one the kernel meant."""
        if not call.name.endswith("_node") or call.nid is None or call.nid < 0:
            return None
        if self.arch64 and self.boot is not None and self.boot.layout is not None:
            node = self.boot.layout.node_of(addr // PAGE_SIZE)
            return call.nid if node is None else node
        return call.nid

    def _alloc(self, allocator: Any, row: ReplayRow) -> None:
        request = row.request
        assert request is not None
        got = allocator.alloc(request=request)
        row.got = got
        row.status = "same" if (got or 0) == (row.real or 0) else "differs"
        if got is not None and request.size:
            self.reserved.add(got, got + request.size)
            if row.real:
                self.placed.append((row.real, request.size, got))


class _Shadow:
    """A facade that answers the arch's own enable without calling the backend: only the
    bitmap sizes are asked (a pure question); everything else is swallowed."""

    def __init__(self, facade: Any) -> None:
        self._facade = facade

    def bitmap_requests(self) -> Any:
        return self._facade.bitmap_requests()

    def enable(self, *, placements: Any) -> None:
        return None

    def free(self, *, addr: int, size: int, node: int | None) -> None:
        return None

    def reserve(
        self, *, addr: int, size: int, node: int | None, exclusive: bool, label: str = ""
    ) -> int:
        return 0

    def alloc(self, *, request: AllocRequest) -> int | None:
        return None


class _Capture:
    """The allocator facade, with the blocks the arch registers written down."""

    def __init__(self, facade: Any, blocks: list[tuple[int, int, int]]) -> None:
        self._facade = facade
        self._blocks = blocks

    def register_block(self, *, node: int, start_pfn: int, end_pfn: int) -> None:
        self._blocks.append((node, start_pfn, end_pfn))
        self._facade.register_block(node=node, start_pfn=start_pfn, end_pfn=end_pfn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._facade, name)


def _merge(ranges: Any) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


# --------------------------------------------------------------------------------------------
# The replay


def replay_log(
    text: str,
    *,
    source: str,
    allocator: str,
    machine: Machine | None = None,
    overrides: Sequence[str] = (),
    kconfig: Any = None,
    system_map: Any = None,
) -> ReplayResult:
    """Replay the traced calls of the log ``text`` on ``allocator`` (see the module doc).

    ``machine`` replaces the machine imported from the log (``overrides``, ``kconfig`` and
    ``system_map``, the kernel's parsed build artifacts, apply to the imported one). Raises
    BootemuError when the log has no traced allocator call.
    """
    log = read_calls(text)
    calls = log.calls
    if not any(c.op == "alloc" for c in calls):
        raise BootemuError(
            f"{source}: no traced allocator calls (neither 'bootmem_trace:' "
            "lines nor memblock=debug allocations)"
        )
    if machine is None:
        machine = import_log(
            text, source=source, overrides=overrides, kconfig=kconfig, system_map=system_map
        )
    arch64 = machine.arch != "x86_32"
    rows = [ReplayRow(call=c) for c in calls]
    for row in rows:
        if row.call.op == "alloc" and row.call.size:
            row.request = request_for(row.call, log.node_starts)
            row.real = row.call.result
    inner = select(ARCH_GROUP, machine.arch, discover(ARCH_GROUP)).load()()
    arch = ReplayArch(inner, calls, rows, real_maps=log.real_maps, arch64=arch64)
    result = boot_machine(machine, allocator=allocator, arch_plugin=arch)
    return ReplayResult(
        source=source,
        allocator=allocator,
        result=result,
        rows=rows,
        real_memory=real_memory_line(text),
        bitmaps=list(arch.bitmap_bytes),
    )


def _hex(value: int | None) -> str:
    return "-" if value is None else f"{value:#x}"


def render_replay(res: ReplayResult) -> str:
    """The replay as text: a line per traced call, the verdict, and the closing count."""
    report = res.result.report
    lines = [
        f"replay of {res.source} on {res.allocator} "
        f"({report['machine']}, {report['arch']} {report['profile']})",
        f"{'line':>6}  {'call':<28} {'size':>10} {'align':>7} {'goal':>12} "
        f"{'limit':>12} {'nid':>4}  {'real':>12}  {'replay':>12}  result",
    ]
    for row in res.rows:
        c = row.call
        if row.is_alloc:
            got = (
                "panic"
                if row.status == "panic"
                else ("-" if row.status == "not replayed" else _hex(row.got or 0))
            )
            req = row.request
            assert req is not None
            node = "-" if req.node is None else str(req.node)
            lines.append(
                f"{c.line:>6}  {c.name:<28} {_hex(c.size):>10} {_hex(c.align):>7} "
                f"{_hex(c.goal):>12} {_hex(req.limit):>12} {node:>4}  "
                f"{_hex(row.real):>12}  {got:>12}  {row.status}"
            )
        elif c.op in ("reserve", "free", "add") and c.addr is not None:
            what = f"{c.op} {_hex(c.addr)} +{_hex(c.size)}"
            lines.append(
                f"{c.line:>6}  {c.name:<28} {what:<58}  {row.status}"
                + (f" ({row.note})" if row.note else "")
            )
    lines.append(
        f"outcome: {report['outcome']}"
        + (f" ({report['panic_message']})" if report["panic_message"] else "")
    )
    kinds: dict[str, int] = {}
    for v in report["violations"]:
        kinds[v["kind"]] = kinds.get(v["kind"], 0) + v["end_pfn"] - v["start_pfn"]
    lines.append(
        "checks: "
        + (", ".join(f"{k} {n} pages" for k, n in kinds.items()) if kinds else "no violation")
    )
    if res.real_memory:
        lines.append(f"real:   {res.real_memory}")
    if res.replay_memory:
        lines.append(f"replay: {res.replay_memory}")
    skipped = sum(1 for r in res.rows if r.is_alloc and r.status == "not replayed")
    if skipped:
        lines.append(f"{skipped} allocation calls not replayed after the panic")
    lines.append(f"replayed {res.calls} calls: {res.same} at the real address")
    return "\n".join(lines) + "\n"
