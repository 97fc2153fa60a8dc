"""x86_64 2.6.25 from paging_init() to mem_init(): SPARSEMEM, the zones, the allocations of
the rest of setup_arch() and of start_kernel(), the handoff and the ``Memory:`` line.

Read from ``git show v2.6.25:<file>`` of the local kernel mirror: arch/x86/mm/numa_64.c
paging_init() and numa_free_all_bootmem(); mm/sparse.c memory_present(), sparse_index_init(),
sparse_index_alloc(), sparse_init(), sparse_early_usemap_alloc(), usemap_size() and the
non-vmemmap sparse_mem_map_populate(); mm/page_alloc.c free_area_init_nodes(),
calculate_node_totalpages(), free_area_init_core(), zone_pcp_init(), zone_wait_table_init(),
build_all_zonelists(), default_zonelist_order(), alloc_large_system_hash(); arch/x86/mm/init_64.c
spp_getpage() (map_vsyscall()) and mem_init(); arch/x86/kernel/acpi/boot.c acpi_parse_hpet();
arch/x86/kernel/io_apic_64.c ioapic_setup_resources(); e820_64.c e820_reserve_resources() and
e820_setup_gap(); init/main.c setup_command_line(); arch/x86/kernel/smpboot_64.c
prefill_possible_map(); arch/x86/kernel/setup64.c setup_per_cpu_areas(); kernel/pid.c
pidhash_init(); drivers/char/vt.c con_init(). The rest of start_kernel() and mem_init() is in
:mod:`bootemu_arches.numa64.init_2625`. Mixed into
:class:`bootemu_arches.numa64.kernel_2625.Linux2625`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bootemu_arches.numa64.setup_2625 import DMA_GOAL, MAX_DMA_PFN
from bootemu_arches.numa64.srat_2625 import early_bug
from bootemu_arches.x86_32 import mm

from bootemu import e820
from bootemu.archbase import BootSteps
from bootemu.models import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu_arches.numa64 import Config
    from bootemu_arches.numa64.srat_2625 import NodeMap, Numa

    from bootemu.boot import Boot
    from bootemu.plugins import AllocatorFacade

MAX_DMA32_PFN = 1 << 20
#: include/asm-x86/sparsemem_64.h: SECTION_SIZE_BITS 27 (128 MiB sections).
SECTION_SHIFT = 27 - PAGE_SHIFT
SECTION_PAGES = 1 << SECTION_SHIFT
#: mm/sparse.c, SPARSEMEM_EXTREME: a root is a page of 16-byte struct mem_section.
SECTIONS_PER_ROOT = PAGE_SIZE // 16
#: sizeof(wait_queue_head_t) on x86_64 (spinlock padded to 8, list_head 16).
WAIT_QUEUE_HEAD_SIZE = 24
#: NR_PAGEBLOCK_BITS of 2.6.25 (the migrate type).
NR_PAGEBLOCK_BITS = 3
#: sizeof(struct resource) on x86_64 and the name buffers that follow it
#: (HPET_RESOURCE_NAME_SIZE, IOAPIC_RESOURCE_NAME_SIZE).
RESOURCE_SIZE = 56
HPET_RESOURCE_NAME_SIZE = 9
IOAPIC_RESOURCE_NAME_SIZE = 11
#: drivers/char/vt.c con_init(): sizeof(struct vc_data) of this x86_64 build (the first
#: __alloc_bootmem of con_init in the traced boots, 0x1b0 bytes), then the screen buffer of
#: cols * rows 16-bit cells.
VC_DATA_SIZE = 0x1B0

ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")


class Mm2625(BootSteps):
    """paging_init() to mem_init() (needs the kernel class's ``cfg``, ``node_map``, ``numa``,
    ``online``, ``dma_reserve``, ``end_pfn``, ``pgdat``, ``cpu_nodes``)."""

    cfg: Config
    node_map: NodeMap
    numa: Numa
    online: list[int]
    dma_reserve: int
    end_pfn: int
    pgdat: dict[int, int]
    nr_kernel_pages: int
    nr_all_pages: int
    totalram_pages: int
    zone_present: list[tuple[int, int, int]]  # (node, zone index, present pages)

    def _node_alloc(
        self, allocator: AllocatorFacade, node: int, size: int, align: int, caller: str, label: str
    ) -> int | None:
        """alloc_bootmem_node(NODE_DATA(node), ...); a node without bootmem has no
        NODE_DATA, its requests go to every node (alloc_bootmem())."""
        if node in self.online:
            return self.alloc_bootmem(
                allocator, size, align, DMA_GOAL, "__alloc_bootmem_node", caller, label, node=node
            )
        return self.alloc_bootmem(
            allocator, size, align, DMA_GOAL, "__alloc_bootmem", caller, label
        )

    # ---------------------------------------------------------------------------------------
    # paging_init(): SPARSEMEM

    def present_sections(self) -> list[tuple[int, int, int]]:
        """sparse_memory_present_with_active_regions(MAX_NUMNODES): memory_present() for
        every active range in map order; a section keeps the node of the first range that
        marks it. Returned as disjoint ``(first, end, node)`` section intervals, sorted."""
        taken: list[tuple[int, int, int]] = []
        for nid, s, e in self.node_map.entries:
            lo, hi = s >> SECTION_SHIFT, -(-e >> SECTION_SHIFT)
            for a, b, _ in sorted(taken):  # keep only what no earlier range marked
                if b <= lo or a >= hi:
                    continue
                if a > lo:
                    taken.append((lo, a, nid))
                lo = max(lo, b)
                if lo >= hi:
                    break
            if lo < hi:
                taken.append((lo, hi, nid))
        return sorted(taken)

    def sparse_init(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """memory_present()'s sparse_index_init(): one root page per 256 sections, on the node
        of the first range that reaches it (in map order); then sparse_init() per present
        section: its mem_map (PAGES_PER_SECTION struct pages) and its usemap, both
        alloc_bootmem_node() on the section's node."""
        cfg = self.cfg
        roots: set[int] = set()
        for nid, s, e in self.node_map.entries:
            for root in range(
                (s >> SECTION_SHIFT) // SECTIONS_PER_ROOT,
                (-(-e >> SECTION_SHIFT) - 1) // SECTIONS_PER_ROOT + 1,
            ):
                if root not in roots:
                    roots.add(root)
                    self._node_alloc(
                        allocator,
                        nid,
                        SECTIONS_PER_ROOT * 16,
                        cfg.smp_cache_bytes,
                        "sparse_index_alloc",
                        f"mem_section root {root}",
                    )
        map_size = SECTION_PAGES * cfg.struct_page_size
        blocks = SECTION_PAGES >> cfg.pageblock_order
        usemap = -(-blocks * NR_PAGEBLOCK_BITS // 64) * 8  # BITS_TO_LONGS() longs
        for first, end, nid in self.present_sections():
            for pnum in range(first, end):
                self._node_alloc(
                    allocator,
                    nid,
                    map_size,
                    cfg.smp_cache_bytes,
                    "sparse_early_mem_map_alloc",
                    f"mem_map section {pnum}",
                )
                self._node_alloc(
                    allocator,
                    nid,
                    usemap,
                    cfg.smp_cache_bytes,
                    "sparse_early_usemap_alloc",
                    f"usemap section {pnum}",
                )

    # ---------------------------------------------------------------------------------------
    # paging_init(): free_area_init_nodes()

    def zone_bounds(self) -> list[tuple[int, int]]:
        """arch_zone_lowest/highest_possible_pfn[] of DMA, DMA32, Normal (Movable: 0, 0)."""
        ranges = self.node_map.ranges()
        lo = min((s for s, _ in ranges), default=0)
        out = [(lo, MAX_DMA_PFN)]
        for hi in (MAX_DMA32_PFN, self.end_pfn):
            out.append((out[-1][1], max(hi, out[-1][1])))
        return out + [(0, 0)]

    def free_area_init_nodes(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """sort_node_map(), the ``Zone PFN ranges:`` / ``early_node_map`` lines, then per online
        node calculate_node_totalpages() and free_area_init_core(): per zone the memmap and
        DMA-reserve lines, zone_pcp_init()'s line, and zone_wait_table_init()'s
        alloc_bootmem_node() for a zone that spans pages."""
        self.node_map.sort()
        bounds = self.zone_bounds()
        lines = ["Zone PFN ranges:"]
        lines += [
            f"  {ZONE_NAMES[j]:<8} {lo:8d} -> {hi:8d}" for j, (lo, hi) in enumerate(bounds[:3])
        ]
        lines += [
            "Movable zone start PFN for each node",
            f"early_node_map[{len(self.node_map.entries)}] active PFN ranges",
        ]
        lines += [f"  {n:3d}: {s:8d} -> {e:8d}" for n, s, e in self.node_map.entries]
        boot.printk("mm.zones", lines, ranges=len(self.node_map.entries))
        self.nr_kernel_pages = self.nr_all_pages = 0
        self.zone_present = []
        for nid in sorted(self.online):
            mine = self.node_map.ranges(nid)
            if not mine:
                boot.printk("mm.zones", f"Could not find start_pfn for node {nid}")
            ns = min((s for s, _ in mine), default=0)
            ne = max((e for _, e in mine), default=0)
            sizes = []
            for lo, hi in bounds:
                if hi < ns or lo > ne:
                    sizes.append((0, 0))
                    continue
                zs, ze = max(lo, ns), min(hi, ne)
                sizes.append((ze - zs, self.node_map.absent(nid, zs, ze)))
            total = sum(size - absent for size, absent in sizes)
            boot.printk("mm.node", f"On node {nid} totalpages: {total}", node=nid, pages=total)
            for j, (size, absent) in enumerate(sizes):
                self.init_zone(boot, allocator, nid, j, size, size - absent)

    def init_zone(
        self, boot: Boot, allocator: AllocatorFacade, nid: int, j: int, size: int, realsize: int
    ) -> None:
        """free_area_init_core() for zone ``j`` of node ``nid``."""
        name = ZONE_NAMES[j]
        memmap = (size * self.cfg.struct_page_size) >> PAGE_SHIFT
        if realsize >= memmap:
            realsize -= memmap
            boot.printk("mm.zone", f"  {name} zone: {memmap} pages used for memmap")
        else:
            boot.printk("mm.zone", f"  {name} zone: {memmap} pages exceeds realsize {realsize}")
        if j == 0 and realsize > self.dma_reserve:
            realsize -= self.dma_reserve
            boot.printk("mm.zone", f"  {name} zone: {self.dma_reserve} pages reserved")
        self.nr_kernel_pages += realsize
        self.nr_all_pages += realsize
        self.zone_present.append((nid, j, realsize))
        if realsize:
            boot.printk(
                "mm.zone",
                f"  {name} zone: {realsize} pages, LIFO batch:{mm.zone_batchsize(realsize)}",
                node=nid,
                zone=name,
                pages=realsize,
            )
        if size:
            entries = mm.wait_table_entries(size)
            self._node_alloc(
                allocator,
                nid,
                entries * WAIT_QUEUE_HEAD_SIZE,
                self.cfg.smp_cache_bytes,
                "zone_wait_table_init",
                f"{name} wait table node {nid}",
            )

    # ---------------------------------------------------------------------------------------
    # the rest of setup_arch(), start_kernel() up to mem_init()

    def allocate(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """paging_init(), map_vsyscall(), acpi_boot_init(), ioapic_init_mappings(),
        e820_reserve_resources(), e820_setup_gap(); then start_kernel():
        setup_command_line(), setup_per_cpu_areas(), build_all_zonelists(), pidhash_init(),
        con_init()."""
        with early_bug():  # everything before trap_init()
            self.setup_arch_allocs(boot, allocator)
        self.pidhash(boot, allocator)
        cfg, cache = self.cfg, self.cfg.smp_cache_bytes
        if cfg.vga_cols:  # con_init(): MIN_NR_CONSOLES (1) vc_data and its screen buffer
            self.alloc_bootmem(
                allocator, VC_DATA_SIZE, cache, DMA_GOAL, "__alloc_bootmem", "con_init", "vc_data"
            )
            self.alloc_bootmem(
                allocator,
                cfg.vga_cols * cfg.vga_rows * 2,
                cache,
                DMA_GOAL,
                "__alloc_bootmem",
                "con_init",
                "screen buffer",
            )
        self.pci_iommu_alloc(boot, allocator)

    def setup_arch_allocs(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_arch() from paging_init() on, start_kernel() up to build_all_zonelists()."""
        cfg = self.cfg
        any_ = "__alloc_bootmem"
        self.sparse_init(boot, allocator)
        self.free_area_init_nodes(boot, allocator)
        # map_vsyscall() -> set_pte_phys() -> spp_getpage(): the fixmap's page-table page.
        self.alloc_bootmem(
            allocator, PAGE_SIZE, PAGE_SIZE, DMA_GOAL, any_, "spp_getpage", "vsyscall page table"
        )
        cache = cfg.smp_cache_bytes
        if cfg.hpet:  # acpi_parse_hpet(): the resource and its name
            self.alloc_bootmem(
                allocator,
                RESOURCE_SIZE + HPET_RESOURCE_NAME_SIZE,
                cache,
                DMA_GOAL,
                any_,
                "acpi_parse_hpet",
                "hpet resource",
            )
        if cfg.nr_ioapics:  # ioapic_setup_resources(): (name + resource) per I/O APIC
            self.alloc_bootmem(
                allocator,
                (IOAPIC_RESOURCE_NAME_SIZE + RESOURCE_SIZE) * cfg.nr_ioapics,
                cache,
                DMA_GOAL,
                any_,
                "ioapic_init_mappings",
                "ioapic resources",
            )
        for i, _ in enumerate(boot.e820):  # e820_reserve_resources(): alloc_bootmem_low()
            self.alloc_bootmem(
                allocator,
                RESOURCE_SIZE,
                cache,
                0,
                "__alloc_bootmem_low",
                "e820_reserve_resources",
                f"e820 resource {i}",
            )
        start, gap, size = e820.pci_gap_2624(boot.e820)
        boot.printk(
            "e820.pci_gap",
            f"Allocating PCI resources starting at {start:x} (gap: {gap:x}:{size:x})",
            start=start,
        )
        for name in ("saved_command_line", "static_command_line"):
            self.alloc_bootmem(
                allocator,
                cfg.command_line_size + 1,
                cache,
                DMA_GOAL,
                any_,
                "setup_command_line",
                name,
            )
        self.per_cpu_areas(boot, allocator)
        self.build_all_zonelists(boot)


__all__ = ["Mm2625", "SECTION_PAGES", "ZONE_NAMES"]
