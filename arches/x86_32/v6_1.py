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

from bootemu_arches.x86_32.v2_6_25 import Linux2625
from bootemu_arches.x86_32.v6_1_mm import Mm61
from bootemu_arches.x86_32.zones import zone_sizes

from bootemu import linux61
from bootemu.cmdline import MEMMAP_ADD, MEMMAP_EXACTMAP, MEMMAP_LIMIT, parse_memmap_args
from bootemu.e820 import (
    E820_RAM,
    E820_RESERVED,
    ULLONG_MAX,
    end_of_ram_pfn,
    format_remove,
    format_update,
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


class Linux61(Mm61, Linux2625):
    """Linux 6.1 i386: overrides only what the kernel changed since 2.6.25 (the setup part
    here, the memory-management part in :class:`bootemu_arches.x86_32.v6_1_mm.Mm61`)."""

    PROFILE = "6.1"

    #: pgtable_32_areas.h: VMALLOC_OFFSET, the guard hole that vmalloc= adds to the reserve.
    VMALLOC_OFFSET = 8 << 20
    #: arch/x86/kernel/ebda.c: bounds for the BIOS area start.
    BIOS_START_MIN = 0x20000
    BIOS_START_MAX = 0x9F000
    #: find_low_pfn_range() messages (init_32.c MSG_* strings, 6.1; reference §3.4).
    MSG_HIGHMEM_TOO_SMALL = ("only {avail}MB highmem pages available, ignoring highmem size of "
                             "{size}MB!")
    MSG_HIGHMEM_TOO_BIG = "highmem size ({size}MB) is bigger than pages available ({avail}MB)!"
    MSG_LOWMEM_TOO_SMALL = "highmem size ({size}MB) results in <64MB lowmem, ignoring it!"
    MSG_HIGHMEM_TRIMMED = ("Warning: only 4GB will be used. Use a HIGHMEM64G enabled kernel!",)
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
        """calc_memmap_size(), 6.1 FLATMEM: PAGE_ALIGN(spanned * sizeof(struct page)) (the
        present count only matters with SPARSEMEM)."""
        return linux61.calc_memmap_size(spanned, spanned, cfg.struct_page_size, sparsemem=False)

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
        """e820__range_update(), with its ``e820: update`` line (printed after its BUG_ON)."""
        table = update_range(self.e820, start, size, old_type, new_type)
        self.printk("e820.update", format_update(start, size, old_type, new_type), start=start,
                    size=size)
        self.e820 = table

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
        self.min_low_pfn = -(-self.cfg.image_end // PAGE_SIZE)  # first page above the image
        self.setup_memory_print()
        low = pfn_phys(self.max_low_pfn)
        self.printk("layout.low_ram", [f"  mapped low ram: 0 - {low:08x}",
                                       f"  low ram: 0 - {low:08x}"], max_low_pfn=self.max_low_pfn)
        self.ram = [(s, min(e, self.highend_pfn)) for s, e in self.memblock_ranges()
                    if s < self.highend_pfn]
        return self.make_layout()

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
