"""Linux 6.1 i386 from the boot-time allocator on: what changed since 2.6.25.

memblock instead of bootmem (reservations of early_reserve_memory(), reserve_bios_regions(),
reserve_real_mode()), free_area_init() with memblock ranges and ``unavailable ranges``,
the start_kernel() allocations of 6.1 (setup_command_line(), the per-cpu first chunk, the
``linear`` hash tables, swiotlb), set_highmem_pages_init() before memblock_free_all(), and
mem_init_print_info(). Sources as listed in v6_1.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.x86_32 import mm
from bootemu_arches.x86_32.v2_6_25_mm import Bootmem2625
from bootemu_arches.x86_32.v6_1_early import Early61
from bootemu_arches.x86_32.zones import ZoneSize

from bootemu import linux61
from bootemu.e820 import pci_gap
from bootemu.models import PAGE_SIZE, pfn_phys

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

NODE = "__alloc_bootmem_node"


class Mm61(Early61, Bootmem2625):
    """The 6.1 overrides of Bootmem2625 (Linux61 puts this class ahead of Linux2625)."""

    # Provided by Linux61 / Setup2625.
    NR_CPUS: int
    NR_PAGEBLOCK_BITS: int
    BIOS_START_MIN: int
    BIOS_START_MAX: int
    memblock_ranges: Any

    # ---------------------------------------------------------------------------------------
    # enable / reserve

    def bitmap_start_pfn(self) -> int:
        """memblock needs no bitmap; a bitmap backend's is put right after the kernel image
        (an emulator choice: the first free pages of lowmem above the kernel)."""
        return -(-self.cfg.image_end // PAGE_SIZE)

    def free_ram(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """memblock: what is memory and not reserved is free; memory = memblock_ranges()."""
        for s, e in self.memblock_ranges():
            e = min(e, self.max_low_pfn)
            if s < e:
                allocator.free(addr=pfn_phys(s), size=pfn_phys(e - s), node=None)

    def reserve_kept(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """early_reserve_memory(), reserve_bios_regions(), the MP table, reserve_initrd() and
        reserve_real_mode(), in setup_arch() order (memblock_reserve() each)."""
        cfg = self.cfg
        first = self.bitmap_start_pfn()
        self._reserve(allocator, cfg.image_start,
                      pfn_phys(first) + self.bootmap_size - cfg.image_start,
                      "kernel image, boot page tables")
        # early_reserve_memory(): the first 64 KiB
        self._reserve(allocator, 0, 64 << 10, "first 64 KiB (BIOS)")
        self.reserve_bios_regions(allocator)
        if cfg.mp_table:
            # smp_scan_config(): sizeof(*mpf)
            self._reserve(allocator, cfg.mp_table, 16, "MP floating pointer (BIOS)")
        self.reserve_initrd(allocator)
        # reserve_real_mode(): all of the first 1 MiB
        self._reserve(allocator, 0, 1 << 20, "real-mode trampoline (first 1 MiB)")

    def reserve_bios_regions(self, allocator: AllocatorFacade) -> None:
        """arch/x86/kernel/ebda.c reserve_bios_regions(): [bios_start, 1 MiB), bios_start
        from the BDA's KiB count, lowered to the EBDA, clamped to [128K, 0x9f000]."""
        bios_start = self.cfg.bios_lowmem_kb << 10
        if bios_start < self.BIOS_START_MIN or bios_start > self.BIOS_START_MAX:
            bios_start = self.BIOS_START_MAX
        if self.BIOS_START_MIN <= self.cfg.ebda < bios_start:
            bios_start = self.cfg.ebda
        bios_start &= ~(PAGE_SIZE - 1)
        self._reserve(allocator, bios_start, 0x100000 - bios_start, "EBDA and BIOS (to 1 MiB)")

    def reserve_initrd(self, allocator: AllocatorFacade) -> None:
        """early_reserve_initrd() + reserve_initrd() / relocate_initrd(), 6.1.

        The lowmem part of the image is reserved early; an initrd not wholly below
        max_low_pfn is copied to a new lowmem area and the old one freed.
        """
        image, size = self.cfg.initrd_start, self.cfg.initrd_size
        if not image or not size:
            return
        end = -(-(image + size) // PAGE_SIZE) * PAGE_SIZE
        low_end = pfn_phys(self.max_low_pfn)
        if image < low_end:
            self._reserve(allocator, image, min(end, low_end) - image, "initrd")
        self.printk("initrd.reserve", f"RAMDISK: [mem {image:#010x}-{end - 1:#010x}]")
        if end <= low_end:
            return
        area = -(-size // PAGE_SIZE) * PAGE_SIZE
        new = self.alloc_bootmem(allocator, area, PAGE_SIZE, 0, "__alloc_bootmem_low",
                                 "relocate_initrd", "initrd")
        assert new is not None  # the low wrapper panics instead
        self.printk("initrd.relocate", [
            f"Allocated new RAMDISK: [mem {new:#010x}-{new + size - 1:#010x}]",
            f"Move RAMDISK from [mem {image:#010x}-{image + size - 1:#010x}] to "
            f"[mem {new:#010x}-{new + size - 1:#010x}]"])
        if image < low_end:
            allocator.free(addr=image, size=min(end, low_end) - image, node=None)

    # ---------------------------------------------------------------------------------------
    # allocate

    def allocate(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """paging_init() -> zone_sizes_init() -> free_area_init(), the PCI gap, then
        start_kernel() up to vfs_caches_init_early() (memblock_alloc*() each)."""
        self.free_area_init_nodes(allocator)
        self.setup_arch_requests(allocator)
        self.pci_gap()
        self.start_kernel(allocator)

    def free_area_init_nodes(self, allocator: AllocatorFacade) -> None:
        """free_area_init(), 6.1: zone ranges, node ranges, Initmem setup, memmap, usemaps,
        then memmap_init()'s ``pages in unavailable ranges`` lines."""
        lines = ["Zone ranges:"]
        for z in self.zones:
            if z.name == "Movable":
                continue
            rng = ("empty" if z.lowest == z.highest else
                   f"[mem {pfn_phys(z.lowest):#018x}-{pfn_phys(z.highest) - 1:#018x}]")
            lines.append(f"  {z.name:<8s} {rng}")
        lines.append("Movable zone start for each node")
        lines.append("Early memory node ranges")
        lines += [f"  node {0:3d}: [mem {pfn_phys(s):#018x}-{pfn_phys(e) - 1:#018x}]"
                  for s, e in self.active]
        self.printk("zone.ranges", lines)
        if not self.active:
            # No RAM reached memblock.memory (e.g. a non-PAE kernel drops the one RAM entry
            # that ends above 4 GiB): get_pfn_range_for_nid() gives start == end, the node is
            # set up as memoryless and alloc_node_mem_map() has nothing to map.
            self.printk("zone.node", "Initmem setup node 0 as memoryless", node=0)
            return
        start, end = self.active[0][0], max(e for _, e in self.active)
        self.printk("zone.node", f"Initmem setup node 0 [mem {pfn_phys(start):#018x}-"
                    f"{pfn_phys(end) - 1:#018x}]", node=0)
        self.alloc_node_mem_map(allocator)
        for z in self.zones:
            if z.spanned:
                self.setup_usemap(allocator, z)
        for zone, pages in self.unavailable_ranges():
            self.printk("zone.unavailable", f"On node 0, zone {zone}: {pages} pages in "
                        "unavailable ranges", zone=zone, pages=pages)

    def alloc_node_mem_map(self, allocator: AllocatorFacade) -> None:
        """alloc_node_mem_map() -> memmap_alloc(): memblock_alloc_try_nid_raw(size,
        SMP_CACHE_BYTES, 0, ACCESSIBLE, nid)."""
        start = self.active[0][0]
        end = start + sum(z.spanned for z in self.zones)
        size = mm.node_mem_map_bytes(start, end, self.cfg.struct_page_size)
        self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, 0, NODE, "memmap_alloc",
                           "mem_map", node=0)

    def setup_usemap(self, allocator: AllocatorFacade, z: ZoneSize) -> None:
        """setup_usemap(), 6.1: memblock_alloc_node(usemap_size(zone_start, spanned))."""
        size = mm.usemap_size_61(z.start, z.spanned, self.cfg.pageblock_order,
                                 self.NR_PAGEBLOCK_BITS)
        self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, 0, NODE, "setup_usemap",
                           f"{z.name} usemap", node=0)

    def unavailable_ranges(self) -> list[tuple[str, int]]:
        """memmap_init() + memmap_init_zone_range() + init_unavailable_range(), 6.1 FLATMEM.

        Walking the memblock ranges through the populated zones, every gap before a range's
        part in a zone is counted in that zone (pfn 0 included, although ZONE_DMA starts at
        1). Then, FLATMEM having no section rounding, memmap_init() always calls
        init_unavailable_range() once more for ``[hole_pfn, end_pfn)``: from the end of the
        last zone piece to the end of the last memblock range, in the highest populated zone
        (``zone_id``, the last populated zone the loop visited). That tail is only non-empty
        when memblock.memory reaches past max_pfn (``highmem=`` below the RAM present, or
        RAM above lowmem on a kernel without HIGHMEM).

        init_unavailable_range() skips a pfn whose pageblock start is not pfn_valid(); on
        FLATMEM pfn_valid() is ``pfn < max_mapnr`` (initmem_init(): highend_pfn with
        HIGHMEM, max_low_pfn without, i.e. ``self.highend_pfn`` either way), so a hole counts
        its pages below the end of the last pageblock that starts below max_mapnr.
        """
        # 6.1 quirk: the source calls this last call "for FLATMEM ... a nop anyway"; it is not
        # when memblock.memory reaches past max_pfn (a 2025 patch rounds FLATMEM's end instead).
        block = 1 << self.cfg.pageblock_order
        valid_end = -(-self.highend_pfn // block) * block  # pageblock_start(pfn) < max_mapnr

        def count(s: int, e: int) -> int:
            return max(0, min(e, valid_end) - s)

        out: list[tuple[str, int]] = []
        hole = 0
        populated = [z for z in self.zones if z.present]
        for s, e in self.active:
            for z in populated:
                cs, ce = min(max(s, z.start), z.end), min(max(e, z.start), z.end)
                if cs >= ce:
                    continue
                if hole < cs and count(hole, cs):
                    out.append((z.name, count(hole, cs)))
                hole = ce
        if populated and self.active and count(hole, self.active[-1][1]):
            out.append((populated[-1].name, count(hole, self.active[-1][1])))
        return out

    def pci_gap(self) -> None:
        """e820__setup_pci_gap(): the largest gap below 4 GiB (default 256 MiB + 4 MiB)."""
        gap = pci_gap(self.e820) or (0x10000000, 0x400000)
        start, size = gap
        self.printk("e820.pci_gap", f"[mem {start:#010x}-{start + size - 1:#010x}] available "
                    "for PCI devices", start=start, size=size)

    def start_kernel(self, allocator: AllocatorFacade) -> None:
        """init/main.c start_kernel(), 6.1: setup_command_line(), setup_per_cpu_areas(),
        build_all_zonelists(), the command line, print_unknown_bootoptions(),
        vfs_caches_init_early(), trap_init(), then mm_init() -> mem_init()'s swiotlb."""
        cfg = self.cfg
        cmdline = self.machine.kernel.cmdline
        for name in ("saved_command_line", "static_command_line"):
            self.alloc_bootmem(allocator, len(cmdline.encode()) + 1, cfg.smp_cache_bytes, 0,
                               "__alloc_bootmem", "setup_command_line", name)
        if cfg.smp:
            self.printk("percpu.setup", f"setup_percpu: NR_CPUS:{self.NR_CPUS} nr_cpumask_bits:"
                        f"{cfg.nr_cpus} nr_cpu_ids:{cfg.nr_cpus} nr_node_ids:1")
        self.percpu_first_chunk(allocator)
        self.build_all_zonelists()
        self.printk("cmdline.show", f"Kernel command line: {cmdline}")
        self.unknown_bootoptions(allocator)
        self.vfs_caches_init_early(allocator)
        self.cea_page_tables(allocator)  # trap_init()
        self.swiotlb_init(allocator)

    #: kernel/dma/swiotlb.c: IO_TLB_DEFAULT_SIZE (64 MiB) in 2 KiB slabs, 16 bytes of
    #: struct io_tlb_slot per slab, one 12-byte struct io_tlb_area.
    IO_TLB_DEFAULT_SIZE = 64 << 20
    IO_TLB_SLOT_SIZE = 16
    IO_TLB_AREA_SIZE = 12

    def swiotlb_init(self, allocator: AllocatorFacade) -> None:
        """mem_init() -> pci_iommu_alloc() -> swiotlb_init_remap(), 6.1: pci_swiotlb_detect()
        enables the bounce buffer when RAM reaches above 4 GiB (max_pfn > MAX_DMA32_PFN),
        which only a PAE kernel can see. The buffer comes from memblock_alloc_low() (below
        4 GiB, inside lowmem here), then the slot array and the area array."""
        if self.max_pfn <= 1 << 20:
            return
        self.printk("swiotlb.init", "software IO TLB: area num 1.")
        nslabs = self.IO_TLB_DEFAULT_SIZE >> 11
        self.alloc_bootmem(allocator, self.IO_TLB_DEFAULT_SIZE, PAGE_SIZE, 0, "__alloc_bootmem_low",
                           "swiotlb_init_remap", "swiotlb bounce buffer")
        self.alloc_bootmem(allocator, nslabs * self.IO_TLB_SLOT_SIZE, PAGE_SIZE, 0,
                           "__alloc_bootmem", "swiotlb_init_remap", "swiotlb slots")
        self.alloc_bootmem(allocator, self.IO_TLB_AREA_SIZE, self.cfg.smp_cache_bytes, 0,
                           "__alloc_bootmem", "swiotlb_init_remap", "swiotlb areas")

    def build_all_zonelists(self) -> None:
        """build_all_zonelists(), 6.1: Total pages = the zones' initial managed pages
        (present minus the memmap of lowmem zones); grouping off below
        pageblock_nr_pages * MIGRATE_TYPES (6.1 has 6 types with CMA, 5 here)."""
        total = sum(z.freesize for z in self.zones)
        self.printk("zone.zonelists", linux61.zonelists_line(1, total, self.cfg.pageblock_order,
                                                             self.MIGRATE_TYPES), pages=total)

    HASH_LINEAR = True

    def hash_goal(self) -> int:
        """memblock_alloc(size, SMP_CACHE_BYTES): no goal."""
        return 0

    # ---------------------------------------------------------------------------------------
    # handoff / summary

    def handoff_nodes(
        self, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel
    ) -> int:
        """mem_init(), 6.1: set_highmem_pages_init() first, then memblock_free_all()."""
        high = self.highmem_handover(boot, pagealloc)
        released = allocator.handoff(sink=pagealloc, node=0)
        self.totalhigh_pages = high
        self.totalram_pages = released + high
        self.fact(totalram_pages=self.totalram_pages, totalhigh_pages=high)
        return self.totalram_pages

    def highmem_handover(self, boot: Boot, sink: Any) -> int:
        """highmem_32.c set_highmem_pages_init(): per highmem zone ``Initializing %s for
        node %d (%08lx:%08lx)`` then add_highpages_with_active_regions(). ZONE_MOVABLE counts
        as highmem when ZONE_HIGHMEM has a range (movable_zone = ZONE_HIGHMEM)."""
        if not self.cfg.has_highmem:
            return 0
        high = next(z for z in self.zones if z.name == "HighMem")
        start = high.start if high.spanned else 0
        lines = [f"Initializing HighMem for node 0 ({start:08x}:{start + high.spanned:08x})"]
        if high.highest > high.lowest:
            lines.append("Initializing Movable for node 0 (00000000:00000000)")
        self.printk("handoff.highmem", lines, start_pfn=start, end_pfn=start + high.spanned)
        return super().highmem_handover(boot, sink)

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """mem_init_print_info(), 6.1: total = all present pages; reserved = total -
        totalram_pages."""
        if pagealloc is None:
            return
        cfg = self.cfg
        physpages = sum(z.present for z in self.zones)
        free = pagealloc.free_pages()
        high = f", {self.totalhigh_pages << 2}K highmem" if cfg.has_highmem else ""
        line = (f"Memory: {free << 2}K/{physpages << 2}K available ({cfg.text_size >> 10}K "
                f"kernel code, {cfg.data_size >> 10}K rwdata, {cfg.rodata_size >> 10}K rodata, "
                f"{cfg.init_size >> 10}K init, {cfg.bss_size >> 10}K bss, "
                f"{(physpages - self.totalram_pages) << 2}K reserved, 0K cma-reserved{high})")
        boot.summary.append(line)
        self.printk("summary.memory", line, free_pages=free, physpages=physpages)

