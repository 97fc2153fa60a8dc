"""dt64: a minimal 64-bit device-tree arch for bootemu, written as a plugin author would.

The machine file describes memory as a flattened device tree does: ``[[dt.memory]]`` for the
``/memory`` nodes (``reg`` base and ``size``), ``[[dt.reserved]]`` for the children of
``/reserved-memory`` (kept from the allocators; a ``no_map`` one is not memory at all), and
where the boot loader put the kernel image. One node; zones DMA (below ``dma_limit``) and
Normal. Modelled on Linux 6.1: drivers/of/fdt.c ``early_init_dt_scan_memory()`` and
``early_init_fdt_scan_reserved_mem()``, the ``zone_sizes_init()`` of a DMA/Normal arch, and
FLATMEM's ``alloc_node_mem_map()``.

Everything else (registering blocks, placing the backend's bitmaps, freeing RAM once,
reserving, handing off) is :class:`bootemu.archbase.GenericArch`'s.
"""

from __future__ import annotations

from bootemu.archbase import GenericArch, zones_of
from bootemu.boot import Boot
from bootemu.contract import Allocator, ArchInfo
from bootemu.models import (
    AllocRequest,
    Block,
    BootemuError,
    Layout,
    Machine,
    OwnedRange,
    merge_ranges,
    pfn_down,
    pfn_up,
    subtract,
)
from bootemu.pagealloc import PageAllocModel
from bootemu.schema import REQUIRED, Bool, Enum, Size, Str, Table, Tables

#: sizeof(struct page) of a 64-bit 6.1 kernel without debug options.
STRUCT_PAGE_SIZE = 64


def _reg() -> dict[str, Size]:
    """A device-tree ``reg`` pair: base address and size."""
    return {"reg": Size(default=REQUIRED, doc="base address"), "size": Size(default=REQUIRED)}


def _ranges(nodes: list[dict]) -> list[tuple[int, int]]:
    return list(merge_ranges((n["reg"], n["reg"] + n["size"]) for n in nodes))


class Dt64(GenericArch):
    """dt64: a 64-bit device-tree machine, one node, zones DMA and Normal (an example)."""

    ARCH_INFO = ArchInfo(
        bits_per_long=64, phys_addr_bits=64, numa=False, memblks_per_node=1, smp_cache_bytes=64
    )
    MACHINE_SCHEMA = {
        "kernel": Table(
            profile=Enum("6.1", what="profile", default="6.1"), cmdline=Str(default="")
        ),
        "dt": Table(
            dma_limit=Size(default=1 << 32, doc="top of ZONE_DMA (the DT's dma-ranges)"),
            image_start=Size(default=REQUIRED, doc="where the boot loader put the kernel"),
            image_size=Size(default=REQUIRED, doc="_text to _end"),
            memory=Tables(min_items=1, missing="missing (no /memory node)", **_reg()),
            reserved=Tables(**_reg(), no_map=Bool(default=False), label=Str(default="reserved")),
        ),
    }

    def check(self, machine: Machine) -> None:
        dt = machine.tables["dt"]
        image = [(dt["image_start"], dt["image_start"] + dt["image_size"])]
        if dt["image_size"] == 0 or subtract(image, _ranges(dt["memory"])):
            raise BootemuError(
                f"{machine.source}: dt.image_start: the kernel image "
                "[image_start, +image_size) is not inside a /memory node"
            )

    def firmware(self, boot: Boot) -> None:
        """early_init_dt_scan_memory(): one trace event per ``reg`` of each /memory node."""
        dt = boot.machine.tables["dt"]
        for m in dt["memory"]:
            boot.trace("dt.memory", base=m["reg"], size=m["size"])
        for r in dt["reserved"]:
            boot.trace("dt.reserved", base=r["reg"], size=r["size"], no_map=r["no_map"])

    def layout(self, boot: Boot) -> Layout:
        """RAM: the /memory ranges minus no-map reserved memory, in whole pages; one block
        per range, all on node 0; zone DMA up to ``dma_limit``, Normal above it."""
        dt = boot.machine.tables["dt"]
        nomap = _ranges([r for r in dt["reserved"] if r["no_map"]])
        pages = ((pfn_up(s), pfn_down(e)) for s, e in subtract(_ranges(dt["memory"]), nomap))
        ram = tuple((s, e) for s, e in pages if s < e)
        if not ram:
            raise BootemuError(f"{boot.machine.source}: dt.memory: no whole page of RAM")
        blocks = tuple(Block(s, e, 0) for s, e in ram)
        max_pfn = ram[-1][1]
        limits = (("DMA", min(pfn_down(dt["dma_limit"]), max_pfn)), ("Normal", max_pfn))
        start, size = dt["image_start"], dt["image_size"]
        return Layout(
            max_pfn=max_pfn,
            ram=ram,
            blocks=blocks,
            zones=zones_of(blocks, ram, limits),
            zone_limits=limits,
            owned=(OwnedRange(start, start + size, "kernel image"),),
        )

    def reservations(self, boot: Boot) -> list[OwnedRange]:
        """early_init_fdt_scan_reserved_mem(): every mapped /reserved-memory child."""
        dt = boot.machine.tables["dt"]
        return [
            OwnedRange(r["reg"], r["reg"] + r["size"], r["label"])
            for r in dt["reserved"]
            if not r["no_map"]
        ]

    def allocate(self, boot: Boot, allocator: Allocator) -> None:
        """alloc_node_mem_map() (FLATMEM, 6.1): one struct page per pfn of the node's span,
        memblock_alloc_node(size, SMP_CACHE_BYTES, nid)."""
        lay = boot.layout
        assert lay is not None
        span = lay.blocks[-1].end_pfn - lay.blocks[0].start_pfn
        request = AllocRequest(
            size=span * STRUCT_PAGE_SIZE,
            align=boot.info.smp_cache_bytes,
            goal=0,
            wrapper="__alloc_bootmem_node",
            node=0,
            caller="alloc_node_mem_map",
            label="mem_map",
        )
        allocator.alloc(request=request)

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        """mem_init_print_info(): its first two figures, free and total RAM."""
        lay = boot.layout
        if pagealloc is None or lay is None:
            return
        line = f"Memory: {pagealloc.free_pages() * 4}K/{lay.ram_pages * 4}K available"
        boot.summary.append(line)
        boot.printk("report.memory", line)


__all__ = ["Dt64"]
