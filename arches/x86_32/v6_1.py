"""x86_32 as Linux 6.1 (Debian 6.1.176 686-pae / 686) boots it: what changed since 2.6.25.

Held to the real boots in ``real-boots/`` (QEMU 7.2, SeaBIOS). Sources: arch/x86/kernel/
e820.c (e820__range_update/remove(), parse_memopt(), parse_memmap_one(),
e820__finish_early_params(), e820__end_of_ram_pfn(), e820__memblock_setup(),
e820__setup_pci_gap()), arch/x86/kernel/setup.c (trim_bios_range(), reserve_initrd(),
setup_arch() order), arch/x86/mm/init_32.c (parse_vmalloc(), lowmem_pfn_init(),
highmem_pfn_init(), initmem_init(), setup_bootmem_allocator(), mem_init()),
arch/x86/mm/highmem_32.c set_highmem_pages_init(), arch/x86/kernel/ebda.c
reserve_bios_regions(), mm/page_alloc.c (free_area_init(), calculate_node_totalpages(),
free_area_init_core(), calc_memmap_size(), usemap_size(), memmap_init(),
init_unavailable_range(), mem_init_print_info()), and reference x86_32-early-memory.md §1.4,
§3.4, §7.3.

The lowmem limit: MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE
(pgtable_32_areas.h), so VMALLOC_END = MAXMEM + 0xC0000000 + 128 MiB. The logs give
``low ram: 0 - 36ffe000`` (686-pae, 879 MB) and ``low ram: 0 - 36bfe000`` (686, 875 MB):
VMALLOC_END = 0xfeffe000 and 0xfebfe000, i.e. PKMAP_BASE - 2 pages with PKMAP_BASE at
0xff000000 (PAE, 2 MiB PMDs) and 0xfec00000 (non-PAE, 4 MiB PMDs). ``vmalloc=256M`` gives
MAXMEM = 0xfeffe000 - 0xc0000000 - (256 + 8) MiB = 0x2e7fe000, the 743 MB of the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arches.x86_32 import mm
from arches.x86_32.v2_6_25 import Linux2625
from arches.x86_32.zones import ZoneSize, zone_sizes
from bootemu.cmdline import MEMMAP_ADD, MEMMAP_EXACTMAP, MEMMAP_LIMIT, parse_memmap_args
from bootemu.e820 import (
    E820_RAM,
    E820_RESERVED,
    ULLONG_MAX,
    end_of_ram_pfn,
    format_remove,
    format_update,
    pci_gap,
    remove_range,
    sanitize,
    update_range,
)
from bootemu.models import (
    PAGE_SIZE,
    BootemuError,
    E820Entry,
    KernelPanic,
    Layout,
    merge_ranges,
    pfn_phys,
)
from bootemu.units import memparse_prefix

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

NODE = "__alloc_bootmem_node"


class Linux61(Linux2625):
    """Linux 6.1 i386: overrides only what the kernel changed since 2.6.25."""

    PROFILE = "6.1"

    #: pgtable_32_areas.h: VMALLOC_OFFSET, the guard hole that vmalloc= adds to the reserve.
    VMALLOC_OFFSET = 8 << 20
    #: arch/x86/kernel/ebda.c: bounds for the BIOS area start.
    BIOS_START_MIN = 0x20000
    BIOS_START_MAX = 0x9F000
    #: Debian 6.1 686 / 686-pae: CONFIG_NR_CPUS (``setup_percpu: NR_CPUS:32`` in the logs).
    NR_CPUS = 32
    #: include/linux/pageblock-flags.h (6.1): migrate type (3 bits) + compaction skip bit.
    NR_PAGEBLOCK_BITS = 4

    #: Debian 6.1.176 686-pae, read off real-boots/: kernel at CONFIG_PHYSICAL_START 16 MiB,
    #: image reserved up to 0x1f23fff (memblock ``reserved[0x2]``), the ``Memory:`` fields, the
    #: per-cpu unit ``u135168``, align 0x40 (X86_L1_CACHE_SHIFT 6), struct page 40 bytes.
    DEFAULTS: dict[str, Any] = {
        **Linux2625.DEFAULTS,
        "vmalloc_end": 0xFEFFE000,
        "image_start": 0x1000000,
        "image_end": 0x1F24000,
        "text_size": 9423 << 10,
        "data_size": 1265 << 10,  # rwdata
        "rodata_size": 3188 << 10,
        "init_size": 928 << 10,
        "bss_size": 476 << 10,
        "struct_page_size": 40,
        "l1_cache_shift": 6,
        "pageblock_order": 9,
        "percpu_size": 135168,
    }
    #: Debian 686 (HIGHMEM4G, no PAE): its own image and VMALLOC_END (``low ram: 0 -
    #: 36bfe000``); NOHIGHMEM non-PAE: VMALLOC_END = LDT_BASE_ADDR - 2 pages, LDT_BASE_ADDR
    #: being PKMAP_BASE + one 4 MiB PMD (inferred from pgtable_32_areas.h, not observed).
    HIGHMEM_DEFAULTS: dict[str, dict[str, Any]] = {
        "64G": {},
        "4G": {"vmalloc_end": 0xFEBFE000, "image_end": 0x1EF6000, "text_size": 9327 << 10,
               "data_size": 1246 << 10, "init_size": 912 << 10, "bss_size": 464 << 10,
               "pageblock_order": 10},
        "off": {"vmalloc_end": 0xFEFFE000, "image_end": 0x1EF6000, "text_size": 9327 << 10,
                "data_size": 1246 << 10, "init_size": 912 << 10, "bss_size": 464 << 10,
                "pageblock_order": 10},
    }

    # ---------------------------------------------------------------------------------------
    # constants that became formulas

    def maxmem(self) -> int:
        """pgtable_32_areas.h: MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE."""
        return (self.cfg.vmalloc_end - self.cfg.page_offset - self.vmalloc_reserve) & 0xFFFFFFFF

    def max_arch_pfn(self) -> int:
        """MAX_ARCH_PFN: 36-bit physical addresses with PAE, 32-bit without."""
        return 1 << (24 if self.cfg.pae else 20)

    @staticmethod
    def memmap_pages(spanned: int, cfg: Any) -> int:
        """calc_memmap_size(), 6.1 FLATMEM: PAGE_ALIGN(spanned * sizeof(struct page))."""
        return -(-spanned * cfg.struct_page_size // PAGE_SIZE)

    def pcp_held(self) -> int:
        """6.1 frees at mem_init() through the boot pagesets (high 0): nothing is parked."""
        return 0

    # ---------------------------------------------------------------------------------------
    # command line: parse_memopt(), parse_memmap_one(), parse_vmalloc(), finish

    def finish_early_params(self) -> None:
        """e820__finish_early_params(): a user map is sanitized (early_panic if that fails)
        and printed as ``user-defined physical RAM map:`` / ``user: [mem ...]``."""
        if not self.user_defined_memmap:
            return
        table = sanitize(self.e820, profile=self.PROFILE)
        if table is None:
            raise KernelPanic("Invalid user supplied memory map")
        self.e820 = table
        self.table("e820.table", "user-defined physical RAM map:", "user")

    def remove(self, start: int, size: int, old_type: int | None) -> None:
        """e820__range_remove(), with its ``e820: remove`` line."""
        self.printk("e820.remove", format_remove(start, size, old_type), start=start, size=size)
        self.e820 = remove_range(self.e820, start, size, old_type)

    def update(self, start: int, size: int, old_type: int, new_type: int) -> None:
        """e820__range_update(), with its ``e820: update`` line."""
        self.printk("e820.update", format_update(start, size, old_type, new_type), start=start,
                    size=size)
        self.e820 = update_range(self.e820, start, size, old_type, new_type)

    def parse_mem(self, value: str) -> None:
        """parse_memopt(): ``mem=nopentium`` clears PSE; ``mem=0`` is refused; otherwise all
        RAM from the size up is removed (``e820: remove [mem size-0xfffffffffffffffe]``)."""
        if value == "nopentium":
            self.pse = False
            return
        self.user_defined_memmap = True
        size = memparse_prefix(value)[0]
        if size == 0:
            return
        self.remove(size, ULLONG_MAX - size, E820_RAM)

    def parse_memmap_one(self, part: str) -> None:
        """parse_memmap_one(): exactmap, nn@ss / nn#ss / nn$ss / nn!ss (e820__range_add,
        silent), nn%ss-old+new, or plain nn (like mem=)."""
        try:
            arg = parse_memmap_args(part)[0]
        except ValueError:
            return  # -EINVAL: the kernel ignores the option
        if arg.kind == MEMMAP_EXACTMAP:
            self.e820 = []
            self.user_defined_memmap = True
            return
        self.user_defined_memmap = True
        if arg.kind == MEMMAP_ADD:
            assert arg.start is not None and arg.type is not None
            self.e820.append(E820Entry(arg.start, min(arg.start + arg.size, ULLONG_MAX),
                                       arg.type))
        elif arg.kind == MEMMAP_LIMIT:
            self.remove(arg.size, ULLONG_MAX - arg.size, E820_RAM)
        else:  # MEMMAP_RETYPE: nn%ss[-old][+new]
            assert arg.start is not None
            if arg.old_type and arg.type:
                self.update(arg.start, arg.size, arg.old_type, arg.type)
            elif arg.type:
                self.e820.append(E820Entry(arg.start, arg.start + arg.size, arg.type))
            else:
                self.remove(arg.start, arg.size, arg.old_type)

    def parse_memmap(self, value: str) -> None:
        """parse_memmap_opt(): comma-separated ranges, each parse_memmap_one()."""
        for part in value.split(","):
            self.parse_memmap_one(part)

    def parse_vmalloc(self, value: str) -> None:
        """init_32.c parse_vmalloc(), 6.1: the size plus VMALLOC_OFFSET (the guard hole)."""
        self.vmalloc_reserve = (memparse_prefix(value)[0] + self.VMALLOC_OFFSET) & 0xFFFFFFFF

    # ---------------------------------------------------------------------------------------
    # layout

    def layout(self, boot: Boot) -> Layout:
        """setup_arch(): trim_bios_range(), e820__end_of_ram_pfn(), find_low_pfn_range(), the
        MP table, then initmem_init() and setup_bootmem_allocator() (their lines)."""
        self.boot = boot
        self.fact(bits_per_long=32)
        # trim_bios_range(): page 0 becomes reserved, 640K-1M is no RAM, then sanitize.
        self.update(0, PAGE_SIZE, E820_RAM, E820_RESERVED)
        self.remove(0xA0000, 0x100000 - 0xA0000, E820_RAM)
        self.e820 = sanitize(self.e820, profile=self.PROFILE) or self.e820
        boot.e820 = list(self.e820)
        self.max_pfn = end_of_ram_pfn(self.e820, self.max_arch_pfn())
        self.fact(e820_max_pfn=self.max_pfn)
        self.printk("layout.last_pfn", f"last_pfn = {self.max_pfn:#x} max_arch_pfn = "
                    f"{self.max_arch_pfn():#x}", last_pfn=self.max_pfn)
        if self.max_pfn == 0:
            raise BootemuError(f"{self.machine.source}: kernel.cmdline: the memory map has no "
                               "usable RAM left")
        if self.cfg.vmalloc_end - self.cfg.page_offset <= self.vmalloc_reserve:
            raise BootemuError(f"{self.machine.source}: kernel.vmalloc_end: "
                               f"{self.cfg.vmalloc_end:#x} leaves no lowmem above page_offset "
                               "after the vmalloc reserve")
        self.max_low_pfn = self.find_max_low_pfn()
        if self.cfg.mp_table:
            mpf = self.cfg.mp_table
            self.printk("smp.mptable", f"found SMP MP-table at [mem {mpf:#010x}-{mpf + 15:#010x}]",
                        addr=mpf)
        self.min_low_pfn = -(-self.cfg.image_end // PAGE_SIZE)
        self.setup_memory_print()
        low = pfn_phys(self.max_low_pfn)
        self.printk("layout.low_ram", [f"  mapped low ram: 0 - {low:08x}",
                                       f"  low ram: 0 - {low:08x}"], max_low_pfn=self.max_low_pfn)
        self.ram = [(s, min(e, self.highend_pfn)) for s, e in self.memblock_ranges()
                    if s < self.highend_pfn]
        return self.make_layout()

    #: find_low_pfn_range() messages (init_32.c MSG_* strings, 6.1; reference §3.4).
    MSG_HIGHMEM_TOO_SMALL = ("only {avail}MB highmem pages available, ignoring highmem size of "
                             "{size}MB!")
    MSG_HIGHMEM_TOO_BIG = "highmem size ({size}MB) is bigger than pages available ({avail}MB)!"
    MSG_LOWMEM_TOO_SMALL = "highmem size ({size}MB) results in <64MB lowmem, ignoring it!"
    MSG_HIGHMEM_TRIMMED = ("Warning: only 4GB will be used. Use a HIGHMEM64G enabled kernel!",)

    def max_zone_pfns(self) -> list[tuple[str, int]]:
        """arch/x86/mm/init.c zone_sizes_init(), 6.1: ZONE_DMA ends at min(16 MiB,
        max_low_pfn); ZONE_HIGHMEM at max_pfn."""
        out = [("DMA", min(self.MAX_DMA_PFN, self.max_low_pfn)), ("Normal", self.max_low_pfn)]
        if self.cfg.has_highmem:
            out.append(("HighMem", self.max_pfn))
        return out

    def memblock_ranges(self) -> list[tuple[int, int]]:
        """e820__memblock_setup(): memblock.memory = the RAM entries, merged and trimmed to
        whole pages. Without PAE phys_addr_t is 32 bits and an entry whose end does not fit
        (``end != (resource_size_t)end``) is skipped whole: RAM above 4 GiB vanishes."""
        spans = []
        for e in self.e820:
            if e.type != E820_RAM:
                continue
            if not self.cfg.pae and e.end >= 1 << 32:
                continue
            spans.append((e.start, e.end))
        out = []
        for s, e in merge_ranges(spans):
            ps, pe = -(-s // PAGE_SIZE), e // PAGE_SIZE
            if ps < pe:
                out.append((ps, pe))
        return out

    def active_ranges(self) -> list[tuple[int, int]]:
        """The early node map of 6.1 is memblock.memory (node 0): page 0 and holes absent."""
        return self.memblock_ranges()

    def size_zones(self) -> None:
        """calculate_node_totalpages() + free_area_init_core(), 6.1: present = spanned -
        absent; freesize (the zone's initial managed pages) drops the memmap of lowmem
        zones; highmem memmap is charged to nr_kernel_pages if there is room."""
        self.active = self.active_ranges()
        self.zones = zone_sizes(self.active, self.max_zone_pfns())
        self.nr_kernel_pages = self.nr_all_pages = 0
        for j, z in enumerate(self.zones):
            z.present = z.spanned - z.absent
            z.memmap = self.memmap_pages(z.spanned, self.cfg)
            freesize = z.present
            if not z.highmem and freesize >= z.memmap:
                freesize -= z.memmap
            if j == 0 and freesize > self.DMA_RESERVE:
                freesize -= self.DMA_RESERVE
            z.freesize = freesize
            if not z.highmem:
                self.nr_kernel_pages += freesize
            elif self.nr_kernel_pages > z.memmap * 2:
                self.nr_kernel_pages -= z.memmap
            self.nr_all_pages += freesize


    # ---------------------------------------------------------------------------------------
    # enable / reserve

    def bitmap_start_pfn(self) -> int:
        """memblock needs no bitmap; a bitmap backend's is put right after the kernel image
        (an emulator choice: the first free pages of lowmem above the kernel)."""
        return -(-self.cfg.image_end // PAGE_SIZE)

    def register_low_pages(self, allocator: AllocatorFacade) -> None:
        """memblock: what is memory and not reserved is free; memory = memblock_ranges()."""
        for s, e in self.memblock_ranges():
            e = min(e, self.max_low_pfn)
            if s < e:
                allocator.free(addr=pfn_phys(s), size=pfn_phys(e - s), node=None)

    def reserve(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """early_reserve_memory(), reserve_bios_regions(), the MP table, reserve_initrd() and
        reserve_real_mode(), in setup_arch() order (memblock_reserve() each)."""
        cfg = self.cfg
        first = self.bitmap_start_pfn()
        self._reserve(allocator, cfg.image_start,
                      pfn_phys(first) + self.bootmap_size - cfg.image_start)
        self._reserve(allocator, 0, 64 << 10)  # early_reserve_memory(): the first 64 KiB
        self.reserve_bios_regions(allocator)
        if cfg.mp_table:
            self._reserve(allocator, cfg.mp_table, 16)  # smp_scan_config(): sizeof(*mpf)
        self.reserve_initrd(allocator)
        self._reserve(allocator, 0, 1 << 20)  # reserve_real_mode(): all of the first 1 MiB

    def reserve_bios_regions(self, allocator: AllocatorFacade) -> None:
        """arch/x86/kernel/ebda.c reserve_bios_regions(): [bios_start, 1 MiB), bios_start
        from the BDA's KiB count, lowered to the EBDA, clamped to [128K, 0x9f000]."""
        bios_start = self.cfg.bios_lowmem_kb << 10
        if bios_start < self.BIOS_START_MIN or bios_start > self.BIOS_START_MAX:
            bios_start = self.BIOS_START_MAX
        if self.BIOS_START_MIN <= self.cfg.ebda < bios_start:
            bios_start = self.cfg.ebda
        bios_start &= ~(PAGE_SIZE - 1)
        self._reserve(allocator, bios_start, 0x100000 - bios_start)

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
            self._reserve(allocator, image, min(end, low_end) - image)
        self.printk("initrd.reserve", f"RAMDISK: [mem {image:#010x}-{end - 1:#010x}]")
        if end <= low_end:
            return
        area = -(-size // PAGE_SIZE) * PAGE_SIZE
        new = self._alloc(allocator, area, PAGE_SIZE, 0, "__alloc_bootmem_low",
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
        self._alloc(allocator, size, self.cfg.smp_cache_bytes, 0, NODE, "memmap_alloc",
                    "mem_map", node=0)

    def setup_usemap(self, allocator: AllocatorFacade, z: ZoneSize) -> None:
        """setup_usemap(), 6.1: memblock_alloc_node(usemap_size(zone_start, spanned))."""
        size = mm.usemap_size_61(z.start, z.spanned, self.cfg.pageblock_order,
                                 self.NR_PAGEBLOCK_BITS)
        self._alloc(allocator, size, self.cfg.smp_cache_bytes, 0, NODE, "setup_usemap",
                    f"{z.name} usemap", node=0)

    def unavailable_ranges(self) -> list[tuple[str, int]]:
        """memmap_init() + memmap_init_zone_range() + init_unavailable_range(), 6.1 FLATMEM.

        Walking the memblock ranges through the populated zones, every gap before a range's
        part in a zone is counted in that zone (pfn 0 included, although ZONE_DMA starts at
        1); pfn_valid() is true below max_mapnr (highend_pfn).
        """
        out: list[tuple[str, int]] = []
        hole = 0
        populated = [z for z in self.zones if z.present]
        for s, e in self.active:
            for z in populated:
                cs, ce = min(max(s, z.start), z.end), min(max(e, z.start), z.end)
                if cs >= ce:
                    continue
                if hole < cs:
                    pages = min(cs, self.highend_pfn) - hole
                    if pages > 0:
                        out.append((z.name, pages))
                hole = ce
        return out

    def pci_gap(self) -> None:
        """e820__setup_pci_gap(): the largest gap below 4 GiB (default 256 MiB + 4 MiB)."""
        gap = pci_gap(self.e820) or (0x10000000, 0x400000)
        start, size = gap
        self.printk("e820.pci_gap", f"[mem {start:#010x}-{start + size - 1:#010x}] available "
                    "for PCI devices", start=start, size=size)

    def start_kernel(self, allocator: AllocatorFacade) -> None:
        """init/main.c start_kernel(), 6.1: setup_command_line(), setup_per_cpu_areas(),
        build_all_zonelists(), the command line, vfs_caches_init_early()."""
        cfg = self.cfg
        cmdline = self.machine.kernel.cmdline
        for name in ("saved_command_line", "static_command_line"):
            self._alloc(allocator, len(cmdline.encode()) + 1, cfg.smp_cache_bytes, 0,
                        "__alloc_bootmem", "setup_command_line", name)
        if cfg.smp:
            self.printk("percpu.setup", f"setup_percpu: NR_CPUS:{self.NR_CPUS} nr_cpumask_bits:"
                        f"{cfg.nr_cpus} nr_cpu_ids:{cfg.nr_cpus} nr_node_ids:1")
        # pcpu_embed_first_chunk(): one unit per cpu, memblock_alloc_from(.., PAGE_SIZE,
        # __pa(MAX_DMA_ADDRESS)).
        self._alloc(allocator, cfg.percpu_size * cfg.nr_cpus, PAGE_SIZE, self.DMA_GOAL,
                    "__alloc_bootmem", "pcpu_embed_first_chunk", "per-cpu first chunk")
        self.build_all_zonelists()
        self.printk("cmdline.show", f"Kernel command line: {cmdline}")
        self.vfs_caches_init_early(allocator)
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
        self._alloc(allocator, self.IO_TLB_DEFAULT_SIZE, PAGE_SIZE, 0, "__alloc_bootmem_low",
                    "swiotlb_init_remap", "swiotlb bounce buffer")
        self._alloc(allocator, nslabs * self.IO_TLB_SLOT_SIZE, PAGE_SIZE, 0, "__alloc_bootmem",
                    "swiotlb_init_remap", "swiotlb slots")
        self._alloc(allocator, self.IO_TLB_AREA_SIZE, self.cfg.smp_cache_bytes, 0,
                    "__alloc_bootmem", "swiotlb_init_remap", "swiotlb areas")

    def build_all_zonelists(self) -> None:
        """build_all_zonelists(), 6.1: Total pages = the zones' initial managed pages
        (present minus the memmap of lowmem zones); grouping off below
        pageblock_nr_pages * MIGRATE_TYPES (6.1 has 6 types with CMA, 5 here)."""
        total = sum(z.freesize for z in self.zones)
        grouping = "off" if total < (1 << self.cfg.pageblock_order) * self.MIGRATE_TYPES else "on"
        self.printk("zone.zonelists", f"Built 1 zonelists, mobility grouping {grouping}.  "
                    f"Total pages: {total}", pages=total)

    HASH_LINEAR = True

    def hash_goal(self) -> int:
        """memblock_alloc(size, SMP_CACHE_BYTES): no goal."""
        return 0

    # ---------------------------------------------------------------------------------------
    # handoff / summary

    def handoff(self, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel) -> int:
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
