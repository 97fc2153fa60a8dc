"""x86_32 as Linux 2.6.25 boots it (the seed's era, and the default profile).

Held to sixteen real boots of four v2.6.25 i386 builds (``real-boots-2008/``: PAE, PAE SMP,
HIGHMEM4G, NOHIGHMEM, each boot with a trace of every bootmem call): every memory line up to
``Memory:`` and every traced call match (tests/test_real_2008_i386.py).

Sources, the v2.6.25 tag (a local mirror of the tree; cited by file and routine):
arch/x86/kernel/setup_32.c (parse_mem(), parse_highmem(), parse_vmalloc(),
find_max_low_pfn(), reserve_ebda_region(), setup_memory(), zone_sizes_init(),
reserve_initrd(), reserve_crashkernel(), setup_bootmem_allocator(), setup_arch()),
arch/x86/kernel/e820_32.c (limit_regions(), parse_memmap(), propagate_e820_map(),
register_bootmem_low_pages(), e820_register_memory()), arch/x86/mm/init_32.c
(pagetable_init(), set_highmem_pages_init(), mem_init()), arch/x86/mm/ioremap.c
page_is_ram(), mm/page_alloc.c (free_area_init_*, zone_pcp_init(), setup_usemap(),
zone_wait_table_init(), alloc_large_system_hash()), kernel/pid.c pidhash_init(),
init/main.c (setup_command_line(), setup_per_cpu_areas()), arch/x86/kernel/acpi/sleep.c
acpi_reserve_bootmem(), mpparse_32.c smp_scan_config(); the early allocations' sizes are in
:mod:`bootemu_arches.x86_32.v2_6_25_early` with theirs. Also the reference notes
x86_32-early-memory.md / boot-allocators.md.

Subclassing for a later tree: override what changed, e.g. ``reserve_ebda_region =
Bootmem2625.reserve_bios_lowmem_to_1m`` (v2.6.26-rc1 reserves from the BIOS's base-memory
top to 1 MiB); the boot page tables, MP scan, DMI, console and per-cpu sizes are small methods
of :class:`~bootemu_arches.x86_32.v2_6_25_early.Early2625`.
"""

from __future__ import annotations

from typing import Any

from bootemu_arches.x86_32 import mm
from bootemu_arches.x86_32.config import Config
from bootemu_arches.x86_32.v2_6_25_early import Early2625
from bootemu_arches.x86_32.v2_6_25_mm import Bootmem2625
from bootemu_arches.x86_32.v2_6_25_setup import Setup2625

from bootemu.contract import ArchInfo


