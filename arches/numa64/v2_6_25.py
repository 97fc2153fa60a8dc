"""numa64's first model of a spring-2008 x86_64 kernel, from hand arithmetic: now the base
(:class:`Numa64Base`) whose bitmap placement, node-by-node frees and layout the ``6.1`` profile
inherits. The ``2.6.25`` profile itself, held to real 2.6.25 boots, is
:mod:`bootemu_arches.numa64.kernel_2625`.

Sources (torvalds/linux history and mailing-list patches, read with the look-up tools):
arch/x86/mm/numa_64.c of 2.6.24/25 (code-index id 125227935: early_node_mem(),
setup_node_bootmem(), numa_free_all_bootmem()); mm/page_alloc.c
free_bootmem_with_active_regions(), free_area_init_nodes(); mm/sparse.c and
mm/sparse-vmemmap.c (sparse_init(), sparse_index_init(), vmemmap_alloc_block());
arch/x86/mm/init_64.c vmemmap_populate(), find_early_table_space(),
reserve_bootmem_generic(), mem_init(); kernel/pid.c pidhash_init();
arch/x86/kernel/setup_64.c setup_per_cpu_areas(); reference notes x86_32-early-memory.md §6.2
and boot-allocators.md §1.8. NUMA discovery (the SRAT) is in :mod:`bootemu_arches.numa64.srat_2625`.

Phases map onto the kernel like this: ``layout`` = setup_memory_region() + end of RAM +
early reservations + SRAT parsing (acpi_numa_init(), acpi_scan_nodes()); ``register`` and
``enable`` = setup_node_bootmem() for every node (pgdat, bitmap, free the node's RAM,
reserve pgdat and bitmap); ``reserve`` = early_res_to_bootmem(); ``allocate`` = paging_init()
(sparse_init(), free_area_init_nodes()), setup_per_cpu_areas(), pidhash_init(); ``handoff``
= numa_free_all_bootmem(). Allocations whose address the machine decides are made with the
AllocRequest wrappers the 2.6.25 macros expand to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.numa64.srat_2625 import Numa, Srat2625, pieces

from bootemu import e820
from bootemu.cmdline import split_cmdline
from bootemu.models import (
    PAGE_SIZE,
    AllocRequest,
    BitmapRequest,
    Block,
    BootemuError,
    E820Entry,
    KernelPanic,
    Layout,
    Machine,
    Zone,
    merge_ranges,
    pfn_down,
    pfn_phys,
    pfn_up,
)
from bootemu.units import memparse_prefix

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu_arches.numa64 import Config

    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

GiB = 1 << 30

#: include/asm-x86/dma.h: MAX_DMA_PFN (16 MiB) and MAX_DMA32_PFN (4 GiB); ZONE_NORMAL above.
MAX_DMA_PFN = 4096
MAX_DMA32_PFN = 1 << 20
#: __pa(MAX_DMA_ADDRESS): the goal of alloc_bootmem*() (include/linux/bootmem.h).
DMA_GOAL = 16 << 20
#: arch/x86/mm/numa_64.c: ZONE_ALIGN = 1 << (MAX_ORDER + PAGE_SHIFT), 8 MiB.
ZONE_ALIGN = 8 << 20
#: include/asm-x86/sparsemem.h (x86_64): SECTION_SIZE_BITS 27, 128 MiB sections.
SECTION_PAGES = 1 << 15
#: mm/sparse.c, SPARSEMEM_EXTREME: SECTIONS_PER_ROOT = PAGE_SIZE / sizeof(struct mem_section).
SECTIONS_PER_ROOT = PAGE_SIZE // 16
#: mm/sparse.c usemap_size(): 64 pageblocks (order 9) * NR_PAGEBLOCK_BITS (3) bits, in longs.
USEMAP_SIZE = 24
#: x86_64 page tables: a PMD maps 2 MiB, a PUD 1 GiB, a PGD entry 512 GiB.
PMD_SIZE, PUD_SIZE, PGDIR_SIZE = 2 << 20, 1 << 30, 512 << 30
#: include/asm-x86/pgtable_64.h: VMEMMAP_START, where the virtual mem_map begins.
VMEMMAP_START = 0xFFFFE20000000000
#: include/asm-x86/pgtable_64.h, 2.6.25: MAXMEM, the most physical memory the direct mapping
#: covers (64 TiB - 1); e820_end_of_ram() caps end_pfn_map, and so end_pfn, at MAXMEM >> 12.
MAXMEM = 0x3FFFFFFFFFFF
#: include/asm-x86/trampoline.h: SMP_TRAMPOLINE_BASE (two pages).
SMP_TRAMPOLINE_BASE = 0x6000
#: SMP_CACHE_BYTES of a generic x86_64 build (CONFIG_X86_L1_CACHE_SHIFT 7).
SMP_CACHE_BYTES = 128

ZONE_NAMES = ("DMA", "DMA32", "Normal")


def blocks_from(ram: list[tuple[int, int]], memblks: list[tuple[int, int, int]]) -> list[Block]:
    """Usable RAM (pfn ranges) intersected with each affinity range, merged per node."""
    per_node: dict[int, list[tuple[int, int]]] = {}
    for node, start, end in memblks:
        lo, hi = pfn_up(start), pfn_down(end)
        for s, e in ram:
            if max(s, lo) < min(e, hi):
                per_node.setdefault(node, []).append((max(s, lo), min(e, hi)))
    return sorted(Block(s, e, n) for n, rs in per_node.items() for s, e in merge_ranges(rs))


class Numa64Base(Srat2625):
    """The first numa64 model of a 2008 kernel, built from hand arithmetic: the routines the
    ``6.1`` profile still inherits (bitmap placement, node-by-node frees, the layout), kept as
    they were so that 6.1 stays exact. The ``2.6.25`` profile itself is
    :class:`bootemu_arches.numa64.kernel_2625.Linux2625`, which overrides every phase."""

    PROFILE = "2.6.25"
    #: Defaults of a 2008 x86_64 distribution build. [I] marks an assumption, not a fact read
    #: from a 2008 log: no real 2.6.25 x86_64 boot is in real-boots/.
    DEFAULTS: dict[str, Any] = {
        "free_ram": "node",
        "srat_check": "memblks",
        "image_start": 0x200000,  # CONFIG_PHYSICAL_START of x86_64 (2 MiB)
        "image_size": 0x800000,  # _text to _end [I]
        "initrd_start": 0,
        "initrd_size": 0,
        "pgdat_size": 0x5000,  # roundup(sizeof(pg_data_t)) with NR_CPUS 255, 4 zones [I]
        "percpu_size": 0x8000,  # PERCPU_ENOUGH_ROOM: static per-cpu data + 8 KiB [I]
        "struct_page_size": 56,  # flags, _count, _mapcount, private, mapping, index, lru
        "text_size": 2 << 20,  # the Memory: line's code / data / init [I]
        "data_size": 1 << 20,
        "init_size": 512 << 10,
        "mp_table": 0xF5BA0,  # the firmware's MP floating pointer; only 6.1 prints it
        "deferred_struct_page_init": False,  # CONFIG_DEFERRED_STRUCT_PAGE_INIT: since 4.2
    }

    def __init__(self, machine: Machine, cfg: Config) -> None:
        self.machine = machine
        self.cfg = cfg
        self.numa_off = False
        self.srat_off = False  # numa=noacpi
        self.end_user_pfn: int | None = None  # mem=
        self.busy: list[tuple[int, int, str]] = []  # early reservations, bytes
        self.numa = Numa([], {}, True)
        self.layout_: Layout | None = None
        self.pgdat: dict[int, int] = {}  # node -> physical address of NODE_DATA
        self.placements: dict[str, int] = {}  # bitmap key -> first pfn

    # ---------------------------------------------------------------------------------------
    # helpers

    @property
    def lay(self) -> Layout:
        assert self.layout_ is not None, "layout phase has not run"
        return self.layout_

    def memory_nodes(self) -> list[int]:
        """Online nodes with memory, ascending (for_each_online_node())."""
        return sorted({b.node for b in self.lay.blocks})

    def find_area(self, boot: Boot, start: int, end: int, size: int, align: int) -> int | None:
        """find_e820_area() avoiding the early reservations (bad_addr()), lowest fit."""
        busy = [(s, e) for s, e, _ in self.busy]
        return e820.find_area(boot.e820, start, end, size, align, busy)

    def print_e820(self, boot: Boot, title: str, who: str, table: list[E820Entry]) -> None:
        boot.printk("e820.table", title, who=who)
        for ent, line in zip(table, e820.format_table(who, table, profile=self.PROFILE),
                             strict=True):
            boot.printk("e820.entry", line, start=ent.start, end=ent.end, type=ent.type)

    def cpu_nodes(self) -> tuple[int, ...]:
        """The node of each CPU; a faked node takes every CPU (numa_set_node(i, 0))."""
        if self.numa.faked:
            return (0,) * len(self.cfg.cpu_nodes)
        return self.cfg.cpu_nodes

    def pgdat_owner(self, node: int, addr: int) -> int | None:
        """setup_node_bootmem() reserves NODE_DATA in its own node's bootmem."""
        return node

    def phys_to_nid(self, addr: int) -> int | None:
        """phys_to_nid(): the node ``addr`` resides on (memnodemap), None outside every node."""
        return self.lay.node_of(pfn_down(addr))

    # ---------------------------------------------------------------------------------------
    # firmware, cmdline

    def firmware(self, boot: Boot) -> None:
        """setup_memory_region(): sanitize the BIOS map, print it."""
        table = e820.sanitize(self.machine.e820, profile=self.PROFILE) or list(self.machine.e820)
        boot.e820 = table
        self.print_e820(boot, "BIOS-provided physical RAM map:", "BIOS-e820", table)

    def cmdline(self, boot: Boot) -> None:
        """The early parameters numa64 knows: ``mem=`` and ``numa=``."""
        for param, value in split_cmdline(self.machine.kernel.cmdline, profile=self.PROFILE):
            if param == "mem" and value:
                self.parse_mem(boot, value)
            elif param == "numa" and value is not None:
                if value.startswith("off"):
                    self.numa_off = True
                elif value.startswith("noacpi"):
                    self.srat_off = True
                elif value.startswith("fake="):
                    self.numa_fake(value[5:])
            elif param == "memmap":
                raise BootemuError(f"{self.machine.source}: kernel.cmdline: memmap= is not "
                                   "modelled by numa64")

    def numa_fake(self, spec: str) -> None:
        """``numa=fake=``: NUMA emulation of 2008 (numa_64.c numa_emulation()) is not modelled;
        the 6.1 profile overrides this."""
        raise BootemuError(f"{self.machine.source}: kernel.cmdline: numa=fake= (NUMA "
                           f"emulation) is not modelled by numa64 profile {self.PROFILE}")

    def parse_mem(self, boot: Boot, value: str) -> None:
        """e820_64.c parse_memopt(), 2.6.25: ``end_user_pfn = memparse() >> PAGE_SHIFT``."""
        size, _ = memparse_prefix(value)
        self.end_user_pfn = size >> 12
        boot.trace("cmdline.mem", size=size)

    # ---------------------------------------------------------------------------------------
    # layout

    def layout(self, boot: Boot) -> Layout:
        """End of RAM, early reservations, NUMA discovery, blocks and zones."""
        max_pfn = self.end_of_ram(boot)
        ram = [(s, min(e, max_pfn)) for s, e in e820.ram_pfn_ranges(boot.e820) if s < max_pfn]
        self.early_reservations(boot, max_pfn)
        self.numa = self.numa_init(boot, ram, max_pfn)
        self.layout_ = self.make_layout(max_pfn, blocks_from(ram, self.numa.memblks))
        boot.facts.update(bits_per_long=64, numa="fake" if self.numa.faked else "srat",
                          nodes_with_memory=len(self.memory_nodes()))
        return self.layout_

    def end_of_ram(self, boot: Boot) -> int:
        """e820_64.c e820_end_of_ram(): the highest RAM pfn, capped by ``mem=`` (end_user_pfn)
        and end_pfn_map (the highest pfn of any e820 entry, itself capped at MAXMEM >> 12,
        printed) [R]. RAM above MAXMEM is silently left out, as the kernel leaves it."""
        end_pfn = e820.find_max_pfn_2625(boot.e820)
        end_pfn_map = min(max([end_pfn, *(e.end >> 12 for e in boot.e820)]), MAXMEM >> 12)
        end_pfn = min(end_pfn, end_pfn_map)
        if self.end_user_pfn is not None:
            end_pfn = min(end_pfn, self.end_user_pfn)
        boot.printk("e820.end_pfn_map", f"end_pfn_map = {end_pfn_map}", end_pfn_map=end_pfn_map)
        boot.facts["end_pfn_map"] = end_pfn_map
        return end_pfn

    def early_reservations(self, boot: Boot, max_pfn: int) -> None:
        """reserve_early() entries of head64.c / setup_64.c, the areas find_e820_area() avoids
        and early_res_to_bootmem() later reserves (page 0, trampoline, kernel, initrd, the
        direct-mapping page tables of find_early_table_space())."""
        cfg = self.cfg
        self.busy = [(0, PAGE_SIZE, "BIOS data page"),
                     (SMP_TRAMPOLINE_BASE, SMP_TRAMPOLINE_BASE + 2 * PAGE_SIZE, "SMP TRAMPOLINE"),
                     (cfg.image_start, cfg.image_start + cfg.image_size, "TEXT DATA BSS")]
        if cfg.initrd_size:
            self.busy.append((cfg.initrd_start, cfg.initrd_start + cfg.initrd_size, "RAMDISK"))
        # init_64.c find_early_table_space(): one PUD entry per GiB, one PMD entry per 2 MiB
        # (2 MiB pages), 8 bytes each, both rounded up to pages, found from 0x8000 up.
        end = pfn_phys(max_pfn)
        puds, pmds = -(-end // PUD_SIZE), -(-end // PMD_SIZE)
        tables = -(-puds * 8 // PAGE_SIZE) * PAGE_SIZE + -(-pmds * 8 // PAGE_SIZE) * PAGE_SIZE
        start = self.find_area(boot, 0x8000, end, tables, PAGE_SIZE)
        if start is None:
            raise KernelPanic("Cannot find space for the kernel page tables")
        self.busy.append((start, start + tables, "PGTABLE"))
        boot.printk("mm.direct_map", f"kernel direct mapping tables up to {end:x} @ "
                    f"{start:x}-{start + tables:x}", end=end, start=start, size=tables)

    def make_layout(self, max_pfn: int, blocks: list[Block]) -> Layout:
        """Zones per node: the zone range cut to the node's span; present = its RAM there."""
        ram = list(merge_ranges((b.start_pfn, b.end_pfn) for b in blocks))
        lowest = ram[0][0] if ram else 0  # find_min_pfn_with_active_regions()
        limits = [("DMA", lowest, MAX_DMA_PFN), ("DMA32", MAX_DMA_PFN, MAX_DMA32_PFN),
                  ("Normal", MAX_DMA32_PFN, max_pfn)]
        zones = []
        for node in sorted({b.node for b in blocks}):
            mine = [(b.start_pfn, b.end_pfn) for b in blocks if b.node == node]
            for name, lo, hi in limits:
                s, e = max(lo, mine[0][0]), min(hi, mine[-1][1])
                if s < e:
                    zones.append(Zone(node, name, s, e, pieces(mine, s, e)))
        zone_limits = tuple((name, min(hi, max_pfn)) for name, _, hi in limits)
        return Layout(max_pfn=max_pfn, ram=tuple(ram), blocks=tuple(blocks), zones=tuple(zones),
                      zone_limits=zone_limits)

    # ---------------------------------------------------------------------------------------
    # register / enable: setup_node_bootmem() for every node

    def bootmem_span(self, node: int) -> tuple[int, int]:
        """setup_node_bootmem(): the node's hull with its start rounded up to ZONE_ALIGN."""
        start, end = self.numa.spans[node]
        return -(-start // ZONE_ALIGN) * ZONE_ALIGN, end

    def register(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_node_bootmem(), first half: print the span, place NODE_DATA on the node
        (early_node_mem() = find_e820_area() inside the span), register the node's blocks."""
        for node in self.memory_nodes():
            start, end = self.bootmem_span(node)
            boot.printk("numa.node.bootmem", f"Bootmem setup node {node} {start:016x}-{end:016x}",
                        node=node, start=start, end=end)
            addr = self.find_area(boot, start, end, self.cfg.pgdat_size, PAGE_SIZE)
            if addr is None:
                raise KernelPanic(f"Cannot find {self.cfg.pgdat_size} bytes in node {node}")
            self.pgdat[node] = addr
            self.busy.append((addr, addr + self.cfg.pgdat_size, f"NODE_DATA({node})"))
        for b in self.lay.blocks:
            # 2.6.25 quirk: RAM below the ZONE_ALIGN-rounded node start is outside the node's
            # bootmem and never freed (lost), though it is an active range.
            lo = max(b.start_pfn, pfn_down(self.bootmem_span(b.node)[0]))
            if lo < b.end_pfn:
                allocator.register_block(node=b.node, start_pfn=lo, end_pfn=b.end_pfn)

    def place_bitmap(self, boot: Boot, req: BitmapRequest) -> int:
        """setup_node_bootmem(): the bitmap goes in the lowest free RAM of the range it covers
        (find_e820_area(bootmap_start, end, ...)): after the node's pgdat for a node bitmap,
        inside its block for a block bitmap, after the kernel for a global one."""
        size = req.pages * PAGE_SIZE
        addr = self.find_area(boot, pfn_phys(req.start_pfn), pfn_phys(req.end_pfn), size,
                              PAGE_SIZE)
        if addr is None:  # early_node_mem() would fall back to an earlier node's bootmem
            addr = self.find_area(boot, 0, pfn_phys(self.lay.max_pfn), size, PAGE_SIZE)
        if addr is None:
            raise KernelPanic(f"Cannot find {size} bytes in node {req.node}")
        self.busy.append((addr, addr + size, f"bootmap {req.key}"))
        return pfn_down(addr)

    def enable(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_node_bootmem(), second half: bitmaps, init_bootmem_node(), free the RAM,
        reserve NODE_DATA and the bitmap (reserve_bootmem_node())."""
        requests = allocator.bitmap_requests()
        self.placements = {r.key: self.place_bitmap(boot, r) for r in requests}
        allocator.enable(placements=self.placements)
        self.free_ram(boot, allocator)
        for node, addr in sorted(self.pgdat.items()):
            allocator.reserve(addr=addr, size=self.cfg.pgdat_size,
                              node=self.pgdat_owner(node, addr), exclusive=False,
                              label=f"NODE_DATA({node})")
        for r in requests:
            addr = pfn_phys(self.placements[r.key])
            node = r.node if r.node is not None else self.phys_to_nid(addr)
            allocator.reserve(addr=addr, size=r.pages * PAGE_SIZE, node=node, exclusive=False,
                              label=f"bootmem bitmap {r.key}")

    def free_ram(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """Usable RAM into the bitmaps, the way ``kernel.free_ram`` says.

        ``"node"``: free_bootmem_with_active_regions() -> free_bootmem_node() for each active
        range of each node (page_alloc.c, 2.6.25), so a bitmap only ever sees its own node's
        RAM. ``"generic"``: free_bootmem() of every e820 RAM entry once all bitmaps exist
        (e820_32.c register_bootmem_low_pages() style); 2.6.25's free_bootmem() clears the
        range in every node whose span holds it.
        """
        if self.cfg.free_ram == "node":
            for node in self.memory_nodes():
                lo = pfn_down(self.bootmem_span(node)[0])
                for b in self.lay.blocks:
                    if b.node == node and max(b.start_pfn, lo) < b.end_pfn:
                        s = max(b.start_pfn, lo)
                        allocator.free(addr=pfn_phys(s), size=pfn_phys(b.end_pfn - s), node=node)
            return
        for s, e in e820.ram_pfn_ranges(boot.e820, limit_pfn=self.lay.max_pfn):
            allocator.free(addr=pfn_phys(s), size=pfn_phys(e - s), node=None)

    # ---------------------------------------------------------------------------------------
    # reserve

    def reserve(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """early_res_to_bootmem(): every early reservation, with reserve_bootmem_generic()
        (init_64.c: reserve_bootmem_node() on phys_to_nid(start))."""
        for start, end, name in self.busy:
            if name.startswith(("NODE_DATA", "bootmap")):
                continue  # setup_node_bootmem() reserved these already
            node = self.phys_to_nid(start)
            if node is None:  # not RAM the kernel manages (e.g. below a ZONE_ALIGN start)
                continue
            boot.trace("numa.reserve_early", name=name, start=start, end=end, node=node)
            allocator.reserve(addr=start, size=end - start, node=node, exclusive=False,
                              label=name)

    # ---------------------------------------------------------------------------------------
    # allocate

    def alloc_node(self, allocator: AllocatorFacade, node: int, size: int, align: int,
                   caller: str, label: str) -> int | None:
        """__alloc_bootmem_node(NODE_DATA(node), size, align, __pa(MAX_DMA_ADDRESS))."""
        return allocator.alloc(request=AllocRequest(
            size=size, align=align, goal=DMA_GOAL, wrapper="__alloc_bootmem_node", node=node,
            caller=caller, label=label))

    def sections(self) -> list[tuple[int, int]]:
        """sparse_memory_present_with_active_regions(): present sections and their node (the
        last active range touching a section names it: memory_present() overwrites)."""
        out: list[tuple[int, int]] = []
        for b in self.lay.blocks:  # sorted and disjoint: only a first section can repeat
            first = b.start_pfn // SECTION_PAGES
            while out and out[-1][0] >= first:
                out.pop()
            node = b.node
            out.extend((pnum, node) for pnum in range(first, (b.end_pfn - 1) // SECTION_PAGES + 1))
        return out

    def allocate(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """paging_init() (sparse_init(), free_area_init_nodes()), setup_per_cpu_areas(),
        pidhash_init(): the kernel's early bootmem allocations, node-local where the kernel
        asks for a node. (The big VFS hashes are not here: with hashdist, the 64-bit NUMA
        default, alloc_large_system_hash() takes them from vmalloc after the handoff.)"""
        self.sparse_init(boot, allocator)
        self.print_zones(boot)
        self.per_cpu_areas(boot, allocator)
        self.pidhash(boot, allocator)

    def sparse_init(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """sparse_index_init() roots, then per present section the vmemmap PMDs
        (vmemmap_populate(): a PUD page per 512 GiB and a PMD page per GiB of virtual map, a
        2 MiB block per PMD) and the usemap, each with __alloc_bootmem_node()."""
        sections, sp = self.sections(), self.cfg.struct_page_size
        roots: set[int] = set()
        for pnum, node in sections:
            if pnum // SECTIONS_PER_ROOT not in roots:
                roots.add(pnum // SECTIONS_PER_ROOT)
                self.alloc_node(allocator, node, PAGE_SIZE, SMP_CACHE_BYTES,
                                "sparse_index_alloc", f"mem_section root node {node}")
        pgds: set[int] = set()
        puds: set[int] = set()
        pmds: set[int] = set()
        for pnum, node in sections:
            lo = VMEMMAP_START + pnum * SECTION_PAGES * sp
            hi = lo + SECTION_PAGES * sp
            for pmd in range(lo // PMD_SIZE, (hi - 1) // PMD_SIZE + 1):
                addr = pmd * PMD_SIZE
                for table, idx, size in ((pgds, addr // PGDIR_SIZE, PAGE_SIZE),
                                         (puds, addr // PUD_SIZE, PAGE_SIZE),
                                         (pmds, pmd, PMD_SIZE)):
                    if idx in table:
                        continue
                    table.add(idx)
                    what = {PMD_SIZE: "vmemmap PMD"}.get(size, "vmemmap page table")
                    self.alloc_node(allocator, node, size, size, "vmemmap_alloc_block",
                                    f"{what} node {node}")
            self.alloc_node(allocator, node, USEMAP_SIZE, SMP_CACHE_BYTES,
                            "sparse_early_usemap_alloc", f"usemap node {node}")

    def print_zones(self, boot: Boot) -> None:
        """free_area_init_nodes(), 2.6.25: ``Zone PFN ranges:`` and the early_node_map."""
        lay = self.lay
        lines = ["Zone PFN ranges:"]
        lo = lay.ram[0][0] if lay.ram else 0
        for name, hi in lay.zone_limits:
            hi = max(hi, lo)
            lines.append(f"  {name:<8} {lo:8d} -> {hi:8d}")
            lo = hi
        lines += ["Movable zone start PFN for each node",
                  f"early_node_map[{len(lay.blocks)}] active PFN ranges"]
        lines += [f"  {b.node:3d}: {b.start_pfn:8d} -> {b.end_pfn:8d}" for b in lay.blocks]
        boot.printk("mm.zones", lines, zones=len(lay.zones), ranges=len(lay.blocks))

    def per_cpu_areas(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_64.c setup_per_cpu_areas(): alloc_bootmem_pages_node() on each CPU's node.

        2.6.25's acpi_scan_nodes() clears the node of a CPU whose node has no memory and
        numa_init_array() then deals such CPUs round robin to the online nodes [R].
        """
        size = self.cfg.percpu_size
        boot.printk("percpu.size", f"PERCPU: Allocating {size} bytes of per cpu data", size=size)
        online = self.memory_nodes()
        if not online:
            # No node holds a page of RAM (SRAT ranges that cover no whole page): the
            # node-local request falls back to every node, finds nothing and panics as
            # __alloc_bootmem() does (mm/bootmem.c, 2.6.25).
            raise KernelPanic("Out of memory", printk=(f"bootmem alloc of {size} bytes failed!",))
        rr = 0
        for cpu, node in enumerate(self.cpu_nodes()):
            if node not in online:
                node, rr = online[rr % len(online)], rr + 1
            allocator.alloc(request=AllocRequest(
                size=size, align=PAGE_SIZE, goal=DMA_GOAL, wrapper="__alloc_bootmem_node",
                node=node, caller="setup_per_cpu_areas", label=f"per-cpu area cpu {cpu}"))

    def pidhash(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """kernel/pid.c pidhash_init(): 2^shift hlist heads, shift = fls(MB * 4) in [4, 12],
        from alloc_bootmem() (any node)."""
        megabytes = self.lay.ram_pages >> 8
        shift = min(12, max(4, (megabytes * 4).bit_length()))
        size = (1 << shift) * 8
        boot.printk("pid.hash", f"PID hash table entries: {1 << shift} (order: {shift}, "
                    f"{size} bytes)", entries=1 << shift, size=size)
        allocator.alloc(request=AllocRequest(size=size, align=SMP_CACHE_BYTES, goal=DMA_GOAL,
                                             caller="pidhash_init", label="PID hash table"))

    # ---------------------------------------------------------------------------------------
    # handoff, summary

    def handoff(self, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel) -> int:
        """numa_64.c numa_free_all_bootmem(): free_all_bootmem_node() per online node."""
        return sum(allocator.handoff(sink=pagealloc, node=n) for n in self.memory_nodes())

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """init_64.c mem_init(): ``Memory: %luk/%luk available (...)``; reserved = end_pfn -
        totalram_pages - absent pages."""
        if pagealloc is None:
            return
        lay, cfg = self.lay, self.cfg
        free = pagealloc.received
        # totalram_pages counts what free_all_bootmem_node() released: a pfn handed off by two
        # nodes counts twice, so on overlapping spans "reserved" can go negative, as it would
        # in the kernel's own arithmetic.
        reserved = lay.ram_pages - pagealloc.offered
        line = (f"Memory: {free * 4}k/{lay.max_pfn * 4}k available ({cfg.text_size >> 10}k "
                f"kernel code, {reserved * 4}k reserved, {cfg.data_size >> 10}k data, "
                f"{cfg.init_size >> 10}k init)")
        boot.summary.append(line)
        boot.printk("mm.summary", line, free_pages=free, reserved_pages=reserved)


__all__ = ["GiB", "Numa", "Numa64Base", "blocks_from", "pieces"]
