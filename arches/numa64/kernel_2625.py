"""numa64 as x86_64 Linux 2.6.25 boots it (profile ``"2.6.25"``), held to real kernels.

The routines follow the 2.6.25 sources (``git show v2.6.25:<file>`` of the local mirror) and,
with ``kernel.srat_check = "memblks"``, commit 6ec6e0d9f2f on top; they are checked against the
real x86_64 boots of ``real-boots-2008/`` (``numa-2625-trace``, ``numa-2625s-trace``), whose
``bootmem_trace:`` lines give every allocator call and the node bitmap that served it.

Phases map onto setup_arch() like this: ``layout`` = e820_register_active_regions(0, 0, -1),
e820_end_of_ram(), the early reservations and init_memory_mapping(), acpi_numa_init() and
acpi_scan_nodes() up to the node hash (:mod:`bootemu_arches.numa64.srat_2625`); ``register`` /
``enable`` = setup_node_bootmem() per node (the :class:`bootemu.archbase.BootSteps` steps
``register_blocks``, ``place_bitmaps``, ``free_ram``, ``reserve_bitmaps`` done its way);
``reserve`` = ``reserve_kept``: early_res_to_bootmem(),
acpi_reserve_bootmem(), find_smp_config() (:mod:`bootemu_arches.numa64.setup_2625`); ``allocate`` =
paging_init() (sparse_init(), free_area_init_nodes()) and the early allocations of the rest of
setup_arch() and of start_kernel() up to mem_init()'s swiotlb; ``handoff`` =
``handoff_nodes``: numa_free_all_bootmem(); ``report`` = mem_init()'s ``Memory:`` line and
the VFS hash lines (:mod:`bootemu_arches.numa64.mm_2625`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootemu_arches.numa64.init_2625 import Init2625
from bootemu_arches.numa64.mm_2625 import Mm2625
from bootemu_arches.numa64.setup_2625 import Setup2625
from bootemu_arches.numa64.srat_2625 import MAXMEM_PFN, NodeMap, early_bug, max_active_regions
from bootemu_arches.numa64.v2_6_25 import Numa64Base, blocks_from

from bootemu import e820
from bootemu.models import BootemuError, Layout, Machine, pfn_phys

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu_arches.numa64 import Config

    from bootemu.boot import Boot
    from bootemu.plugins import AllocatorFacade

#: e820_register_active_regions(0, 0, -1UL): every pfn.
ULONG_MAX_PFN = (1 << 64) - 1


class Linux2625(Init2625, Mm2625, Setup2625, Numa64Base):
    """x86_64 2.6.25: the data sheet (defaults of the traced 2008 build) and the phases."""

    PROFILE = "2.6.25"
    #: Defaults: the x86_64 kernels of real-boots-2008 (allnoconfig + SMP, NUMA, ACPI, PCI,
    #: SPARSEMEM; their .config and System.map) booted by SeaBIOS under QEMU. import-dmesg
    #: with --kconfig / --system-map replaces them with the user's kernel's values.
    DEFAULTS: dict[str, Any] = {
        **Numa64Base.DEFAULTS,
        "image_start": 0x200000,  # CONFIG_PHYSICAL_START; _text of System.map
        "image_size": 0x24E698,  # _end - _text
        "pgdat_size": 0x7000,  # the "NODE_DATA [...]" line: round_up(sizeof(pg_data_t))
        "percpu_size": 24936,  # __per_cpu_end - __per_cpu_start (no CONFIG_MODULES)
        "text_size": 0x144FF3,  # _etext - _text
        "data_size": 0x84D55,  # _edata - _etext
        "init_size": 0x3C000,  # __init_end - __init_begin
    }

    def __init__(self, machine: Machine, cfg: Config) -> None:
        super().__init__(machine, cfg)
        if cfg.deferred_struct_page_init:
            raise BootemuError(f"{machine.source}: kernel.deferred_struct_page_init: 2.6.25 "
                               "has no deferred struct-page init (it came in 4.2)")
        self.node_map = NodeMap(max_active_regions(cfg.nodes_shift))
        self.end_pfn = self.end_pfn_map = 0
        self.memnode: list[tuple[int, int, int]] = [(0, 1, 0)]
        self.memnode_shift = 63
        self.online: list[int] = []
        self.dma_reserve = 0
        self.nr_kernel_pages = self.nr_all_pages = self.totalram_pages = 0
        self.zone_present: list[tuple[int, int, int]] = []
        self.backend_maps: list[tuple[int, int, str]] = []

    # A BUG() before trap_init() (all of setup_arch()) is caught by the early IDT handler,
    # which prints "PANIC: early exception 06 rip ..." and halts (head64.c, head_64.S): the
    # phases of setup_arch() run inside early_bug(); their steps are Setup2625's.
    def register(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """:meth:`Setup2625.register_blocks`, BUG()s shown as the early exception."""
        with early_bug():
            super().register(boot, allocator)

    def enable(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """setup_node_bootmem() (:class:`Setup2625`'s ``place_bitmaps``, ``free_ram``,
        ``reserve_bitmaps``), BUG()s as the early exception."""
        with early_bug():
            super().enable(boot, allocator)

    def reserve(self, boot: Boot, allocator: AllocatorFacade) -> None:
        """:meth:`Setup2625.reserve_kept` (early_res_to_bootmem() ...), BUG()s likewise."""
        with early_bug():
            super().reserve(boot, allocator)

    def phys_to_nid(self, addr: int) -> int | None:
        """phys_to_nid(): the memnodemap."""
        return self.memnode_nid(addr)

    def layout(self, boot: Boot) -> Layout:
        """setup_arch() from e820_register_active_regions(0, 0, -1UL) to the end of
        acpi_scan_nodes()'s checks; the layout's blocks are the RAM of each accepted SRAT
        range (what the checks call a node's memory), the zones those of the node map."""
        with early_bug():
            return self._layout(boot)

    def _layout(self, boot: Boot) -> Layout:
        self.register_active_regions(boot, 0, 0, ULONG_MAX_PFN)
        self.end_pfn = self.end_of_ram_2625(boot)
        self.early_reservations(boot)
        self.init_memory_mapping(boot, pfn_phys(self.end_pfn_map))
        self.node_map.remove_all()  # "so rediscovery with NUMA-awareness happens"
        max_pfn = self.end_pfn
        ram = [(s, min(e, max_pfn)) for s, e in e820.ram_pfn_ranges(boot.e820) if s < max_pfn]
        self.numa = self.numa_init(boot, ram, max_pfn)
        self.layout_ = self.make_layout(max_pfn, blocks_from(ram, self.numa.memblks))
        boot.facts.update(
            bits_per_long=64,
            numa="fake" if self.numa.faked else "srat",
            nodes_with_memory=len(self.memory_nodes()),
        )
        return self.layout_

    def end_of_ram_2625(self, boot: Boot) -> int:
        """e820_64.c e820_end_of_ram(): the highest active pfn, end_pfn_map raised to it and
        capped at MAXMEM, the result cut by ``mem=`` and end_pfn_map; prints end_pfn_map."""
        end_pfn = max((e for _, e in self.node_map.ranges()), default=0)
        self.end_pfn_map = min(max(self.end_pfn_map, end_pfn), MAXMEM_PFN)
        if self.end_user_pfn is not None:
            end_pfn = min(end_pfn, self.end_user_pfn)
        end_pfn = min(end_pfn, self.end_pfn_map)
        boot.printk(
            "e820.end_pfn_map", f"end_pfn_map = {self.end_pfn_map}", end_pfn_map=self.end_pfn_map
        )
        boot.facts["end_pfn_map"] = self.end_pfn_map
        return end_pfn


__all__ = ["Linux2625"]
