"""The checks of docs/ARCHITECTURE.md ("Checks"), run once in the core for every backend.

Two parts:

- :class:`Recorder`, an observer plugin registered in every boot's plugin manager. It wraps the
  allocator hooks (pluggy new-style wrappers) and keeps a ledger of what the arch reserved and
  allocated, where the backend's bitmaps sit, and every request with its answer
  (``boot.allocations``). Allocations that overlap live memory are caught when they happen.
- :func:`run_checks`, called after the handoff: compares the ledger, the layout and the
  page-allocator model and returns :class:`Violation` ranges of six kinds (:data:`KINDS`);
  ``unreserved`` is memory the arch owns (``Layout.owned``: kernel image, firmware tables ...)
  that was allocated or handed off without ever being reserved.

Everything is range arithmetic over short sorted lists (reservations, allocations, RAM ranges,
blocks) plus the runs of the model's ``handed`` map: no loop runs once per page.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bootemu.boot import AllocationRecord
from bootemu.byteranges import ByteRanges, SpreadRanges
from bootemu.hookspecs import hookimpl
from bootemu.models import (
    AllocRequest,
    BitmapRequest,
    Layout,
    intersect,
    merge_ranges,
    pfn_down,
    pfn_phys,
    pfn_up,
    subtract,
)
from bootemu.pagealloc import bit_runs
from bootemu.runmap import RunMap

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel

KINDS = ("conservation", "double-handoff", "hole", "misplaced", "overlap", "unreserved")

#: Ranges reported per finding before the rest is summed up in one violation, so that a
#: backend that loses every other page cannot flood the report.
MAX_RANGES = 1000

Ranges = list[tuple[int, int]]


@dataclass(frozen=True, order=True)
class Violation:
    """One finding: ``kind`` (one of :data:`KINDS`), pfns ``[start_pfn, end_pfn)``, a sentence.

    ``start_pfn == end_pfn == 0`` for findings about counts rather than pages.
    """

    kind: str
    start_pfn: int
    end_pfn: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The report's ``violations`` entry."""
        return {
            "kind": self.kind,
            "start_pfn": self.start_pfn,
            "end_pfn": self.end_pfn,
            "detail": self.detail,
        }


# --------------------------------------------------------------------------------------------
# Range arithmetic (subtract / intersect are public in bootemu.models)


def to_pages(byte_ranges: Iterable[tuple[int, int]]) -> Ranges:
    """The pfn ranges that byte ranges touch (rounded outward), merged."""
    return list(merge_ranges((pfn_down(s), pfn_up(e)) for s, e in byte_ranges))


# --------------------------------------------------------------------------------------------
# The recorder


