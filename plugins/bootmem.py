"""Classic per-node bootmem as Linux 2.6.25 has it (mm/bootmem.c, include/linux/bootmem.h).

One :class:`BootmemData` (``bootmem_data_t``) per node: a span ``[start_pfn, node_low_pfn)`` and
a bitmap with one bit per pfn of the span (set = reserved). Classic bootmem knows nothing of the
memory blocks of a node, only its span, so on interleaved NUMA two nodes' spans overlap and one
pfn has a bit in both bitmaps. The quirks of 2.6.25 are reproduced on purpose and marked
``# 2.6.25 quirk:`` (reference: boot-allocators.md §1.2-1.8, §5).

Everything is bitmap slice assignment and ``find`` on a :class:`~bootemu.runmap.RunMap` (the
bits kept as runs, so a node map costs its runs, not its span); nothing loops per pfn (except the
per-page text of CONFIG_DEBUG_BOOTMEM's "reserved twice" lines, as the kernel prints them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bootemu.hookspecs import hookimpl
from bootemu.models import (
    EBUSY,
    PAGE_SHIFT,
    PAGE_SIZE,
    AllocRequest,
    BitmapRequest,
    BootemuError,
    KernelBug,
    KernelPanic,
    align_up,
    pfn_down,
    pfn_phys,
    pfn_up,
)
from bootemu.runmap import RunMap

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot
    from bootemu.models import PageSink

BOOTMEM_C = "mm/bootmem.c"


def ffs(x: int) -> int:
    """The kernel's ffs(int): 1-based index of the lowest set bit, 0 for 0.

    ffs() takes an ``int``, so an ``unsigned long`` argument keeps only its low 32 bits.
    """
    x &= 0xFFFFFFFF
    return (x & -x).bit_length()


def bootmem_bootmap_pages(pages: int) -> int:
    """mm/bootmem.c: bootmem_bootmap_pages(), 2.6.25: pages of bitmap for ``pages`` pfns."""
    return pfn_up((pages + 7) // 8)


def get_mapsize(pages: int, bits_per_long: int) -> int:
    """mm/bootmem.c: get_mapsize(), 2.6.25: bitmap bytes, rounded up to sizeof(long)."""
    return align_up((pages + 7) // 8, bits_per_long // 8)


@dataclass
class BootmemData:
    """include/linux/bootmem.h: bootmem_data_t, 2.6.25 (one per node).

    ``map`` covers the span plus the padding bits up to ``map_bytes * 8`` (all set at init and
    never cleared); it is None once free_all_bootmem_core() released it. ``last_pos`` is a
    node-relative page index; ``last_success`` is meant to be a node-relative byte offset (but
    see the unit quirk in :meth:`Bootmem.free_bootmem_core`).
    """

    node: int
    start_pfn: int
    node_low_pfn: int
    mapstart: int
    map_bytes: int
    map: RunMap | None
    last_offset: int = 0
    last_pos: int = 0
    last_success: int = 0

    @property
    def node_boot_start(self) -> int:
        """The node's first byte (``PFN_PHYS(start_pfn)``)."""
        return pfn_phys(self.start_pfn)

    @property
    def pages(self) -> int:
        return self.node_low_pfn - self.start_pfn

    @property
    def map_pages(self) -> int:
        return pfn_up(self.map_bytes)


def link_bootmem(bdata_list: list[BootmemData], bdata: BootmemData) -> None:
    """mm/bootmem.c: link_bootmem(), 2.6.25: insert before the first strictly larger start."""
    for pos, ent in enumerate(bdata_list):
        if bdata.node_boot_start < ent.node_boot_start:
            bdata_list.insert(pos, bdata)
            return
    bdata_list.append(bdata)


