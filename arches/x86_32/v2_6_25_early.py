"""The small early bootmem users of a 2.6.25 i386 boot, each as its kernel routine sizes it.

Held to the traced boots of ``real-boots-2008/`` (every ``bootmem_trace:`` call, its size and
its caller resolved with the kernel's System.map). Sources, v2.6.25:
arch/x86/kernel/head_32.S (INIT_MAP_BEYOND_END, the boot page tables), arch/x86/mm/init_32.c
(one_page_table_init(), page_table_range_init(), kernel_physical_mapping_init(),
pagetable_init(), permanent_kmaps_init()), arch/x86/mm/ioremap.c (early_ioremap_init/clear()),
include/asm-x86/fixmap_32.h and highmem.h (FIXADDR_TOP, FIX_BTMAP_*, PKMAP_BASE),
arch/x86/kernel/mpparse_32.c (find_smp_config(), smp_scan_config(), MP_processor_info()),
arch/x86/kernel/smpboot_32.c smp_alloc_memory(), drivers/firmware/dmi_scan.c
(dmi_scan_machine(), dmi_present(), dmi_decode(), dmi_string(), dmi_save_uuid(),
dmi_save_type()), include/asm-x86/dmi.h (dmi_alloc = alloc_bootmem on i386), init/main.c
(setup_command_line(), setup_per_cpu_areas()), drivers/char/vt.c con_init() and
include/linux/console_struct.h (struct vc_data).

Every allocation carries ``caller``: the function whose return address the kernel's trace
resolves to with System.map (an inlined helper resolves to the function it was inlined into:
setup_command_line() and setup_per_cpu_areas() to start_kernel()); the label names the
helper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu.archbase import BootSteps
from bootemu.models import PAGE_SIZE, pfn_phys

if TYPE_CHECKING:  # pragma: no cover
    from bootemu_arches.x86_32.config import Config

    from bootemu.plugins import AllocatorFacade

LOW = "__alloc_bootmem_low"
ANY = "__alloc_bootmem"
NODE = "__alloc_bootmem_node"

#: include/asm-x86/setup.h (2.6.25): COMMAND_LINE_SIZE, boot_command_line's size.
COMMAND_LINE_SIZE = 2048
#: include/linux/list.h: struct list_head, two pointers.
LIST_HEAD_SIZE = 8
#: include/linux/console_struct.h (2.6.25): sizeof(struct vc_data) on i386 without its
#: ``wait_queue_head_t paste_wait``. Laid out with the i386 ABI (ints, longs and pointers
#: 4-aligned, shorts 2): vc_num .. vt_newvt end at offset 204 (vc_font, a struct console_font
#: of three ints and a pointer, at 92; vt_mode, 5 chars/shorts = 8 bytes, at 188), then
#: paste_wait; after it the 28 mode/attribute bitfields share one unsigned int with the
#: ``unsigned char vc_utf:1`` (bit 28), vc_utf_count takes the next byte, vc_utf_char the next
#: int, then vc_tab_stop[8] (32), vc_palette[48], vc_translate, four charset chars,
#: vc_resize_user, vc_bell_pitch, vc_bell_duration, vc_display_fg, vc_uni_pagedir and
#: vc_uni_pagedir_loc: 124 bytes. 204 + 124 = 328.
VC_DATA_SIZE_WITHOUT_WAITQ = 328
#: include/asm-x86/fixmap_32.h: NR_FIX_BTMAPS * FIX_BTMAPS_NESTING early_ioremap() slots.
FIX_BTMAP_SLOTS = 64 * 4
#: include/asm-x86/fixmap_32.h: __FIXADDR_TOP, 0xfffff000 (no reservetop=, no paravirt).
FIXADDR_TOP = 0xFFFFF000
#: mpparse_32.c find_smp_config(): the bottom 1K, the top 1K of 639K base RAM, the BIOS 64K.
MP_SCAN_AREAS = ((0x0, 0x400), (639 * 0x400, 0x400), (0xF0000, 0x10000))
#: dmi_scan.c dmi_decode(): the structure types it saves strings of, and per field the
#: machine-file key (``None`` for the UUID and chassis type, which are not strings).
DMI_FIELDS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("bios_vendor", "bios_version", "bios_date")),
    (1, ("sys_vendor", "product_name", "product_version", "product_serial", "product_uuid")),
    (2, ("board_vendor", "board_name", "board_version", "board_serial", "board_asset_tag")),
    (
        3,
        (
            "chassis_vendor",
            "chassis_type",
            "chassis_version",
            "chassis_serial",
            "chassis_asset_tag",
        ),
    ),
)
#: dmi_scan.c: dmi_empty_string, eight blanks; a string starting with them is not copied.
DMI_EMPTY = " " * 8


def init_map_beyond_end(pae: bool) -> int:
    """head_32.S INIT_MAP_BEYOND_END: the bootmem bitmap of 4 GiB of lowmem (LOW_PAGES / 8 =
    128 KiB) plus the page tables mapping it (LOW_PAGES / PTRS_PER_PMD + PTRS_PER_PGD with PAE,
    LOW_PAGES / PTRS_PER_PGD without) plus ALLOCATOR_SLOP (4) pages (no DEBUG_PAGEALLOC)."""
    low_pages = 1 << 20
    tables = low_pages // 512 + 4 if pae else low_pages // 1024
    return low_pages // 8 + (tables + 4) * PAGE_SIZE


def boot_tables_end(pg0: int, pae: bool) -> int:
    """head_32.S default_entry: ``init_pg_tables_end`` for boot page tables built at ``pg0``.

    One page-table page at a time, each mapping PTRS_PER_PTE pages (2 MiB with PAE, 4 MiB
    without), until the mapping reaches INIT_MAP_BEYOND_END past the tables themselves
    (``cmpl %ebp,%eax; jb 10b``); the result is the first page after the last table.
    """
    edi, mapped, beyond = pg0, 0, init_map_beyond_end(pae)
    step = (512 if pae else 1024) * PAGE_SIZE
    while True:
        edi += PAGE_SIZE
        mapped += step
        if mapped >= edi + beyond:
            return edi


def wait_queue_head_size(cfg: Config) -> int:
    """include/linux/wait.h: sizeof(wait_queue_head_t) = spinlock_t + struct list_head.

    8 on a 2.6.25 UP i386 build (the spinlock is an empty struct), 12 on SMP.
    """
    return cfg.spinlock_size + LIST_HEAD_SIZE


def dmi_string_len(text: str) -> int | None:
    """dmi_string(): bytes it allocates for a string (strlen + 1), None when it allocates
    nothing (dmi_string_nosave() gave dmi_empty_string: the string starts with 8 blanks)."""
    raw = text.encode("latin-1", "replace")
    if raw[:8] == DMI_EMPTY.encode() and len(raw) >= 8:
        return None
    return len(raw) + 1


class Early2625(BootSteps):
    """The early allocations of setup_arch() and start_kernel(), 2.6.25 i386.

    Small methods and class attributes, so that a later tree (v2.6.26-rc1) overrides only
    what it changed.
    """

    cfg: Config
    max_low_pfn: int
    pse: bool
    printk: Any
    fact: Any
    machine: Any

    #: include/asm-x86/page_32.h: PAGE_OFFSET is a config key; this is __FIXADDR_TOP.
    FIXADDR_TOP = FIXADDR_TOP

    def _reserve(self, allocator: AllocatorFacade, addr: int, size: int, label: str = "") -> int:
        """reserve_bootmem(addr, size, BOOTMEM_DEFAULT) (generic: node None); ``label`` names
        the reservation in the report (``bootemu map``)."""
        return allocator.reserve(addr=addr, size=size, node=None, exclusive=False, label=label)

    # ---------------------------------------------------------------------------------------
    # head_32.S and paging_init()

    @property
    def ptrs_per_pte(self) -> int:
        """PTRS_PER_PTE: 512 eight-byte entries with PAE, 1024 four-byte ones without."""
        return 512 if self.cfg.pae else 1024

    @property
    def pmd_size(self) -> int:
        """PMD_SIZE: what one page-table page maps (2 MiB with PAE, 4 MiB without)."""
        return self.ptrs_per_pte * PAGE_SIZE

    def pg0(self) -> int:
        """vmlinux_32.lds.S: ``pg0`` is ``_end`` rounded up to a page, physical."""
        return -(-self.cfg.image_end // PAGE_SIZE) * PAGE_SIZE

    def init_pg_tables_end(self) -> int:
        """head_32.S: where the boot page tables end (:func:`boot_tables_end`)."""
        return boot_tables_end(self.pg0(), self.cfg.pae)

    def fixmap_btmap_begin(self) -> tuple[int, int]:
        """fixmap_32.h: (FIX_BTMAP_BEGIN, __end_of_fixed_addresses). FIX_BTMAP_END is the
        permanent slots rounded up to the next multiple of 512 (a whole boundary is still
        moved up: ``+ 512 - (n & 511)``); FIX_WP_TEST follows the early_ioremap slots."""
        perm = self.cfg.fixmap_slots or 1
        btmap_end = perm + 512 - (perm & 511)
        begin = btmap_end + FIX_BTMAP_SLOTS - 1
        return begin, begin + 2  # FIX_WP_TEST, then __end_of_fixed_addresses

    def fix_to_virt(self, idx: int) -> int:
        return self.FIXADDR_TOP - (idx << 12)

    def pagetable_pages(self) -> list[tuple[str, str]]:
        """paging_init() -> pagetable_init(), 2.6.25: the alloc_bootmem_low_pages() of
        one_page_table_init(), in order, as (caller, label).

        - kernel_physical_mapping_init(): with PAE the kernel pgd entries point at the static
          swapper_pg_pmd (head_32.S), so one_md_table_init() allocates nothing; with PSE every
          lowmem PMD becomes a large page; without PSE (``mem=nopentium``) each lowmem PMD not
          already holding one of head_32.S's tables gets a page.
        - the fixmap: every PMD from the lowest boot-time slot to FIXADDR_TOP that is not
          present. head_32.S put swapper_pg_fixmap in the top PMD; early_ioremap_clear() has
          just cleared the PMD of the early_ioremap slots, so that one is always allocated.
        - permanent_kmaps_init() (HIGHMEM): the pkmap area, one PMD at PKMAP_BASE.
        """
        pages: list[tuple[str, str]] = []
        if not self.pse:
            head = (self.init_pg_tables_end() - self.pg0()) // PAGE_SIZE
            need = -(-self.max_low_pfn // self.ptrs_per_pte)
            pages += [("one_page_table_init", "pte for lowmem (no PSE)")] * max(0, need - head)
        pmd_mask = ~(self.pmd_size - 1) & 0xFFFFFFFF
        begin, end_of_fixed = self.fixmap_btmap_begin()
        low = self.fix_to_virt(end_of_fixed - 1) & pmd_mask
        top_pmd = self.FIXADDR_TOP & pmd_mask
        btmap_pmd = self.fix_to_virt(begin) & pmd_mask
        for pmd in range(low, 1 << 32, self.pmd_size):
            if pmd != top_pmd or pmd == btmap_pmd:
                pages.append(("one_page_table_init", f"pte for fixmap at {pmd:#x}"))
        if self.cfg.has_highmem:
            pages.append(("one_page_table_init", f"pte for pkmap at {self.pkmap_base():#x}"))
        return pages

    def pkmap_base(self) -> int:
        """highmem.h: PKMAP_BASE = (FIXADDR_BOOT_START - PAGE_SIZE * (LAST_PKMAP + 1)) &
        PMD_MASK, LAST_PKMAP being PTRS_PER_PTE."""
        boot_start = self.fix_to_virt(self.fixmap_btmap_begin()[1])
        return (boot_start - PAGE_SIZE * (self.ptrs_per_pte + 1)) & ~(self.pmd_size - 1)

    # ---------------------------------------------------------------------------------------
    # setup_bootmem_allocator(): the MP table

    def find_smp_config(self, allocator: AllocatorFacade) -> None:
        """mpparse_32.c find_smp_config() -> smp_scan_config(), 2.6.25 (X86_FIND_SMP_CONFIG).

        Scans the bottom 1K, 639K..640K and the BIOS 64K (then the EBDA's first 1K) for the
        floating pointer, printing each area; on a hit prints the pointer's virtual and
        physical address, reserves a page there and a page (clipped to lowmem) at the
        configuration table, which SeaBIOS puts right after the 16-byte pointer.
        """
        if not self.cfg.find_smp_config:
            return
        mpf = self.cfg.mp_table
        areas = list(MP_SCAN_AREAS)
        if self.cfg.ebda:
            areas.append((self.cfg.ebda, 0x400))
        for base, length in areas:
            self.printk(
                "smp.scan",
                f"Scan SMP from {self.cfg.page_offset + base:08x} for {length} bytes.",
                base=base,
                length=length,
            )
            if mpf and base <= mpf < base + length and (mpf - base) % 16 == 0:
                virt = self.cfg.page_offset + mpf
                self.printk(
                    "smp.mptable", f"found SMP MP-table at [{virt:08x}] {mpf:08x}", addr=mpf
                )
                self._reserve(allocator, mpf, PAGE_SIZE, "MP floating pointer (BIOS)")
                physptr = mpf + 16
                end = pfn_phys(self.max_low_pfn)
                self._reserve(allocator, physptr, min(PAGE_SIZE, end - physptr),
                              "MP configuration table (BIOS)")
                self.mp_found = True
                return

    mp_found = False

    def possible_cpus(self) -> int:
        """cpu_possible_map when start_kernel() runs: the boot CPU, or with an MP table the
        processors it lists (MP_processor_info(), at most NR_CPUS)."""
        if not self.cfg.smp or not self.mp_found:
            return 1
        return min(self.cfg.mp_cpus, self.cfg.nr_cpus)

    # ---------------------------------------------------------------------------------------
    # setup_arch() after zone_sizes_init(): DMI

    def dmi_scan_machine(self, allocator: AllocatorFacade) -> None:
        """dmi_scan_machine() -> dmi_present() -> dmi_table(dmi_decode), 2.6.25, i386.

        Prints ``DMI X.Y present.`` and saves the identification strings of structures 0-3
        in table order (QEMU writes them by type) with dmi_alloc() = alloc_bootmem().
        Types 10, 11, 38 and 41 (devices, OEM strings, IPMI) are not in QEMU's default tables
        and are not emulated.
        """
        version = self.cfg.dmi_version
        if not version:
            self.printk("dmi.absent", "DMI not present or invalid.")
            return
        self.printk(
            "dmi.present",
            "DMI present." if version in ("0.0", "0") else f"DMI {version} present.",
            version=version,
        )
        cfg = self.cfg
        for _type, keys in DMI_FIELDS:
            values = [getattr(cfg, f"dmi_{k}") for k in keys]
            if all(v is False for v in values):
                continue  # the structure is not in the table
            for key, value in zip(keys, values, strict=True):
                if key == "product_uuid":
                    if value:  # dmi_save_uuid(): "%02X...-..." + NUL, 16*2+4+1 bytes
                        self._dmi_alloc(allocator, 37, "dmi_decode", "dmi_save_uuid: UUID")
                elif key == "chassis_type":
                    if value is not False:  # dmi_save_type(): "%u" in 4 bytes
                        self._dmi_alloc(allocator, 4, "dmi_decode", "dmi_save_type: chassis")
                elif value is not False:
                    size = dmi_string_len(str(value))
                    if size is not None:
                        self._dmi_alloc(allocator, size, "dmi_string", f"DMI {key}")

    def _dmi_alloc(self, allocator: AllocatorFacade, size: int, caller: str, label: str) -> None:
        self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, self.DMA_GOAL, ANY, caller,
                           label)

    DMA_GOAL: int

    # ---------------------------------------------------------------------------------------
    # start_kernel()

    def command_line_bytes(self) -> int:
        """strlen(boot_command_line) + 1, the line truncated to COMMAND_LINE_SIZE - 1."""
        return min(len(self.machine.kernel.cmdline.encode()), COMMAND_LINE_SIZE - 1) + 1

    def setup_command_line(self, allocator: AllocatorFacade) -> None:
        """init/main.c setup_command_line(): saved_ and static_command_line, alloc_bootmem()
        of strlen + 1 each (the same text: setup_arch() copied it whole)."""
        size = self.command_line_bytes()
        for name in ("saved_command_line", "static_command_line"):
            self.alloc_bootmem(
                allocator,
                size,
                self.cfg.smp_cache_bytes,
                self.DMA_GOAL,
                ANY,
                "start_kernel",
                f"setup_command_line: {name}",
            )

    def setup_per_cpu_areas(self, allocator: AllocatorFacade) -> None:
        """init/main.c setup_per_cpu_areas() (i386 has no HAVE_SETUP_PER_CPU_AREA in
        2.6.25): one alloc_bootmem_pages() of ALIGN(PERCPU_ENOUGH_ROOM, PAGE_SIZE) per
        possible CPU; it prints nothing."""
        if not self.cfg.smp:
            return
        unit = -(-self.cfg.percpu_size // PAGE_SIZE) * PAGE_SIZE
        self.alloc_bootmem(
            allocator,
            unit * self.possible_cpus(),
            PAGE_SIZE,
            self.DMA_GOAL,
            ANY,
            "start_kernel",
            "setup_per_cpu_areas: per-cpu areas",
        )

    def vc_data_size(self) -> int:
        """sizeof(struct vc_data): 328 bytes plus its paste_wait wait queue head."""
        return VC_DATA_SIZE_WITHOUT_WAITQ + wait_queue_head_size(self.cfg)

    def con_init(self, allocator: AllocatorFacade) -> None:
        """drivers/char/vt.c con_init() (console_init(), after time_init()): for the
        MIN_NR_CONSOLES (1) console, alloc_bootmem() of its vc_data and of its screen buffer
        (vc_screenbuf_size = rows * cols * 2)."""
        cols, rows = self.cfg.console_cols, self.cfg.console_rows
        if not cols or not rows:
            return
        self.alloc_bootmem(
            allocator,
            self.vc_data_size(),
            self.cfg.smp_cache_bytes,
            self.DMA_GOAL,
            ANY,
            "con_init",
            "vc_data of tty1",
        )
        self.alloc_bootmem(
            allocator,
            rows * cols * 2,
            self.cfg.smp_cache_bytes,
            self.DMA_GOAL,
            ANY,
            "con_init",
            "vc_screenbuf of tty1",
        )
