"""What ``bootemu explain`` counts, and how it names what it counts.

- :func:`counting_rules`: per arch and profile, the kernel's arithmetic of its ``Memory:``
  line (which pages its ``reserved`` figure counts, what its total counts) and the lines of
  ``total - free`` that are not reserved pages.
- :class:`Regions` and :func:`owner_of`: the owner of a reserved range: a section of the kernel
  image (from ``System.map``, else the arch's image bounds), the boot page tables, the area
  below 1 MiB, or the routine that allocated it (the emulation's label or caller, the trace's
  caller, resolved with ``System.map`` when the trace printed a return address).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bootemu.checks import intersect, subtract
from bootemu.models import PAGE_SIZE, merge_ranges

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.explain import Row
    from bootemu.sequencer import BootResult

MiB = 1 << 20

#: 2.6.25 setup_bootmem_allocator() reserves the kernel, the boot page tables and the bitmap
#: with ``bootmap_size + PAGE_SIZE - 1`` bytes past the tables and rounds the end up: one page
#: more than the bitmap (boot-allocators reference §1.3).
AFTER_BITMAP = "the page after the bitmap (setup_bootmem_allocator() rounding)"
LOW_MIB = "the first MiB (BIOS data, EBDA, ROM areas)"
IMAGE = "kernel image (text, data, init, bss)"
#: What a reservation below 1 MiB may be besides the BIOS areas (x86_64 2.6.25 puts NODE_DATA
#: and the direct-mapping page tables there, from 0x8000 up).
LOW_OWNERS = frozenset(
    {
        "MP table",
        "ACPI tables",
        "SMP trampoline",
        "NODE_DATA (node descriptors)",
        "boot page tables (direct mapping)",
        "initrd",
    }
)

#: The kernel routine that asked, to the owner row its memory goes to (2.6.25 and 6.1 names).
CALLER_OWNERS = {
    "memmap_alloc": "mem_map (struct page arrays)",
    "alloc_node_mem_map": "mem_map (struct page arrays)",
    "setup_usemap": "usemaps (pageblock flags)",
    "sparse_early_usemap_alloc": "usemaps (pageblock flags)",
    "zone_wait_table_init": "zone wait tables",
    "alloc_large_system_hash": "dentry and inode hash tables",
    "pidhash_init": "PID hash table",
    "setup_per_cpu_areas": "per-cpu areas",
    "pcpu_fc_alloc": "per-cpu areas",
    "pcpu_embed_first_chunk": "per-cpu areas",
    "pcpu_build_alloc_info": "per-cpu areas",
    "pcpu_setup_first_chunk": "per-cpu areas",
    "pcpu_alloc_first_chunk": "per-cpu areas",
    "one_page_table_init": "page tables",
    "one_md_table_init": "page tables",
    "pagetable_init": "page tables",
    "alloc_low_pages": "page tables",
    "spp_getpage": "page tables",
    "vmemmap_alloc_block": "page tables",
    "vmemmap_alloc_block_zero": "page tables",
    "init_mem_mapping": "page tables",
    "sparse_init": "sparsemem section tables",
    "sparse_index_alloc": "sparsemem section tables",
    "acpi_reserve_initial_tables": "ACPI tables",
    "swiotlb_init_remap": "swiotlb bounce buffer",
    "smp_scan_config": "MP table",
    "acpi_parse_hpet": "resources, firmware map, nosave regions",
    "io_apic_init_mappings": "resources, firmware map, nosave regions",
    "e820__reserve_resources": "resources, firmware map, nosave regions",
    "firmware_map_add_early": "resources, firmware map, nosave regions",
    "register_nosave_region": "resources, firmware map, nosave regions",
    "setup_command_line": "command-line copies",
    "alloc_bootmem_cpumask_var": "cpumasks",
    "smp_alloc_memory": "AP trampoline",
    "acpi_reserve_bootmem": "ACPI S3 wakeup code",
    "reserve_real_mode": "real-mode trampoline",
    "relocate_initrd": "initrd",
    # 6.1 x86_64: memblock_phys_alloc_try_nid() prints no request line; the reservation it
    # makes names memblock_alloc_range_nid. In the real boots these are NODE_DATA.
    "memblock_alloc_range_nid": "NODE_DATA (node descriptors)",
    "memblock_dump": "reserved before memblock=debug took effect",
    # 2008 callers (named with System.map)
    "sparse_early_mem_map_alloc": "mem_map (struct page arrays)",
    "swiotlb_init_with_default_size": "swiotlb bounce buffer",
    "e820_reserve_resources": "resources, firmware map, nosave regions",
    "con_init": "console screen buffer (con_init)",
    "setup_node_bootmem": "NODE_DATA (node descriptors)",
    "reserve_bootmem_generic": "early reservations: boot page tables, SMP trampoline",
    "setup_bootmem_allocator": AFTER_BITMAP,
}

#: Reservation labels of the arches (numa64's are the kernel's reserve_early() names) that
#: name an owner row differently.
RESERVE_OWNERS = {
    "PGTABLE": "boot page tables (direct mapping)",
    "page tables": "boot page tables (direct mapping)",
    "NODE_DATA": "NODE_DATA (node descriptors)",
    "BIOS data page": "page 0 (BIOS data area)",
    "first 1M": LOW_MIB,
    "MEMNODEMAP": "memnodemap (address to node hash)",
    "RAMDISK": "initrd",
    "initrd": "initrd",
    "SMP TRAMPOLINE": "SMP trampoline",
    "SMP trampoline page": "SMP trampoline",
    "TEXT DATA BSS": IMAGE,
    "kernel image": IMAGE,
    "MP floating pointer (BIOS)": "MP table",
    "MP configuration table (BIOS)": "MP table",
    "page 0 (BIOS data)": "page 0 (BIOS data area)",
}

#: Emulation labels that say more than their caller (one caller, several owners).
LABEL_OWNERS = (
    ("mem_map", "mem_map (struct page arrays)"),
    ("memmap", "mem_map (struct page arrays)"),
    ("usemap", "usemaps (pageblock flags)"),
    ("section usage", "usemaps (pageblock flags)"),
    ("wait table", "zone wait tables"),
    ("pid hash", "PID hash table"),
    ("NODE_DATA", "NODE_DATA (node descriptors)"),
)

#: One routine, two owners, told apart by the entry point it called (mm/sparse.c, 6.1:
#: sparse_init_nid() takes the section usage maps with memblock_alloc_try_nid() and the
#: memmap buffer with sparse_buffer_init() -> memblock_alloc_exact_nid_raw(), both inlined).
ENTRY_OWNERS = {
    ("sparse_init_nid", "memblock_alloc_exact_nid_raw"): "mem_map (struct page arrays)",
    ("sparse_init_nid", "memblock_alloc_try_nid"): "usemaps (pageblock flags)",
}

_OFFSET = re.compile(r"\+0x[0-9a-f]+(/0x[0-9a-f]+)?$")
#: GCC's clone suffixes (``vmemmap_alloc_block_zero.constprop.0``).
_CLONE = re.compile(r"(\.(constprop|isra|part|cold)\.\d+)+$")
_HEX = re.compile(r"^(0x)?[0-9a-f]{8,16}$")


@dataclass(frozen=True)
class Rec:
    """One thing that holds memory (or gives it back), in boot order.

    ``op``: ``bitmap``, ``reserve``, ``alloc`` or ``free``; bytes ``[start, end)``; ``caller``
    the routine (a name, ``name+0x../0x..`` as 6.1 prints it, or a 2008 return address);
    ``label`` the emulation's short name, if any.
    """

    op: str
    start: int
    end: int
    caller: str
    label: str
    #: The caller the emulation gave the same request (matched in order by size).
    alias: str = ""
    #: The allocator entry point the trace printed (``memblock_alloc_exact_nid_raw`` ...).
    entry: str = ""


def function_of(caller: str, symbols: Any) -> str:
    """The routine named by a trace's caller field (a 2008 address needs System.map)."""
    caller = _OFFSET.sub("", caller.strip())
    if _HEX.match(caller):
        if symbols is None:
            return f"caller {caller} (no System.map to name it)"
        caller = _OFFSET.sub("", symbols.resolve(int(caller, 16)).split("+")[0])
    return _CLONE.sub("", caller)