def runs(bits: RunMap, value: int, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """Yield the maximal runs ``[a, b)`` of ``value`` bits inside ``bits[start:stop]``."""
    return bits.runs(value, start, stop)


class _NoTrace:
    """Stand-in tracer before bootemu_alloc_attach()."""

    def __call__(self, event: str, **fields: Any) -> None:
        return None


class Bootmem:
    """Classic bootmem, Linux 2.6.25, behind :class:`bootemu.hookspecs.AllocatorSpec`."""

    def __init__(self) -> None:
        self.boot: Boot | None = None
        self.trace: Any = _NoTrace()
        self.spans: dict[int, tuple[int, int]] = {}
        self.nodes: dict[int, BootmemData] = {}
        self.bdata_list: list[BootmemData] = []

    # ---------------------------------------------------------------------------------------
    # configuration

    @property
    def bits_per_long(self) -> int:
        """BITS_PER_LONG of the emulated kernel (the arch's ``ArchInfo``, ``boot.info``)."""
        if self.boot is None:
            return 32
        return self.boot.info.bits_per_long

    @property
    def debug_bootmem(self) -> bool:
        """CONFIG_DEBUG_BOOTMEM, from the machine file's ``[kernel] debug_bootmem``."""
        return self.boot is not None and bool(self.boot.machine.kernel.get("debug_bootmem", False))

    # ---------------------------------------------------------------------------------------
    # setup

    def init_bootmem_core(self, node: int, mapstart: int, start: int, end: int) -> int:
        """mm/bootmem.c: init_bootmem_core() / init_bootmem_node(), 2.6.25.

        Links the node into ``bdata_list`` and fills the whole map (padding included) with
        ones: everything starts reserved. ``last_*`` are not touched by the kernel; a fresh
        ``bootmem_data_t`` is zero. Returns the map size in bytes.
        """
        mapsize = get_mapsize(end - start, self.bits_per_long)
        bits = RunMap(mapsize * 8, 1)
        bdata = BootmemData(node, start, end, mapstart, mapsize, bits)
        self.nodes[node] = bdata
        link_bootmem(self.bdata_list, bdata)
        self.trace(
            "alloc.node.init",
            node=node,
            start_pfn=start,
            end_pfn=end,
            mapstart=mapstart,
            map_bytes=mapsize,
        )
        return mapsize

    # ---------------------------------------------------------------------------------------
    # reserve / free

    def reserve_bootmem_core(
        self, bdata: BootmemData, addr: int, size: int, exclusive: bool
    ) -> int:
        """mm/bootmem.c: reserve_bootmem_core(), 2.6.25. Returns 0 or -EBUSY.

        The range must lie inside the node (no clipping: BUG otherwise) and is rounded outward.
        On a BOOTMEM_EXCLUSIVE conflict the bits set by this call are cleared again.

        2.6.25 quirk (documented, not emulated): the roll-back loop counts an unsigned index
        down while it is ``>= sidx``; when ``sidx == 0`` it never stops and walks off the front
        of the bitmap (reference §1.4, a code-reading inference). The emulator performs the
        intended roll-back, returns -EBUSY and emits ``alloc.reserve.wrap``.
        """
        where = f"{BOOTMEM_C}: reserve_bootmem_core()"
        nbs = bdata.node_boot_start
        if size == 0:
            raise KernelBug(where, "size == 0")
        if pfn_down(addr) >= bdata.node_low_pfn or pfn_up(addr + size) > bdata.node_low_pfn:
            raise KernelBug(where, f"range {addr:#x}+{size:#x} beyond node {bdata.node}")
        if addr < nbs:
            raise KernelBug(where, f"range {addr:#x}+{size:#x} below node {bdata.node}")
        bits = self._map(bdata, where)
        sidx = pfn_down(addr - nbs)
        eidx = pfn_up(addr + size - nbs)
        if exclusive:
            j = bits.find(1, sidx, eidx)
            if j >= 0:
                # Bits sidx..j-1 were set then cleared again: net effect nil.
                self._reserved_twice(bdata, j, j + 1)
                if sidx == 0:
                    self.trace(
                        "alloc.reserve.wrap",
                        node=bdata.node,
                        pfn=bdata.start_pfn + j,
                        detail="2.6.25 roll-back loop never ends when sidx == 0",
                    )
                return EBUSY
        else:
            for a, b in runs(bits, 1, sidx, eidx):
                self._reserved_twice(bdata, a, b)
        bits[sidx:eidx] = 1
        return 0

    def _reserved_twice(self, bdata: BootmemData, a: int, b: int) -> None:
        """The CONFIG_DEBUG_BOOTMEM complaint for node-relative pages ``[a, b)``.

        2.6.25 quirk: the printed value is the node-relative index times PAGE_SIZE.
        """
        dmesg = None
        if self.debug_bootmem:
            dmesg = [f"hm, page {i * PAGE_SIZE:08x} reserved twice." for i in range(a, b)]
        self.trace(
            "alloc.reserve.twice",
            dmesg=dmesg,
            node=bdata.node,
            start_pfn=bdata.start_pfn + a,
            end_pfn=bdata.start_pfn + b,
            pages=b - a,
        )

    def free_bootmem_core(self, bdata: BootmemData, addr: int, size: int) -> None:
        """mm/bootmem.c: free_bootmem_core(), 2.6.25 (after 5a982cbc7b3).

        Returns silently when the range misses the node; otherwise clips it to the node and
        rounds inward. A page that is already free is a BUG() (pages before it are cleared).
        """
        where = f"{BOOTMEM_C}: free_bootmem_core()"
        if size == 0:
            raise KernelBug(where, "size == 0")
        nbs = bdata.node_boot_start
        if addr + size < nbs or pfn_down(addr) > bdata.node_low_pfn:
            return
        # 2.6.25 quirk: last_success holds a node-relative offset, but an absolute address is
        # compared with it and stored into it (reference §1.8); invisible on a node at pfn 0.
        if nbs <= addr < bdata.last_success:
            bdata.last_success = addr
        sidx = max(pfn_up(addr) - bdata.start_pfn, 0)
        eidx = min(pfn_down(addr + size - nbs), bdata.pages)
        if sidx >= eidx:
            return
        bits = self._map(bdata, where)
        j = bits.find(0, sidx, eidx)
        if j >= 0:
            bits[sidx:j] = 0
            raise KernelBug(where, f"page {bdata.start_pfn + j:#x} freed twice (node {bdata.node})")
        bits[sidx:eidx] = 0

    @staticmethod
    def _map(bdata: BootmemData, where: str) -> RunMap:
        if bdata.map is None:
            # The kernel would write into the bitmap page it already gave to the buddy allocator.
            raise KernelBug(where, f"node {bdata.node} bitmap used after free_all_bootmem_core()")
        return bdata.map

    # ---------------------------------------------------------------------------------------
    # allocation

    def alloc_bootmem_core(
        self, bdata: BootmemData | None, size: int, align: int, goal: int, limit: int
    ) -> int | None:
        """mm/bootmem.c: __alloc_bootmem_core(), 2.6.25 (reference §1.5): address or None."""
        where = f"{BOOTMEM_C}: __alloc_bootmem_core()"
        if size == 0:
            msg = "__alloc_bootmem_core(): zero-sized request"
            raise KernelBug(where, "zero-sized request", printk=[msg])
        if align & (align - 1):
            raise KernelBug(where, f"align {align:#x} is not a power of two")
        # A node without memory has no bdata: node_bootmem_map is NULL.
        if bdata is None:
            return None
        nbs = bdata.node_boot_start
        if limit and nbs >= limit:
            return None
        if bdata.map is None:
            return None
        bits = bdata.map

        end_pfn = bdata.node_low_pfn
        limit = pfn_down(limit)
        if limit and end_pfn > limit:
            end_pfn = limit
        eidx = end_pfn - bdata.start_pfn

        # 2.6.25 quirk: alignment is node-relative: `offset` only shifts the first candidate,
        # the scan then aligns node-relative indices (reference §1.8, test B8).
        offset = 0
        if align and nbs & (align - 1):
            offset = align - (nbs & (align - 1))
        offset = pfn_down(offset)

        if goal and goal >= nbs and pfn_down(goal) < end_pfn:
            preferred = goal - nbs
            # 2.6.25 quirk: `limit` is a pfn by now while last_success is in bytes.
            if bdata.last_success >= preferred and (not limit or limit > bdata.last_success):
                preferred = bdata.last_success
        else:
            preferred = 0
        # 2.6.25 quirk: ALIGN(x, 0) is 0, so with align 0 the goal (and hint) is lost.
        preferred = pfn_down(align_up(preferred, align)) + offset
        areasize = pfn_up(size)
        incr = (align >> PAGE_SHIFT) or 1

        start = self._scan(bits, preferred, eidx, areasize, incr)
        if start is None and preferred > offset:
            # "then we try to allocate lower pages": one rescan from the node's start.
            start = self._scan(bits, offset, eidx, areasize, incr)
        if start is None:
            return None

        bdata.last_success = pfn_phys(start)
        if align < PAGE_SIZE and bdata.last_offset and bdata.last_pos + 1 == start:
            # Merge with the partial page the previous allocation ended in.
            # 2.6.25 quirk: with align 0, ALIGN(last_offset, 0) == 0, so the result starts at
            # the beginning of that page, on top of the previous allocation.
            off = align_up(bdata.last_offset, align)
            if off > PAGE_SIZE:
                raise KernelBug(where, f"merge offset {off:#x} beyond the page")
            room = PAGE_SIZE - off
            ret = nbs + pfn_phys(bdata.last_pos) + off
            if size < room:
                areasize = 0
                bdata.last_offset = off + size
            else:
                rest = size - room
                areasize = pfn_up(rest)
                bdata.last_pos = start + areasize - 1
                bdata.last_offset = rest
            bdata.last_offset &= PAGE_SIZE - 1
        else:
            bdata.last_pos = start + areasize - 1
            bdata.last_offset = size & (PAGE_SIZE - 1)
            ret = nbs + pfn_phys(start)

        if areasize:
            if bits.find(1, start, start + areasize) >= 0:
                raise KernelBug(where, "allocated page already reserved")
            bits[start : start + areasize] = 1
        # Which node's bitmap served it (x86_64 2008 traces print it as "core bdata_start=").
        self.trace("alloc.core", node=bdata.node, bdata_start=nbs, size=size, addr=ret)
        return ret

    @staticmethod
    def _scan(bits: RunMap, preferred: int, eidx: int, areasize: int, incr: int) -> int | None:
        """The first-fit loop of __alloc_bootmem_core(), 2.6.25, by jumps instead of bit steps.

        Same candidates as the kernel's loop: next clear bit, ALIGN to ``incr``; the window
        ``[i, i + areasize)`` must be clear and below ``eidx``.
        """
        i = preferred
        while i < eidx:
            k = bits.find(0, i, eidx)
            i = align_up(eidx if k < 0 else k, incr)
            if i >= eidx:
                break
            if bits[i]:
                i += incr
                continue
            stop = min(i + areasize, eidx)
            j = bits.find(1, i + 1, stop) if i + 1 < stop else -1
            if j < 0:
                if i + areasize <= eidx:
                    return i
                j = eidx  # the window runs past the end: the kernel fails at j == eidx
            # 2.6.25 quirk: the scan resumes at ALIGN(j, incr) + incr, skipping the aligned
            # candidate ALIGN(j, incr) when j is not a multiple of incr (fixed in 2.6.26).
            i = align_up(j, incr) + incr
        return None

    def _alloc_all(self, size: int, align: int, goal: int, limit: int) -> int | None:
        """The node walk of __alloc_bootmem_nopanic() / __alloc_bootmem_low(), 2.6.25."""
        for bdata in self.bdata_list:
            addr = self.alloc_bootmem_core(bdata, size, align, goal, limit)
            if addr is not None:
                return addr
        return None

    def alloc_bootmem(self, size: int, align: int, goal: int) -> int:
        """mm/bootmem.c: __alloc_bootmem(), 2.6.25: every node, then panic."""
        addr = self._alloc_all(size, align, goal, 0)
        if addr is None:
            raise KernelPanic("Out of memory", printk=[f"bootmem alloc of {size} bytes failed!"])
        return addr

    # ---------------------------------------------------------------------------------------
    # handoff

    def free_all_bootmem_core(self, bdata: BootmemData, sink: PageSink) -> int:
        """mm/bootmem.c: free_all_bootmem_core(), 2.6.25 (reference §1.7). Returns the count.

        The kernel walks the bitmap a word at a time: a wholly free word goes out as one chunk
        of order ffs(BITS_PER_LONG)-1 when "gofast", otherwise free bits go out one page at a
        time; the bitmap's own pages follow, order 0. Here the same pieces are computed from
        the runs of clear bits; padding bits past node_low_pfn are set, so never released.
        """
        bits = self._map(bdata, f"{BOOTMEM_C}: free_all_bootmem_core()")
        bpl = self.bits_per_long
        order = ffs(bpl) - 1
        nbs = bdata.node_boot_start
        # 2.6.25 quirk: over-strict test, demands 256 KiB (32-bit) / 512 KiB (64-bit) alignment
        # instead of BITS_PER_LONG pages (fixed in 2.6.27). ffs() takes an int, so a node
        # starting at a non-zero multiple of 4 GiB gets ffs() == 0 and no fast path.
        gofast = nbs == 0 or ffs(nbs) - PAGE_SHIFT > ffs(bpl)
        node, base = bdata.node, bdata.start_pfn

        def release(a: int, b: int, o: int) -> None:
            sink.free_run(node=node, start_pfn=base + a, end_pfn=base + b, order=o)

        count = 0
        for a, b in runs(bits, 0, 0, bdata.pages):
            count += b - a
            ws, we = align_up(a, bpl), b - b % bpl
            if gofast and ws < we:
                if a < ws:
                    release(a, ws, 0)
                release(ws, we, order)
                if we < b:
                    release(we, b, 0)
            else:
                release(a, b, 0)
        sink.free_run(
            node=node, start_pfn=bdata.mapstart, end_pfn=bdata.mapstart + bdata.map_pages, order=0
        )
        count += bdata.map_pages
        bdata.map = None
        self.trace("alloc.handoff.node", node=node, pages=count)
        return count

    # ---------------------------------------------------------------------------------------
    # AllocatorSpec hooks

    @hookimpl
    def bootemu_alloc_attach(self, boot: Boot) -> bool:
        """Keep the boot (for ``bits_per_long``, ``debug_bootmem``) and its tracer."""
        self.boot = boot
        self.trace = boot.trace
        return True

    @hookimpl
    def bootemu_alloc_register_block(self, node: int, start_pfn: int, end_pfn: int) -> bool:
        """Widen ``node``'s span to cover the block: bootmem knows spans, not blocks."""
        if node in self.spans:
            lo, hi = self.spans[node]
            self.spans[node] = (min(lo, start_pfn), max(hi, end_pfn))
        else:
            self.spans[node] = (start_pfn, end_pfn)
        return True

    @hookimpl
    def bootemu_alloc_bitmap_requests(self) -> list[BitmapRequest]:
        """One bitmap per node, get_mapsize() bytes (bootmem_bootmap_pages() pages)."""
        bpl = self.bits_per_long
        return [
            BitmapRequest(f"node{n}", n, s, e, get_mapsize(e - s, bpl))
            for n, (s, e) in sorted(self.spans.items())
        ]

    @hookimpl
    def bootemu_alloc_enable(self, placements: Mapping[str, int]) -> bool:
        """init_bootmem_node() for each node, in node order, with its bitmap's first pfn."""
        for n, (s, e) in sorted(self.spans.items()):
            key = f"node{n}"
            if key not in placements:
                raise BootemuError(f"bootmem: placements: no pfn for bitmap {key!r}")
            self.init_bootmem_core(n, placements[key], s, e)
        return True

    @hookimpl
    def bootemu_alloc_free(self, addr: int, size: int, node: int | None) -> bool:
        """free_bootmem() (node None: every node, each clipped) or free_bootmem_node().

        2.6.25's free_bootmem() walks every node of bdata_list (5a982cbc7b3), so on overlapping
        spans one pfn is freed in two bitmaps. free_bootmem_node() on a node without memory
        finds node_low_pfn == 0 and does nothing.
        """
        if node is None:
            for bdata in self.bdata_list:
                self.free_bootmem_core(bdata, addr, size)
        elif node in self.nodes:
            self.free_bootmem_core(self.nodes[node], addr, size)
        elif size == 0:
            raise KernelBug(f"{BOOTMEM_C}: free_bootmem_core()", "size == 0")
        return True

    @hookimpl
    def bootemu_alloc_reserve(self, addr: int, size: int, node: int | None, exclusive: bool) -> int:
        """reserve_bootmem() (node None: node 0 only) or reserve_bootmem_node().

        Without HAVE_ARCH_BOOTMEM_NODE, 2.6.25's reserve_bootmem() acts on NODE_DATA(0) only and
        BUGs for a range outside node 0. reserve_bootmem_node() returns void: its -EBUSY is
        dropped and 0 is returned here.
        """
        target = 0 if node is None else node
        bdata = self.nodes.get(target)
        if bdata is None:
            # An empty bootmem_data_t has node_low_pfn == 0: the range check BUGs.
            raise KernelBug(f"{BOOTMEM_C}: reserve_bootmem_core()", f"node {target} has no memory")
        result = self.reserve_bootmem_core(bdata, addr, size, exclusive)
        return result if node is None else 0

    @hookimpl
    def bootemu_alloc_alloc(self, request: AllocRequest) -> int | None:
        """The 2.6.25 wrappers of __alloc_bootmem_core() (reference §1.6), by request.wrapper."""
        size, align, goal, limit = request.size, request.align, request.goal, request.limit
        wrapper = request.wrapper
        if wrapper == "__alloc_bootmem":
            return self.alloc_bootmem(size, align, goal)
        if wrapper == "__alloc_bootmem_nopanic":
            return self._alloc_all(size, align, goal, 0)
        if wrapper == "__alloc_bootmem_low":
            addr = self._alloc_all(size, align, goal, limit)
            if addr is None:
                raise KernelPanic(
                    "Out of low memory", printk=[f"low bootmem alloc of {size} bytes failed!"]
                )
            return addr
        assert request.node is not None  # AllocRequest checks *_node wrappers carry a node
        bdata = self.nodes.get(request.node)
        if wrapper == "__alloc_bootmem_node":
            addr = self.alloc_bootmem_core(bdata, size, align, goal, 0)
            # No room on the node: fall back to every node (and possibly panic).
            return addr if addr is not None else self.alloc_bootmem(size, align, goal)
        # __alloc_bootmem_low_node: that node only, no fallback, no panic.
        return self.alloc_bootmem_core(bdata, size, align, goal, limit)

    @hookimpl
    def bootemu_alloc_handoff(self, sink: PageSink, node: int | None) -> int:
        """free_all_bootmem_node() for ``node``, or for every node in bdata_list order.

        (x86_32's free_all_bootmem() is node 0 only: that arch passes ``node=0``.)
        """
        if node is None:
            return sum(self.free_all_bootmem_core(b, sink) for b in list(self.bdata_list))
        bdata = self.nodes.get(node)
        if bdata is None:
            raise KernelBug(f"{BOOTMEM_C}: free_all_bootmem_core()", f"node {node} has no bitmap")
        return self.free_all_bootmem_core(bdata, sink)

    @hookimpl
    def bootemu_alloc_overhead_bytes(self) -> int:
        """bootmem_bootmap_pages() of every node, in bytes."""
        return sum(bootmem_bootmap_pages(b.pages) for b in self.bdata_list) * PAGE_SIZE

    @hookimpl
    def bootemu_alloc_stats(self) -> dict[str, Any]:
        """Variant, node ids, spans (pfns, node order) and bitmap bytes."""
        ordered = sorted(self.spans.items())
        return {
            "variant": "bootmem-2.6.25",
            "nodes": [n for n, _ in ordered],
            "spans": [[s, e] for _, (s, e) in ordered],
            "map_bytes": sum(b.map_bytes for b in self.bdata_list),
            "bits_per_long": self.bits_per_long,
        }
