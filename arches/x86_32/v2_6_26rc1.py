"""x86_32 as the bootmem2 RFC kernel boots it: v2.6.26-rc1 + the bootmem2 RFC v1.

The RFC kernel of ``real-boots-2008`` (``rfc-trace-pae``) is v2.6.26-rc1 with Johannes
Weiner's three mails of 2008-05-05 applied; its boots run on the ``bootmem2-rfc1`` backend.
This profile holds only what differs from the 2.6.25 profile in the early-memory path. Read
with ``git diff v2.6.25 v2.6.26-rc1`` of arch/x86/kernel/setup_32.c, head_32.S,
e820_32.c, acpi/sleep.c, arch/x86/mm/init_32.c, mm/page_alloc.c, init/main.c, kernel/pid.c:

- setup_32.c reserve_ebda_region() reserves ``[lowmem, 1 MiB)`` (the conventional-memory size
  at 0x413 lowered to the EBDA) instead of one page at the EBDA; the AMD K7 "errata #56" page
  before 0xa0000 is gone with it (folded into that range);
- acpi/sleep.c acpi_reserve_bootmem() (now shared with x86_64) takes WAKEUP_SIZE (0x4000)
  with alloc_bootmem_low() and prints an error instead of relying on a panic;
- "[rfc][patch 3/3] x86: Use bootmem2 on x86_32": ``bootmap_size = bootmem_map_pages() <<
  PAGE_SHIFT`` (whole pages, no longer init_bootmem()'s bytes) in the kernel's reservation
  (``reserve addr=100000 size=168fff`` on 256 MiB, where 2.6.25 would pass 0x168ffb);
- arch/x86/kernel/setup.c setup_per_cpu_areas() now serves SMP i386 too: a "PERCPU:" line and
  one page-aligned allocation per possible CPU (used once the 2.6.25 profile calls the
  per-cpu setup as a method of its own);
- head_32.S builds the boot page tables from ``pg0`` up until they map themselves plus
  INIT_MAP_BEYOND_END, unchanged since 2.6.25 (inherited): the bitmap lands right after them,
  ``map @ pfn 266`` with System.map's ``pg0`` c0260000.

Unchanged and inherited: every message of the memory lines (the e820 tables, HIGHMEM/LOWMEM,
zones, zonelists, hashes, ``Memory:``), copy_e820_map() apart from its 640K-1M fixup (which
the 2.6.25 profile does not emulate either), the page-table allocations (the "no large page
for the first 2/4MB" test of kernel_physical_mapping_init() compares ``pgd_idx`` with 0, which
never holds for the kernel pgds), the zone and hash arithmetic. Not emulated: iBFT
(reserve_ibft_region(): CONFIG_ISCSI_IBFT_FIND, a firmware table no machine file carries) and
CONFIG_DEBUG_PAGEALLOC's 16 MiB of extra boot page tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bootemu_arches.x86_32.v2_6_25 import Linux2625

from bootemu.models import PAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot
    from bootemu.plugins import AllocatorFacade

U32 = 0xFFFFFFFF


class Linux2626rc1(Linux2625):
    """v2.6.26-rc1 + the bootmem2 RFC v1 (``CONFIG_HAVE_BOOTMEM2=y``): the 2.6.25 data sheet
    with the changes listed in the module docstring."""

    #: bootemu.e820 and bootemu.cmdline treat it as 2.6.25 (e820_32.c, kernel/params.c).
    PROFILE = "2.6.26-rc1"
    #: Defaults: the one build of this kernel there is, ``rfc-trace-pae`` of real-boots-2008
    #: (allnoconfig + HIGHMEM64G + CONFIG_HAVE_BOOTMEM2): its .config (no SMP, no ACPI_SLEEP,
    #: no X86_FIND_SMP_CONFIG, X86_L1_CACHE_SHIFT 5, no HUGETLB_PAGE: pageblock_order =
    #: MAX_ORDER - 1 = 10) and System.map (_text c0100000, _etext c01cd38d, _edata c0216428,
    #: __init_begin c021a000, __init_end c022f000, _end c025fbb4). A build of its own comes
    #: with its .config and System.map; these only fill what a machine file leaves out.
    DEFAULTS = {
        **Linux2625.DEFAULTS,
        "smp": False,
        "acpi_sleep": False,
        "mp_table": 0,
        "l1_cache_shift": 5,
        "pageblock_order": 10,
        "image_end": 0x25FBB4,
        "text_size": 0xC01CD38D - 0xC0100000,  # 820k
        "data_size": 0xC0216428 - 0xC01CD38D,  # 292k
        "init_size": 0xC022F000 - 0xC021A000,  # 84k
    }
    #: arch/x86/kernel/acpi/realmode/wakeup.h: WAKEUP_SIZE.
    WAKEUP_SIZE = 0x4000
    # ---------------------------------------------------------------------------------------
    # setup_bootmem_allocator()

    def place_bitmaps(self, boot: Boot, allocator: AllocatorFacade) -> dict[str, tuple[int, int]]:
        """RFC patch 3/3: ``bootmem_register(0, max_low_pfn); bootmap_size =
        bootmem_map_pages() << PAGE_SHIFT; bootmem_setup(min_low_pfn)``: the size the
        kernel's reservation adds is the map in whole pages."""
        placed = super().place_bitmaps(boot, allocator)
        self.bootmap_size = -(-self.bootmap_size // PAGE_SIZE) * PAGE_SIZE
        self.fact(bootmap_size=self.bootmap_size)
        return placed

    #: setup_32.c reserve_ebda_region(), v2.6.26-rc1: ``[lowmem, 1 MiB)`` instead of one page
    #: at the EBDA (the routine is written once, in the 2.6.25 profile, for later trees).
    reserve_ebda_region = Linux2625.reserve_bios_lowmem_to_1m

    def setup_per_cpu_areas(self, allocator: AllocatorFacade) -> None:
        """arch/x86/kernel/setup.c setup_per_cpu_areas(), v2.6.26-rc1: i386 SMP now has
        HAVE_SETUP_PER_CPU_AREA (``X86_SMP && !X86_VOYAGER``): it prints "PERCPU: Allocating
        %lu bytes of per cpu data" (PERCPU_ENOUGH_ROOM) and takes one alloc_bootmem_pages()
        of that size per possible CPU (2.6.25's generic version took one block, page-rounded
        per CPU, silently). Its KERN_DEBUG "NR_CPUS: %d, nr_cpu_ids: %d" line is not a memory
        line and is not printed. UP kernels have none of it."""
        if not self.cfg.smp:
            return
        size = self.cfg.percpu_size
        self.printk("percpu.setup", f"PERCPU: Allocating {size} bytes of per cpu data", size=size)
        for cpu in range(self.possible_cpus()):
            self.alloc_bootmem(
                allocator,
                size,
                PAGE_SIZE,
                self.DMA_GOAL,
                "__alloc_bootmem",
                "setup_per_cpu_areas",
                f"per-cpu area of cpu {cpu}",
            )

    def acpi_reserve_bootmem(self, allocator: AllocatorFacade) -> None:
        """acpi/sleep.c acpi_reserve_bootmem(), v2.6.26-rc1: ``alloc_bootmem_low(WAKEUP_SIZE)``;
        NULL (bootmem2 returns it; classic bootmem panics first) prints the error
        "ACPI: Cannot allocate lowmem, S3 disabled." instead."""
        addr = self.alloc_bootmem(
            allocator,
            self.WAKEUP_SIZE,
            self.cfg.smp_cache_bytes,
            0,
            "__alloc_bootmem_low",
            "acpi_reserve_bootmem",
            "ACPI S3 wakeup code",
        )
        if addr is None:
            self.printk("acpi.wakeup", "ACPI: Cannot allocate lowmem, S3 disabled.")