class Linux2625(Setup2625, Bootmem2625, Early2625):
    """The 2.6.25 data sheet: constants and defaults; the routines are in Setup2625 (up to
    the layout), Bootmem2625 (bootmem to mem_init) and Early2625 (the early allocations'
    sizes: boot page tables, MP table, DMI, command line, per-cpu areas, console).

    A later profile subclasses this and overrides what its kernel changed (v6_1.py).
    """

    PROFILE = "2.6.25"

    def arch_info(self) -> ArchInfo:
        """i386: 32-bit longs; a 64-bit phys_addr_t with PAE (CONFIG_HIGHMEM64G selects
        CONFIG_X86_PAE, include/asm-x86/types.h); no NUMA; NR_NODE_MEMBLKS = MAX_NUMNODES,
        so one block per node."""
        return ArchInfo(bits_per_long=32, phys_addr_bits=64 if self.cfg.pae else 32,
                        numa=False, memblks_per_node=1, smp_cache_bytes=self.cfg.smp_cache_bytes)

    #: include/asm-x86/setup.h: MAX_NONPAE_PFN, 4 GiB of 4 KiB pages.
    MAX_NONPAE_PFN = 1 << 20
    #: virt_to_phys(MAX_DMA_ADDRESS) >> PAGE_SHIFT: ZONE_DMA ends at 16 MiB.
    MAX_DMA_PFN = 4096
    #: __pa(MAX_DMA_ADDRESS): the goal of alloc_bootmem() and friends (include/linux/bootmem.h).
    DMA_GOAL = 16 << 20
    #: mm/page_alloc.c: dma_reserve, never set on x86_32 ("DMA zone: 0 pages reserved").
    DMA_RESERVE = 0
    #: include/linux/mmzone.h (2.6.24+): MIGRATE_TYPES, for "mobility grouping on/off".
    MIGRATE_TYPES = 5
    #: include/asm-x86/e820.h: E820MAX, the kernel table size.
    E820MAX = 128

    #: find_max_low_pfn() messages (setup_32.c, 2.6.25), formatted with MB figures.
    MSG_HIGHMEM_TOO_SMALL = ("only {avail}MB highmem pages available, ignoring highmem size of "
                             "{size}MB.")
    MSG_HIGHMEM_TOO_BIG = ("highmem size specified ({size}MB) is bigger than pages available "
                           "({avail}MB)!.")
    MSG_LOWMEM_TOO_SMALL = "highmem size {size}MB results in smaller than 64MB lowmem, ignoring it."
    #: HIGHMEM4G with RAM above 4 GiB: two KERN_WARNING lines.
    MSG_HIGHMEM_TRIMMED = ("Warning only 4GB will be used.", "Use a HIGHMEM64G enabled kernel.")

    #: Defaults of the 2008 distribution i686 build this profile stands for. Image layout and
    #: per-cpu size are taken from a real 2008 Ubuntu i386 boot log (code-index id 14382461277:
    #: ".text : 0xc0100000 - 0xc038335a", ".data : 0xc038335a - 0xc04a5680", ".init :
    #: 0xc04ab000 - 0xc0515000", "TEXT DATA BSS [0x100000 - 0x5c0a20]", "PERCPU: Allocating
    #: 41628 bytes of per cpu data"). BIOS values are SeaBIOS under QEMU (real-boots/).
    DEFAULTS: dict[str, Any] = {
        "page_offset": 0xC0000000,  # CONFIG_VMSPLIT_3G
        "vmalloc_reserve": 128 << 20,  # __VMALLOC_RESERVE
        "vmalloc_end": 0,  # unused: 2.6.25 derives MAXMEM without VMALLOC_END
        "image_start": 0x100000,  # CONFIG_PHYSICAL_START
        "image_end": 0x5C0A20,
        "text_size": 0xC038335A - 0xC0100000,  # 2572k
        "data_size": 0xC04A5680 - 0xC038335A,  # 1160k
        "rodata_size": 0,
        "init_size": 0xC0515000 - 0xC04AB000,  # 424k
        "bss_size": 0,
        "ebda": 0x9FC00,
        "bios_lowmem_kb": 639,
        "mp_table": 0xF5BA0,
        "smp": True,
        "nr_cpus": 1,
        "acpi_sleep": True,
        "initrd_start": 0,
        "initrd_size": 0,
        "struct_page_size": 32,
        "l1_cache_shift": 7,
        "pageblock_order": 9,
        "percpu_size": 41628,
        # Kconfig-derived keys whose default follows ``smp`` (config.py _DERIVED_DEFAULTS).
        "find_smp_config": None,
        "spinlock_size": None,
        "fixmap_slots": 0,
        # Firmware: QEMU 7.2 ``pc`` with SeaBIOS 1.16.2 (config.py says where each comes from).
        "mp_cpus": 1,
        "dmi_version": "2.8",
        "dmi_bios_vendor": "SeaBIOS",
        "dmi_bios_version": "1.16.2-debian-1.16.2-1",
        "dmi_bios_date": "04/01/2014",
        "dmi_sys_vendor": "QEMU",
        "dmi_product_name": "Standard PC (i440FX + PIIX, 1996)",
        "dmi_product_version": "pc-i440fx-7.2",
        "dmi_product_serial": "",
        "dmi_product_uuid": False,
        "dmi_board_vendor": False,
        "dmi_board_name": False,
        "dmi_board_version": False,
        "dmi_board_serial": False,
        "dmi_board_asset_tag": False,
        "dmi_chassis_vendor": "QEMU",
        "dmi_chassis_type": 1,
        "dmi_chassis_version": "pc-i440fx-7.2",
        "dmi_chassis_serial": "",
        "dmi_chassis_asset_tag": "",
        "console_cols": 80,
        "console_rows": 25,
    }
    #: Per highmem model: HUGETLB_PAGE_ORDER is 9 with PAE (2 MiB pages), 10 without.
    HIGHMEM_DEFAULTS: dict[str, dict[str, Any]] = {
        "64G": {},
        "4G": {"pageblock_order": 10},
        "off": {"pageblock_order": 10},
    }

    @classmethod
    def defaults(cls, highmem: str) -> dict[str, Any]:
        """The default of every config key for this profile and highmem model."""
        return {**cls.DEFAULTS, **cls.HIGHMEM_DEFAULTS.get(highmem, {})}

    # ---------------------------------------------------------------------------------------
    # Derived constants

    def maxmem(self) -> int:
        """include/asm-x86/page_32.h: MAXMEM = -__PAGE_OFFSET - __VMALLOC_RESERVE (u32)."""
        return (-self.cfg.page_offset - self.vmalloc_reserve) & 0xFFFFFFFF

    @staticmethod
    def memmap_pages(spanned: int, cfg: Config) -> int:
        """free_area_init_core(), 2.6.25: ``(size * sizeof(struct page)) >> PAGE_SHIFT``."""
        return (spanned * cfg.struct_page_size) >> 12

    batchsize = staticmethod(mm.zone_batchsize)
