"""The small early memblock requests of Linux 6.1 i386 (Debian 686-pae / 686), in order.

Besides the memmap, the hashes and the per-cpu first chunk, a 6.1 i386 boot makes a string of
sub-page requests and two per-cpu temporaries (allocated then freed) that decide, on the
top-down memblock, where everything after them lands; and trap_init() takes page-table pages
with alloc_low_pages() after the hashes. Sizes are 6.1 arithmetic written next to each request,
checked against the ``memblock=debug`` lines of real-boots/logs/pae_*.log and nopae_4G.log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu.e820 import E820_RAM, sanitize
from bootemu.models import PAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.plugins import AllocatorFacade

ANY = "__alloc_bootmem"

#: kernel/params.c / init/main.c: the command-line names a Debian 6.1 i386 kernel consumes
#: (early_param / __setup / core_param) among those the machines use; anything else without a
#: '.' is an unknown boot option handed to init (argv without '=', envp with '=').
KNOWN_PARAMS = frozenset({
    "console", "earlyprintk", "panic", "oops", "memblock", "loglevel", "ignore_loglevel",
    "mem", "memmap", "highmem", "vmalloc", "initrd", "crashkernel", "root", "ro", "rw",
    "quiet", "debug", "init", "rdinit", "nosmp", "maxcpus", "nr_cpus", "noapic", "nolapic",
    "acpi", "noacpi", "dhash_entries", "ihash_entries", "kernelcore", "movablecore",
    "mitigations", "nopti", "noexec", "reservelow", "nox2apic", "possible_cpus",
    "swiotlb", "iommu", "hashdist", "numa", "noefi", "efi", "BOOT_IMAGE",
})


class Early61:
    """The request list of 6.1 i386 besides the big tables (mixed into Mm61)."""

    # Provided by Linux61 / Setup2625 / Bootmem2625.
    cfg: Any
    machine: Any
    e820: Any
    max_pfn: int
    max_low_pfn: int
    DMA_GOAL: int
    alloc_bootmem: Any  # BootSteps.alloc_bootmem()

    def resource_size(self) -> int:
        """include/linux/ioport.h sizeof(struct resource), 6.1 i386: start, end
        (resource_size_t: 8 bytes with PAE, 4 without) + name, flags, desc, parent, sibling,
        child (6 x 4): 40 / 32 bytes (280 = 7 x 40 and 256 = 8 x 32 in the logs)."""
        return (2 * 8 if self.cfg.pae else 2 * 4) + 6 * 4

    #: arch/x86/kernel/acpi/boot.c HPET_RESOURCE_NAME_SIZE, apic/io_apic.c
    #: IOAPIC_RESOURCE_NAME_SIZE. The real boots' QEMU has one HPET block and one I/O APIC
    #: (the machine file does not describe them): 40 + 9 = 49 and 40 + 11 = 51 bytes with
    #: PAE, 41 and 43 without, as the logs show.
    HPET_RESOURCE_NAME_SIZE = 9
    IOAPIC_RESOURCE_NAME_SIZE = 11
    NR_HPETS = 1
    NR_IOAPICS = 1
    #: drivers/firmware/memmap.c struct firmware_map_entry (64 bytes in the logs), and
    #: kernel/power/snapshot.c struct nosave_region (list_head + 2 unsigned long = 16).
    FIRMWARE_MAP_ENTRY_SIZE = 64
    NOSAVE_REGION_SIZE = 16

    def setup_arch_requests(self, allocator: AllocatorFacade) -> None:
        """setup_arch(), 6.1, after paging_init(): acpi_boot_init() -> acpi_parse_hpet(),
        io_apic_init_mappings() -> ioapic_setup_resources(), e820__reserve_resources() (with
        firmware_map_add_early() per firmware entry), e820__register_nosave_regions()."""
        cache = self.cfg.smp_cache_bytes
        res = self.resource_size()
        for _ in range(self.NR_HPETS):  # acpi_parse_hpet(): resource + its name
            self.alloc_bootmem(allocator, res + self.HPET_RESOURCE_NAME_SIZE, cache, 0, ANY,
                               "acpi_parse_hpet", "hpet resource")
        if self.NR_IOAPICS:  # ioapic_setup_resources(): (name + resource) x nr_ioapics
            self.alloc_bootmem(allocator, (self.IOAPIC_RESOURCE_NAME_SIZE + res) * self.NR_IOAPICS,
                               cache, 0, ANY, "io_apic_init_mappings", "ioapic resources")
        # e820__reserve_resources(): one struct resource per e820_table entry (7 x 40 = 280
        # in pae_1G: the 6 BIOS entries plus the page-0 split of trim_bios_range()).
        self.alloc_bootmem(allocator, res * len(self.e820), cache, 0, ANY,
                           "e820__reserve_resources", "e820 resources")
        # firmware_map_add_early() per e820_table_firmware entry: the BIOS map as
        # e820__memory_setup() sanitized it, before trim_bios_range() and mem=/memmap=.
        firmware = sanitize(list(self.machine.e820), profile="6.1") or list(self.machine.e820)
        for _ in firmware:
            self.alloc_bootmem(allocator, self.FIRMWARE_MAP_ENTRY_SIZE, cache, 0, ANY,
                               "firmware_map_add_early", "firmware map entry")
        for _ in range(self.nosave_regions()):
            self.alloc_bootmem(allocator, self.NOSAVE_REGION_SIZE, cache, 0, ANY,
                               "register_nosave_region", "nosave region")

    def nosave_regions(self) -> int:
        """arch/x86/kernel/e820.c e820__register_nosave_regions(max_pfn), 6.1.176 (the 2025
        stable fix "x86/e820: Fix handling of subpage regions when calculating nosave ranges",
        which the real logs show: ``[mem 0x0009f000-0x000fffff]`` and, without PAE, a hole
        past max_pfn still registered): every gap between RAM entries from PFN_DOWN(end of
        the last) to PFN_UP(start of the next), then from the last RAM end to max_pfn.
        register_nosave_region() (kernel/power/snapshot.c) drops empty ranges, extends the
        last region when the new one starts at its end and allocates a new one otherwise.
        Returns the number of allocations."""
        count, last_end, last_addr = 0, None, 0

        def register(start: int, end: int) -> None:
            nonlocal count, last_end
            if start >= end:
                return
            if last_end != start:
                count += 1
            last_end = end

        for e in self.e820:
            if e.type != E820_RAM:
                continue
            if last_addr < e.start:
                register(last_addr // PAGE_SIZE, -(-e.start // PAGE_SIZE))
            last_addr = e.end
        register(last_addr // PAGE_SIZE, self.max_pfn)
        return count

    # ---------------------------------------------------------------------------------------
    # per-cpu: mm/percpu.c, 6.1

    #: struct pcpu_chunk on i386 (6.1, Debian config): 92 bytes, so that the log's 96-byte
    #: first-chunk request is 92 + one long of populated bitmap.
    PCPU_CHUNK_SIZE = 92
    #: struct pcpu_block_md: 8 ints.
    PCPU_BLOCK_MD_SIZE = 32
    #: ``pcpu-alloc: s104276 ...`` (686-pae) and ``s103316`` (686): the static per-cpu size.
    PCPU_STATIC_SIZE = {True: 104276, False: 103316}
    #: mm/percpu-internal.h PCPU_MIN_ALLOC_SHIFT (4-byte allocation bits), mm/percpu.c
    #: PCPU_SLOT_BASE_SHIFT, include/linux/percpu.h PCPU_BITMAP_BLOCK_SIZE (one page).
    PCPU_MIN_ALLOC_SHIFT = 2
    PCPU_SLOT_BASE_SHIFT = 5

    def percpu_first_chunk(self, allocator: AllocatorFacade) -> None:
        """setup_per_cpu_areas() -> pcpu_embed_first_chunk(): pcpu_build_alloc_info()'s
        ai (PFN_ALIGN(ai_size), page aligned: one page for up to NR_CPUS 32 units), the
        areas array (PFN_ALIGN(nr_groups * sizeof(void *)) = one page), the group's units
        (above MAX_DMA_ADDRESS), then pcpu_setup_first_chunk(); ai and areas are freed last
        (pcpu_free_alloc_info(), memblock_free(areas)). The zero-length free of the unit's
        unused tail (``memblock_phys_free: [x-x-1]``) changes nothing and is not made."""
        cfg = self.cfg
        cache = cfg.smp_cache_bytes
        ai = self.alloc_bootmem(allocator, PAGE_SIZE, PAGE_SIZE, 0, ANY, "pcpu_build_alloc_info",
                                "pcpu alloc info")
        areas = self.alloc_bootmem(allocator, PAGE_SIZE, cache, 0, ANY, "pcpu_embed_first_chunk",
                                   "pcpu areas")
        self.alloc_bootmem(allocator, cfg.percpu_size * cfg.nr_cpus, PAGE_SIZE, self.DMA_GOAL, ANY,
                           "pcpu_embed_first_chunk", "per-cpu first chunk")
        self.pcpu_setup_first_chunk(allocator)
        for addr in (ai, areas):
            if addr is not None:
                allocator.free(addr=addr, size=PAGE_SIZE, node=None)

    def pcpu_setup_first_chunk(self, allocator: AllocatorFacade) -> None:
        """pcpu_setup_first_chunk(), 6.1: group_offsets and group_sizes (nr_groups = 1 x 4
        bytes), unit_map and unit_off (nr_cpu_ids x 4), pcpu_chunk_lists (pcpu_nr_slots x
        sizeof(list_head) 8), then pcpu_alloc_first_chunk() of the dynamic region."""
        cfg = self.cfg
        cache = cfg.smp_cache_bytes
        for n, what in ((1, "group_offsets"), (1, "group_sizes"), (cfg.nr_cpus, "unit_map"),
                        (cfg.nr_cpus, "unit_off")):
            self.alloc_bootmem(allocator, 4 * n, cache, 0, ANY, "pcpu_setup_first_chunk", what)
        # pcpu_nr_slots = __pcpu_size_to_slot(unit_size) + 4; __pcpu_size_to_slot() =
        # max(fls(size) - PCPU_SLOT_BASE_SHIFT + 2, 1): 135168 -> fls 18 -> 15 + 4 = 19 slots,
        # 19 x 8 = 152 bytes (the log's request).
        slots = max(cfg.percpu_size.bit_length() - self.PCPU_SLOT_BASE_SHIFT + 2, 1) + 4
        self.alloc_bootmem(allocator, slots * 8, cache, 0, ANY, "pcpu_setup_first_chunk",
                           "pcpu_chunk_lists")
        # pcpu_alloc_first_chunk(base + static_size, reserved + dyn): the region starts at the
        # static part's page offset and is page aligned: region_size = start_offset + dyn
        # (the unit is static + dyn exactly, r0): (104276 % 4096) + 30892 = 32768.
        static = self.PCPU_STATIC_SIZE[bool(cfg.pae)]
        dyn = cfg.percpu_size - static
        region = -(-((static % PAGE_SIZE) + dyn) // PAGE_SIZE) * PAGE_SIZE
        bits = region >> self.PCPU_MIN_ALLOC_SHIFT
        longs = -(-bits // 32)
        self.alloc_bootmem(allocator, self.PCPU_CHUNK_SIZE + 4 * -(-(region // PAGE_SIZE) // 32),
                           cache, 0, ANY, "pcpu_alloc_first_chunk", "pcpu first chunk")
        self.alloc_bootmem(allocator, 4 * longs, cache, 0, ANY, "pcpu_alloc_first_chunk",
                           "pcpu alloc_map")  # BITS_TO_LONGS(region_bits): 8192 bits -> 1024 bytes
        self.alloc_bootmem(allocator, 4 * -(-(bits + 1) // 32), cache, 0, ANY,
                           "pcpu_alloc_first_chunk", "pcpu bound_map")  # region_bits + 1 -> 1028
        self.alloc_bootmem(allocator, region // PAGE_SIZE * self.PCPU_BLOCK_MD_SIZE, cache, 0, ANY,
                           "pcpu_alloc_first_chunk", "pcpu md_blocks")  # 8 blocks x 32 = 256

    def unknown_bootoptions(self, allocator: AllocatorFacade) -> None:
        """init/main.c print_unknown_bootoptions(), 6.1: 1 + (1 + strlen) per option handed
        to init, allocated and freed at once (``nokaslr``: 1 + 1 + 7 = 9 bytes)."""
        unknown = []
        for word in self.machine.kernel.cmdline.split():
            if word == "--":
                break
            name = word.split("=", 1)[0]
            if "." in name or name in KNOWN_PARAMS:
                continue
            unknown.append(word)
        if not unknown:
            return
        size = 1 + sum(1 + len(w) for w in unknown)
        addr = self.alloc_bootmem(allocator, size, self.cfg.smp_cache_bytes, 0, ANY, "start_kernel",
                                  "unknown boot options")
        if addr is not None:
            allocator.free(addr=addr, size=size, node=None)

    #: setup_cpu_entry_area_ptes(): PTE pages for the CPU entry area, one per PMD it spans
    #: (2 with PAE's 2 MiB PMDs; 1 with 4 MiB PMDs), taken with alloc_low_pages().
    CEA_PTE_PAGES = {True: 2, False: 1}
    #: alloc_low_pages() serves from the brk page-table buffer while it has room. What is left
    #: of it once init_mem_mapping() has mapped lowmem's whole PMDs is not derived here but
    #: read off the logs: 1 page with PAE (pae_1G_mem512M, lowmem PMD aligned, takes 1
    #: memblock page; the others 2) and at least 2 without (nopae_4G takes none).
    BRK_PGT_SPARE = {True: 1, False: 2}

    def cea_page_tables(self, allocator: AllocatorFacade) -> None:
        """trap_init() -> setup_cpu_entry_areas() -> setup_cpu_entry_area_ptes() ->
        populate_extra_pte() -> alloc_low_pages(1): once the brk buffer is used up,
        memblock_phys_alloc_range(PAGE_SIZE, PAGE_SIZE, 1 MiB, max_pfn_mapped) (top-down:
        the highest free page of lowmem). A lowmem end that is not PMD aligned cost
        kernel_physical_mapping_init() one PTE page of the buffer."""
        pae = bool(self.cfg.pae)
        pmd_pages = 512 if pae else 1024
        spare = self.BRK_PGT_SPARE[pae] - (1 if self.max_low_pfn % pmd_pages else 0)
        for _ in range(max(self.CEA_PTE_PAGES[pae] - max(spare, 0), 0)):
            self.alloc_bootmem(allocator, PAGE_SIZE, PAGE_SIZE, 1 << 20, ANY, "alloc_low_pages",
                               "cpu entry area page table")
