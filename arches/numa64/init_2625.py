"""x86_64 2.6.25 start_kernel() up to mem_init(): per-cpu areas, zonelists, the PID hash, the
software IO TLB, the handoff and the ``Memory:`` line.

Read from ``git show v2.6.25:<file>`` of the local kernel mirror:
arch/x86/kernel/smpboot_64.c prefill_possible_map(), arch/x86/kernel/setup64.c
setup_per_cpu_areas(), arch/x86/mm/numa_64.c numa_init_array() / init_cpu_to_node(),
mm/page_alloc.c build_all_zonelists() / default_zonelist_order() / alloc_large_system_hash(),
kernel/pid.c pidhash_init(), arch/x86/kernel/pci-swiotlb_64.c pci_swiotlb_init(),
lib/swiotlb.c swiotlb_init_with_default_size(), arch/x86/mm/numa_64.c
numa_free_all_bootmem(), arch/x86/mm/init_64.c mem_init(). Mixed into
:class:`bootemu_arches.numa64.kernel_2625.Linux2625` (uses
:class:`bootemu_arches.numa64.mm_2625.Mm2625`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bootemu_arches.numa64.mm_2625 import MAX_DMA32_PFN, ZONE_NAMES
from bootemu_arches.numa64.setup_2625 import DMA_GOAL
from bootemu_arches.x86_32 import mm

from bootemu.archbase import BootSteps
from bootemu.models import PAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu_arches.numa64 import Config
    from bootemu_arches.numa64.srat_2625 import NodeMap, Numa

    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

#: include/linux/mmzone.h, 2.6.25: MIGRATE_TYPES (unmovable, reclaimable, movable, reserve,
#: isolate).
MIGRATE_TYPES = 5
#: sizeof(struct hlist_head) on x86_64.
HLIST_HEAD_SIZE = 8
#: lib/swiotlb.c: the default 64 MiB aperture in 2 KiB slabs, an int and a pointer per slab,
#: and the 32 KiB overflow buffer.
IO_TLB_DEFAULT = 64 << 20
IO_TLB_SHIFT = 11
IO_TLB_OVERFLOW = 32 << 10


class Init2625(BootSteps):
    """start_kernel() to mem_init() (needs the kernel class's ``cfg``, ``node_map``, ``numa``,
    ``online``, ``end_pfn``, ``zone_present``, ``nr_*_pages``)."""

    cfg: Config
    node_map: NodeMap
    numa: Numa
    online: list[int]
    end_pfn: int
    nr_kernel_pages: int
    nr_all_pages: int
    totalram_pages: int
    zone_present: list[tuple[int, int, int]]
    if TYPE_CHECKING:

        def _node_alloc(
            self,
            allocator: AllocatorFacade,
            node: int,
            size: int,
            align: int,
            caller: str,
            label: str,
        ) -> int | None: ...

    def cpu_node_2625(self, cpu: int, node: int) -> int | None:
        """early_cpu_to_node() at setup_per_cpu_areas(): the SRAT node when it is online
        (init_cpu_to_node()), else what numa_init_array() dealt: online nodes round robin,
        every CPU counted (all were NUMA_NO_NODE then); a faked node takes every CPU."""
        if self.numa.faked:
            return 0 if 0 in self.online else None
        if node in self.online:
            return node
        nodes = sorted(self.online)
        return nodes[cpu % len(nodes)] if nodes else None

    def per_cpu_areas(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """prefill_possible_map() (CONFIG_HOTPLUG_CPU) and setup_per_cpu_areas():
        PERCPU_ENOUGH_ROOM per possible CPU, alloc_bootmem_pages_node() on its node."""
        cfg = self.cfg
        # CPU i is the i-th processor of the MADT; its SRAT entry (cpu_nodes[i]) gives its
        # node. A CPU the SRAT does not list has none: numa_init_array() deals it round robin
        # (a node number past every online node stands for NUMA_NO_NODE).
        count = cfg.possible_cpus or len(cfg.cpu_nodes)
        cpus = (list(cfg.cpu_nodes) + [1 << cfg.nodes_shift] * count)[:count]
        if cfg.hotplug_cpu:
            boot.printk(
                "smp.possible", f"SMP: Allowing {len(cpus)} CPUs, 0 hotplug CPUs", cpus=len(cpus)
            )
        size = cfg.percpu_size
        boot.printk("percpu.size", f"PERCPU: Allocating {size} bytes of per cpu data", size=size)
        for cpu, node in enumerate(cpus):
            where = self.cpu_node_2625(cpu, node)
            self._node_alloc(
                allocator,
                where if where is not None else -1,
                size,
                PAGE_SIZE,
                "setup_per_cpu_areas",
                f"per-cpu area cpu {cpu}",
            )

    def build_all_zonelists(self, boot: Boot) -> None:
        """build_all_zonelists(): one zonelist per online node; default_zonelist_order();
        vm_total_pages = nr_free_pagecache_pages(), the present pages of every zone (the
        zones' pages_high are still 0); mobility grouping off below pageblock_nr_pages *
        MIGRATE_TYPES; the policy zone is the highest populated zone."""
        present = [(n, j, p) for n, j, p in self.zone_present if p]
        total = sum(p for _, _, p in present)
        low = sum(p for _, j, p in present if j < 2)
        order = "Zone"
        if not low or low > total // 2:
            order = "Node"
        else:
            average = total // (len({n for n, _, _ in present}) + 1)
            for nid in sorted(self.online):
                nlow = sum(p for n, j, p in present if n == nid and j < 2)
                ntotal = sum(p for n, _, p in present if n == nid)
                if nlow and ntotal > average and nlow > ntotal * 70 // 100:
                    order = "Node"
                    break
        grouping = "off" if total < (1 << self.cfg.pageblock_order) * MIGRATE_TYPES else "on"
        policy = max((j for _, j, _ in present if j < 3), default=0)
        boot.printk(
            "zone.zonelists",
            [
                f"Built {len(self.online)} zonelists in {order} order, mobility grouping "
                f"{grouping}.  Total pages: {total}",
                f"Policy zone: {ZONE_NAMES[policy]}",
            ],
            pages=total,
        )

    def pidhash(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """kernel/pid.c pidhash_init(): 16..4096 heads by lowmem (nr_kernel_pages)."""
        shift = mm.pidhash_shift(self.nr_kernel_pages)
        size = (1 << shift) * HLIST_HEAD_SIZE
        boot.printk(
            "pid.hash",
            f"PID hash table entries: {1 << shift} (order: {shift}, {size} bytes)",
            entries=1 << shift,
            size=size,
        )
        self.alloc_bootmem(
            allocator,
            size,
            self.cfg.smp_cache_bytes,
            DMA_GOAL,
            "__alloc_bootmem",
            "pidhash_init",
            "PID hash table",
        )

    def pci_iommu_alloc(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """mem_init() -> pci_iommu_alloc(): no GART found, pci_swiotlb_init() turns the
        software IO TLB on when memory ends above 4 GiB; swiotlb_init_with_default_size()
        takes the 64 MiB aperture and the overflow buffer low, the slab tables anywhere."""
        if self.end_pfn <= MAX_DMA32_PFN:
            return
        boot.printk("swiotlb.on", "PCI-DMA: Using software bounce buffering for IO (SWIOTLB)")
        nslabs = IO_TLB_DEFAULT >> IO_TLB_SHIFT
        cache = self.cfg.smp_cache_bytes
        start = self.alloc_bootmem(
            allocator,
            nslabs << IO_TLB_SHIFT,
            PAGE_SIZE,
            0,
            "__alloc_bootmem_low",
            "swiotlb_init_with_default_size",
            "swiotlb aperture",
        )
        self.alloc_bootmem(
            allocator,
            nslabs * 4,
            cache,
            DMA_GOAL,
            "__alloc_bootmem",
            "swiotlb_init_with_default_size",
            "io_tlb_list",
        )
        self.alloc_bootmem(
            allocator,
            nslabs * 8,
            cache,
            DMA_GOAL,
            "__alloc_bootmem",
            "swiotlb_init_with_default_size",
            "io_tlb_orig_addr",
        )
        self.alloc_bootmem(
            allocator,
            IO_TLB_OVERFLOW,
            cache,
            0,
            "__alloc_bootmem_low",
            "swiotlb_init_with_default_size",
            "io_tlb_overflow_buffer",
        )
        if start is not None:
            end = start + (nslabs << IO_TLB_SHIFT)
            boot.printk(
                "swiotlb.place",
                f"Placing software IO TLB between {start:#x} - {end:#x}",
                start=start,
                end=end,
            )

    # ---------------------------------------------------------------------------------------
    # mem_init()

    def handoff_nodes(
        self, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel
    ) -> int:
        """numa_free_all_bootmem(): free_all_bootmem_node() per online node (those
        setup_node_bootmem() brought up, not every node with blocks)."""
        self.totalram_pages = sum(
            allocator.handoff(sink=pagealloc, node=n) for n in sorted(self.online)
        )
        return self.totalram_pages

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """mem_init(): ``Memory: %luk/%luk available (...)``. Free is nr_free_pages(): every
        page freed (the NUMA boot pagesets have batch 0, so none stays on a per-cpu list);
        reserved = end_pfn - totalram_pages - absent_pages_in_range(0, end_pfn). Then the
        VFS hashes, vmalloc'ed (hashdist: 64-bit NUMA) and sized from nr_kernel_pages."""
        if pagealloc is None:
            return
        cfg = self.cfg
        free = pagealloc.received
        absent = self.node_map.absent(None, 0, self.end_pfn)
        reserved = self.end_pfn - self.totalram_pages - absent
        line = (
            f"Memory: {free * 4}k/{self.end_pfn * 4}k available ({cfg.text_size >> 10}k "
            f"kernel code, {reserved * 4}k reserved, {cfg.data_size >> 10}k data, "
            f"{cfg.init_size >> 10}k init)"
        )
        boot.summary.append(line)
        boot.printk("mm.summary", line, free_pages=free, reserved_pages=reserved)
        for name, scale in (("Dentry cache", 13), ("Inode-cache", 14)):
            log2qty, size = mm.large_system_hash(
                self.nr_kernel_pages, self.nr_all_pages, HLIST_HEAD_SIZE, scale
            )
            boot.printk(
                "hash.table",
                mm.hash_line(name, log2qty, size),
                table=name,
                entries=1 << log2qty,
                size=size,
            )


__all__ = ["HLIST_HEAD_SIZE", "Init2625"]