def owner_of(rec: Rec, symbols: Any) -> str:
    """The owner row of an allocation or reservation outside the image and low regions: the
    emulation's label when it says more than the routine, else the routine's row."""
    if rec.label in RESERVE_OWNERS or rec.label.split("(")[0] in RESERVE_OWNERS:
        return RESERVE_OWNERS.get(rec.label) or RESERVE_OWNERS[rec.label.split("(")[0]]
    for key, owner in LABEL_OWNERS:
        if key.lower() in rec.label.lower():
            return owner
    if rec.entry and rec.caller:
        owner = ENTRY_OWNERS.get((function_of(rec.caller, symbols), rec.entry))
        if owner is not None:
            return owner
    for caller in (rec.alias, rec.caller):
        if caller:
            func = function_of(caller, symbols)
            if func in CALLER_OWNERS:
                return CALLER_OWNERS[func]
    if rec.label:
        return rec.label
    if rec.caller:
        return function_of(rec.caller, symbols)
    return "reserved by the arch"


def bootmem_era_x86_32(machine: Any) -> bool:
    """x86_32 profiles before memblock (2.6.25, and the RFC's v2.6.26-rc1, whose mem_init()
    and head_32.S are 2.6.25's)."""
    return machine.arch == "x86_32" and not machine.kernel.profile.startswith("6.")


