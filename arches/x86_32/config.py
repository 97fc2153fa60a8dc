"""The x86_32 kernel configuration a machine file can set in its ``[kernel]`` table.

Every key is optional; the defaults come from the profile (:attr:`Linux2625.DEFAULTS`,
overridden per highmem model by :meth:`Linux2625.defaults`) and describe a typical
distribution build of that kernel generation. :func:`read_config` validates the keys and
returns a :class:`Config`; a bad value raises :class:`~bootemu.models.BootemuError`
``"<machine file>: kernel.<key>: <what is wrong>"``.

Keys (sizes accept integers or ``memparse()`` strings such as ``"128M"``):

``highmem``
    ``"off"`` (CONFIG_NOHIGHMEM), ``"4G"`` (CONFIG_HIGHMEM4G) or ``"64G"`` (CONFIG_HIGHMEM64G,
    which selects CONFIG_X86_PAE). Default ``"64G"``.
``page_offset``
    CONFIG_PAGE_OFFSET, one of the arch/x86/Kconfig VMSPLIT choices (0xC0000000, 0xB0000000,
    0x80000000, 0x78000000, 0x40000000; the two ``_OPT`` splits only without PAE).
``vmalloc_reserve``
    The default of ``__VMALLOC_RESERVE`` (arch/x86/mm/init_32.c: 128 MiB); ``vmalloc=``
    replaces it.
``vmalloc_end``
    6.1 only: VMALLOC_END, from which MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE
    (arch/x86/include/asm/pgtable_32_areas.h). Derived from the Debian logs (see v6_1).
``image_start`` / ``image_end``
    Physical ``_text`` and ``_end`` of the kernel image (CONFIG_PHYSICAL_START and the
    linked size); 2.6.25's boot page tables start at PAGE_ALIGN(``_end``).
``text_size`` / ``data_size`` / ``init_size`` / ``rodata_size`` / ``bss_size``
    Sections of the image, in bytes, for the ``Memory:`` line. 2.6.25 prints ``_etext -
    _text`` (text), ``_edata - _etext`` (data) and ``__init_end - __init_begin`` (init);
    6.1 prints kernel code, rwdata (``data_size``), rodata, init and bss.
``ebda`` / ``bios_lowmem_kb``
    The BIOS data area words: the EBDA start (word at 0x40E shifted by 4; 0 = no EBDA),
    whose page 2.6.25's reserve_ebda_region() reserves, and the conventional memory size in
    KiB (word at 0x413), which later kernels (v2.6.26-rc1: everything from there to 1 MiB)
    read too. Defaults: SeaBIOS under QEMU, 0x9fc00 and 639.
``mp_table``
    Physical address of the MP floating pointer find_smp_config() finds (0 = none); the MP
    configuration table is taken to follow it (16 bytes later), as SeaBIOS lays them out.
``smp`` / ``nr_cpus``
    CONFIG_SMP (reserves the trampoline page 1 and allocates per-cpu areas) and, for 6.1,
    the number of possible CPUs (one per-cpu area each); for 2.6.25, CONFIG_NR_CPUS, the cap
    on the possible CPUs the MP table gives (``mp_cpus``).
``acpi_sleep``
    CONFIG_ACPI_SLEEP: acpi_reserve_bootmem() takes low memory for the S3 wakeup code.
``initrd_start`` / ``initrd_size``
    Where the boot loader put an initrd (``boot_params.hdr.ramdisk_image/size``); size 0 =
    none.
``struct_page_size``
    sizeof(struct page): 32 on 2.6.25 i386, 40 on 6.1 i386 (Debian 6.1 logs).
``l1_cache_shift``
    CONFIG_X86_L1_CACHE_SHIFT: SMP_CACHE_BYTES, the alignment of alloc_bootmem(). 7 for the
    2008 distribution build (M686 + X86_GENERIC: ``default "7" if MPENTIUM4 ||
    X86_GENERIC``), 6 for Debian 6.1 (X86_GENERIC is in the ``"6"`` list there).
``pageblock_order``
    pageblock_order = HUGETLB_PAGE_ORDER (CONFIG_HUGETLB_PAGE): 9 with PAE (2 MiB pages),
    10 without (4 MiB pages); sizes the zone usemaps.
``percpu_size``
    2.6.25: PERCPU_ENOUGH_ROOM (``__per_cpu_end - __per_cpu_start`` of System.map plus the
    8 KiB PERCPU_MODULE_RESERVE with CONFIG_MODULES), the size of each CPU's area before
    init/main.c setup_per_cpu_areas() rounds it to a page. 6.1: the first-chunk unit size
    (``u135168`` in the Debian logs).
``find_smp_config``
    2.6.25: CONFIG_X86_FIND_SMP_CONFIG (set by X86_MPPARSE): setup_bootmem_allocator() scans
    for the MP floating pointer (``Scan SMP from ...``) and reserves what it finds. Default:
    the value of ``smp``.
``spinlock_size``
    sizeof(spinlock_t) (include/linux/spinlock_types*.h, 2.6.25 i386): 0 on UP (an empty
    raw_spinlock_t), 4 on SMP, plus 4 for GENERIC_LOCKBREAK (SMP && PREEMPT), 12 for
    DEBUG_SPINLOCK (which also gives UP a 4-byte raw lock) and a lockdep_map (12, 16 with
    LOCK_STAT) for DEBUG_LOCK_ALLOC. A wait_queue_head_t is the lock plus a list_head (8),
    which sizes the zone wait tables and struct vc_data. Default: 4 with ``smp``, else 0.
``fixmap_slots``
    __end_of_permanent_fixed_addresses (include/asm-x86/fixmap_32.h, 2.6.25): FIX_HOLE,
    FIX_VDSO, FIX_DBGP_BASE, FIX_EARLYCON_MEM_BASE, plus FIX_APIC_BASE (X86_LOCAL_APIC),
    MAX_IO_APICS (X86_IO_APIC), KM_TYPE_NR * NR_CPUS (HIGHMEM), FIX_ACPI_PAGES (ACPI) ...
    Only whether it reaches a 512 boundary matters (the boot-time early_ioremap slots are
    put at the next one), so the default 0 stands for any build with fewer than 512.

Firmware facts the kernel reads that the e820 map does not carry (defaults: QEMU 7.2 ``pc``
with SeaBIOS 1.16.2, the machine of ``real-boots-2008/``):

``ebda`` / ``bios_lowmem_kb``
    (above) the BIOS data area: EBDA segment at 0x40E (SeaBIOS puts a 1 KiB EBDA at
    0x9fc00) and the base memory size at 0x413 (639 KiB).
``mp_table``
    (above) SeaBIOS builds the MP floating pointer in the F-segment at 0xf5ba0 with the
    configuration table right after it (mpf_physptr = 0xf5bb0).
``mp_cpus``
    The processor entries of that MP table: MP_processor_info() sets one bit of
    cpu_possible_map per entry (capped at NR_CPUS), and init/main.c setup_per_cpu_areas()
    allocates one area per possible CPU. SeaBIOS 1.16.2 src/fw/mptable.c writes an entry per
    possible APIC id but flags it enabled only if apic_id_is_present() (it saw the CPU start),
    and MP_processor_info() skips disabled entries; in the QEMU TCG boots of real-boots-2008
    only the boot CPU was seen, whatever ``-smp`` said (``Processors: 1``). With ACPI the
    MADT, which QEMU writes itself, lists every CPU instead. Default 1. import-dmesg reads it
    from the log: ``CPUs=N`` of the SLUB line (nr_cpu_ids), else ``Processors: N``.
``dmi_version``
    The SMBIOS entry point's version (``DMI 2.8 present.``): QEMU 7.2's 2.1-style entry point
    says "compliant with smbios spec v2.8" (bcd revision 0x28), which SeaBIOS copies to the
    F-segment, where dmi_scan_machine() finds the ``_DMI_`` anchor. ``""``: no table, so
    dmi_scan_machine() prints ``DMI not present or invalid.`` and allocates nothing.
``dmi_bios_vendor``, ``dmi_bios_version``, ``dmi_bios_date`` (type 0), ``dmi_sys_vendor``,
``dmi_product_name``, ``dmi_product_version``, ``dmi_product_serial`` (type 1),
``dmi_board_vendor``, ``dmi_board_name``, ``dmi_board_version``, ``dmi_board_serial``,
``dmi_board_asset_tag`` (type 2), ``dmi_chassis_vendor``, ``dmi_chassis_version``,
``dmi_chassis_serial``, ``dmi_chassis_asset_tag`` (type 3)
    The SMBIOS strings drivers/firmware/dmi_scan.c dmi_decode() saves with dmi_string()
    (one alloc_bootmem() of strlen + 1 each; an empty string, string number 0, still takes
    1 byte; a string starting with eight blanks takes none). ``false``: not saved (the
    structure is not in the table; a structure whose keys are all false is skipped whole).
    Defaults, read in the two firmware sources: QEMU 7.2 hw/smbios/smbios.c builds type 0 only
    when asked ("optional, leave up to BIOS"), so SeaBIOS 1.16.2 src/fw/biostables.c
    smbios_build_tables() puts its own first: BIOS_NAME ``SeaBIOS``, its build VERSION (the
    string its banner prints, ``SeaBIOS (version 1.16.2-debian-1.16.2-1)``) and BIOS_DATE
    ``04/01/2014``. QEMU's required type 1 takes smbios_set_defaults()'s ``QEMU``, the
    machine's description ``Standard PC (i440FX + PIIX, 1996)`` and its name
    ``pc-i440fx-7.2``, no serial (string 0); type 2 is optional and not built; the required
    type 3 has ``QEMU``, chassis type 0x01 "Other", ``pc-i440fx-7.2``, no serial and no
    asset tag. (The shared logs print ``SeaBIOS (version ...)``; import-dmesg takes the
    version from there.)
``dmi_product_uuid``
    ``false`` (QEMU without ``-uuid`` writes an all-zero UUID, which dmi_save_uuid() skips)
    or ``true`` (a 37-byte string is allocated).
``dmi_chassis_type``
    The type 3 chassis type byte (QEMU: 1, "Other"); dmi_save_type() allocates 4 bytes
    for it; ``false``: no type 3 structure.
``console_cols`` / ``console_rows``
    The text console drivers/char/vt.c con_init() sets up (boot_params.screen_info: the BIOS
    video mode, 80x25 for SeaBIOS's VGA text mode): it allocates a struct vc_data and a
    cols * rows * 2 screen buffer. 0: no VT console (CONFIG_VT off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bootemu.models import BootemuError, Machine
from bootemu.units import parse_size

HIGHMEM_CHOICES = ("off", "4G", "64G")

#: arch/x86/Kconfig, 2008: the VMSPLIT choices of CONFIG_PAGE_OFFSET; the _OPT ones depend on
#: !X86_PAE.
PAGE_OFFSETS = {0xC0000000: True, 0xB0000000: False, 0x80000000: True, 0x78000000: False,
                0x40000000: True}

_BOOL_KEYS = ("smp", "acpi_sleep", "find_smp_config", "dmi_product_uuid")
#: Keys that hold text (the SMBIOS strings) or ``false`` for "not in the table".
_TEXT_KEYS = ("dmi_version",) + tuple(
    f"dmi_{k}" for k in ("bios_vendor", "bios_version", "bios_date", "sys_vendor",
                         "product_name", "product_version", "product_serial", "board_vendor",
                         "board_name", "board_version", "board_serial", "board_asset_tag",
                         "chassis_vendor", "chassis_version", "chassis_serial",
                         "chassis_asset_tag"))
#: Keys whose default follows another key when the profile leaves it unset (None).
_DERIVED_DEFAULTS = {
    "find_smp_config": lambda v: v["smp"],
    "spinlock_size": lambda v: 4 if v["smp"] else 0,
}


@dataclass(frozen=True)
class Config:
    """The validated kernel configuration of one boot (see the module docstring)."""

    highmem: str
    page_offset: int
    vmalloc_reserve: int
    vmalloc_end: int
    image_start: int
    image_end: int
    text_size: int
    data_size: int
    rodata_size: int
    init_size: int
    bss_size: int
    ebda: int
    bios_lowmem_kb: int
    mp_table: int
    smp: bool
    nr_cpus: int
    acpi_sleep: bool
    initrd_start: int
    initrd_size: int
    struct_page_size: int
    l1_cache_shift: int
    pageblock_order: int
    percpu_size: int
    find_smp_config: bool
    spinlock_size: int
    fixmap_slots: int
    mp_cpus: int
    dmi_version: str
    dmi_bios_vendor: str | bool
    dmi_bios_version: str | bool
    dmi_bios_date: str | bool
    dmi_sys_vendor: str | bool
    dmi_product_name: str | bool
    dmi_product_version: str | bool
    dmi_product_serial: str | bool
    dmi_product_uuid: bool
    dmi_board_vendor: str | bool
    dmi_board_name: str | bool
    dmi_board_version: str | bool
    dmi_board_serial: str | bool
    dmi_board_asset_tag: str | bool
    dmi_chassis_vendor: str | bool
    dmi_chassis_type: int | bool
    dmi_chassis_version: str | bool
    dmi_chassis_serial: str | bool
    dmi_chassis_asset_tag: str | bool
    console_cols: int
    console_rows: int

    @property
    def pae(self) -> bool:
        """CONFIG_X86_PAE (selected by HIGHMEM64G)."""
        return self.highmem == "64G"

    @property
    def has_highmem(self) -> bool:
        """CONFIG_HIGHMEM."""
        return self.highmem != "off"

    @property
    def smp_cache_bytes(self) -> int:
        """SMP_CACHE_BYTES = L1_CACHE_BYTES = 1 << CONFIG_X86_L1_CACHE_SHIFT."""
        return 1 << self.l1_cache_shift


CONFIG_KEYS = tuple(f.name for f in fields(Config))


def _bad(machine: Machine, key: str, what: str) -> BootemuError:
    return BootemuError(f"{machine.source}: kernel.{key}: {what}")


def read_config(machine: Machine, defaults: Mapping[str, Any]) -> Config:
    """Validate the machine's x86_32 keys against ``defaults`` (the profile's) and merge them.

    ``highmem`` comes from ``machine.kernel.highmem``; every other key from
    ``machine.kernel.get()``. Keys the arch does not know are left to other plugins.
    """
    highmem = machine.kernel.highmem if machine.kernel.highmem is not None else "64G"
    if highmem not in HIGHMEM_CHOICES:
        raise _bad(machine, "highmem", f"{highmem!r} is not one of {', '.join(HIGHMEM_CHOICES)}")
    values: dict[str, Any] = {"highmem": highmem}
    for key in CONFIG_KEYS:
        if key == "highmem":
            continue
        raw = machine.kernel.get(key, None)
        if raw is None:
            values[key] = defaults.get(key)
        elif key in _TEXT_KEYS:
            values[key] = _text(machine, key, raw)
        elif key == "dmi_chassis_type" and raw is False:
            values[key] = False
        elif key in _BOOL_KEYS:
            if not isinstance(raw, bool):
                raise _bad(machine, key, f"expected true or false, got {raw!r}")
            values[key] = raw
        else:
            values[key] = parse_size(raw, f"{machine.source}: kernel.{key}")
    for key, derive in _DERIVED_DEFAULTS.items():
        if values[key] is None:
            values[key] = derive(values)
    cfg = Config(**values)
    _check(machine, cfg)
    return cfg


def _text(machine: Machine, key: str, raw: Any) -> str | bool:
    """A text key: a string, or ``false`` (the SMBIOS structure is absent). A machine file
    string that reads as a number was turned into one when loaded; give the text back."""
    if raw is False or isinstance(raw, str):
        return raw
    if raw is True:
        raise _bad(machine, key, "expected a string or false, got true")
    return str(raw)


def _check(machine: Machine, cfg: Config) -> None:
    """Cross-key checks: what Kconfig or the boot protocol would not allow."""
    if cfg.page_offset not in PAGE_OFFSETS:
        choices = ", ".join(f"{p:#x}" for p in PAGE_OFFSETS)
        raise _bad(machine, "page_offset", f"{cfg.page_offset:#x} is not a VMSPLIT choice "
                   f"({choices})")
    if cfg.pae and not PAGE_OFFSETS[cfg.page_offset]:
        raise _bad(machine, "page_offset", f"{cfg.page_offset:#x} depends on !X86_PAE "
                   "(not available with highmem = \"64G\")")
    if cfg.vmalloc_reserve >= (1 << 32) - cfg.page_offset:
        raise _bad(machine, "vmalloc_reserve", f"{cfg.vmalloc_reserve:#x} leaves no lowmem "
                   f"below 4 GiB with page_offset {cfg.page_offset:#x}")
    if cfg.image_start % 4096:
        raise _bad(machine, "image_start", f"{cfg.image_start:#x} is not page aligned")
    if cfg.image_end <= cfg.image_start:
        raise _bad(machine, "image_end", f"{cfg.image_end:#x} is not above image_start "
                   f"{cfg.image_start:#x}")
    if cfg.image_end > (1 << 32) - cfg.page_offset:
        raise _bad(machine, "image_end", f"{cfg.image_end:#x} is beyond lowmem")
    if cfg.ebda >= 0x100000:
        raise _bad(machine, "ebda", f"{cfg.ebda:#x} is not below 1 MiB")
    if cfg.bios_lowmem_kb > 0xFFFF:
        raise _bad(machine, "bios_lowmem_kb", f"{cfg.bios_lowmem_kb} does not fit the BIOS "
                   "data area word")
    if cfg.mp_table >= 0x100000:
        raise _bad(machine, "mp_table", f"{cfg.mp_table:#x} is not below 1 MiB")
    if not 1 <= cfg.nr_cpus <= 255:
        raise _bad(machine, "nr_cpus", f"{cfg.nr_cpus} is not between 1 and 255")
    if not cfg.smp and cfg.nr_cpus != 1:
        raise _bad(machine, "nr_cpus", f"{cfg.nr_cpus} CPUs need smp = true")
    if cfg.initrd_size and not cfg.initrd_start:
        raise _bad(machine, "initrd_start", "an initrd needs a start address")
    if cfg.initrd_start + cfg.initrd_size >= 1 << 32:
        raise _bad(machine, "initrd_size", "the initrd ends beyond 4 GiB (ramdisk_image and "
                   "ramdisk_size are 32-bit)")
    if not 16 <= cfg.struct_page_size <= 256:
        raise _bad(machine, "struct_page_size", f"{cfg.struct_page_size} is not a plausible "
                   "sizeof(struct page)")
    if not 4 <= cfg.l1_cache_shift <= 7:
        raise _bad(machine, "l1_cache_shift", f"{cfg.l1_cache_shift} is not 4..7")
    if not 1 <= cfg.pageblock_order <= 10:
        raise _bad(machine, "pageblock_order", f"{cfg.pageblock_order} is not 1..MAX_ORDER-1")
    if cfg.spinlock_size not in (0, 4, 8, 12, 16, 20, 24, 28, 32, 36):
        raise _bad(machine, "spinlock_size", f"{cfg.spinlock_size} is not a sizeof(spinlock_t) "
                   "of 2.6.25 i386 (0..36, a multiple of 4)")
    if not 1 <= cfg.mp_cpus <= 255:
        raise _bad(machine, "mp_cpus", f"{cfg.mp_cpus} is not between 1 and 255")
    if cfg.dmi_chassis_type is not False and not 0 <= int(cfg.dmi_chassis_type) <= 255:
        raise _bad(machine, "dmi_chassis_type", f"{cfg.dmi_chassis_type} is not a byte")
    for key in ("console_cols", "console_rows"):
        if getattr(cfg, key) > 1024:
            raise _bad(machine, key, f"{getattr(cfg, key)} is not a text console size")
    if cfg.percpu_size % 4 or cfg.percpu_size == 0:
        raise _bad(machine, "percpu_size", f"{cfg.percpu_size} is not a positive multiple of 4")