class Recorder:
    """Observer plugin: wraps the allocator hooks and keeps the ledger the checks read.

    - ``reserved`` / ``allocated``: live bytes of reservations and allocations; a free removes
      its exact byte range from both (a page partly freed stays covered by what is left).
    - ``bitmaps``: bitmap key -> pfn range ``[pfn, pfn + pages)`` (bitmap request + placement).
    - ``allocs``: every successful allocation ``(request, addr)``, in order.
    - ``overlaps``: violations found when an allocation landed on live memory.

    Every reserve / free / alloc is appended to ``boot.allocations`` as an
    :class:`bootemu.boot.AllocationRecord` and traced (``alloc.request``, ``alloc.reserve``,
    ``alloc.free``).
    """

    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.reserved = SpreadRanges()
        self.allocated = SpreadRanges()
        self.bitmap_requests: dict[str, BitmapRequest] = {}
        self.bitmaps: dict[str, tuple[int, int]] = {}
        self._bitmap_bytes = ByteRanges()  # the bitmaps' bytes, for the quick overlap test
        self.allocs: list[tuple[AllocRequest, int]] = []
        self.overlaps: list[Violation] = []
        #: Every byte a reserve ever covered (a later free does not un-reserve it here): an
        #: owned range is checked for having been reserved at all.
        self.ever_reserved = ByteRanges()

    # -- helpers -----------------------------------------------------------------------------

    def _nodes_touched(self, addr: int | None, size: int) -> tuple[int, ...]:
        layout = self.boot.layout
        if addr is None or layout is None or size <= 0:
            return ()
        first, last = pfn_down(addr), pfn_up(addr + size)
        i = bisect.bisect_right(layout.block_starts, first) - 1
        if i >= 0:
            # The usual request: inside one block (blocks of a node never touch another
            # node's without a gap or a block boundary, which node_pieces() would show).
            block = layout.blocks[i]
            if first < block.end_pfn and last <= block.end_pfn:
                return (block.node,)
        pieces = layout.node_pieces(first, last)
        return tuple(sorted({n for _, _, n in pieces if n is not None}))

    def live_pages(self) -> Ranges:
        """Pfn ranges holding a live reservation or allocation (any byte of the page)."""
        return to_pages([*self.reserved.ranges, *self.allocated.ranges])

    def bitmap_pages(self) -> Ranges:
        """Pfn ranges of the backend's bitmaps (released at handoff or still reserved)."""
        return list(merge_ranges(self.bitmaps.values()))

    # -- hook wrappers -----------------------------------------------------------------------

    @hookimpl(wrapper=True)
    def bootemu_alloc_bitmap_requests(self) -> Generator[None, Any, Any]:
        result = yield
        for req in result or ():
            self.bitmap_requests[req.key] = req
        return result

    @hookimpl(wrapper=True)
    def bootemu_alloc_enable(self, placements: Mapping[str, int]) -> Generator[None, Any, Any]:
        result = yield
        for key, pfn in sorted(placements.items()):
            req = self.bitmap_requests.get(key)
            self.bitmaps[key] = (pfn, pfn + (req.pages if req is not None else 0))
            self._bitmap_bytes.add(pfn_phys(pfn), pfn_phys(self.bitmaps[key][1]))
        return result

    @hookimpl(wrapper=True)
    def bootemu_alloc_free(
        self, addr: int, size: int, node: int | None
    ) -> Generator[None, Any, Any]:
        try:
            result = yield
        finally:
            self._record("free", addr, size, node, None)
            self.boot.trace("alloc.free", addr=addr, size=size, node=node)
        # Only a free that returned is booked (a BUG() leaves the ledger as it was).
        self.reserved.remove(addr, addr + size)
        self.allocated.remove(addr, addr + size)
        return result

    @hookimpl(wrapper=True)
    def bootemu_alloc_reserve(
        self, addr: int, size: int, node: int | None, exclusive: bool
    ) -> Generator[None, Any, Any]:
        result = None
        try:
            result = yield
        finally:
            self._record("reserve", addr, size, node, result)
            self.boot.trace(
                "alloc.reserve", addr=addr, size=size, node=node, exclusive=exclusive, result=result
            )
        # mm/bootmem.c reserve_bootmem_core(), 2.6.25: -EBUSY rolls the whole range back.
        if result is not None and result >= 0 and size > 0:
            self.reserved.add(addr, addr + size)
            self.ever_reserved.add(addr, addr + size)
        return result

    @hookimpl(wrapper=True)
    def bootemu_alloc_alloc(self, request: AllocRequest) -> Generator[None, Any, Any]:
        addr = None
        try:
            addr = yield
        finally:
            self._record_alloc(request, addr)
        if addr is not None and request.size > 0:
            self._check_overlap(request, addr)
            self._check_owned(request, addr)
            self.allocated.add(addr, addr + request.size)
            self.allocs.append((request, addr))
        return addr

    def _record(self, op: str, addr: int, size: int, node: int | None, result: int | None) -> None:
        self.boot.allocations.append(
            AllocationRecord(
                op=op,
                size=size,
                align=0,
                goal=0,
                limit=0,
                node=node,
                addr=addr,
                nodes_touched=self._nodes_touched(addr, size),
                result=result,
            )
        )

    def _record_alloc(self, request: AllocRequest, addr: int | None) -> None:
        boot, limit = self.boot, request.limit  # limit is computed: once per request
        boot.allocations.append(
            AllocationRecord(
                op="alloc",
                size=request.size,
                align=request.align,
                goal=request.goal,
                limit=limit,
                node=request.node,
                addr=addr,
                nodes_touched=self._nodes_touched(addr, request.size),
                wrapper=request.wrapper,
                caller=request.caller,
                label=request.label,
            )
        )
        boot.trace(
            "alloc.request",
            wrapper=request.wrapper,
            size=request.size,
            align=request.align,
            goal=request.goal,
            limit=limit,
            node=request.node,
            addr=addr,
            caller=request.caller,
            label=request.label,
        )

    def unreserved_owned(self, start: int, end: int) -> Iterator[tuple[int, int, str]]:
        """The bytes of ``[start, end)`` inside an owned range of the layout that no reserve
        ever covered, as ``(start, end, label)``."""
        layout = self.boot.layout
        for own in layout.owned if layout is not None else ():
            s, e = max(start, own.start), min(end, own.end)
            if s < e:
                for us, ue in subtract([(s, e)], self.ever_reserved.overlapping(s, e)):
                    yield us, ue, own.label

    def _check_owned(self, request: AllocRequest, addr: int) -> None:
        """An allocation on memory the arch owns but never reserved (its kernel image ...)."""
        name = request.label or request.caller or request.wrapper
        for s, e, label in self.unreserved_owned(addr, addr + request.size):
            self.overlaps.append(
                Violation(
                    "unreserved",
                    pfn_down(s),
                    pfn_up(e),
                    f"{name}: {request.size} bytes at {addr:#x} lie on {label} at "
                    f"[{s:#x}, {e:#x}), which the arch never reserved",
                )
            )

    def _check_overlap(self, request: AllocRequest, addr: int) -> None:
        """An allocation may not share a byte with live memory (sharing a page is fine)."""
        end = addr + request.size
        if not (
            self.reserved.intersects(addr, end)
            or self.allocated.intersects(addr, end)
            or self._bitmap_bytes.intersects(addr, end)
        ):
            return  # the usual case: nothing to report, nothing to build
        found: list[tuple[int, int, str]] = []
        found += [(s, e, "a live reservation") for s, e in self.reserved.overlapping(addr, end)]
        found += [(s, e, "a live allocation") for s, e in self.allocated.overlapping(addr, end)]
        for key, (ps, pe) in sorted(self.bitmaps.items()):
            s, e = max(addr, pfn_phys(ps)), min(end, pfn_phys(pe))
            if s < e:
                found.append((s, e, f"bitmap {key}"))
        # One violation per overlapping stretch, naming everything it hits (the arch reserves
        # a bitmap's pages, so an allocation there hits both the bitmap and a reservation).
        name = request.label or request.caller or request.wrapper
        groups: list[tuple[int, int, list[str]]] = []
        for s, e, what in sorted(found):
            if groups and s < groups[-1][1]:
                gs, ge, names = groups[-1]
                groups[-1] = (gs, max(ge, e), names if what in names else [*names, what])
            else:
                groups.append((s, e, [what]))
        for s, e, names in groups:
            self.overlaps.append(
                Violation(
                    "overlap",
                    pfn_down(s),
                    pfn_up(e),
                    f"{name}: {request.size} bytes at {addr:#x} overlap {' and '.join(names)} "
                    f"at [{s:#x}, {e:#x})",
                )
            )


