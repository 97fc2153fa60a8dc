"""The 2.6.25 x86_32 boot from the bootmem allocator on: register, enable, reserve, allocate,
handoff and the ``Memory:`` line.

setup_bootmem_allocator() (arch/x86/kernel/setup_32.c @1dbbb6077426), the bootmem users of
setup_arch() and start_kernel() in call order, and mem_init() (arch/x86/mm/init_32.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.x86_32 import mm
from bootemu_arches.x86_32.v2_6_25_early import ANY, LOW, NODE, Early2625, wait_queue_head_size
from bootemu_arches.x86_32.zones import ZoneSize

from bootemu.e820 import E820_RAM, pci_gap_2624
from bootemu.models import (
    PAGE_SIZE,
    BootemuError,
    KernelBug,
    Layout,
    pfn_phys,
)
from bootemu.units import memparse_prefix

if TYPE_CHECKING:  # pragma: no cover
    from bootemu_arches.x86_32.config import Config

    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

U32 = 0xFFFFFFFF


class ZoneTally:
    """A PageSink in front of the page-allocator model counting single-page frees per zone.

    The model files every page in the buddy lists. A 2.6.25 kernel puts order-0 frees on the
    zone's hot per-cpu list first, and ``nr_free_pages()`` in the ``Memory:`` line does not
    count what stays there; the arch needs the per-zone count of order-0 frees for that.
    """

    def __init__(self, sink: PageAllocModel, layout: Layout) -> None:
        self.sink = sink
        self.layout = layout
        self.order0: dict[str, int] = {}

    def free_run(self, *, node: int, start_pfn: int, end_pfn: int, order: int) -> None:
        if order == 0:
            for s, e, zone in self.layout.zone_pieces(start_pfn, end_pfn):
                self.order0[zone] = self.order0.get(zone, 0) + (e - s)
        self.sink.free_run(node=node, start_pfn=start_pfn, end_pfn=end_pfn, order=order)


class Bootmem2625(Early2625):
    """setup_bootmem_allocator() to mem_init(), 2.6.25: the BootSteps steps x86_32 does its
    own way. State lives in Setup2625; the sizes of the small early allocations are
    Early2625's."""

    # Provided by Setup2625 / Linux2625.
    PROFILE: str
    DMA_GOAL: int
    DMA_RESERVE: int
    MIGRATE_TYPES: int
    cfg: Config
    e820: list[Any]
    zones: list[ZoneSize]
    active: list[tuple[int, int]]
    ram: list[tuple[int, int]]
    max_pfn: int
    max_low_pfn: int
    min_low_pfn: int
    highstart_pfn: int
    highend_pfn: int
    bootmap_size: int
    nr_kernel_pages: int
    nr_all_pages: int
    order0: dict[str, int]
    totalram_pages: int
    totalhigh_pages: int
    reservedpages: int
    hash_entries: dict[str, int]
    crashkernel: str | None
    printk: Any
    fact: Any
    pagetable_pages: Any
    memmap_pages: Any
    batchsize: Any

    # ---------------------------------------------------------------------------------------
    # register / enable: init_bootmem() + register_bootmem_low_pages(), as BootSteps' steps

    def register_blocks(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """init_bootmem(min_low_pfn, max_low_pfn): node 0 covers pfns [0, max_low_pfn) as one
        span, holes included; highmem is never part of bootmem."""
        allocator.register_block(node=0, start_pfn=0, end_pfn=self.max_low_pfn)

    def bitmap_start_pfn(self) -> int:
        """Where the allocator's bitmap goes: init_bootmem(min_low_pfn, ...) puts it at
        min_low_pfn, right after the boot page tables (no find_e820_area() in 2.6.25)."""
        return self.min_low_pfn

    def place_bitmaps(self, boot: Boot, allocator: AllocatorFacade) -> dict[str, tuple[int, int]]:
        """init_bootmem(): the bitmap at :meth:`bitmap_start_pfn`, not searched for.

        Every bitmap the backend asks for is placed after the previous one; ``bootmap_size``
        spans them all (one bitmap: its bytes).
        """
        first = self.bitmap_start_pfn()
        pos, end = first, pfn_phys(first)
        placed: dict[str, tuple[int, int]] = {}
        for req in allocator.bitmap_requests():
            placed[req.key] = (pos, pos + req.pages)
            end = pfn_phys(pos) + req.nbytes
            pos += req.pages
        if pos > self.max_low_pfn:
            raise KernelBug("arch/x86/kernel/setup_32.c: setup_bootmem_allocator()",
                            f"bootmem bitmaps end at pfn {pos}, beyond lowmem ({self.max_low_pfn})")
        self.bootmap_size = end - pfn_phys(first)
        self.fact(bootmap_start_pfn=first, bootmap_size=self.bootmap_size)
        return placed

    def reserve_bitmaps(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """Nothing here: setup_bootmem_allocator()'s first reserve_bootmem() runs from the
        kernel image on through the bitmap (:meth:`reserve_kept`)."""

    def free_ram(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """e820_32.c register_bootmem_low_pages(max_low_pfn): free_bootmem() every RAM entry,
        in table order, rounded inward to whole pages and clipped to max_low_pfn."""
        for e in self.e820:
            if e.type != E820_RAM:
                continue
            curr = -(-e.start // PAGE_SIZE)
            if curr >= self.max_low_pfn:
                continue
            last = min(e.end // PAGE_SIZE, self.max_low_pfn)
            if last <= curr:
                continue
            allocator.free(addr=pfn_phys(curr), size=pfn_phys(last - curr), node=None)

    # ---------------------------------------------------------------------------------------
    # reserve: the rest of setup_bootmem_allocator()

    def reserve_kept(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_bootmem_allocator() after register_bootmem_low_pages(), in its order, each
        reserve_bootmem() on no node (classic bootmem: node 0's); the bitmap is kept by the
        first reservation, which runs on to it."""
        cfg = self.cfg
        text = cfg.image_start
        # Kernel, boot page tables and the bitmap; the PAGE_SIZE-1 plus the outward rounding
        # keep one page past the bitmap reserved (boot-allocators reference §1.3).
        self._reserve(allocator, text,
                      pfn_phys(self.min_low_pfn) + self.bootmap_size + PAGE_SIZE - 1 - text,
                      "kernel image, boot page tables, bootmem bitmap")
        self._reserve(allocator, 0, PAGE_SIZE, "page 0 (BIOS data)")
        self.reserve_ebda_region(allocator)
        if cfg.smp:
            self._reserve(allocator, PAGE_SIZE, PAGE_SIZE, "SMP trampoline page")
        if cfg.acpi_sleep:
            self.acpi_reserve_bootmem(allocator)
        self.find_smp_config(allocator)
        self.reserve_initrd(allocator)
        self.reserve_crashkernel(allocator)

    def reserve_ebda_region(self, allocator: AllocatorFacade) -> None:
        """setup_32.c reserve_ebda_region(), 2.6.25: "workaround for Dell systems that
        neglect to reserve EBDA": one page at get_bios_ebda() (the word at 0x40E << 4), if
        any (``reserve_bootmem addr=9fc00 size=1000`` in every real-boots-2008 trace)."""
        if self.cfg.ebda:
            self._reserve(allocator, self.cfg.ebda, PAGE_SIZE, "EBDA page (BIOS)")

    def reserve_bios_lowmem_to_1m(self, allocator: AllocatorFacade) -> None:
        """What the 2.6.26 reserve_ebda_region() does instead (arch/x86/kernel/setup_32.c
        @1dbbb6077426): reserve [lowmem, 1 MiB), lowmem being the BIOS's conventional memory
        size (word at 0x413, KiB), lowered to the EBDA when that is within 64 KiB below it;
        no EBDA gives 0x9f000 (old Dells); nonsense gives 0x9f000. Unsigned int arithmetic,
        as in the kernel. A later profile points reserve_ebda_region at it.
        """
        lowmem = (self.cfg.bios_lowmem_kb << 10) & U32
        ebda = self.cfg.ebda
        if (lowmem - ebda) & U32 <= 0x10000:
            lowmem = ebda
        if ebda == 0 and lowmem >= 0x9F000:
            lowmem = 0x9F000
        if lowmem == 0 or lowmem >= 0x100000:
            lowmem = 0x9F000
        self._reserve(allocator, lowmem, 0x100000 - lowmem, "EBDA and BIOS (to 1 MiB)")

    def reserve_initrd(self, allocator: AllocatorFacade) -> None:
        """setup_32.c reserve_initrd(), 2.6.25: in place if it ends in lowmem, else its size
        at the top of lowmem (relocate_initrd() copies it there after paging_init())."""
        image, size = self.cfg.initrd_start, self.cfg.initrd_size
        if not image or not size:
            return  # no initrd provided by the boot loader
        end_of_lowmem = pfn_phys(self.max_low_pfn)
        if size >= end_of_lowmem // 2:
            self.printk("initrd.disabled", "initrd too large to handle, disabling initrd")
            return
        if image + size <= end_of_lowmem:
            self._reserve(allocator, image, size, "initrd")
            self.fact(initrd_at=image)
            return
        here = (end_of_lowmem - size) & ~(PAGE_SIZE - 1)
        self._reserve(allocator, here, size, "initrd")
        self.fact(initrd_at=here)

    def reserve_crashkernel(self, allocator: AllocatorFacade) -> None:
        """setup_32.c reserve_crashkernel() with kernel/kexec.c's classic
        ``crashkernel=size[@base]`` syntax (the ``range:size`` syntax is not emulated)."""
        arg = self.crashkernel
        if arg is None:
            return
        if ":" in arg:
            raise BootemuError(f"{self.machine.source}: kernel.cmdline: crashkernel={arg}: the "
                               "range syntax is not emulated")
        size, pos = memparse_prefix(arg)
        if pos == 0:
            self.printk("crashkernel.error", "crashkernel: memory value expected")
            return
        base = memparse_prefix(arg, pos + 1)[0] if arg[pos:pos + 1] == "@" else 0
        if size == 0:
            return
        total = ((self.max_low_pfn - self.min_low_pfn) + (self.highend_pfn - self.highstart_pfn)
                 ) << 12
        if base == 0:
            self.printk("crashkernel.error", "crashkernel reservation failed - you have to "
                        "specify a base address")
            return
        self.printk("crashkernel.reserve", f"Reserving {size >> 20}MB of memory at {base >> 20}MB "
                    f"for crashkernel (System RAM: {total >> 20}MB)", addr=base, size=size)
        self._reserve(allocator, base, size, "crashkernel")

    def acpi_reserve_bootmem(self, allocator: AllocatorFacade) -> None:
        """arch/x86/kernel/acpi/sleep.c acpi_reserve_bootmem() (2.6.25 realmode wakeup):
        alloc_bootmem_low(PAGE_SIZE*2), which panics rather than return NULL."""
        self.alloc_bootmem(allocator, 2 * PAGE_SIZE, self.cfg.smp_cache_bytes, 0, LOW,
                           "acpi_reserve_bootmem", "ACPI S3 wakeup code")

    # ---------------------------------------------------------------------------------------
    # allocate: setup_arch() after setup_memory(), then start_kernel()

    def allocate(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """The early bootmem users in call order (setup_arch(), then start_kernel())."""
        if self.cfg.smp:
            self.smp_alloc_memory(allocator)
        for caller, what in self.pagetable_pages():  # paging_init()
            self.alloc_bootmem(allocator, PAGE_SIZE, PAGE_SIZE, 0, LOW, caller, what)
        self.free_area_init_nodes(allocator)
        self.dmi_scan_machine(allocator)
        self.pci_gap()
        self.start_kernel(allocator)

    def smp_alloc_memory(self, allocator: AllocatorFacade) -> None:
        """arch/x86/kernel/smpboot_32.c smp_alloc_memory(): the AP trampoline, a low page
        that must be below 0x9f000 (BUG() otherwise)."""
        addr = self.alloc_bootmem(allocator, PAGE_SIZE, PAGE_SIZE, 0, LOW, "smp_alloc_memory",
                                  "AP trampoline")
        if addr is not None and addr >= 0x9F000:
            raise KernelBug("arch/x86/kernel/smpboot_32.c: smp_alloc_memory()",
                            f"trampoline at {addr:#x} is not below 0x9f000")

    def pci_gap(self) -> None:
        """e820_32.c e820_register_memory(): the PCI gap line (late in setup_arch())."""
        start, gapstart, gapsize = pci_gap_2624(self.e820)
        self.printk("e820.pci_gap", f"Allocating PCI resources starting at {start:08x} "
                    f"(gap: {gapstart:08x}:{gapsize:08x})", start=start, gapstart=gapstart,
                    gapsize=gapsize)

    def free_area_init_nodes(self, allocator: AllocatorFacade) -> None:
        """zone_sizes_init() -> free_area_init_nodes() -> free_area_init_node(0), 2.6.25.

        Prints the zone ranges and the node map, then per node the total, the mem_map
        allocation and, per zone, the memmap/reserved/batch lines with the zone's usemap and
        wait table allocated from bootmem.
        """
        s, e = self.active[0]
        self.printk("zone.active", f"Entering add_active_range(0, {s}, {e}) 0 entries of 256 used")
        lines = ["Zone PFN ranges:"]
        lines += [f"  {z.name:<8s} {z.lowest:8d} -> {z.highest:8d}" for z in self.zones
                  if z.name != "Movable"]
        lines.append("Movable zone start PFN for each node")
        lines.append(f"early_node_map[{len(self.active)}] active PFN ranges")
        lines += [f"  {0:3d}: {s:8d} -> {e:8d}" for s, e in self.active]
        self.printk("zone.ranges", lines)
        totalpages = sum(z.spanned - z.absent for z in self.zones)
        self.printk("zone.node", f"On node 0 totalpages: {totalpages}", node=0, pages=totalpages)
        self.alloc_node_mem_map(allocator)
        for j, z in enumerate(self.zones):
            zlines = self.zone_lines(j, z)
            if zlines:
                self.printk("zone.init", zlines, zone=z.name, spanned=z.spanned,
                            present=z.present)
            if z.spanned:
                self.setup_usemap(allocator, z)
                self.zone_wait_table_init(allocator, z)

    def alloc_node_mem_map(self, allocator: AllocatorFacade) -> None:
        """alloc_node_mem_map(): the node's struct page array, alloc_bootmem_node() (goal
        16 MiB, SMP_CACHE_BYTES aligned); alloc_remap() has nothing without NUMA."""
        start = self.active[0][0]
        end = start + sum(z.spanned for z in self.zones)
        size = mm.node_mem_map_bytes(start, end, self.cfg.struct_page_size)
        self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, self.DMA_GOAL, NODE,
                           "alloc_node_mem_map", "mem_map", node=0)

    def zone_lines(self, j: int, z: ZoneSize) -> list[str]:
        """free_area_init_core() + zone_pcp_init() lines of zone ``j`` (2.6.25)."""
        lines = []
        realsize = z.spanned - z.absent
        if realsize >= z.memmap:
            lines.append(f"  {z.name} zone: {z.memmap} pages used for memmap")
            realsize -= z.memmap
        else:
            lines.append(f"  {z.name} zone: {z.memmap} pages exceeds realsize {realsize}")
        if j == 0 and realsize > self.DMA_RESERVE:
            lines.append(f"  {z.name} zone: {self.DMA_RESERVE} pages reserved")
        if z.present:
            lines.append(f"  {z.name} zone: {z.present} pages, LIFO batch:"
                         f"{self.batchsize(z.present)}")
        return lines

    def setup_usemap(self, allocator: AllocatorFacade, z: ZoneSize) -> None:
        """setup_usemap(), 2.6.25: the zone's pageblock flags, alloc_bootmem_node()."""
        size = mm.usemap_size_2625(z.spanned, self.cfg.pageblock_order)
        if size:
            # setup_usemap() is inlined: the trace's caller is free_area_init_node().
            self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, self.DMA_GOAL, NODE,
                               "free_area_init_node", f"setup_usemap: {z.name} usemap", node=0)

    def zone_wait_table_init(self, allocator: AllocatorFacade, z: ZoneSize) -> None:
        """zone_wait_table_init(): the zone's hashed page waitqueues, alloc_bootmem_node();
        a wait_queue_head_t is 8 bytes on UP and 12 on SMP (its spinlock)."""
        size = mm.wait_table_entries(z.spanned) * wait_queue_head_size(self.cfg)
        self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, self.DMA_GOAL, NODE,
                           "zone_wait_table_init", f"{z.name} wait table", node=0)

    def start_kernel(self, allocator: AllocatorFacade) -> None:
        """init/main.c start_kernel(), 2.6.25, up to vfs_caches_init_early(): the command
        line copies, the per-cpu areas, the zonelists, the command line, pidhash_init(),
        console_init() (con_init()) and the dentry and inode hashes."""
        self.setup_command_line(allocator)
        self.setup_per_cpu_areas(allocator)
        self.build_all_zonelists()
        self.printk("cmdline.show", f"Kernel command line: {self.machine.kernel.cmdline}")
        self.pidhash_init(allocator)
        self.con_init(allocator)
        self.vfs_caches_init_early(allocator)

    def build_all_zonelists(self) -> None:
        """mm/page_alloc.c build_all_zonelists() (2.6.24+ format); the total is the present
        pages of every zone (vm_total_pages = nr_free_pagecache_pages(); an inference)."""
        total = sum(z.present for z in self.zones)
        grouping = "off" if total < (1 << self.cfg.pageblock_order) * self.MIGRATE_TYPES else "on"
        self.printk("zone.zonelists", f"Built 1 zonelists in Zone order, mobility grouping "
                    f"{grouping}.  Total pages: {total}", pages=total)

    def pidhash_init(self, allocator: AllocatorFacade) -> None:
        """kernel/pid.c pidhash_init(), 2.6.25: 16..4096 buckets by lowmem size; the printed
        "order" is the shift, not a page order (2.6.25 quirk)."""
        shift = mm.pidhash_shift(self.nr_kernel_pages)
        size = (1 << shift) * mm.HLIST_HEAD_SIZE
        self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, self.DMA_GOAL, ANY,
                           "pidhash_init", "pid hash")
        self.printk("hash.pid", f"PID hash table entries: {1 << shift} (order: {shift}, "
                    f"{size} bytes)", entries=1 << shift, size=size)

    #: fs/dcache.c dcache_init_early() and fs/inode.c inode_init_early(): table name,
    #: command-line override, scale (one bucket per 2^scale bytes of lowmem).
    EARLY_HASHES = (("Dentry cache", "dhash_entries", 13), ("Inode-cache", "ihash_entries", 14))
    HASH_LINEAR = False

    def vfs_caches_init_early(self, allocator: AllocatorFacade) -> None:
        """dcache_init_early() and inode_init_early(): alloc_large_system_hash() with
        HASH_EARLY (hashdist is 0 without NUMA), so the tables come from alloc_bootmem()."""
        for name, param, scale in self.EARLY_HASHES:
            log2qty, size = mm.large_system_hash(self.nr_kernel_pages, self.nr_all_pages,
                                                 mm.HLIST_HEAD_SIZE, scale,
                                                 self.hash_entries.get(param, 0))
            self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, self.hash_goal(), ANY,
                               "alloc_large_system_hash", f"{name} hash")
            self.printk("hash.table", mm.hash_line(name, log2qty, size, linear=self.HASH_LINEAR),
                        table=name, entries=1 << log2qty, size=size)

    def hash_goal(self) -> int:
        """alloc_bootmem(): goal __pa(MAX_DMA_ADDRESS)."""
        return self.DMA_GOAL

    # ---------------------------------------------------------------------------------------
    # handoff and summary: mem_init()

    def handoff_nodes(
        self, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel
    ) -> int:
        """mem_init(): free_all_bootmem() (node 0), then set_highmem_pages_init(); returns
        totalram_pages. Also counts reservedpages (RAM below max_low_pfn still reserved)."""
        assert boot.layout is not None
        tally = ZoneTally(pagealloc, boot.layout)
        released = allocator.handoff(sink=tally, node=0)
        self.totalhigh_pages = self.highmem_handover(boot, tally)
        self.order0 = tally.order0
        self.totalram_pages = released + self.totalhigh_pages
        handed = pagealloc.handed
        reserved = 0
        for s, e in self.page_is_ram_ranges():
            e = min(e, self.max_low_pfn)
            if s < e:
                reserved += (e - s) - handed.count(1, min(s, len(handed)), min(e, len(handed)))
        self.reservedpages = reserved
        self.fact(totalram_pages=self.totalram_pages, totalhigh_pages=self.totalhigh_pages,
                  reservedpages=reserved)
        return self.totalram_pages

    def page_is_ram_ranges(self) -> list[tuple[int, int]]:
        """arch/x86/mm/ioremap.c page_is_ram(), 2.6.25: the e820 RAM pfns, except page 0 ("a
        BIOS owned area, not kernel ram") and the BIOS area 640K-1M; mem_init() counts the
        reserved pages among these."""
        out = []
        for s, e in self.ram:
            for lo, hi in ((s, min(e, 0xA0)), (max(s, 0x100), e)):
                lo = max(lo, 1)
                if lo < hi:
                    out.append((lo, hi))
        return out

    def highmem_handover(self, boot: Boot, sink: Any) -> int:
        """init_32.c set_highmem_pages_init() (non-NUMA): every page_is_ram() pfn of
        [highstart_pfn, highend_pfn) goes to the buddy allocator one page at a time
        (__free_page(): order 0); holes stay reserved. Released here per RAM run."""
        total = 0
        for s, e in self.ram:
            s, e = max(s, self.highstart_pfn), min(e, self.highend_pfn)
            if s < e:
                sink.free_run(node=0, start_pfn=s, end_pfn=e, order=0)
                total += e - s
        return total

    def pcp_held(self) -> int:
        """Pages parked on the hot per-cpu lists after the handoff (boot-allocators §5.3)."""
        held = 0
        for z in self.zones:
            held += mm.pcp_held(self.order0.get(z.name, 0), self.batchsize(z.present))
        return held

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """init_32.c mem_init(): the ``Memory:`` line (boot-allocators reference §5.6)."""
        if pagealloc is None:
            return
        cfg = self.cfg
        free = pagealloc.free_pages() - self.pcp_held()
        physpages = self.highend_pfn if cfg.has_highmem else self.max_low_pfn
        line = (f"Memory: {free << 2}k/{physpages << 2}k available ({cfg.text_size >> 10}k "
                f"kernel code, {self.reservedpages << 2}k reserved, {cfg.data_size >> 10}k data, "
                f"{cfg.init_size >> 10}k init, {self.totalhigh_pages << 2}k highmem)")
        boot.summary.append(line)
        self.printk("summary.memory", line, free_pages=free, num_physpages=physpages,
                    reserved_pages=self.reservedpages, highmem_pages=self.totalhigh_pages)
