"""numa64 as Linux 6.1 boots it (profile ``"6.1"``): only what changed since 2008.

Held to the real Debian 6.1.0-50 amd64 boots in ``real-boots/`` (amd64_512M, amd64_4G,
amd64_4G_mem2G, amd64_numa2_sym, amd64_numa_interleave, amd64_numa2_off). Sources: the logs
themselves; arch/x86/kernel/e820.c (parse_memopt(), e820__finish_early_params(),
e820__end_of_ram_pfn()), arch/x86/kernel/setup.c (trim_bios_range(), the first 1 MiB
reserved), arch/x86/mm/numa.c (numa_cleanup_meminfo(), numa_meminfo_cover_memory(),
numa_register_memblks(), alloc_node_data(), dummy_numa_init(); code-index id 9640293119 and
reference x86_32-early-memory.md §6.2 "NMI"), arch/x86/mm/srat.c
(acpi_numa_memory_affinity_init()), mm/page_alloc.c (free_area_init(), memmap_init(),
init_unavailable_range()), mm/sparse.c (sparse_init(), sparse_init_nid()).

What changed, in one place:

- e820: page 0 becomes reserved and 0xa0000-0xfffff is removed (``e820: update`` /
  ``e820: remove``); ``mem=`` removes RAM from the map and prints the ``user:`` map;
  ``last_pfn = ... max_arch_pfn = ...``.
- NUMA discovery runs as numa.c numa_init() rounds (SRAT, then the dummy node), with
  ``numa=fake=`` NUMA emulation between cleanup and registration
  (:mod:`bootemu_arches.numa64.v6_1_numa`, :mod:`bootemu_arches.numa64.numa_emu_61`).
- NUMA: affinity ranges of different nodes may interleave but not overlap; same-node ranges
  merge when no other node lies between; RAM the nodes miss must stay under 1 MiB; NODE_DATA is
  memblock-allocated top-down inside its node, below the page tables init_mem_mapping() took
  from the top of RAM (:mod:`bootemu_arches.numa64.direct_map`). No bootmem span, no ZONE_ALIGN.
- Zone and node lines in the ``[mem %#018Lx-%#018Lx]`` format, ``On node N, zone Z: N pages
  in unavailable ranges``, and the ``Memory:`` line whose total is all present pages and
  whose free figure lacks the pages deferred struct-page init frees later (key
  ``deferred_struct_page_init``) and the vmalloc page tables mem_init() allocates.
- Early allocations: sparse_init() per run of same-node sections, per-cpu first chunk, the
  dentry and inode hashes (only without hashdist, i.e. with one memory node).
- The MP-table, PCI-gap, ``setup_percpu:``, ``Built N zonelists`` and hash-table lines
  (:mod:`bootemu_arches.numa64.v6_1_mm`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.numa64 import direct_map
from bootemu_arches.numa64.numa_emu_61 import Emulated
from bootemu_arches.numa64.v2_6_25 import (
    DMA_GOAL,
    MAX_DMA32_PFN,
    MAX_DMA_PFN,
    SECTION_PAGES,
    blocks_from,
    pieces,
)
from bootemu_arches.numa64.v2_6_25 import Numa64Base as Linux2625  # what 6.1 shares with 2008
from bootemu_arches.numa64.v6_1_mm import NR_CPUS, VMALLOC_PGD_SLOTS, Mm61
from bootemu_arches.numa64.v6_1_numa import Numa61

from bootemu import e820
from bootemu.archbase import BootSteps
from bootemu.cmdline import split_cmdline
from bootemu.models import (
    PAGE_SIZE,
    AllocRequest,
    BootemuError,
    KernelPanic,
    Layout,
    Machine,
    merge_ranges,
    pfn_down,
    pfn_phys,
)
from bootemu.units import memparse_prefix, strtoull_prefix

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu_arches.numa64 import Config

    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel
    from bootemu.plugins import AllocatorFacade

#: arch/x86/include/asm/sparsemem.h, 4-level paging: MAX_PHYSMEM_BITS 46 -> 2^34 pfns (the logs'
#: ``max_arch_pfn = 0x400000000``).
MAX_ARCH_PFN = 1 << 34
#: The real logs: memblock_alloc ... sparse_init: the mem_section root array (nid -1).
MEM_SECTION_ARRAY = 32768
#: mem_section_usage_size() of the Debian build: 448 bytes for 8 sections in the logs.
SECTION_USAGE_SIZE = 56
#: SMP_CACHE_BYTES of the Debian build (CONFIG_X86_L1_CACHE_SHIFT 6: ``align=0x40`` in the logs).
SMP_CACHE_BYTES_61 = 64
#: The kernel-image figures of the Debian 6.1.0-50 amd64 ``Memory:`` line (every real log).
IMAGE_FIELDS = "14343K kernel code, 2338K rwdata, 9116K rodata, 2820K init, 17356K bss"


class Linux61(Numa61, Mm61, Linux2625):
    """The 6.1 data sheet and the routines that differ from 2.6.25 (the mm counts and lines
    from free_area_init_core() on are in :class:`bootemu_arches.numa64.v6_1_mm.Mm61`)."""

    PROFILE = "6.1"
    DEFAULTS: dict[str, Any] = {
        **Linux2625.DEFAULTS,
        "image_start": 0x1000000,  # memblock_reserve [0x1000000-0x4410fff] in every log
        "image_size": 0x3411000,
        "pgdat_size": 0x2B000,  # NODE_DATA(n) allocated [mem 0x7ffd5000-0x7fffffff]
        "percpu_size": 62 * PAGE_SIZE,  # "percpu: Embedded 62 pages/cpu"
        "struct_page_size": 64,
        "mp_table": 0xF5BA0,  # found SMP MP-table at [mem 0x000f5ba0-0x000f5baf] (SeaBIOS)
        # CONFIG_DEFERRED_STRUCT_PAGE_INIT=y in Debian's 6.1 amd64 config ("node N deferred
        # pages initialised" in every log)
        "deferred_struct_page_init": True,
    }

    def __init__(self, machine: Machine, cfg: Config) -> None:
        super().__init__(machine, cfg)
        for key, default in (("free_ram", "node"), ("srat_check", "memblks")):
            if machine.kernel.get(key, default) != default:
                raise BootemuError(f"{machine.source}: kernel.{key}: a 2.6.25 choice; the 6.1 "
                                   "profile has no such option")
        if len(cfg.cpu_nodes) > NR_CPUS:
            raise BootemuError(f"{machine.source}: kernel.cpu_nodes: {len(cfg.cpu_nodes)} CPUs, "
                               f"more than NR_CPUS ({NR_CPUS})")
        self.userdef = False
        self.hashdist = True  # HASHDIST_DEFAULT: CONFIG_NUMA on 64-bit
        self.hash_entries = {"dhash_entries": 0, "ihash_entries": 0}
        self.dma_reserve = 0
        self.zone_free = []
        self.nr_kernel_pages = 0
        self.emu_cmdline: str | None = None  # numa_emu_cmdline(): what follows numa=fake=
        self.emu: Emulated | None = None  # what numa_emulation() committed

    def pgdat_owner(self, node: int, addr: int) -> int | None:
        """alloc_node_data() may fall back to another node: reserve where it really is."""
        return self.phys_to_nid(addr)

    def bootmem_span(self, node: int) -> tuple[int, int]:
        """No bootmem spans and no ZONE_ALIGN any more: the node's hull."""
        return self.numa.spans[node]

    # ---------------------------------------------------------------------------------------
    # cmdline

    def cmdline(self, boot: Boot) -> None:
        """The early parameters (mem=, numa=), then the __setup() ones of the hashes:
        ``hashdist=`` (mm/page_alloc.c set_hashdist()), ``dhash_entries=`` /
        ``ihash_entries=`` (fs/dcache.c, fs/inode.c), each simple_strtoul(str, &str, 0)."""
        super().cmdline(boot)
        for param, value in split_cmdline(self.machine.kernel.cmdline, profile=self.PROFILE):
            if value is None:
                continue
            if param == "hashdist":
                self.hashdist = strtoull_prefix(value)[0] != 0
            elif param in self.hash_entries:
                self.hash_entries[param] = strtoull_prefix(value)[0]
        if self.userdef:  # e820__finish_early_params()
            boot.e820 = e820.sanitize(boot.e820, profile=self.PROFILE) or boot.e820
            self.print_e820(boot, "user-defined physical RAM map:", "user", boot.e820)

    def parse_mem(self, boot: Boot, value: str) -> None:
        """e820.c parse_memopt(): remove usable RAM from ``mem=`` up (``mem=0`` is refused)."""
        size, _ = memparse_prefix(value)
        if size == 0:
            return
        boot.printk("e820.remove", e820.format_remove(size, e820.ULLONG_MAX - size,
                                                      e820.E820_RAM), start=size)
        boot.e820 = e820.mem_limit(boot.e820, size)
        self.userdef = True

    # ---------------------------------------------------------------------------------------
    # layout

    def layout(self, boot: Boot) -> Layout:
        """trim_bios_range(), e820__end_of_ram_pfn(), memblock, initmem_init()."""
        table = e820.update_range(boot.e820, 0, PAGE_SIZE, e820.E820_RAM, e820.E820_RESERVED)
        boot.printk("e820.update", e820.format_update(0, PAGE_SIZE, e820.E820_RAM,
                                                      e820.E820_RESERVED), start=0)
        table = e820.remove_range(table, 0xA0000, 0x60000, e820.E820_RAM)
        boot.printk("e820.remove", e820.format_remove(0xA0000, 0x60000, e820.E820_RAM),
                    start=0xA0000)
        boot.e820 = e820.sanitize(table, profile=self.PROFILE) or table
        max_pfn = e820.end_of_ram_pfn(boot.e820, MAX_ARCH_PFN)
        boot.printk("e820.last_pfn", f"last_pfn = {max_pfn:#x} max_arch_pfn = {MAX_ARCH_PFN:#x}",
                    last_pfn=max_pfn)
        if max_pfn > MAX_DMA32_PFN:  # max_low_pfn = e820__end_of_low_ram_pfn()
            low = e820.end_of_ram_pfn(boot.e820, MAX_ARCH_PFN, limit_pfn=MAX_DMA32_PFN)
            boot.printk("e820.last_pfn", f"last_pfn = {low:#x} max_arch_pfn = "
                        f"{MAX_ARCH_PFN:#x}", last_pfn=low)
        mpf = self.cfg.mp_table
        if mpf:  # find_smp_config() -> smp_scan_config(); in the first MiB, reserved anyway
            boot.printk("smp.mptable", f"found SMP MP-table at [mem {mpf:#010x}-"
                        f"{mpf + 15:#010x}]", addr=mpf)
        ram = e820.ram_pfn_ranges(boot.e820, limit_pfn=max_pfn)
        self.memblock_reservations(boot, ram, max_pfn)
        self.numa = self.numa_init(boot, ram, max_pfn)
        self.layout_ = self.make_layout(max_pfn, blocks_from(ram, self.numa.memblks))
        boot.facts.update(bits_per_long=64, numa="fake" if self.numa.faked else "srat",
                          nodes_with_memory=len(self.memory_nodes()))
        self.alloc_node_data(boot)
        self.dma_reserve = self.find_dma_reserve(ram)
        return self.layout_

    def memblock_reservations(self, boot: Boot, ram: list[tuple[int, int]], max_pfn: int
                              ) -> None:
        """memblock.reserved before initmem_init(): the first 1 MiB (setup_arch() reserves it
        whole), the kernel image with its brk, the initrd, the direct-map page tables."""
        cfg = self.cfg
        self.busy = [(0, 1 << 20, "first 1M"),
                     (cfg.image_start, cfg.image_start + cfg.image_size, "kernel image")]
        if cfg.initrd_size:
            self.busy.append((cfg.initrd_start, cfg.initrd_start + cfg.initrd_size, "initrd"))
        memory = [(pfn_phys(s), pfn_phys(e)) for s, e in ram]
        image = (cfg.image_start, cfg.image_start + cfg.image_size)
        pgt = direct_map.init_mem_mapping(memory, [(s, e) for s, e, _ in self.busy], image,
                                          pfn_phys(max_pfn))
        self.busy += [(s, e, "page tables") for s, e in merge_ranges(pgt)]
        boot.facts["pgt_pages_from_memblock"] = len(pgt)

    def alloc_node_data(self, boot: Boot) -> None:
        """numa.c alloc_node_data(): ``memblock_phys_alloc_try_nid(nd_size, SMP_CACHE_BYTES,
        nid)``, top-down inside the node, else anywhere (``NODE_DATA(%d) on node %d``).

        Memory nodes first (numa_register_memblks()), then CPU nodes without memory
        (init_memory_less_node()) [R for the memoryless case: no real log has one].
        """
        size, lay = self.cfg.pgdat_size, self.lay
        memless = sorted(set(self.cpu_nodes()) - set(self.memory_nodes()))
        for node in [*self.memory_nodes(), *memless]:
            reserved = [(s, e) for s, e, _ in self.busy]
            mine = [(pfn_phys(b.start_pfn), pfn_phys(b.end_pfn)) for b in lay.blocks
                    if b.node == node]
            top = pfn_phys(lay.max_pfn)
            addr = direct_map.top_down(direct_map.subtract(mine, reserved), size,
                                       SMP_CACHE_BYTES_61, PAGE_SIZE, top)
            if addr is None:
                every = [(pfn_phys(s), pfn_phys(e)) for s, e in lay.ram]
                addr = direct_map.top_down(direct_map.subtract(every, reserved), size,
                                           SMP_CACHE_BYTES_61, PAGE_SIZE, top)
            if addr is None:
                raise KernelPanic(f"Cannot allocate {size} bytes for node {node} data")
            self.pgdat[node] = addr
            self.busy.append((addr, addr + size, f"NODE_DATA({node})"))
            lines = [f"NODE_DATA({node}) allocated [mem {addr:#010x}-{addr + size - 1:#010x}]"]
            where = self.phys_to_nid(addr)
            if where != node:
                lines.append(f"    NODE_DATA({node}) on node {where}")
            boot.printk("numa.node_data", lines, node=node, start=addr, end=addr + size)

    # ---------------------------------------------------------------------------------------
    # register, reserve, allocate, handoff, summary

    #: memblock knows every range's node: the blocks are registered as they are, the
    #: generic step (BootSteps.register_blocks()).
    register_blocks = BootSteps.register_blocks

    def reserve_kept(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """memblock.reserved: each early reservation's RAM pieces, on the node they reside on
        (NODE_DATA and the bitmaps were kept with the bitmaps, in ``enable``)."""
        for start, end, name in self.busy:
            if name.startswith(("NODE_DATA", "bootmap")):
                continue
            self.reserve_on_nodes(boot, allocator, start, end, name, event="numa.reserve_early")

    def allocate(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """sparse_init(), free_area_init() (the zone and node lines), e820__setup_pci_gap(),
        then start_kernel(): the per-cpu chunk, build_all_zonelists(), and
        vfs_caches_init_early() unless page_alloc_init() left hashdist on (more than one
        node with memory); then mem_init()'s swiotlb, before memblock_free_all()."""
        self.sparse_init(boot, allocator)
        self.print_zones(boot)
        self.pci_gap(boot)
        self.per_cpu_areas(boot, allocator)
        self.build_all_zonelists(boot)
        if not self.hash_distributed():
            self.vfs_hashes(boot, allocator)
        self.swiotlb_init(boot, allocator)  # mm_init() -> mem_init() -> pci_iommu_alloc()

    def hash_distributed(self) -> bool:
        """page_alloc_init(), 6.1: hashdist is turned off when one node has memory."""
        return self.hashdist and len(self.memory_nodes()) != 1

    def sparse_init(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """mm/sparse.c, 6.1: the mem_section array and roots, then per run of present sections
        of one node sparse_init_nid(): the usage maps near NODE_DATA, the memmap buffer (2 MiB
        per section, 2 MiB aligned, from 16 MiB up), the vmemmap page-table pages."""
        sections = self.sections()
        allocator.alloc(request=AllocRequest(size=MEM_SECTION_ARRAY, align=SMP_CACHE_BYTES_61,
                                             goal=0, caller="sparse_init", label="mem_section"))
        roots: set[int] = set()
        for pnum, node in sections:
            if pnum // 256 not in roots:
                roots.add(pnum // 256)
                self.alloc_node(allocator, node, PAGE_SIZE, SMP_CACHE_BYTES_61,
                                "sparse_index_alloc", f"mem_section root node {node}")
        runs: list[list[int]] = []
        for pnum, node in sections:
            if runs and runs[-1][0] == node:
                runs[-1][1] += 1
            else:
                runs.append([node, 1, pnum])
        tables: set[tuple[int, int]] = set()
        for node, count, first in runs:
            goal = pfn_phys(pfn_down(self.pgdat.get(node, 0)) // SECTION_PAGES * SECTION_PAGES)
            allocator.alloc(request=AllocRequest(
                size=SECTION_USAGE_SIZE * count, align=SMP_CACHE_BYTES_61, goal=goal,
                wrapper="__alloc_bootmem_node", node=node, caller="sparse_init_nid",
                label=f"section usage node {node}"))
            allocator.alloc(request=AllocRequest(
                size=count * SECTION_PAGES * self.cfg.struct_page_size, align=2 << 20,
                goal=DMA_GOAL, wrapper="__alloc_bootmem_node", node=node,
                caller="sparse_init_nid", label=f"memmap node {node}"))
            lo = first * SECTION_PAGES * self.cfg.struct_page_size
            hi = lo + count * SECTION_PAGES * self.cfg.struct_page_size
            for level, size in (("pud", 512 << 30), ("pmd", 1 << 30)):
                for idx in range(lo // size, (hi - 1) // size + 1):
                    if (level, idx) not in tables:
                        tables.add((level, idx))
                        self.alloc_node(allocator, node, PAGE_SIZE, PAGE_SIZE,
                                        "vmemmap_alloc_block_zero", f"vmemmap table node {node}")

    def print_zones(self, boot: Boot) -> None:
        """free_area_init(), 6.1: zone ranges, node ranges, ``Initmem setup node``, then
        memmap_init()'s ``pages in unavailable ranges``."""
        lay = self.lay
        lines = ["Zone ranges:"]
        lo = lay.ram[0][0] if lay.ram else 0
        for name, hi in (("DMA", min(MAX_DMA_PFN, lay.max_pfn)),
                         ("DMA32", min(MAX_DMA32_PFN, lay.max_pfn)), ("Normal", lay.max_pfn),
                         ("Device", 0)):
            hi = max(hi, lo)
            span = f"[mem {pfn_phys(lo):#018x}-{pfn_phys(hi) - 1:#018x}]"
            lines.append(f"  {name:<8} " + ("empty" if hi == lo else span))
            lo = hi
        lines += ["Movable zone start for each node", "Early memory node ranges"]
        lines += [f"  node {b.node:3d}: [mem {pfn_phys(b.start_pfn):#018x}-"
                  f"{pfn_phys(b.end_pfn) - 1:#018x}]" for b in lay.blocks]
        nodes = sorted(set(self.memory_nodes()) | set(self.pgdat))
        for node in nodes:
            mine = [b for b in lay.blocks if b.node == node]
            if mine:
                lines.append(f"Initmem setup node {node} [mem {pfn_phys(mine[0].start_pfn):#018x}"
                             f"-{pfn_phys(mine[-1].end_pfn) - 1:#018x}]")
            else:
                lines.append(f"Initmem setup node {node} as memoryless")
        boot.printk("mm.zones", lines, zones=len(lay.zones), ranges=len(lay.blocks))
        self.free_area_init_core(boot)
        for node, zone, count in self.unavailable_ranges():
            boot.printk("mm.unavailable", f"On node {node}, zone {zone}: {count} pages in "
                        "unavailable ranges", node=node, zone=zone, pages=count)

    def unavailable_ranges(self) -> list[tuple[int, str, int]]:
        """mm/page_alloc.c memmap_init(), 6.1: walk the memory ranges in order; a gap before a
        range's piece of a populated zone is "unavailable" and counted (only pages whose
        pageblock lies in a present section) under *that* zone and node; the tail up to the
        end of the last section goes to the last populated zone of the last range's node."""
        lay = self.lay
        present = list(merge_ranges((p * SECTION_PAGES, (p + 1) * SECTION_PAGES)
                                    for p, _ in self.sections()))
        out: list[tuple[int, str, int]] = []

        def hole(s: int, e: int, node: int, zone: str) -> None:
            count = pieces(present, s, e)
            if count:
                out.append((node, zone, count))

        hole_pfn, last = 0, None
        for b in lay.blocks:
            for z in (z for z in lay.zones if z.node == b.node and z.present):
                s, e = max(b.start_pfn, z.start_pfn), min(b.end_pfn, z.end_pfn)
                last = (b.node, z.name)
                if s >= e:
                    continue
                if hole_pfn < s:
                    hole(hole_pfn, s, b.node, z.name)
                hole_pfn = e
        if last is not None and lay.blocks:
            end = -(-lay.blocks[-1].end_pfn // SECTION_PAGES) * SECTION_PAGES
            if hole_pfn < end:
                hole(hole_pfn, end, *last)
        return out

    def per_cpu_areas(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """pcpu_embed_first_chunk(): each CPU's unit from pcpu_fc_alloc() on its node
        (memblock_alloc_try_nid(), any node if that one has no memory), after the
        ``setup_percpu:`` line."""
        self.setup_percpu_line(boot)
        online = set(self.memory_nodes())
        for cpu, node in enumerate(self.cpu_nodes()):
            has = node in online
            allocator.alloc(request=AllocRequest(
                size=self.cfg.percpu_size, align=PAGE_SIZE, goal=DMA_GOAL,
                wrapper="__alloc_bootmem_node" if has else "__alloc_bootmem",
                node=node if has else None, caller="pcpu_fc_alloc",
                label=f"per-cpu area cpu {cpu}"))

    def handoff_nodes(
        self, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel
    ) -> int:
        """memblock_free_all(): every free range at once, whatever its node."""
        return allocator.handoff(sink=pagealloc, node=None)

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """x86_64 mem_init() (arch/x86/mm/init_64.c, 6.1: memblock_free_all(), then
        preallocate_vmalloc_pages()) and mem_init_print_info(): ``Memory: %luK/%luK available
        (...)``. The first figure is nr_free_pages(): what memblock_free_all() released below
        each node's first_deferred_pfn (:meth:`~bootemu_arches.numa64.v6_1_mm.Mm61.deferred_pages`)
        minus the vmalloc PUD pages; the second every present page (get_num_physpages()); the
        reserved figure present - totalram_pages. Then, with hashdist, vfs_caches_init()'s
        dentry and inode hashes (their lines only: vmalloc'd from the buddy allocator)."""
        if pagealloc is None:
            return
        lay = self.lay
        # totalram_pages counts every page memblock_free_all() released, deferred ones too;
        # nr_free_pages() misses the deferred pages and the vmalloc page tables mem_init()
        # took from the buddy allocator since (the boot pagesets hold no order-0 pages).
        totalram = pagealloc.received
        deferred = self.deferred_pages(pagealloc)
        vmalloc_pt = min(VMALLOC_PGD_SLOTS, totalram - deferred)
        free = totalram - deferred - vmalloc_pt
        boot.facts.update(deferred_pages=deferred, vmalloc_pgtable_pages=vmalloc_pt)
        line = (f"Memory: {free * 4}K/{lay.ram_pages * 4}K available ({IMAGE_FIELDS}, "
                f"{(lay.ram_pages - totalram) * 4}K reserved, 0K cma-reserved)")
        boot.summary.append(line)
        boot.printk("mm.summary", line, free_pages=free, present_pages=lay.ram_pages,
                    deferred_pages=deferred, vmalloc_pgtable_pages=vmalloc_pt)
        if self.hash_distributed():
            self.vfs_hashes(boot, None)


__all__ = ["MAX_ARCH_PFN", "Linux61"]