# --------------------------------------------------------------------------------------------
# The checks


def _emit(out: list[Violation], kind: str, items: Iterable[tuple[int, int, str]]) -> None:
    """One violation per ``(start, end, detail)``; past :data:`MAX_RANGES` of them, one more
    that sums up the rest (its detail is the first one's, with the counts)."""
    it = iter(items)
    for n, (s, e, detail) in enumerate(it):
        if n == MAX_RANGES:
            rest = [(s, e), *((a, b) for a, b, _ in it)]
            pages = sum(b - a for a, b in rest)
            more = f" ({len(rest)} more ranges, {pages} pages)"
            out.append(Violation(kind, s, max(b for _, b in rest), detail + more))
            return
        out.append(Violation(kind, s, e, detail))


def _tag(runs: Iterable[tuple[int, int]], detail: str) -> Iterator[tuple[int, int, str]]:
    return ((s, e, detail) for s, e in runs)


def _runs_in(
    bits: RunMap, value: int, ranges: Iterable[tuple[int, int]]
) -> Iterator[tuple[int, int]]:
    """Runs of ``value`` in ``bits`` inside each range (past the end of ``bits``: all 0)."""
    size = len(bits)
    for s, e in ranges:
        yield from bit_runs(bits, value, min(s, size), min(e, size))
        if value == 0 and e > size:
            yield max(s, size), e


def _merge_tagged(
    items: Iterable[tuple[int, int, Any]],
) -> Iterator[tuple[int, int, Any]]:
    """Coalesce sorted ``(start, end, tag)`` that touch and carry the same tag."""
    cur: list[Any] | None = None
    for s, e, tag in sorted(items, key=lambda t: (t[0], t[1])):
        if cur is not None and s == cur[1] and tag == cur[2]:
            cur[1] = e
            continue
        if cur is not None:
            yield cur[0], cur[1], cur[2]
        cur = [s, e, tag]
    if cur is not None:
        yield cur[0], cur[1], cur[2]


