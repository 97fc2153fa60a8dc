"""setup_arch() of x86_64 2.6.25 up to paging_init(): early reservations, the direct mapping,
setup_node_bootmem() and early_res_to_bootmem().

Read from ``git show v2.6.25:<file>`` of the local kernel mirror: arch/x86/kernel/e820_64.c
(the ``early_res[]`` table, reserve_early(), bad_addr(), find_e820_area(),
early_res_to_bootmem(), e820_end_of_ram()), arch/x86/kernel/head64.c (x86_64_start_kernel(),
reserve_ebda()), arch/x86/mm/init_64.c (find_early_table_space(), init_memory_mapping(),
phys_pud_init(), reserve_bootmem_generic()), arch/x86/mm/numa_64.c (early_node_mem(),
setup_node_bootmem()), mm/page_alloc.c free_bootmem_with_active_regions(), mm/bootmem.c
bootmem_bootmap_pages() / get_mapsize(), arch/x86/kernel/acpi/sleep.c acpi_reserve_bootmem(),
arch/x86/kernel/mpparse_64.c smp_scan_config(). Mixed into
:class:`bootemu_arches.numa64.kernel_2625.Linux2625`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bootemu import e820
from bootemu.models import (
    PAGE_SIZE,
    AllocRequest,
    KernelPanic,
    merge_ranges,
    pfn_down,
    pfn_phys,
)

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu_arches.numa64 import Config
    from bootemu_arches.numa64.srat_2625 import NodeMap, Numa

    from bootemu.boot import Boot
    from bootemu.models import BitmapRequest, Layout
    from bootemu.plugins import AllocatorFacade

#: include/asm-x86/trampoline.h: SMP_TRAMPOLINE_BASE (two pages, CONFIG_SMP only).
SMP_TRAMPOLINE_BASE = 0x6000
#: e820_64.c: MAX_EARLY_RES.
MAX_EARLY_RES = 20
#: arch/x86/mm/numa_64.c: ZONE_ALIGN = 1 << (MAX_ORDER + PAGE_SHIFT), 8 MiB.
ZONE_ALIGN = 8 << 20
#: include/asm-x86/dma.h: MAX_DMA_PFN (16 MiB); __pa(MAX_DMA_ADDRESS) is the bootmem goal.
MAX_DMA_PFN = 4096
DMA_GOAL = 16 << 20
#: x86_64 page tables: a PMD entry maps 2 MiB, a PUD entry 1 GiB, a PGD entry 512 GiB.
PMD_SIZE, PUD_SIZE, PGDIR_SIZE = 2 << 20, 1 << 30, 512 << 30


def round_up(x: int, a: int) -> int:
    """round_up() for a power of two ``a``."""
    return -(-x // a) * a


def bootmap_pages(pages: int) -> int:
    """mm/bootmem.c bootmem_bootmap_pages(): whole pages of one bit per pfn."""
    return -(-((pages + 7) // 8) // PAGE_SIZE)


class Setup2625:
    """The routines of setup_arch() that reserve and place (needs the kernel class's
    ``cfg``, ``busy``, ``node_map``, ``numa``, ``pgdat``, ``memnode_nid()``)."""

    cfg: Config
    busy: list[tuple[int, int, str]]
    node_map: NodeMap
    numa: Numa
    pgdat: dict[int, int]
    online: list[int]
    dma_reserve: int
    end_pfn: int
    end_pfn_map: int
    plan: dict[int, tuple[int | None, int | None]]
    bitmap_reqs: list[BitmapRequest]
    bootmap_at: dict[int, tuple[int, int]]
    backend_maps: list[tuple[int, int, str]]
    if TYPE_CHECKING:  # provided by the kernel class
        lay: Layout

        def memnode_nid(self, addr: int) -> int | None: ...

        def place_bitmap(self, boot: Boot, req: BitmapRequest) -> int: ...

        def reserve_backend_maps(self, allocator: AllocatorFacade) -> None: ...

    # ---------------------------------------------------------------------------------------
    # early_res[] and find_e820_area()

    def reserve_early(self, start: int, end: int, name: str) -> None:
        """e820_64.c reserve_early(): append, panicking on an overlap or a full table."""
        for s, e, other in self.busy:
            if end > s and start < e:
                raise KernelPanic(
                    f"Overlapping early reservations {start:x}-{end - 1:x} {name}"
                    f" to {s:x}-{e - 1:x} {other}"
                )
        if len(self.busy) >= MAX_EARLY_RES:
            raise KernelPanic("Too many early reservations")
        self.busy.append((start, end, name))

    def find_area(self, boot: Boot, start: int, end: int, size: int, align: int) -> int | None:
        """e820_64.c find_e820_area(), 2.6.25: per RAM entry in table order, from the entry's
        start or ``start``, step past early reservations (bad_addr()), *then* align.

        2.6.25 quirks: bad_addr() counts an area that merely touches a reservation's start
        (``last >= r->start``) as overlapping, and the alignment after bad_addr() is not
        checked against the reservations again.
        """
        busy = self.busy + self.backend_maps
        for ent in boot.e820:
            if ent.type != 1:
                continue
            addr = max(ent.start, start)
            if addr > ent.end:
                continue
            while addr + size <= ent.end:
                hit = next((e for s, e, _ in busy if addr + size >= s and addr < e), None)
                if hit is None:
                    break
                addr = hit
            addr = round_up(addr, max(align, 1))
            if addr + size > ent.end or addr + size > end:
                continue
            return addr
        return None

    def early_reservations(self, boot: Boot) -> None:
        """The static early_res[] entries (BIOS data page, SMP trampoline) and head64.c's
        x86_64_start_kernel(): kernel image, initrd, reserve_ebda()."""
        cfg = self.cfg
        self.busy = [(0, PAGE_SIZE, "BIOS data page")]
        if cfg.smp:
            self.busy.append(
                (SMP_TRAMPOLINE_BASE, SMP_TRAMPOLINE_BASE + 2 * PAGE_SIZE, "SMP_TRAMPOLINE")
            )
        self.reserve_early(cfg.image_start, cfg.image_start + cfg.image_size, "TEXT DATA BSS")
        if cfg.initrd_size:
            self.reserve_early(cfg.initrd_start, cfg.initrd_start + cfg.initrd_size, "RAMDISK")
        if cfg.ebda:  # reserve_ebda(): the EBDA's size word (KiB, 0 = 1) plus its page offset
            size = round_up(max(cfg.ebda_kb, 1) * 1024 + cfg.ebda % PAGE_SIZE, PAGE_SIZE)
            self.reserve_early(cfg.ebda, cfg.ebda + min(size, 64 << 10), "EBDA")

    def init_memory_mapping(self, boot: Boot, end: int) -> None:
        """init_64.c init_memory_mapping(0, end_pfn_map << PAGE_SHIFT), before bootmem.

        find_early_table_space() sizes the worst case (a PUD entry per GiB, a PMD entry per
        2 MiB) and prints it; the tables really built are a PUD page per 512 GiB and, per GiB
        that any e820 entry touches (phys_pud_init()'s e820_any_mapped()), one PMD page of
        2 MiB pages. They are taken page by page from the table start and reserved early as
        "PGTABLE".
        """
        puds, pmds = -(-end // PUD_SIZE), -(-end // PMD_SIZE)
        tables = round_up(puds * 8, PAGE_SIZE) + round_up(pmds * 8, PAGE_SIZE)
        start = self.find_area(boot, 0x8000, end, tables, PAGE_SIZE)
        if start is None:
            raise KernelPanic("Cannot find space for the kernel page tables")
        boot.printk(
            "mm.direct_map",
            f"kernel direct mapping tables up to {end:x} @ {start:x}-{start + tables:x}",
            end=end,
            start=start,
            size=tables,
        )
        gibs = merge_ranges(
            (e.start // PUD_SIZE, min(-(-e.end // PUD_SIZE), -(-end // PUD_SIZE)))
            for e in boot.e820
            if e.start < end
        )
        used = -(-end // PGDIR_SIZE) + sum(e - s for s, e in gibs)
        self.reserve_early(start, start + used * PAGE_SIZE, "PGTABLE")

    # ---------------------------------------------------------------------------------------
    # setup_node_bootmem()

    def bootmem_span(self, node: int) -> tuple[int, int]:
        """setup_node_bootmem(): the node's range with its start rounded up to ZONE_ALIGN."""
        start, end = self.numa.spans[node]
        return round_up(start, ZONE_ALIGN), end

    def register_blocks(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """What each node's bootmem covers. Classic bootmem (the kernel's own) gets the
        node's range itself, holes included, as init_bootmem_node() does; the other backends
        get the node's RAM blocks inside that range."""
        for node in sorted(self.numa.spans):
            start, end = self.bootmem_span(node)
            if boot.allocator_name == "bootmem":
                if start < end:
                    allocator.register_block(
                        node=node, start_pfn=pfn_down(start), end_pfn=pfn_down(end)
                    )
                continue
            for b in self.lay.blocks:
                lo, hi = max(b.start_pfn, pfn_down(start)), min(b.end_pfn, pfn_down(end))
                if b.node == node and lo < hi:
                    allocator.register_block(node=node, start_pfn=lo, end_pfn=hi)

    def early_node_mem(
        self,
        boot: Boot,
        allocator: AllocatorFacade | None,
        node: int,
        start: int,
        end: int,
        size: int,
        align: int,
    ) -> int | None:
        """numa_64.c early_node_mem(): find_e820_area() in the range, else (once bootmem
        runs) __alloc_bootmem_nopanic(size, align, 16 MiB), else "Cannot find"."""
        addr = self.find_area(boot, start, end, size, align)
        if addr is not None or allocator is None:
            return addr
        addr = allocator.alloc(
            request=AllocRequest(
                size=size,
                align=align,
                goal=DMA_GOAL,
                wrapper="__alloc_bootmem_nopanic",
                caller="early_node_mem",
                label=f"node {node} early memory",
            )
        )
        if addr is None:
            boot.printk("numa.node.nomem", f"Cannot find {size} bytes in node {node}", node=node)
        return addr

    # setup_node_bootmem() for every possible node, in node order, then once more for those it
    # missed. Each: NODE_DATA and the bootmap placed by early_node_mem(), init_bootmem_node(),
    # free_bootmem_with_active_regions(), reserve_bootmem_node() of NODE_DATA and of the
    # bootmap's whole pages. The backend's bitmaps are all created first (BootSteps.enable():
    # place_bitmaps(), one allocator.enable()); the kernel's order of prints, frees and
    # reserves is kept (free_ram()). A node whose NODE_DATA or bootmap must come from bootmem
    # (no e820 room in its range) gets it when its turn comes, after the earlier nodes' frees,
    # as in the kernel.

    def place_bitmaps(self, boot: Boot, allocator: AllocatorFacade) -> dict[str, tuple[int, int]]:
        """Where each node's NODE_DATA and bootmap will go (find_e820_area() in the node's
        span, as early_node_mem() looks first), and so where classic bootmem's node bitmaps
        are; any other backend's maps are placed clear of those and of the kernel's areas."""
        cfg = self.cfg
        nodes = sorted(self.numa.spans)
        plan: dict[int, tuple[int | None, int | None]] = {}
        for node in nodes:
            start, end = self.bootmem_span(node)
            pgdat = self.find_area(boot, start, end, cfg.pgdat_size, cfg.smp_cache_bytes)
            bmap = (
                None
                if pgdat is None
                else self.find_area(
                    boot,
                    round_up(pgdat + cfg.pgdat_size, PAGE_SIZE),
                    end,
                    bootmap_pages(pfn_down(end) - pfn_down(start)) * PAGE_SIZE,
                    PAGE_SIZE,
                )
            )
            plan[node] = (pgdat, bmap)
        self.plan = plan
        self.bitmap_reqs = allocator.bitmap_requests()
        placed: dict[str, tuple[int, int]] = {}
        kernel_areas = len(self.busy)
        if boot.allocator_name != "bootmem":  # other backends' maps go around the kernel's
            pages = {
                n: bootmap_pages(pfn_down(e) - pfn_down(s))
                for n, (s, e) in ((n, self.bootmem_span(n)) for n in nodes)
            }
            for node, (pgdat, bmap) in plan.items():
                if pgdat is not None:
                    self.busy.append((pgdat, pgdat + cfg.pgdat_size, "planned NODE_DATA"))
                if bmap is not None:
                    self.busy.append((bmap, bmap + pages[node] * PAGE_SIZE, "planned bootmap"))
        for r in self.bitmap_reqs:
            node = int(r.key[4:]) if r.key.startswith("node") else None
            if node in plan and boot.allocator_name == "bootmem":
                pfn = pfn_down(plan[node][1] or pfn_phys(r.start_pfn))
            else:
                pfn = self.place_bitmap(boot, r)
            placed[r.key] = (pfn, pfn + r.pages)
        # Not early_res[] entries of the kernel (early_res_to_bootmem() must not print them);
        # the backend's own maps stay out of find_e820_area()'s way.
        self.backend_maps = [b for b in self.busy[kernel_areas:] if b[2].startswith("bootmap ")]
        del self.busy[kernel_areas:]
        return placed

    def free_ram(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_node_bootmem() node by node (its prints, its frees, its NODE_DATA and bootmap
        reservations), then "Try again in case setup_node_bootmem missed one"; with
        ``kernel.free_ram = "generic"`` the frees come after, all at once."""
        nodes = sorted(self.numa.spans)
        self.online, self.bootmap_at = [], {}
        for node in nodes:
            self.setup_node_bootmem(boot, allocator, node, self.plan[node])
        for again in nodes:
            if again not in self.online:
                self.setup_node_bootmem(boot, allocator, again, None)
        if self.cfg.free_ram == "generic":
            self.free_generic(boot, allocator)

    def reserve_bitmaps(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """A backend other than classic bootmem: its own maps, on the node they lie on
        (classic bootmem's are the kernel's bootmaps, reserved by setup_node_bootmem())."""
        if boot.allocator_name != "bootmem":
            self.reserve_backend_maps(allocator)

    def setup_node_bootmem(
        self,
        boot: Boot,
        allocator: AllocatorFacade,
        node: int,
        planned: tuple[int | None, int | None] | None,
    ) -> None:
        """numa_64.c setup_node_bootmem() of one node (see :meth:`enable`)."""
        cfg = self.cfg
        start, end = self.bootmem_span(node)
        boot.printk(
            "numa.node.bootmem",
            f"Bootmem setup node {node} {start:016x}-{end:016x}",
            node=node,
            start=start,
            end=end,
        )
        pgdat = planned[0] if planned else None
        if pgdat is None:
            pgdat = self.early_node_mem(
                boot, allocator, node, start, end, cfg.pgdat_size, cfg.smp_cache_bytes
            )
            if pgdat is None:
                return
        boot.printk(
            "numa.node_data",
            f"  NODE_DATA [{pgdat:016x} - {pgdat + cfg.pgdat_size - 1:016x}]",
            node=node,
            start=pgdat,
        )
        pages = bootmap_pages(pfn_down(end) - pfn_down(start))
        bmap = planned[1] if planned else None
        if bmap is None:
            bmap = self.early_node_mem(
                boot,
                allocator,
                node,
                round_up(pgdat + cfg.pgdat_size, PAGE_SIZE),
                end,
                pages * PAGE_SIZE,
                PAGE_SIZE,
            )
            if bmap is None:
                if not start <= pgdat < end:
                    allocator.free(addr=pgdat, size=cfg.pgdat_size, node=None)
                return
        self.pgdat[node] = pgdat
        # init_bootmem_node() returns get_mapsize(): the bits rounded up to a long.
        mapsize = round_up((pfn_down(end) - pfn_down(start) + 7) // 8, 8)
        boot.printk(
            "numa.node.bootmap",
            f"  bootmap [{bmap:016x} -  {bmap + mapsize - 1:016x}] pages {pages:x}",
            node=node,
            start=bmap,
            pages=pages,
        )
        self.online.append(node)
        self.bootmap_at[node] = (bmap, pages * PAGE_SIZE)
        if cfg.free_ram == "generic":
            return  # RAM is freed, and these reserved, once every node has its bitmap
        for s, e in self.node_map.ranges(node):
            # 2.6.25 quirk: setup_node_bootmem() passes the node's end *address* as the
            # max_low_pfn of free_bootmem_with_active_regions(), so no range is ever cut.
            if s < end:
                allocator.free(addr=pfn_phys(s), size=pfn_phys(min(e, end) - s), node=node)
        allocator.reserve(
            addr=pgdat, size=cfg.pgdat_size, node=node, exclusive=False, label=f"NODE_DATA({node})"
        )
        allocator.reserve(
            addr=bmap,
            size=pages * PAGE_SIZE,
            node=node,
            exclusive=False,
            label=f"bootmem bitmap node{node}",
        )

    def free_generic(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """``kernel.free_ram = "generic"`` (not what x86_64 does; the seed's scenario): once
        every node's bitmap exists, free_bootmem() of each e820 RAM entry, as x86_32's
        register_bootmem_low_pages() does for its one node; 2.6.25's free_bootmem() clears
        the range in every node whose span holds it. Then NODE_DATA and the bootmaps are
        reserved on their nodes."""
        for s, e in e820.ram_pfn_ranges(boot.e820, limit_pfn=self.end_pfn):
            allocator.free(addr=pfn_phys(s), size=pfn_phys(e - s), node=None)
        for node in self.online:
            allocator.reserve(
                addr=self.pgdat[node],
                size=self.cfg.pgdat_size,
                node=node,
                exclusive=False,
                label=f"NODE_DATA({node})",
            )
            bmap, size = self.bootmap_at[node]
            allocator.reserve(
                addr=bmap,
                size=size,
                node=node,
                exclusive=False,
                label=f"bootmem bitmap node{node}",
            )

    # ---------------------------------------------------------------------------------------
    # reserve: early_res_to_bootmem() and the reservations that follow it in setup_arch()

    def reserve_bootmem_generic(
        self, boot: Boot, allocator: AllocatorFacade, phys: int, size: int, name: str
    ) -> None:
        """init_64.c reserve_bootmem_generic(): reserve_bootmem_node() on phys_to_nid(phys);
        what lies below 16 MiB also counts in dma_reserve (whole pages, truncated)."""
        if pfn_down(phys) >= self.end_pfn:
            if pfn_down(phys) >= self.end_pfn_map:
                boot.printk(
                    "mm.reserve.illegal",
                    f"reserve_bootmem: illegal reserve {phys:x} {size}",
                    start=phys,
                )
            return
        node = self.memnode_nid(phys)
        boot.trace("numa.reserve_early", name=name, start=phys, end=phys + size, node=node)
        if node is None:  # NUMA_NO_NODE: memnodemap has no node there; nothing is reserved
            pass
        elif node not in self.online:
            # NODE_DATA(nid) is NULL: reserve_bootmem_node() reads pgdat->bdata at address 0
            # before trap_init(), a page fault the early IDT handler reports (vector 0e).
            raise KernelPanic(
                f"reserve_bootmem_generic({phys:#x}): NODE_DATA({node}) is NULL",
                printk=[
                    "PANIC: early exception 0e (page fault: NULL NODE_DATA in "
                    "reserve_bootmem_generic())"
                ],
            )
        elif boot.allocator_name == "bootmem":
            allocator.reserve(addr=phys, size=size, node=node, exclusive=False, label=name)
        else:  # the other backends know RAM blocks, not spans: reserve the RAM pieces only
            self.reserve_on_nodes(boot, allocator, phys, phys + size, name)
        if phys + size <= MAX_DMA_PFN * PAGE_SIZE:
            self.dma_reserve += size // PAGE_SIZE

    def reserve_kept(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_arch() after numa_initmem_init(): early_res_to_bootmem() (each early_res[]
        entry printed and reserved), acpi_reserve_bootmem() (CONFIG_ACPI_SLEEP: two pages of
        low memory for the wakeup code), find_smp_config() (the MP floating pointer and the
        MP table it points to, a page each; SeaBIOS puts the table 16 bytes after the
        pointer), the initrd."""
        for i, (start, end, name) in enumerate(self.busy):
            boot.printk(
                "numa.early_res",
                f"early res: {i} [{start:x}-{end - 1:x}] {name}",
                index=i,
                start=start,
                end=end,
            )
            self.reserve_bootmem_generic(boot, allocator, start, end - start, name)
        if self.cfg.acpi_sleep:
            allocator.alloc(
                request=AllocRequest(
                    size=2 * PAGE_SIZE,
                    align=self.cfg.smp_cache_bytes,
                    goal=0,
                    wrapper="__alloc_bootmem_low",
                    caller="acpi_reserve_bootmem",
                    label="ACPI wakeup code",
                )
            )
        if self.cfg.mp_table:
            self.reserve_bootmem_generic(
                boot, allocator, self.cfg.mp_table, PAGE_SIZE, "MP floating pointer"
            )
            self.reserve_bootmem_generic(
                boot, allocator, self.cfg.mp_table + 16, PAGE_SIZE, "MP configuration table"
            )
        cfg = self.cfg
        if cfg.initrd_size and cfg.initrd_start + cfg.initrd_size <= pfn_phys(self.end_pfn):
            self.reserve_bootmem_generic(
                boot, allocator, cfg.initrd_start, cfg.initrd_size, "initrd"
            )


__all__ = [
    "DMA_GOAL",
    "MAX_DMA_PFN",
    "SMP_TRAMPOLINE_BASE",
    "Setup2625",
    "ZONE_ALIGN",
    "bootmap_pages",
    "round_up",
]
