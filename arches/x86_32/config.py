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
    The BIOS data area words the 2.6.25 reserve_ebda_region() reads: the EBDA start (word
    at 0x40E shifted by 4; 0 = no EBDA) and the conventional memory size in KiB (word at
    0x413). Defaults: SeaBIOS under QEMU, 0x9fc00 and 639.
``mp_table``
    Physical address of the MP floating pointer find_smp_config() finds (0 = none); the MP
    configuration table is taken to follow it (16 bytes later), as SeaBIOS lays them out.
``smp`` / ``nr_cpus``
    CONFIG_SMP (reserves the trampoline page 1 and allocates per-cpu areas) and the number
    of possible CPUs (one per-cpu area each).
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
    2.6.25: PERCPU_ENOUGH_ROOM (static per-cpu data plus the 8 KiB module reserve), the size
    of each CPU's area. 6.1: the first-chunk unit size (``u135168`` in the Debian logs).
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

_BOOL_KEYS = ("smp", "acpi_sleep")


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
            values[key] = defaults[key]
        elif key in _BOOL_KEYS:
            if not isinstance(raw, bool):
                raise _bad(machine, key, f"expected true or false, got {raw!r}")
            values[key] = raw
        else:
            values[key] = parse_size(raw, f"{machine.source}: kernel.{key}")
    cfg = Config(**values)
    _check(machine, cfg)
    return cfg


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
    if cfg.percpu_size % 4 or cfg.percpu_size == 0:
        raise _bad(machine, "percpu_size", f"{cfg.percpu_size} is not a positive multiple of 4")