class Regions:
    """The named regions a reservation is split by: kernel image sections, the 2.6.25 boot
    page tables, page 0 and the rest of the first MiB."""

    def __init__(self, image: list[tuple[int, int, str]]) -> None:
        self.image = image  # in the order they claim bytes

    @classmethod
    def of(
        cls,
        machine: Any,
        arch: Any,
        maps: list[tuple[int, int]],
        symbols: Any,
    ) -> Regions:
        """Image sections from ``symbols`` (System.map) when given, else the arch's image
        bounds; on x86_32 2.6.25 the boot page tables from the end of the image to the bitmap
        and the page after the bitmap (``maps``: the bitmaps' byte ranges)."""
        cfg = getattr(getattr(arch, "profile", None), "cfg", None)
        start = getattr(cfg, "image_start", None)
        end = getattr(cfg, "image_end", None)
        if end is None and start is not None and getattr(cfg, "image_size", None):
            end = start + cfg.image_size
        image: list[tuple[int, int, str]] = []
        if symbols is not None:
            image = _sections(symbols, getattr(cfg, "page_offset", None))
        elif start is not None and end is not None:
            image = [(start, end, IMAGE)]
        if image and bootmem_era_x86_32(machine) and maps:
            pgt_start = -(-max(e for _s, e, _o in image) // PAGE_SIZE) * PAGE_SIZE
            pgt_end = min(s for s, _e in maps)
            if pgt_end > pgt_start:
                image.append((pgt_start, pgt_end, "boot page tables (pg0, head_32.S)"))
            last = -(-max(e for _s, e in maps) // PAGE_SIZE) * PAGE_SIZE
            image.append((last, last + PAGE_SIZE, AFTER_BITMAP))
        image.sort()
        return cls(image)

    def split(
        self,
        rec: Rec,
        ranges: list[tuple[int, int]],
        symbols: Any,
    ) -> list[tuple[int, int, str]]:
        """``ranges`` (the record's live bytes) cut into ``(start, end, owner)`` pieces."""
        if rec.op == "bitmap":
            return [(s, e, "boot allocator bitmap") for s, e in ranges]
        out: list[tuple[int, int, str]] = []
        rest = list(ranges)
        if rec.op == "reserve":
            for s, e, owner in self.image:
                out += [(a, b, owner) for a, b in intersect(rest, [(s, e)])]
                rest = subtract(rest, [(s, e)])
            out += [(a, b, "page 0 (BIOS data area)") for a, b in intersect(rest, [(0, PAGE_SIZE)])]
            rest = subtract(rest, [(0, PAGE_SIZE)])
            low = intersect(rest, [(PAGE_SIZE, MiB)])
            if low:
                owner = owner_of(rec, symbols)
                if owner not in LOW_OWNERS:
                    owner = LOW_MIB
                out += [(a, b, owner) for a, b in low]
                rest = subtract(rest, [(PAGE_SIZE, MiB)])
        owner = owner_of(rec, symbols)
        out += [(a, b, owner) for a, b in rest]
        return out


#: include/asm-x86/page_64.h __START_KERNEL_map: where x86_64 links the kernel image.
START_KERNEL_MAP = 0xFFFFFFFF80000000
#: The default CONFIG_PAGE_OFFSET of i386 (the 3G/1G split): virtual = physical + it.
PAGE_OFFSET = 0xC0000000


def _sections(symbols: Any, page_offset: int | None) -> list[tuple[int, int, str]]:
    """The image's sections from System.map, as physical ranges: x86_64 links the image at
    __START_KERNEL_map + physical, i386 at PAGE_OFFSET + physical."""
    sym = symbols.image()
    if "_text" not in sym or "_end" not in sym:
        return []
    text = sym["_text"]
    shift = START_KERNEL_MAP if text >= START_KERNEL_MAP else (page_offset or PAGE_OFFSET)

    def rng(a: str, b: str) -> tuple[int, int] | None:
        if a in sym and b in sym and sym[b] > sym[a]:
            return sym[a] - shift, sym[b] - shift
        return None

    named = [
        (rng("_text", "_etext"), "kernel code (_text.._etext)"),
        (rng("_etext", "_edata"), "kernel data (_etext.._edata)"),
        (rng("__init_begin", "__init_end"), "kernel init (__init_begin.._init_end)"),
        (rng("__bss_start", "_end"), "kernel bss (__bss_start.._end)"),
    ]
    out = [(r[0], r[1], o) for r, o in named if r is not None]
    whole = [(sym["_text"] - shift, sym["_end"] - shift)]
    covered = list(merge_ranges((s, e) for s, e, _o in out))
    out += [(s, e, "kernel image: between sections") for s, e in subtract(whole, covered)]
    return sorted(out)


# --------------------------------------------------------------------------------------------
# The kernel's arithmetic


class Rules:
    """One profile's ``Memory:`` arithmetic over a booted state (see :func:`counting_rules`)."""

    def __init__(
        self,
        counted: BootResult,
        domain: list[tuple[int, int]],
        total: int,
        free: int,
        ram: list[tuple[int, int]],
        kind: str,
    ) -> None:
        self.counted = counted
        self.domain = domain
        self.total = total
        self.free = free
        self.ram = ram
        self.kind = kind

    def other_rows(self, counted: BootResult, unhanded: Any, owned: Any) -> list[Row]:
        """The lines of ``total - free`` besides the reserved pages, each by its reason."""
        from bootemu.explain import Row

        rows: list[Row] = []
        ram_pages = sum(e - s for s, e in self.ram)
        holes = self.total - ram_pages
        if holes:
            rows.append(
                Row("holes: pfns that are not RAM, counted in the total", holes, None, "total-free")
            )
        skipped = subtract(self.ram, self.domain)
        # 2.6.25 page_is_ram() denies pfn 0 and 640K-1M: RAM there is neither reserved nor
        # free in mem_init()'s count.
        low = intersect(skipped, [(0, 0x100)])
        if unhanded(low):
            rows.append(
                Row(
                    "page 0: RAM that page_is_ram() denies, so not in reserved",
                    unhanded(low),
                    None,
                    "total-free",
                )
            )
        rest = subtract(skipped, [(0, 0x100)])
        if unhanded(rest):
            rows.append(
                Row(
                    "highmem RAM not freed (mem_init() counts reserved lowmem only)",
                    unhanded(rest),
                    None,
                    "total-free",
                )
            )
        handed = ram_pages - unhanded(self.ram)
        held = handed - self.free
        # numa64 6.1 computes, and records, the pages nr_free_pages() misses at Memory:.
        facts = counted.boot.facts
        for key, name in (
            (
                "deferred_pages",
                "deferred struct-page init: counted in totalram_pages, not yet free at Memory:",
            ),
            ("vmalloc_pgtable_pages", "preallocate_vmalloc_pages(): vmalloc PUD pages"),
        ):
            if facts.get(key):
                rows.append(Row(name, facts[key], None, "total-free"))
                held -= facts[key]
        if held:
            name = (
                "per-cpu page lists (order-0 frees that nr_free_pages() misses)"
                if self.kind == "x86_32 bootmem era"
                else "handed to the page allocator but not counted free"
            )
            rows.append(Row(name, held, None, "total-free"))
        return rows


_SUMMARY = re.compile(r"Memory: (\d+)[kK]/(\d+)[kK] available")


def counting_rules(machine: Any, counted: BootResult) -> Rules:
    """The arithmetic of the arch's ``Memory:`` line, per arch and profile.

    - x86_32 2.6.25 (arch/x86/mm/init_32.c mem_init()): total = num_physpages (every pfn below
      the end of memory, holes included); reserved = the pfns below max_low_pfn that
      page_is_ram() accepts (not pfn 0, not 640K-1M; arch/x86/mm/ioremap.c) and are still
      reserved; free = nr_free_pages() (order-0 frees parked on the per-cpu lists missing).
    - numa64 2.6.25 (arch/x86/mm/init_64.c mem_init()): total = end_pfn; reserved = end_pfn -
      totalram_pages - absent pages: the RAM pages not released.
    - 6.1 (mm/page_alloc.c mem_init_print_info()): total = the present pages; reserved =
      present - totalram_pages(): every present page not released, highmem included.

    ``free`` and ``total`` are read from the counted boot's own ``Memory:`` line (the arch's
    arithmetic); ``reserved`` is counted here from the pages.
    """
    layout = counted.boot.layout
    assert layout is not None
    ram = list(layout.ram)
    line = counted.boot.summary[0] if counted.boot.summary else ""
    m = _SUMMARY.search(line)
    free, total = (int(m.group(1)) // 4, int(m.group(2)) // 4) if m else (0, layout.ram_pages)
    kind = f"{machine.arch} {machine.kernel.profile}"
    domain = ram
    if bootmem_era_x86_32(machine):
        kind = "x86_32 bootmem era"
        low = layout.max_low_pfn or layout.max_pfn
        domain = intersect(ram, [(1, 0xA0), (0x100, low)])
    return Rules(counted, domain, total, free, ram, kind)