def run_checks(
    layout: Layout,
    pagealloc: PageAllocModel,
    recorder: Recorder | None,
    *,
    handoff_count: int | None,
    trace: Callable[..., Any] | None = None,
) -> list[Violation]:
    """Run every check after the handoff; returns violations sorted by (kind, start_pfn).

    ``handoff_count`` is what the arch / backend said it released (``totalram_pages``), or
    None to skip that comparison; it must equal the pages offered to ``pagealloc``.
    """
    out: list[Violation] = []
    handed = pagealloc.handed
    ram = list(merge_ranges(layout.ram))
    live = recorder.live_pages() if recorder is not None else []
    bitmaps = recorder.bitmap_pages() if recorder is not None else []
    covered = list(merge_ranges([*live, *bitmaps]))

    # conservation: RAM = handed-off (+) still reserved; bitmap pages may be either.
    lost = _runs_in(handed, 0, subtract(ram, covered))
    _emit(out, "conservation", _tag(lost, "RAM pages neither handed off nor reserved (lost)"))
    held = _runs_in(handed, 1, intersect(ram, subtract(live, bitmaps)))
    _emit(out, "conservation", _tag(held, "pages handed off while still reserved or allocated"))
    if handoff_count is not None and handoff_count != pagealloc.offered:
        detail = f"released count {handoff_count} != {pagealloc.offered} pages given to the model"
        out.append(Violation("conservation", 0, 0, detail))

    # double-handoff
    doubles = _merge_tagged((s, e, (f, n)) for s, e, f, n in pagealloc.double_handoffs)
    _emit(
        out,
        "double-handoff",
        (
            (s, e, f"pages given to node {f}'s free lists, then again by node {n}")
            for s, e, (f, n) in doubles
        ),
    )

    # hole: handed-off or allocated pages that are not RAM.
    not_ram = _runs_in(handed, 1, subtract([(0, len(handed))], ram))
    _emit(out, "hole", _tag(not_ram, "non-RAM pages handed off"))
    outside = _merge_tagged(pagealloc.outside)
    _emit(
        out, "hole", ((s, e, f"pages released to node {n} above every zone") for s, e, n in outside)
    )

    # misplaced: node-specific allocations and free lists holding another node's pages.
    holes: list[tuple[int, int, str]] = []
    misplaced: list[tuple[int, int, str]] = []
    # Per allocation (one per early request): the usual one lies inside one RAM range and one
    # block of its own node, which one bisect each shows; the rest is computed in full.
    ram_starts = [s for s, _ in ram]
    block_starts, blocks = layout.block_starts, layout.blocks
    for request, addr in recorder.allocs if recorder is not None else ():
        ps, pe = pfn_down(addr), pfn_up(addr + request.size)
        name = request.label or request.caller or request.wrapper
        k = bisect.bisect_right(ram_starts, ps) - 1
        if k < 0 or pe > ram[k][1]:
            outside_ram = subtract([(ps, pe)], ram)
            if outside_ram:  # the message is built only for the (rare) allocation it names
                holes += _tag(outside_ram, f"{name}: allocation at {addr:#x} touches non-RAM pages")
        if request.node is None or not request.wrapper.endswith("_node"):
            continue
        i = bisect.bisect_right(block_starts, ps) - 1
        if i >= 0:
            block = blocks[i]
            if block.node == request.node and ps < block.end_pfn and pe <= block.end_pfn:
                continue  # inside one block of its own node: nothing misplaced
        for s, e, where in layout.node_pieces(ps, pe):
            if where is not None and where != request.node:
                detail = (
                    f"{name}: {request.wrapper}(node {request.node}) got memory at {addr:#x} "
                    f"residing on node {where}"
                )
                misplaced.append((s, e, detail))
    _emit(out, "hole", holes)
    _emit(out, "misplaced", misplaced)
    pieces = (
        (ps, pe, (node, zone, where))
        for node, zone, s, e in pagealloc.filed()
        for ps, pe, where in layout.node_pieces(s, e)
        if where is not None and where != node
    )
    _emit(
        out,
        "misplaced",
        (
            (s, e, f"node {n} zone {z} free lists hold pages residing on node {w}")
            for s, e, (n, z, w) in _merge_tagged(pieces)
        ),
    )

    # unreserved: pages of a range the arch owns (kernel image ...) handed off to the page
    # allocator without ever being reserved (the allocations there were found as they came).
    if recorder is not None:
        given = []
        for own in layout.owned:
            for s, e, label in recorder.unreserved_owned(own.start, own.end):
                # whole pages only: a page the reserve covered in part was kept by it
                ps, pe = pfn_up(s), pfn_down(e)
                given += _tag(_runs_in(handed, 1, [(ps, pe)]) if ps < pe else [], label)
        _emit(
            out,
            "unreserved",
            ((s, e, f"{label}: pages handed off, never reserved") for s, e, label in given),
        )

    # overlap and unreserved allocations: found by the recorder as each allocation was made.
    if recorder is not None:
        out.extend(recorder.overlaps)

    out.sort()
    if trace is not None:
        for v in out:
            trace(
                "check.violation",
                kind=v.kind,
                start_pfn=v.start_pfn,
                end_pfn=v.end_pfn,
                detail=v.detail,
            )
    return out


__all__ = [
    "KINDS",
    "MAX_RANGES",
    "ByteRanges",
    "Recorder",
    "Violation",
    "intersect",
    "run_checks",
    "subtract",
    "to_pages",
]
