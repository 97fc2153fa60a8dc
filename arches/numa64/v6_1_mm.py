"""numa64 as Linux 6.1 boots it, from the zone counts to the VFS hash tables and mem_init().

The 6.1 profile's (:mod:`bootemu_arches.numa64.v6_1`) lines between paging_init() and mm_init(), and
the numbers behind them. Sources: arch/x86/mm/init.c memblock_find_dma_reserve(),
mm/page_alloc.c (free_area_init_core(), calc_memmap_size(), build_all_zonelists(),
page_alloc_init(), alloc_large_system_hash(); memmap_init() and defer_init(), as of commit
dac22531bbd4 of torvalds/linux), arch/x86/kernel/e820.c e820__setup_pci_gap(),
arch/x86/kernel/setup_percpu.c setup_per_cpu_areas(), fs/dcache.c dcache_init_early() /
dcache_init(), fs/inode.c inode_init_early() / inode_init(), mm/vmalloc.c
__vmalloc_node_range(), kernel/dma/swiotlb.c swiotlb_init_remap(), arch/x86/mm/init_64.c
mem_init() / preallocate_vmalloc_pages(); the generic arithmetic is in :mod:`bootemu.linux61`.

The ``Memory:`` free figure of the real amd64 boots, e.g. amd64_512M's 207548K: node 0's last
zone DMA32 starts at pfn 0x1000, so first_deferred_pfn = 0x10000 (the first section-aligned
pfn after 0x8000 counted); below it the free RAM is 0xff00 pages minus the kernel image
(13329) = 51951, less 64 vmalloc PUD pages = 51887 pages.

Held to the real Debian 6.1 amd64 boots: ``Total pages: 1031904`` (5 GiB guests) is, on the
4 GiB case, DMA 3998 - 64 memmap - 158 dma_reserve = 3776, DMA32 782304 - 12224 = 770080,
Normal 262144 - 4096 = 258048; the 158 is pfns 1-158, the RAM below 640 KiB that setup_arch()
keeps reserved with the rest of the first MiB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.numa64 import direct_map
from bootemu_arches.numa64.v2_6_25 import MAX_DMA32_PFN, MAX_DMA_PFN, SECTION_PAGES

from bootemu import e820, linux61
from bootemu.models import PAGE_SIZE, AllocRequest, pfn_phys

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot
    from bootemu.models import Layout, Zone
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

#: CONFIG_NR_CPUS of the Debian 6.1 amd64 build (``setup_percpu: NR_CPUS:8192`` in every log).
NR_CPUS = 8192
#: include/linux/mmzone.h, 6.1, with CONFIG_CMA and CONFIG_MEMORY_ISOLATION (Debian amd64:
#: the ``0K cma-reserved`` field): UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, CMA, ISOLATE.
MIGRATE_TYPES = 6
#: x86_64 pageblock_order = HUGETLB_PAGE_ORDER (2 MiB pages).
PAGEBLOCK_ORDER = 9
#: x86_64 PMD_SIZE: the size per node from which vmalloc_huge() maps with huge pages.
PMD_SIZE = 2 << 20
#: SMP_CACHE_BYTES of the Debian build (``align=0x40`` in the logs).
SMP_CACHE_BYTES = 64
#: kernel/dma/swiotlb.c, 6.1, 64-bit: IO_TLB_DEFAULT_SIZE (64 MiB) in slabs of 1 <<
#: IO_TLB_SHIFT bytes; sizeof(struct io_tlb_slot) (orig_addr, alloc_size, list) and of struct
#: io_tlb_area (used, index, lock). The real logs: 786432 bytes of slots, 16 bytes per area.
IO_TLB_DEFAULT_SIZE = 64 << 20
IO_TLB_SHIFT = 11
IO_TLB_SLOT_SIZE = 24
IO_TLB_AREA_SIZE = 16
#: arch/x86/mm/init_64.c preallocate_vmalloc_pages(), 6.1, 4-level paging: one PUD page per
#: PGD slot of VMALLOC_START..VMEMORY_END (= VMALLOC_END without KMSAN). The vmalloc area is
#: VMALLOC_SIZE_TB_L4 = 32 TiB and a PGD slot 512 GiB (PGDIR_SHIFT 39): 64 slots, 64 pages,
#: when vmalloc_base is PGD-aligned (nokaslr: __VMALLOC_BASE_L4 = 0xffffc90000000000).
VMALLOC_PGD_SLOTS = (32 << 40) >> 39
#: dcache_init_early() / inode_init_early(): table name, command-line override, scale (one
#: bucket per 2^scale bytes); both buckets are one pointer (hlist_bl_head, hlist_head).
VFS_HASHES = (("Dentry cache", "dhash_entries", 13), ("Inode-cache", "ihash_entries", 14))
HASH_BUCKET_SIZE = 8
#: e820__setup_pci_gap() on x86_64 when no gap of 4 MiB exists below 4 GiB.
NO_PCI_GAP = ("Cannot find an available gap in the 32-bit address range",
              "PCI devices with unassigned 32-bit BARs may not work!")


class Mm61:
    """The mm counts and lines of numa64's 6.1 profile (a mixin of
    :class:`bootemu_arches.numa64.v6_1.Linux61`, which provides the attributes below)."""

    cfg: Any
    busy: list[tuple[int, int, str]]
    pgdat: dict[int, int]
    numa: Any
    machine: Any
    lay: Layout
    dma_reserve: int
    hashdist: bool
    hash_entries: dict[str, int]
    zone_free: list[tuple[Zone, int]]
    nr_kernel_pages: int
    memory_nodes: Any

    def find_dma_reserve(self, ram: list[tuple[int, int]]) -> int:
        """arch/x86/mm/init.c memblock_find_dma_reserve(), 6.1 (x86_64 only): pages of
        memblock.memory below 16 MiB minus the whole pages of it that are still free, i.e. what
        early boot keeps reserved there (the first MiB; more if the kernel image, an initrd or
        an early allocation sits below 16 MiB). Called after initmem_init(), before
        paging_init()."""
        memory = sum(max(0, min(e, MAX_DMA_PFN) - s) for s, e in ram if s < MAX_DMA_PFN)
        free = direct_map.subtract([(pfn_phys(s), pfn_phys(e)) for s, e in ram],
                                   [(s, e) for s, e, _ in self.busy])
        free_pages = 0
        for s, e in free:
            lo, hi = min(-(-s // 4096), MAX_DMA_PFN), min(e // 4096, MAX_DMA_PFN)
            free_pages += max(0, hi - lo)
        return memory - free_pages

    def free_area_init_core(self, boot: Boot) -> None:
        """mm/page_alloc.c free_area_init_core(), 6.1: each zone's initial managed pages
        (``zone_free``) are its present pages minus its memmap (calc_memmap_size(), SPARSEMEM)
        and, for ZONE_DMA (zone index 0), minus dma_reserve when more than that is left. No
        highmem on x86_64, so nr_kernel_pages = nr_all_pages = their sum."""
        out: list[tuple[Zone, int]] = []
        for z in self.lay.zones:
            freesize = z.present
            memmap = linux61.calc_memmap_size(z.spanned, z.present, self.cfg.struct_page_size,
                                              sparsemem=True)
            if freesize >= memmap:
                freesize -= memmap
            else:
                boot.printk("mm.memmap_warn", f"  {z.name} zone: {memmap} memmap pages exceeds "
                            f"freesize {freesize}", node=z.node, zone=z.name)
            if z.name == "DMA" and freesize > self.dma_reserve:
                freesize -= self.dma_reserve
            out.append((z, freesize))
        self.zone_free = out
        self.nr_kernel_pages = sum(free for _, free in out)

    def first_deferred_pfns(self) -> dict[int, int]:
        """mm/page_alloc.c memmap_init() -> memmap_init_zone_range() -> memmap_init_range() ->
        defer_init(), 6.1 (CONFIG_DEFERRED_STRUCT_PAGE_INIT): each node's first_deferred_pfn,
        for the nodes that got one.

        The memory ranges in address order, each against its node's populated zones in zone
        order; defer_init() sees the pfns of the range inside the zone, with the zone's end.
        Its two statics (the end of the zone it last saw, the pfns counted since) reset when
        that end changes. Low zones (ending below the node's last pfn) are always initialised;
        in the node's last zone it counts pfns and stops at the first section-aligned pfn once
        more than PAGES_PER_SECTION were counted. Per range and zone: arithmetic, no pfn loop.
        """
        lay = self.lay
        node_end: dict[int, int] = {}
        for b in lay.blocks:  # pgdat_end_pfn(): get_pfn_range_for_nid()'s last pfn + 1
            node_end[b.node] = max(node_end.get(b.node, 0), b.end_pfn)
        first: dict[int, int] = {}
        prev_end, counted = 0, 0  # defer_init()'s statics prev_end_pfn, nr_initialised
        for b in lay.blocks:
            for z in (z for z in lay.zones if z.node == b.node and z.present):
                s, e = max(b.start_pfn, z.start_pfn), min(b.end_pfn, z.end_pfn)
                if s >= e:
                    continue  # memmap_init_zone_range() returns before defer_init()
                if prev_end != z.end_pfn:
                    prev_end, counted = z.end_pfn, 0
                if z.end_pfn < node_end[b.node] or b.node in first:
                    continue
                # The pfn p that stops the loop: counted + (p - s) + 1 > PAGES_PER_SECTION,
                # section-aligned.
                p = max(s, s + SECTION_PAGES - counted)
                p = -(-p // SECTION_PAGES) * SECTION_PAGES
                if p < e:
                    first[b.node] = p
                else:
                    counted += e - s
        return first

    def deferred_pages(self, pagealloc: PageAllocModel) -> int:
        """mm/memblock.c memblock_free_all() -> __free_pages_memory() -> memblock_free_pages(),
        6.1: a chunk whose first pfn is at or above its node's first_deferred_pfn
        (early_page_uninitialised()) is not freed now but by page_alloc_init_late(), after
        the ``Memory:`` line; it is still counted in totalram_pages. Chunks lie in one free
        memblock range (one node) and are at most MAX_ORDER - 1 aligned while
        first_deferred_pfn is section-aligned, so whole pfns split exactly at it: the
        handed pages of each node's ranges from there on."""
        if not self.cfg.deferred_struct_page_init:
            return 0
        first = self.first_deferred_pfns()
        handed, out = pagealloc.handed, 0
        for b in self.lay.blocks:
            lo = max(b.start_pfn, first.get(b.node, b.end_pfn))
            hi = min(b.end_pfn, len(handed))
            if lo < hi:
                out += handed.count(1, lo, hi)
        return out

    def swiotlb_init(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """x86_64 mem_init() -> pci_iommu_alloc() -> swiotlb_init() -> swiotlb_init_remap(),
        6.1 (arch/x86/kernel/pci-dma.c, kernel/dma/swiotlb.c): pci_swiotlb_detect() enables
        the bounce buffer when memory reaches above 4 GiB (max_possible_pfn, = max_pfn here,
        above MAX_DMA32_PFN). The 64 MiB buffer from memblock_alloc_low() (below 4 GiB), the
        slot array (one 24-byte struct io_tlb_slot per 2 KiB slab), then one 16-byte struct
        io_tlb_area per area: the possible CPUs rounded up to a power of two
        (swiotlb_adjust_nareas(), which prints ``area num``). Between the VFS hashes and
        memblock_free_all(): in low memory the buffer lies below first_deferred_pfn."""
        if self.lay.max_pfn <= MAX_DMA32_PFN:
            return
        nareas = linux61.roundup_pow_of_two(max(1, len(self.cfg.cpu_nodes)))
        boot.printk("swiotlb.init", f"software IO TLB: area num {nareas}.", nareas=nareas)
        for size, align, wrapper, label in (
            (IO_TLB_DEFAULT_SIZE, PAGE_SIZE, "__alloc_bootmem_low", "swiotlb bounce buffer"),
            ((IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT) * IO_TLB_SLOT_SIZE, PAGE_SIZE,
             "__alloc_bootmem", "swiotlb slots"),
            (nareas * IO_TLB_AREA_SIZE, SMP_CACHE_BYTES, "__alloc_bootmem", "swiotlb areas"),
        ):
            allocator.alloc(request=AllocRequest(size=size, align=align, goal=0,
                                                 wrapper=wrapper, caller="swiotlb_init_remap",
                                                 label=label))

    def pci_gap(self, boot: Boot) -> None:
        """e820__setup_pci_gap(): the largest gap of at least 4 MiB below 4 GiB in the final
        e820 table; without one, x86_64 puts PCI 1 MiB above the end of RAM and complains."""
        gap = e820.pci_gap(boot.e820)
        if gap is None:
            boot.printk("e820.pci_gap_missing", list(NO_PCI_GAP))
            gap = (pfn_phys(self.lay.max_pfn) + (1 << 20), 0x400000)
        start, size = gap
        boot.printk("e820.pci_gap", f"[mem {start:#010x}-{start + size - 1:#010x}] available "
                    "for PCI devices", start=start, size=size)

    def nr_node_ids(self) -> int:
        """setup_nr_node_ids(): highest possible node + 1. x86 numa_register_memblks() makes
        the possible nodes those the SRAT named (memory or CPU affinity, numa_nodes_parsed);
        the dummy node is node 0 alone."""
        if self.numa.faked:
            return 1
        return 1 + max([m.node for m in self.machine.numa] + list(self.cfg.cpu_nodes))

    def setup_percpu_line(self, boot: Boot) -> None:
        """arch/x86/kernel/setup_percpu.c setup_per_cpu_areas(): the first line. With
        CONFIG_CPUMASK_OFFSTACK (Debian) nr_cpumask_bits is nr_cpu_ids."""
        cpus, nodes = len(self.cfg.cpu_nodes), self.nr_node_ids()
        boot.printk("percpu.setup", f"setup_percpu: NR_CPUS:{NR_CPUS} nr_cpumask_bits:{cpus} "
                    f"nr_cpu_ids:{cpus} nr_node_ids:{nodes}", nr_cpu_ids=cpus,
                    nr_node_ids=nodes)

    def build_all_zonelists(self, boot: Boot) -> None:
        """build_all_zonelists(), 6.1: one zonelist per online node (every node that got a
        NODE_DATA); vm_total_pages sums every zone's initial managed pages (their high
        watermarks are still 0)."""
        total = self.nr_kernel_pages
        boot.printk("mm.zonelists", linux61.zonelists_line(len(self.pgdat), total,
                                                           PAGEBLOCK_ORDER, MIGRATE_TYPES),
                    pages=total, dma_reserve=self.dma_reserve)

    def vfs_hashes(self, boot: Boot, allocator: AllocatorFacade | None) -> None:
        """dcache_init_early() + inode_init_early() when ``allocator`` is given (hashdist off:
        HASH_EARLY, memblock_alloc(size, SMP_CACHE_BYTES), ``linear``), else the late
        dcache_init() + inode_init() of vfs_caches_init() (hashdist on: vmalloc_huge() after
        the handoff, not an early allocation; ``vmalloc`` or ``vmalloc hugepage``)."""
        for name, param, scale in VFS_HASHES:
            pages = self.nr_kernel_pages  # = nr_all_pages: no highmem
            log2qty, size = linux61.alloc_large_system_hash(
                pages, pages, HASH_BUCKET_SIZE, scale, numentries=self.hash_entries[param])
            if allocator is not None:
                allocator.alloc(request=AllocRequest(
                    size=size, align=SMP_CACHE_BYTES, goal=0, caller="alloc_large_system_hash",
                    label=f"{name} hash"))
                how = linux61.HASH_LINEAR
            else:
                how = linux61.vmalloc_kind(size, len(self.pgdat), PMD_SIZE)
            boot.printk("hash.table", linux61.hash_table_line(name, log2qty, size, how),
                        table=name, entries=1 << log2qty, size=size, how=how)


__all__ = [
    "MIGRATE_TYPES",
    "NR_CPUS",
    "PAGEBLOCK_ORDER",
    "VMALLOC_PGD_SLOTS",
    "Mm61",
]
