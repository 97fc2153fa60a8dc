"""numa64 as Linux 6.1 boots it, from the zone counts to the VFS hash tables.

The 6.1 profile's (:mod:`arches.numa64.v6_1`) lines between paging_init() and mm_init(), and
the numbers behind them. Sources: arch/x86/mm/init.c memblock_find_dma_reserve(),
mm/page_alloc.c (free_area_init_core(), calc_memmap_size(), build_all_zonelists(),
page_alloc_init(), alloc_large_system_hash()), arch/x86/kernel/e820.c e820__setup_pci_gap(),
arch/x86/kernel/setup_percpu.c setup_per_cpu_areas(), fs/dcache.c dcache_init_early() /
dcache_init(), fs/inode.c inode_init_early() / inode_init(), mm/vmalloc.c
__vmalloc_node_range(); the generic arithmetic is in :mod:`bootemu.linux61`.

Held to the real Debian 6.1 amd64 boots: ``Total pages: 1031904`` (5 GiB guests) is, on the
4 GiB case, DMA 3998 - 64 memmap - 158 dma_reserve = 3776, DMA32 782304 - 12224 = 770080,
Normal 262144 - 4096 = 258048; the 158 is pfns 1-158, the RAM below 640 KiB that setup_arch()
keeps reserved with the rest of the first MiB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arches.numa64 import direct_map
from arches.numa64.v2_6_25 import MAX_DMA_PFN
from bootemu import e820, linux61
from bootemu.models import AllocRequest, pfn_phys

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot
    from bootemu.models import Layout, Zone
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
#: dcache_init_early() / inode_init_early(): table name, command-line override, scale (one
#: bucket per 2^scale bytes); both buckets are one pointer (hlist_bl_head, hlist_head).
VFS_HASHES = (("Dentry cache", "dhash_entries", 13), ("Inode-cache", "ihash_entries", 14))
HASH_BUCKET_SIZE = 8
#: e820__setup_pci_gap() on x86_64 when no gap of 4 MiB exists below 4 GiB.
NO_PCI_GAP = ("Cannot find an available gap in the 32-bit address range",
              "PCI devices with unassigned 32-bit BARs may not work!")


class Mm61:
    """The mm counts and lines of numa64's 6.1 profile (a mixin of
    :class:`arches.numa64.v6_1.Linux61`, which provides the attributes below)."""

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


__all__ = ["MIGRATE_TYPES", "NR_CPUS", "PAGEBLOCK_ORDER", "Mm61"]
