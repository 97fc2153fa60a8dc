"""memblock as Linux 6.1 has it (mm/memblock.c), behind the allocator hooks.

memblock keeps two sorted arrays of regions, ``memory`` (what RAM exists, each region tagged
with its node) and ``reserved`` (what is taken); everything that is memory and not reserved is
free. Allocation searches the free ranges top-down by default; the hand-off releases every free
range as naturally aligned power-of-two chunks. No bitmap: the cost grows with the number of
regions (a few hundred in a real boot), never with the number of pages.

Source read: ``torvalds/linux:mm/memblock.c`` in the look-up index, commit 00974b9a83cb
(~v5.15: ``memblock_free()`` still takes a physical address), the stored version closest to
6.1 (the other one, 38e23194e1c9, is from the 3.x era). What changed up to 6.1 on the paths
emulated here, as far as I know (not read): ``memblock_free(phys)`` became
``memblock_phys_free()`` (5.16; the name the real 6.1 ``memblock=debug`` lines print) and
MEMBLOCK_ALLOC_KASAN became MEMBLOCK_ALLOC_NOLEAKTRACE; the search, memblock_alloc_range_nid(),
memblock_double_array() and memblock_free_all() are as read. tests/test_memblock.py replays
every memblock call of the fifteen real 6.1 boots and lands every allocation where 6.1 did.
The Python is written from reading the C, not copied.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bootemu_plugins._memblock_types import (
    INF,
    INIT_MEMBLOCK_REGIONS,
    NUMA_NO_NODE,
    MemblockType,
    free_pages_chunks,
    round_down,
    round_up,
)

from bootemu.cmdline import split_cmdline
from bootemu.hookspecs import hookimpl
from bootemu.models import (
    EBUSY,
    MAX_ORDER,
    PAGE_SIZE,
    AllocRequest,
    BitmapRequest,
    Block,
    KernelBug,
    KernelPanic,
    PageSink,
    pfn_down,
    pfn_phys,
    pfn_up,
)

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot

MEMBLOCK_C = "mm/memblock.c (6.1)"
#: include/linux/memblock.h: MEMBLOCK_ALLOC_ACCESSIBLE (0): "up to memblock.current_limit".
MEMBLOCK_ALLOC_ACCESSIBLE = 0
ENOMEM = -12
#: X86_L1_CACHE_SHIFT 6 in the Debian 686 / 686-pae / amd64 configs of real-boots/.
DEFAULT_SMP_CACHE_BYTES = 64

#: AllocRequest wrapper -> (the memblock entry point that serves it, exact_nid).
#: memblock_alloc*() / memblock_alloc_node() / memblock_alloc_low() all end in
#: memblock_alloc_try_nid(); only memblock_alloc_exact_nid_raw() forbids the node fallback.
WRAPPERS = {
    "__alloc_bootmem": ("memblock_alloc_try_nid", False),
    "__alloc_bootmem_nopanic": ("memblock_alloc_try_nid", False),
    "__alloc_bootmem_node": ("memblock_alloc_try_nid", False),
    "__alloc_bootmem_low": ("memblock_alloc_try_nid", False),
    "__alloc_bootmem_low_node": ("memblock_alloc_exact_nid_raw", True),
}


class Memblock:
    """memblock, Linux 6.1 (mm/memblock.c), mapped onto the allocator hooks.

    - ``register_block(node, start, end)``: the block bounds memory the arch may hand over and
      says its node (memblock_set_node()). x86_32 registers ``[0, max_low_pfn)`` holes and all,
      because bootmem started with everything reserved; so a block is not memory by itself.
      The top registered pfn is ``memblock.current_limit`` (what x86 sets with
      memblock_set_current_limit(get_max_mapped())) and the ``max_low_pfn`` that
      __free_memory_core() clips at.
    - ``bitmap_requests()``: none. The region arrays are static __initdata (inside the
      kernel image's reservation) until memblock_double_array() allocates bigger ones from
      memblock itself; ``enable({})`` is memblock_allow_resize().
    - ``free(addr, size, node)``: the arch's "free usable RAM" makes the range free. Reserved
      bytes are released (memblock_phys_free(), byte-exact); bytes that are not memory become
      memory (memblock_add(), whole pages, as memblock_trim_memory(PAGE_SIZE) leaves them
      after e820__memblock_setup()), tagged with the node of the registered block they lie in
      (``node`` is not needed: the blocks say it); bytes outside every block are ignored.
      Freeing free memory is a no-op, as memblock_phys_free() of an unreserved range is
      (bootmem would BUG).
    - ``reserve(addr, size, node, exclusive)``: memblock_reserve(), byte-exact, node ignored.
      memblock has no exclusive reserve: ``exclusive`` emulates bootmem's contract (-EBUSY,
      nothing changed, when a byte is already reserved).
    - ``alloc(request)``: memblock_alloc_try_nid(size, align, min_addr=goal,
      max_addr=limit or MEMBLOCK_ALLOC_ACCESSIBLE, nid=node or NUMA_NO_NODE);
      ``__alloc_bootmem_low_node`` is memblock_alloc_exact_nid_raw() (no node fallback).
      Panicking wrappers panic with the 6.1 callers' text; the others return None.
    - ``handoff(sink, node)``: memblock_free_all() (free_low_memory_core_early(): every free
      range, ascending, released by __free_pages_memory()); ``node`` keeps the free ranges of
      memory regions of that node only. Region arrays memblock allocated for itself are
      released after them, page by page, as memblock_discard() does later in 6.1
      (page_alloc_init_late()), so the conservation check sees them released.

    ``memblock=debug`` on the command line prints the kernel's debug lines. The kernel prints
    ``%pS`` as symbol+offset/size (``memmap_alloc+0x42/0x4d``); offsets cannot be reproduced,
    so the request's ``caller`` is printed bare, and a reservation made by an allocation names
    memblock_alloc_range_nid as the real logs do. The hooks carry no caller for reserve and
    free, so those lines end after the range.
    """

    def __init__(self) -> None:
        self.boot: Boot | None = None
        self.blocks: list[Block] = []
        self._top_of_blocks = 0
        self.memory = MemblockType("memory")
        self.reserved = MemblockType("reserved", indexed=True)
        self.bottom_up = False
        self.can_resize = False
        self.doublings = 0
        self.debug = False
        self._limit: int | None = None
        self._own_arrays: list[tuple[int, int]] = []

    # ---------------------------------------------------------------------------------------
    # configuration

    @property
    def phys_addr_bits(self) -> int:
        """sizeof(phys_addr_t) * 8 (the arch's ``ArchInfo``): 64 on 64-bit and on x86_32 PAE."""
        return 64 if self.boot is None else self.boot.info.phys_addr_bits

    @property
    def region_bytes(self) -> int:
        """sizeof(struct memblock_region) {phys_addr_t base, size; enum flags; int nid (NUMA)}.

        64-bit (NUMA, as Debian amd64): 8 + 8 + 4 + 4 = 24. i386 aligns a u64 member on 4
        bytes and Debian's 686 kernels have no NUMA: 8 + 8 + 4 = 20 with PAE, 4 + 4 + 4 = 12
        without (``ArchInfo.numa`` says which).
        """
        wide = self.boot is None or self.boot.info.bits_per_long == 64
        numa = wide if self.boot is None else self.boot.info.numa
        phys = self.phys_addr_bits // 8
        size = 2 * phys + 4 + 4 * bool(numa)
        align = phys if wide else 4
        return -(-size // align) * align

    @property
    def current_limit(self) -> int:
        """memblock.current_limit: the top of registered memory unless set."""
        if self._limit is not None:
            return self._limit
        return self._top_of_blocks

    def set_current_limit(self, limit: int) -> None:
        """memblock_set_current_limit()."""
        self._limit = limit

    def set_bottom_up(self, enable: bool) -> None:
        """memblock_set_bottom_up() (x86 uses it with ``movable_node``)."""
        self.bottom_up = enable

    @property
    def smp_cache_bytes(self) -> int:
        """SMP_CACHE_BYTES of the arch (``ArchInfo``)."""
        return DEFAULT_SMP_CACHE_BYTES if self.boot is None else self.boot.info.smp_cache_bytes

    # ---------------------------------------------------------------------------------------
    # tracing

    def pa(self, addr: int) -> str:
        """lib/vsprintf.c ``%pa``: 0x + 2 * sizeof(phys_addr_t) hex digits, C wrap-around."""
        bits = self.phys_addr_bits
        return f"0x{addr & ((1 << bits) - 1):0{bits // 4}x}"

    def rng(self, base: int, size: int) -> str:
        """``[%pa-%pa]`` with the inclusive end the kernel prints (``base + size - 1``)."""
        return f"[{self.pa(base)}-{self.pa(base + size - 1)}]"

    def trace(self, event: str, dmesg: str | None = None, **fields: Any) -> None:
        if self.boot is not None:
            self.boot.trace(event, dmesg=dmesg, **fields)

    def dbg(self, event: str, text: str, **fields: Any) -> None:
        """memblock_dbg(): pr_info() only with ``memblock=debug``."""
        if self.debug:
            self.trace(event, dmesg=text, **fields)

    # ---------------------------------------------------------------------------------------
    # the region arrays

    def cap(self, base: int, size: int) -> int:
        """memblock_cap_size(): base + size may not pass PHYS_ADDR_MAX."""
        return min(size, (1 << self.phys_addr_bits) - 1 - base)

    def add_range(self, t: MemblockType, base: int, size: int, nid: int) -> int:
        """memblock_add_range(): add what of ``[base, base + size)`` is not yet covered.

        The kernel's first pass counts the new pieces and doubles the array while ``cnt +
        nr_new > max`` (before any merge, so doubling can happen although the result would
        fit); the second pass inserts them, then neighbours merge. Returns 0 or -ENOMEM.
        """
        size = self.cap(base, size)
        if size <= 0:
            return 0
        end = base + size
        if not t.bases:  # the empty array's dummy region is simply overwritten
            t.fill([(base, end)], nid)
            return 0
        if t.add_free(base, end, nid):  # the usual case: one piece, no doubling
            return 0
        pieces = t.uncovered(base, end)
        if not pieces:
            return 0
        if t.cnt + len(pieces) > t.max:
            while t.cnt + len(pieces) > t.max:
                if self.double_array(t, base, size) < 0:
                    return ENOMEM
            pieces = t.uncovered(base, end)  # the second pass: the array has changed
        t.fill(pieces, nid)
        return 0

    def isolate_range(self, t: MemblockType, base: int, size: int) -> tuple[int, int] | None:
        """memblock_isolate_range(): split regions crossing the bounds; returns the index
        range of the regions inside, or None (-ENOMEM) when the array could not grow by the
        two regions a split may add. The regions are named by their bases (those in the
        returned window), not by array indices; the count and doubling are the kernel's."""
        size = self.cap(base, size)
        if size <= 0:
            return 0, 0
        while t.cnt + 2 > t.max:
            if self.double_array(t, base, size) < 0:
                return None
        t.split(base)
        t.split(base + size)
        return base, base + size

    def remove_range(self, t: MemblockType, base: int, size: int) -> int:
        """memblock_remove_range(): isolate, then drop the regions inside. 0 or -ENOMEM."""
        span = self.isolate_range(t, base, size)
        if span is None:
            return ENOMEM
        t.delete(*span)
        return 0

    def double_array(self, t: MemblockType, new_area_start: int, new_area_size: int) -> int:
        """memblock_double_array(): a region array of twice the entries, from memblock itself.

        Only once memblock_allow_resize() ran. The new array (PAGE_ALIGN'ed) is searched from
        the end of the area being added up to the current limit, then below it; for the
        ``memory`` array the area is not excluded. The old array is freed unless it is the
        static one; the new one is reserved (BUG if that fails). Returns 0 or -1.
        """
        if not self.can_resize:
            return -1
        old_size = t.max * self.region_bytes
        new_size = old_size << 1
        # "We need to allocated new one align to PAGE_SIZE, so we can free them completely"
        old_alloc = -(-old_size // PAGE_SIZE) * PAGE_SIZE
        new_alloc = -(-new_size // PAGE_SIZE) * PAGE_SIZE
        if t is not self.reserved:
            new_area_start = new_area_size = 0
        addr = self.find_in_range_node(new_alloc, PAGE_SIZE, new_area_start + new_area_size,
                                       self.current_limit, NUMA_NO_NODE)
        if not addr and new_area_size:
            addr = self.find_in_range_node(new_alloc, PAGE_SIZE, 0,
                                           min(new_area_start, self.current_limit), NUMA_NO_NODE)
        if not addr:
            self.trace("alloc.memblock.double.failed", dmesg=(
                f"memblock: Failed to double {t.name} array from {t.max} to {t.max * 2} "
                "entries !"), type=t.name, max=t.max)
            return -1
        self.trace("alloc.memblock.double", dmesg=(
            f"memblock: {t.name} is doubled to {t.max * 2} at {self.rng(addr, new_size)}"
            if self.debug else None), type=t.name, max=t.max * 2, addr=addr, size=new_alloc)
        old, t.array, t.max = t.array, addr, t.max * 2
        self.doublings += 1
        if old is not None:
            self.dbg("alloc.memblock.free", f"memblock_phys_free: {self.rng(old, old_alloc)} "
                     "memblock_free", addr=old, size=old_alloc)
            self.remove_range(self.reserved, old, old_alloc)
            self._own_arrays.remove((old, old_alloc))
        self._own_arrays.append((addr, new_alloc))
        if self.memblock_reserve(addr, new_alloc, "memblock_double_array"):
            raise KernelBug(f"{MEMBLOCK_C}: memblock_double_array()",
                            "BUG_ON(memblock_reserve(addr, new_alloc_size))")
        return 0

    def memblock_reserve(self, base: int, size: int, caller: str | None) -> int:
        """memblock_reserve(): prints its debug line, adds to ``reserved`` (no node)."""
        if self.debug:
            self.dbg("alloc.memblock.reserve", f"memblock_reserve: {self.rng(base, size)}"
                     + (f" {caller}" if caller else ""), addr=base, size=size)
        return self.add_range(self.reserved, base, size, NUMA_NO_NODE)

    # ---------------------------------------------------------------------------------------
    # free ranges and the search

    def free_ranges(self, nid: int, lo: int = 0) -> Iterator[tuple[int, int, int]]:
        """for_each_free_mem_range(): the same ranges ascending, from ``lo`` up."""
        mem, res = self.memory, self.reserved
        for mb, me, mn in mem.asc(lo):
            if nid not in (NUMA_NO_NODE, mn):
                continue
            pos = max(mb, lo)
            for rb, rend, _ in res.asc(pos):
                if pos >= me or rb >= me:
                    break
                if rb > pos:
                    yield pos, rb, mn
                pos = max(pos, rend)
            if pos < me:
                yield pos, me, mn

    def find_in_range_node(self, size: int, align: int, start: int, end: int, nid: int) -> int:
        """memblock_find_in_range_node(): ``end`` ACCESSIBLE means current_limit; the first
        page is never handed out; top-down unless bottom_up. Returns 0 when nothing fits."""
        if end == MEMBLOCK_ALLOC_ACCESSIBLE:
            end = self.current_limit
        start = max(start, PAGE_SIZE)
        end = max(start, end)
        if self.bottom_up:
            # __memblock_find_range_bottom_up(): the first aligned start that leaves size.
            for s, e, _ in self.free_ranges(nid, start):
                s, e = min(max(s, start), end), min(max(e, start), end)
                cand = round_up(s, align)
                if cand < e and e - cand >= size:
                    return cand
            return 0
        # __memblock_find_range_top_down(): from the highest free range, as high as fits.
        # A zero-sized request walks every range unclipped (clamping then decides).
        lo, hi = (start, end) if size else (-1, INF)
        # for_each_free_mem_range_reverse(): memory minus reserved, highest first, walked as
        # the kernel does: memory regions outside (highest first, regions of other nodes
        # skipped), the gaps of ``reserved`` inside each. The pieces are disjoint, so this is
        # the kernel's descending order, and a request for one node of many interleaved ones
        # never visits the gaps lying in the other nodes' memory. Ranges lying in a gap of
        # ``reserved`` that cannot hold ``size`` bytes aligned to ``align`` are skipped, and
        # so are those above ``hi`` and below ``lo``: the search clamps a range to ``[start,
        # end]`` and needs ``size`` bytes there, so none of those could fit (see
        # bootemu_plugins._memblock_types). One loop, no generator per level: it runs per request.
        bases, ends, nids = self.memory.flat()
        gaps = self.reserved.gaps
        assert gaps is not None
        i = bisect.bisect_left(bases, hi) - 1
        while i >= 0 and ends[i] > lo:
            if nid == NUMA_NO_NODE or nid == nids[i]:
                ms, me = max(bases[i], lo), min(ends[i], hi)
                for gs, ge in gaps.desc(me, size, align):
                    if ge <= ms:
                        break
                    # the range cut to the region, then clamped to [start, end]
                    s = gs if gs > ms else ms
                    e = ge if ge < me else me
                    s = end if s > end else (start if s < start else s)
                    e = end if e > end else (start if e < start else e)
                    if e < size:
                        continue
                    cand = round_down(e - size, align)
                    if cand >= s:
                        return cand
            i -= 1
        return 0

    def alloc_range_nid(self, size: int, align: int, start: int, end: int, nid: int,
                        exact_nid: bool) -> int:
        """memblock_alloc_range_nid(): find, reserve exactly ``size`` bytes; if the node has
        no room and the node is not exact, once more on any node. 0 on failure."""
        if not align:
            # "Can't use WARNs this early in boot on powerpc": dump_stack(), then a default.
            self.trace("alloc.memblock.align0", size=size, align=self.smp_cache_bytes)
            align = self.smp_cache_bytes
        tries = [nid] if nid == NUMA_NO_NODE or exact_nid else [nid, NUMA_NO_NODE]
        for n in tries:
            found = self.find_in_range_node(size, align, start, end, n)
            if found and not self.memblock_reserve(found, size, "memblock_alloc_range_nid"):
                return found
        return 0

    def alloc_internal(self, size: int, align: int, min_addr: int, max_addr: int, nid: int,
                       exact_nid: bool) -> int:
        """memblock_alloc_internal(): ``max_addr`` clipped to the current limit; when nothing
        fits above ``min_addr``, once more from 0. The physical address, or 0."""
        max_addr = min(max_addr, self.current_limit)
        addr = self.alloc_range_nid(size, align, min_addr, max_addr, nid, exact_nid)
        if not addr and min_addr:
            addr = self.alloc_range_nid(size, align, 0, max_addr, nid, exact_nid)
        return addr

    # ---------------------------------------------------------------------------------------
    # AllocatorSpec hooks

    @hookimpl
    def bootemu_alloc_attach(self, boot: Boot) -> bool:
        """Keep the boot; ``memblock=debug`` (early_memblock(): a value containing "debug")."""
        self.boot = boot
        self.debug = any(p == "memblock" and v is not None and "debug" in v
                         for p, v in split_cmdline(boot.machine.kernel.cmdline,
                                                   profile=boot.profile))
        return True

    @hookimpl
    def bootemu_alloc_register_block(self, node: int, start_pfn: int, end_pfn: int) -> bool:
        """Record the block: it bounds memory and gives it its node (see the class doc)."""
        if end_pfn < start_pfn:  # an arch programming error, not bad user input
            raise ValueError(f"memblock: block {start_pfn:#x}-{end_pfn:#x} ends before its start")
        self.blocks.append(Block(start_pfn, end_pfn, node))
        self.blocks.sort()
        # kept, not recomputed: every search asks for current_limit (twice per request)
        self._top_of_blocks = pfn_phys(max(b.end_pfn for b in self.blocks))
        self.trace("alloc.block.register", node=node, start_pfn=start_pfn, end_pfn=end_pfn)
        return True

    @hookimpl
    def bootemu_alloc_bitmap_requests(self) -> list[BitmapRequest]:
        """None: the region arrays are static __initdata, inside the kernel image."""
        return []

    @hookimpl
    def bootemu_alloc_enable(self, placements: Mapping[str, int]) -> bool:
        """memblock_allow_resize() (x86: at the top of e820__memblock_setup())."""
        if placements:
            raise ValueError(f"memblock: enable: no bitmap was requested, got {dict(placements)}")
        self.can_resize = True
        self.trace("alloc.enable", current_limit=self.current_limit, blocks=len(self.blocks))
        return True

    @hookimpl
    def bootemu_alloc_free(self, addr: int, size: int, node: int | None) -> bool:
        """Reserved bytes are released, bytes that are not memory become memory (class doc)."""
        end = addr + max(size, 0)
        new = self.memory.uncovered(addr, end)
        if self.reserved.overlaps(addr, end):
            self.dbg("alloc.memblock.free", f"memblock_phys_free: {self.rng(addr, size)}",
                     addr=addr, size=size)
            self.remove_range(self.reserved, addr, size)
        for s, e in new:
            i = max(bisect.bisect_right(self.blocks, Block(pfn_down(s), 1 << 80, 0)) - 1, 0)
            for b in self.blocks[i:]:
                lo, hi = max(pfn_up(s), b.start_pfn), min(pfn_down(e), b.end_pfn)
                if b.start_pfn >= pfn_down(e):
                    break
                if lo < hi:
                    base, length = pfn_phys(lo), pfn_phys(hi - lo)
                    self.trace("alloc.memblock.add", dmesg=(
                        f"memblock_add: {self.rng(base, length)}" if self.debug else None),
                        addr=base, size=length, node=b.node)
                    self.add_range(self.memory, base, length, b.node)
        return True

    @hookimpl
    def bootemu_alloc_reserve(self, addr: int, size: int, node: int | None,
                              exclusive: bool) -> int:
        """memblock_reserve(addr, size); ``exclusive`` emulates bootmem's -EBUSY contract."""
        if exclusive and self.reserved.overlaps(addr, addr + size):
            return EBUSY
        return self.memblock_reserve(addr, size, None)

    @hookimpl
    def bootemu_alloc_alloc(self, request: AllocRequest) -> int | None:
        """memblock_alloc_try_nid() / memblock_alloc_exact_nid_raw() -> alloc_internal();
        None on failure, or KernelPanic for the wrappers whose callers panic."""
        name, exact = WRAPPERS[request.wrapper]
        size, align, min_addr = request.size, request.align, request.goal
        max_addr = request.limit or MEMBLOCK_ALLOC_ACCESSIBLE
        nid = NUMA_NO_NODE if request.node is None else request.node
        caller = request.caller or request.wrapper
        if self.debug:
            self.dbg("alloc.memblock.alloc",
                     f"{name}: {size} bytes align={align:#x} nid={nid} from={self.pa(min_addr)} "
                     f"max_addr={self.pa(max_addr)} {caller}", size=size, align=align, nid=nid)
        addr = self.alloc_internal(size, align, min_addr, max_addr, nid, exact)
        if addr:
            return addr
        if request.panics:
            # The 6.1 callers' check (e.g. early_alloc_pgtable(): "%s: Failed to allocate %lu
            # bytes align=0x%lx nid=%d from=%pa max_addr=%pa\n"), with the values passed in.
            raise KernelPanic(f"{caller}: Failed to allocate {size} bytes align={align:#x} "
                              f"nid={nid} from={self.pa(min_addr)} max_addr={self.pa(max_addr)}")
        return None

    @hookimpl
    def bootemu_alloc_handoff(self, sink: PageSink, node: int | None) -> int:
        """memblock_free_all() -> free_low_memory_core_early(): each free range, ascending,
        through __free_memory_core() (``[PFN_UP(start), min(PFN_DOWN(end), max_low_pfn))``)
        and __free_pages_memory(); then memblock_discard() of self-allocated region arrays."""
        max_low_pfn = pfn_down(self.current_limit)
        count = 0
        # Ranges of other nodes are skipped: asking free_ranges() for the node's regions only
        # gives the same ranges in the same order, without walking the others' reservations.
        for s, e, nid in list(self.free_ranges(NUMA_NO_NODE if node is None else node)):
            if node is not None and nid != node:
                continue
            start_pfn, end_pfn = pfn_up(s), min(pfn_down(e), max_low_pfn)
            for a, b, order in free_pages_chunks(start_pfn, end_pfn, MAX_ORDER - 1):
                sink.free_run(node=nid, start_pfn=a, end_pfn=b, order=order)
            count += max(end_pfn - start_pfn, 0)
        for base, size in self._own_arrays:
            where = self.memory.node_at(base) or 0
            if node is None or where == node:
                # __memblock_free_late(): PFN_UP(base) .. PFN_DOWN(base + size), order 0.
                a, b = pfn_up(base), pfn_down(base + size)
                sink.free_run(node=where, start_pfn=a, end_pfn=b, order=0)
                count += b - a
        self.trace("alloc.handoff.node", node=node, pages=count)
        return count

    @hookimpl
    def bootemu_alloc_overhead_bytes(self) -> int:
        """The two static arrays plus every array memblock allocated for itself."""
        static = 2 * INIT_MEMBLOCK_REGIONS * self.region_bytes
        return static + sum(size for _, size in self._own_arrays)

    @hookimpl
    def bootemu_alloc_stats(self) -> dict[str, Any]:
        """Region counts and array sizes (``cnt``, ``max``), doublings, the current limit."""
        return {"variant": "memblock 6.1", "memory_regions": len(self.memory.bases),
                "reserved_regions": len(self.reserved.bases), "memory_max": self.memory.max,
                "reserved_max": self.reserved.max, "doublings": self.doublings,
                "region_bytes": self.region_bytes, "current_limit": self.current_limit,
                "bottom_up": self.bottom_up}
