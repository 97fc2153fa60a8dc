"""The 2.6.25 x86_32 boot up to the layout: firmware map, command line, pfn limits, zones.

Each method follows one kernel routine and says which; 2.6.25 quirks are reproduced on
purpose and marked ``2.6.25 quirk``. One instance lives for one boot and keeps the kernel's
globals (``max_pfn``, ``max_low_pfn``, ``highmem_pages`` ...) as attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.x86_32 import mm
from bootemu_arches.x86_32.config import Config
from bootemu_arches.x86_32.zones import ZoneSize, zone_sizes

from bootemu.cmdline import split_cmdline
from bootemu.e820 import (
    E820_ACPI,
    E820_RAM,
    E820_RESERVED,
    find_max_pfn_2625,
    format_table,
    limit_regions_2625,
    ram_pfn_ranges,
    sanitize,
)
from bootemu.models import (
    PAGE_SIZE,
    Block,
    BootemuError,
    E820Entry,
    Layout,
    Machine,
    Zone,
    pfn_down,
    pfn_up,
)
from bootemu.units import memparse_prefix, strtoull_prefix

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot

U32 = 0xFFFFFFFF


class Setup2625:
    """2.6.25 setup_arch() up to setup_memory(), for one boot; holds the kernel's globals.

    Constants come from the data-sheet subclass (v2_6_25.Linux2625).
    """

    # Provided by the data-sheet subclass (Linux2625).
    PROFILE: str
    MAX_NONPAE_PFN: int
    MAX_DMA_PFN: int
    DMA_GOAL: int
    DMA_RESERVE: int
    MIGRATE_TYPES: int
    E820MAX: int
    MSG_HIGHMEM_TOO_SMALL: str
    MSG_HIGHMEM_TOO_BIG: str
    MSG_LOWMEM_TOO_SMALL: str
    MSG_HIGHMEM_TRIMMED: tuple[str, ...]

    def __init__(self, machine: Machine, cfg: Config) -> None:
        self.machine = machine
        self.cfg = cfg
        self.boot: Boot | None = None
        self.e820: list[E820Entry] = []
        self.user_defined_memmap = False
        self.highmem_pages = U32  # "static unsigned int highmem_pages = -1"
        self.vmalloc_reserve = cfg.vmalloc_reserve
        self.pse = True  # cpu_has_pse, until mem=nopentium
        self.hash_entries = {"dhash_entries": 0, "ihash_entries": 0}
        self.crashkernel: str | None = None
        self.max_pfn = self.max_low_pfn = self.min_low_pfn = 0
        self.highstart_pfn = self.highend_pfn = 0
        self.zones: list[ZoneSize] = []
        self.active: list[tuple[int, int]] = []
        self.ram: list[tuple[int, int]] = []
        self.bootmap_size = 0
        self.nr_kernel_pages = self.nr_all_pages = 0
        self.order0: dict[str, int] = {}  # single-page frees per zone at handoff
        self.totalram_pages = self.totalhigh_pages = self.reservedpages = 0

    # ---------------------------------------------------------------------------------------
    # helpers

    def printk(self, event: str, lines: str | list[str], **fields: Any) -> None:
        """A trace event carrying kernel text (none for an empty table)."""
        assert self.boot is not None
        if lines:
            self.boot.printk(event, lines, **fields)
        else:
            self.boot.trace(event, **fields)

    def fact(self, **facts: int | str) -> None:
        assert self.boot is not None
        self.boot.facts.update(facts)

    def _where(self, key: str) -> str:
        return f"{self.machine.source}: {key}"

    def table(self, event: str, header: str | None, who: str) -> None:
        """print_memory_map(who) of the current table, with an optional header line."""
        lines = ([header] if header else []) + format_table(who, self.e820, profile=self.PROFILE)
        self.printk(event, lines, who=who, entries=[[e.start, e.end, e.type] for e in self.e820])

    # ---------------------------------------------------------------------------------------
    # firmware: machine_specific_memory_setup()

    def firmware(self, boot: Boot) -> None:
        """arch/x86/mach-default/setup.c machine_specific_memory_setup() + setup_arch().

        The boot_params copy is sanitized in place (sanitize_e820_map() leaves a table of
        fewer than two entries alone), then copy_e820_map() takes it; a map of fewer than two
        entries is refused by both and the kernel would fall back to the BIOS-88/e801 sizes,
        which a machine file does not carry.
        """
        self.boot = boot
        self.fact(bits_per_long=32)
        table = list(self.machine.e820)
        if len(table) < 2:
            raise BootemuError(
                f"{self._where('firmware.e820')}: {len(table)} entries; copy_e820_map() needs at "
                "least two (the BIOS-88/e801 fallback is not emulated)")
        self.e820 = sanitize(table, profile=self.PROFILE) or table
        boot.e820 = list(self.e820)
        self.table("e820.table", "BIOS-provided physical RAM map:", "BIOS-e820")

    # ---------------------------------------------------------------------------------------
    # cmdline: parse_early_param()

    def cmdline(self, boot: Boot) -> None:
        """parse_early_param() in command-line order, then the user-defined map."""
        for param, value in split_cmdline(self.machine.kernel.cmdline, profile=self.PROFILE):
            self.early_param(param, value)
        self.finish_early_params()
        boot.e820 = list(self.e820)

    def finish_early_params(self) -> None:
        """setup_arch(), 2.6.25: ``user-defined physical RAM map:`` after mem=/memmap=.

        2.6.25 quirk: the user-defined map is printed and used *unsanitized*: memmap= regions
        stay in insertion order and may overlap RAM.
        """
        if self.user_defined_memmap:
            self.table("e820.table", "user-defined physical RAM map:", "user")

    def early_param(self, param: str, value: str | None) -> None:
        """One early parameter (the __setup/early_param handlers this emulator knows)."""
        if value is None:
            return  # every handler below returns -EINVAL without an argument
        if param == "mem":
            self.parse_mem(value)
        elif param == "memmap":
            self.parse_memmap(value)
        elif param == "highmem":
            self.highmem_pages = (memparse_prefix(value)[0] >> 12) & U32
        elif param == "vmalloc":
            self.parse_vmalloc(value)
        elif param in self.hash_entries:
            self.hash_entries[param] = strtoull_prefix(value)[0] & U32  # simple_strtoul()
        elif param == "crashkernel":
            self.crashkernel = value

    def parse_vmalloc(self, value: str) -> None:
        """setup_32.c parse_vmalloc(): ``__VMALLOC_RESERVE = memparse()`` (u32)."""
        size = memparse_prefix(value)[0] & U32
        if size >= (1 << 32) - self.cfg.page_offset:
            raise BootemuError(f"{self._where('kernel.cmdline')}: vmalloc={value} leaves no "
                               "lowmem (MAXMEM would wrap)")
        self.vmalloc_reserve = size

    def parse_mem(self, value: str) -> None:
        """setup_32.c parse_mem(): ``nopentium`` clears PSE, a size calls limit_regions()."""
        if value == "nopentium":
            self.pse = False
            return
        self.limit_regions(memparse_prefix(value)[0])
        self.user_defined_memmap = True

    def parse_memmap(self, value: str) -> None:
        """e820_32.c parse_memmap(), 2.6.25: one range per ``memmap=``.

        2.6.25 quirk: ``nn@ss``, ``nn#ss`` and ``nn$ss`` append a region with
        add_memory_region() but do not set user_defined_memmap, so the user map is not
        printed for them (only ``exactmap`` and the plain ``nn`` form set it).
        """
        if value == "exactmap":
            self.e820 = []
            self.user_defined_memmap = True
            return
        size, pos = memparse_prefix(value)
        kind = {"@": E820_RAM, "#": E820_ACPI, "$": E820_RESERVED}.get(value[pos:pos + 1])
        if kind is None:
            self.limit_regions(size)
            self.user_defined_memmap = True
            return
        start = memparse_prefix(value, pos + 1)[0]
        if len(self.e820) >= self.E820MAX:
            self.printk("e820.overflow", "Ooops! Too many entries in the memory map!")
            return
        self.e820.append(E820Entry(start, start + size, kind))

    def limit_regions(self, size: int) -> None:
        """e820_32.c limit_regions(): cut the table at ``size``, printing it as it goes."""
        self.table("e820.table", None, "limit_regions start")
        before = self.e820
        self.e820 = limit_regions_2625(before, size)
        cut = any(e.type == E820_RAM and e.end >= size for e in before)
        self.table("e820.table", None, "limit_regions endfor" if cut else "limit_regions endfunc")

    # ---------------------------------------------------------------------------------------
    # layout: propagate_e820_map(), setup_memory(), zone_sizes_init() arithmetic

    def layout(self, boot: Boot) -> Layout:
        """propagate_e820_map() + setup_memory() + the numbers of zone_sizes_init()."""
        self.boot = boot
        self.fact(bits_per_long=32)
        self.max_pfn = find_max_pfn_2625(self.e820)
        self.fact(e820_max_pfn=self.max_pfn)
        if self.max_pfn == 0:
            raise BootemuError(f"{self._where('kernel.cmdline')}: the memory map has no usable "
                               "RAM left")
        self.min_low_pfn = pfn_up(self.init_pg_tables_end())
        self.max_low_pfn = self.find_max_low_pfn()
        self.setup_memory_print()
        if self.min_low_pfn >= self.max_low_pfn:
            raise BootemuError(f"{self._where('kernel.image_end')}: the kernel image and boot "
                               "page tables do not fit in lowmem")
        self.ram = ram_pfn_ranges(self.e820, limit_pfn=self.highend_pfn)
        return self.make_layout()

    def maxmem_pfn(self) -> int:
        """include/asm-x86/setup.h: MAXMEM_PFN = PFN_DOWN(MAXMEM)."""
        return pfn_down(self.maxmem())

    def find_max_low_pfn(self) -> int:
        """setup_32.c find_max_low_pfn(), 2.6.25, with every message it prints.

        Computes in the kernel's 32-bit unsigned arithmetic (``highmem_pages`` is an unsigned
        int that starts at -1). Adjusts ``max_pfn`` (highmem= cut, NOHIGHMEM and HIGHMEM4G
        clipping) and returns max_low_pfn.
        """
        maxmem_pfn, hp, cfg = self.maxmem_pfn(), self.highmem_pages, self.cfg
        max_low = self.max_pfn
        msgs: list[str] = []
        if max_low > maxmem_pfn:
            if hp == U32:
                hp = (self.max_pfn - maxmem_pfn) & U32
            if (hp + maxmem_pfn) & U32 < self.max_pfn:
                self.max_pfn = (maxmem_pfn + hp) & U32  # highmem= can truncate memory
            if (hp + maxmem_pfn) & U32 > self.max_pfn:
                msgs.append(self.MSG_HIGHMEM_TOO_SMALL.format(
                    avail=mm.pages_to_mb(self.max_pfn - maxmem_pfn), size=mm.pages_to_mb(hp)))
                hp = 0
            max_low = maxmem_pfn
            if not cfg.has_highmem:
                msgs.append(f"Warning only {self.maxmem() >> 20}MB will be used.")
                msgs.append("Use a HIGHMEM64G enabled kernel." if self.max_pfn > self.MAX_NONPAE_PFN
                            else "Use a HIGHMEM enabled kernel.")
                self.max_pfn = maxmem_pfn
            elif not cfg.pae and self.max_pfn > self.MAX_NONPAE_PFN:
                self.max_pfn = self.MAX_NONPAE_PFN
                msgs += self.MSG_HIGHMEM_TRIMMED
        else:
            if hp == U32:
                hp = 0
            if cfg.has_highmem:
                if hp >= self.max_pfn:
                    msgs.append(self.MSG_HIGHMEM_TOO_BIG.format(
                        size=mm.pages_to_mb(hp), avail=mm.pages_to_mb(self.max_pfn)))
                    hp = 0
                if hp:
                    if max_low - hp < (64 << 20) // PAGE_SIZE:
                        msgs.append(self.MSG_LOWMEM_TOO_SMALL.format(size=mm.pages_to_mb(hp)))
                        hp = 0
                    max_low -= hp
            elif hp:
                msgs.append("ignoring highmem size on non-highmem kernel!")
        self.highmem_pages = hp
        for line in msgs:
            self.printk("layout.warning", line)
        self.fact(maxmem_pfn=maxmem_pfn)
        return max_low

    def setup_memory_print(self) -> None:
        """setup_memory(): highstart/highend, then ``HIGHMEM``/``LOWMEM available``."""
        if self.cfg.has_highmem:
            self.highstart_pfn = self.highend_pfn = self.max_pfn
            if self.max_pfn > self.max_low_pfn:
                self.highstart_pfn = self.max_low_pfn
            self.printk("layout.highmem", f"{mm.pages_to_mb(self.highend_pfn - self.highstart_pfn)}"
                        "MB HIGHMEM available.", highstart_pfn=self.highstart_pfn,
                        highend_pfn=self.highend_pfn)
        else:
            self.highstart_pfn = self.highend_pfn = self.max_low_pfn
        self.printk("layout.lowmem", f"{mm.pages_to_mb(self.max_low_pfn)}MB LOWMEM available.",
                    min_low_pfn=self.min_low_pfn, max_low_pfn=self.max_low_pfn)

    def max_zone_pfns(self) -> list[tuple[str, int]]:
        """zone_sizes_init(): ZONE_DMA to 16 MiB, ZONE_NORMAL to max_low_pfn, ZONE_HIGHMEM to
        highend_pfn (CONFIG_HIGHMEM only)."""
        out = [("DMA", self.MAX_DMA_PFN), ("Normal", self.max_low_pfn)]
        if self.cfg.has_highmem:
            out.append(("HighMem", self.highend_pfn))
        return out

    def active_ranges(self) -> list[tuple[int, int]]:
        """zone_sizes_init(), 2.6.25: ``add_active_range(0, 0, highend_pfn)`` (max_low_pfn
        without HIGHMEM): one range from pfn 0, holes included."""
        return [(0, self.highend_pfn)]

    def size_zones(self) -> None:
        """free_area_init_core() arithmetic, 2.6.25: present = spanned - absent - memmap
        (- dma_reserve for ZONE_DMA); nr_kernel_pages counts the non-highmem zones."""
        self.active = self.active_ranges()
        self.zones = zone_sizes(self.active, self.max_zone_pfns())
        self.nr_kernel_pages = self.nr_all_pages = 0
        for j, z in enumerate(self.zones):
            realsize = z.spanned - z.absent
            z.memmap = self.memmap_pages(z.spanned, self.cfg)
            if realsize >= z.memmap:
                realsize -= z.memmap
            if j == 0 and realsize > self.DMA_RESERVE:
                realsize -= self.DMA_RESERVE
            z.present = z.freesize = realsize
            if not z.highmem:
                self.nr_kernel_pages += realsize
            self.nr_all_pages += realsize

    def make_layout(self) -> Layout:
        """The Layout: RAM below max_pfn on node 0, zones as the kernel sizes them."""
        self.size_zones()
        limits = [(z.name, z.highest) for z in self.zones if z.name != "Movable"]
        zones = [Zone(0, z.name, z.start, z.end, z.present) for z in self.zones
                 if z.name != "Movable"]
        self.fact(min_low_pfn=self.min_low_pfn, max_low_pfn=self.max_low_pfn,
                  max_pfn=self.max_pfn, highstart_pfn=self.highstart_pfn,
                  highend_pfn=self.highend_pfn, nr_kernel_pages=self.nr_kernel_pages,
                  nr_all_pages=self.nr_all_pages)
        return Layout(
            max_pfn=self.highend_pfn,
            ram=tuple(self.ram),
            blocks=tuple(Block(s, e, 0) for s, e in self.ram),
            zones=tuple(zones),
            zone_limits=tuple(limits),
            max_low_pfn=self.max_low_pfn,
            lowmem_mb=mm.pages_to_mb(self.max_low_pfn),
            highmem_mb=mm.pages_to_mb(self.highend_pfn - self.highstart_pfn),
        )
