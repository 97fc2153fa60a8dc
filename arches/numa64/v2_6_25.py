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

What 6.1 takes from here, as :class:`bootemu.archbase.BootSteps` steps: ``place_bitmaps``
(find_e820_area() above the early reservations, as setup_node_bootmem() placed its bootmap),
``free_ram`` (the node's active ranges, free_bootmem_with_active_regions()) and
``reserve_bitmaps`` (NODE_DATA and the bitmaps, reserve_bootmem_node()); and the e820,
``mem=``, end-of-RAM, early-reservation and zone routines of the layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.numa64.srat_2625 import Numa, Srat2625, pieces

from bootemu import e820
from bootemu.archbase import BootSteps
from bootemu.cmdline import split_cmdline
from bootemu.contract import ArchInfo
from bootemu.models import (
    PAGE_SIZE,
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
#: x86_64 page tables: a PMD maps 2 MiB, a PUD 1 GiB, a PGD entry 512 GiB.
PMD_SIZE, PUD_SIZE, PGDIR_SIZE = 2 << 20, 1 << 30, 512 << 30
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


class Numa64Base(Srat2625, BootSteps):
    """The first numa64 model of a 2008 kernel, built from hand arithmetic: the routines the
    ``6.1`` profile still inherits (bitmap placement, node-by-node frees, the layout), kept as
    they were so that 6.1 stays exact. The ``2.6.25`` profile itself is
    :class:`bootemu_arches.numa64.kernel_2625.Linux2625`, which replaces them with its own."""

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

    def arch_info(self) -> ArchInfo:
        """x86_64: 64-bit longs and phys_addr_t, CONFIG_NUMA; one block per node id (the
        bootmem2 RFCs' NR_MEMBLKS_PER_NODE, which widens when a node registers more); the
        generic x86_64 L1_CACHE_SHIFT of 6 (arch/x86/Kconfig.cpu) gives SMP_CACHE_BYTES 64."""
        return ArchInfo(bits_per_long=64, phys_addr_bits=64, numa=True, memblks_per_node=1,
                        smp_cache_bytes=64)

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
    # enable: BootSteps' steps as 6.1 takes them (2.6.25 has its own, Setup2625's)

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

    def place_bitmaps(self, boot: Boot, allocator: AllocatorFacade) -> dict[str, tuple[int, int]]:
        """Each bitmap the backend asks for by :meth:`place_bitmap` (find_e820_area())."""
        self.bitmap_reqs = allocator.bitmap_requests()
        placed = {}
        for r in self.bitmap_reqs:
            pfn = self.place_bitmap(boot, r)
            placed[r.key] = (pfn, pfn + r.pages)
        return placed

    def free_ram(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """free_bootmem_with_active_regions() -> free_bootmem_node() for each active range of
        each node (page_alloc.c, 2.6.25), so a bitmap only ever sees its own node's RAM. (The
        6.1 profile accepts no other ``kernel.free_ram``; 2.6.25's ``"generic"`` frees are
        :meth:`Setup2625.free_ram`'s.)"""
        for node in self.memory_nodes():
            lo = pfn_down(self.bootmem_span(node)[0])
            for b in self.lay.blocks:
                if b.node == node and max(b.start_pfn, lo) < b.end_pfn:
                    s = max(b.start_pfn, lo)
                    allocator.free(addr=pfn_phys(s), size=pfn_phys(b.end_pfn - s), node=node)

    def reserve_bitmaps(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_node_bootmem()'s reserve_bootmem_node() calls after the frees: NODE_DATA of
        each node (where :meth:`pgdat_owner` says it lies), then each bitmap on its node (a
        global or block bitmap on the node it lies on)."""
        for node, addr in sorted(self.pgdat.items()):
            allocator.reserve(addr=addr, size=self.cfg.pgdat_size,
                              node=self.pgdat_owner(node, addr), exclusive=False,
                              label=f"NODE_DATA({node})")
        self.reserve_backend_maps(allocator)

    def reserve_backend_maps(self, allocator: AllocatorFacade) -> None:
        """Each bitmap the backend asked for, on its node (a global or block bitmap on the
        node it lies on, :meth:`phys_to_nid`)."""
        for r in self.bitmap_reqs:
            addr = pfn_phys(self.bitmaps[r.key][0])
            node = r.node if r.node is not None else self.phys_to_nid(addr)
            allocator.reserve(addr=addr, size=r.pages * PAGE_SIZE, node=node, exclusive=False,
                              label=f"bootmem bitmap {r.key}")

    # ---------------------------------------------------------------------------------------
    # allocate

    def alloc_node(self, allocator: AllocatorFacade, node: int, size: int, align: int,
                   caller: str, label: str) -> int | None:
        """__alloc_bootmem_node(NODE_DATA(node), size, align, __pa(MAX_DMA_ADDRESS))."""
        return self.alloc_bootmem(allocator, size, align, DMA_GOAL, "__alloc_bootmem_node",
                                  caller, label, node=node)



__all__ = ["GiB", "Numa", "Numa64Base", "blocks_from", "pieces"]
