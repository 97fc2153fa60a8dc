"""numa64: a sample 64-bit NUMA arch, x86_64 style (for a first arch, start from examples/dt-arch).

The machine: an e820 firmware map plus an SRAT-style memory-affinity table (the machine
file's ``[[numa.memory]]`` entries: node, start, end). No highmem; zones DMA (below 16 MiB),
DMA32 (below 4 GiB) and Normal. Nodes may interleave (node 0 = 0-2G + 4-6G, node 1 = 2-4G +
6-8G) and may have no memory at all.

Layout: a *block* is usable RAM (whole pages) intersected with one affinity range, tagged with
that range's node; RAM no accepted range covers gets no active range and is not managed (the
checks' RAM is the union of the blocks). The zones of a node span the zone range intersected
with the node's span (first to last RAM page of the node) and count as present the RAM pages
of that node in it. Without a usable affinity table (none, ``numa=off``, or rejected) one node
0 covers all RAM, as the kernel's dummy node does.

Presets: ``seed-numa-8g`` (+ ``-generic-free``, ``-buffer``), ``sgi-sparse``,
``numa-memoryless``, ``numa-4node`` (profile 2.6.25) and ``qemu-numa-interleave-amd64`` (6.1).

Two profiles, one module each; the later one subclasses the earlier and overrides only what the
kernel changed (the py-evm pattern):

- ``"2.6.25"`` (:mod:`arches.numa64.v2_6_25`): what a spring-2008 x86_64 kernel does
  (arch/x86/mm/numa_64.c ``setup_node_bootmem()``, arch/x86/mm/srat_64.c): one classic
  bootmem per node over the node's *span*, pgdat and bitmap placed on the node, usable RAM
  freed node by node, vmemmap / per-cpu areas allocated node-locally.
- ``"6.1"`` (:mod:`arches.numa64.v6_1`): the affinity-table checks and the messages of
  today's kernel (arch/x86/mm/numa.c, mm/page_alloc.c), matched against the real Debian 6.1
  boots in ``real-boots/``; the zone counts and the lines from free_area_init_core() to the
  VFS hashes (``Built N zonelists``, PCI gap, ``setup_percpu:``, hash tables) are in
  :mod:`arches.numa64.v6_1_mm`, their generic arithmetic in :mod:`bootemu.linux61`.

``[kernel]`` keys this arch reads (all optional; sizes accept ``memparse()`` strings):

``free_ram``
    2.6.25: how usable RAM reaches the node bitmaps. ``"node"`` (default, what 2.6.25 x86_64
    does: free_bootmem_with_active_regions() -> free_bootmem_node() per node) or
    ``"generic"`` (one free_bootmem() per e820 RAM entry after every node's bitmap exists, as
    x86_32's register_bootmem_low_pages() does for its single node).
``srat_check``
    2.6.25: ``"memblks"`` (default: Suresh Siddha's March 2008 patch, merged for 2.6.26,
    which compares each affinity range with the earlier ranges and so accepts interleaved
    nodes) or ``"hulls"`` (2.6.25 as released: ranges are checked against, and the node
    hash is built from, each node's hull; interleaved nodes are rejected).
``cpu_nodes``
    The node of each CPU, ``"0,0,1,1"``; default one CPU per node named in ``[[numa.memory]]``
    (one CPU without a table). Per-cpu areas are allocated on these nodes.
``image_start`` / ``image_size``
    The kernel image (``_text`` to ``_end``, brk included).
``initrd_start`` / ``initrd_size``
    Where the boot loader put an initrd; size 0 (default) = none.
``pgdat_size``
    ``roundup(sizeof(pg_data_t), PAGE_SIZE)``.
``percpu_size``
    Bytes of per-cpu area per CPU.
``struct_page_size``
    ``sizeof(struct page)``: 56 on 2008 x86_64, 64 on 6.1.
``text_size`` / ``data_size`` / ``init_size``
    2.6.25: the code / data / init figures of the ``Memory:`` line.
``mp_table``
    6.1: where the firmware put the MP floating pointer (SeaBIOS: ``0xf5ba0``), printed as
    ``found SMP MP-table at ...``; 0 = none. 16-byte aligned, below 1 MiB.

Command-line parameters the 6.1 profile reads besides ``mem=`` and ``numa=`` (``off``,
``noacpi``, and ``fake=`` NUMA emulation: :mod:`arches.numa64.numa_emu_61`): ``hashdist=``,
``dhash_entries=``, ``ihash_entries=``. ``numa=fake=`` under 2.6.25 is an error.

Every config value is validated in :meth:`Numa64.bootemu_arch_check_machine`; defaults are the
``DEFAULTS`` of the profile class.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from arches.numa64.schema import machine_schema
from arches.numa64.v2_6_25 import Linux2625
from arches.numa64.v6_1 import Linux61
from bootemu.archbase import ProfileArch
from bootemu.contract import ArchInfo
from bootemu.models import BootemuError, Machine, OwnedRange
from bootemu.units import parse_size

#: The profiles this arch knows, and the class that boots each.
PROFILES: dict[str, type[Linux2625]] = {"2.6.25": Linux2625, "6.1": Linux61}

FREE_RAM_CHOICES = ("node", "generic")
SRAT_CHECK_CHOICES = ("memblks", "hulls")


@dataclass(frozen=True)
class Config:
    """The validated ``[kernel]`` keys of one boot (see the module docstring)."""

    free_ram: str
    srat_check: str
    cpu_nodes: tuple[int, ...]
    image_start: int
    image_size: int
    initrd_start: int
    initrd_size: int
    pgdat_size: int
    percpu_size: int
    struct_page_size: int
    text_size: int
    data_size: int
    init_size: int
    mp_table: int


_SIZE_KEYS = tuple(f.name for f in fields(Config) if f.type == "int")


def read_config(machine: Machine, defaults: dict[str, Any]) -> Config:
    """Merge the machine's ``[kernel]`` keys over the profile's ``defaults`` and check them."""
    kernel = machine.kernel

    def bad(key: str, what: str) -> BootemuError:
        return BootemuError(f"{machine.source}: kernel.{key}: {what}")

    def choice(key: str, choices: tuple[str, ...]) -> str:
        value = kernel.get(key, defaults[key])
        if value not in choices:
            raise bad(key, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)

    values: dict[str, Any] = {
        "free_ram": choice("free_ram", FREE_RAM_CHOICES),
        "srat_check": choice("srat_check", SRAT_CHECK_CHOICES),
    }
    raw = kernel.get("cpu_nodes", None)
    if raw is None:
        values["cpu_nodes"] = tuple(sorted({m.node for m in machine.numa})) or (0,)
    else:
        try:
            values["cpu_nodes"] = tuple(int(x) for x in str(raw).split(","))
        except ValueError:
            raise bad("cpu_nodes", f"{raw!r} is not a comma-separated list of nodes") from None
        if not values["cpu_nodes"] or min(values["cpu_nodes"]) < 0:
            raise bad("cpu_nodes", f"{raw!r} names no node or a negative node")
    for key in _SIZE_KEYS:
        value = kernel.get(key, None)
        values[key] = defaults[key] if value is None else parse_size(
            value, f"{machine.source}: kernel.{key}")
    cfg = Config(**values)
    if cfg.image_start % 4096 or cfg.image_size == 0:
        raise bad("image_start", "the kernel image must start on a page and be non-empty")
    if cfg.pgdat_size == 0 or cfg.pgdat_size % 4096:
        raise bad("pgdat_size", f"{cfg.pgdat_size} is not a positive multiple of PAGE_SIZE")
    if cfg.percpu_size == 0:
        raise bad("percpu_size", "must be positive")
    if not 16 <= cfg.struct_page_size <= 256:
        raise bad("struct_page_size", f"{cfg.struct_page_size} is not a plausible size")
    if cfg.mp_table >= 1 << 20 or cfg.mp_table % 16:
        raise bad("mp_table", f"{cfg.mp_table:#x} is not a 16-byte aligned address below 1 MiB")
    if cfg.initrd_size and not cfg.initrd_start:
        raise bad("initrd_start", "an initrd needs a start address")
    for i, m in enumerate(machine.numa):
        if m.end <= m.start:
            raise BootemuError(f"{machine.source}: numa.memory[{i}]: end is not above start")
    return cfg


class Numa64(ProfileArch):
    """numa64: 64-bit NUMA (x86_64 style): e820 + SRAT, zones DMA/DMA32/Normal, no highmem.

    The plugin is a thin shell (:class:`bootemu.archbase.ProfileArch`): each hook hands its
    phase to the profile's kernel object (:class:`~arches.numa64.v2_6_25.Linux2625` or
    :class:`~arches.numa64.v6_1.Linux61`), created when the machine is checked.
    """

    #: The machine-file tables this arch reads (:mod:`arches.numa64.schema`).
    MACHINE_SCHEMA = machine_schema(
        tuple(PROFILES),
        fields(Config),
        {"free_ram": FREE_RAM_CHOICES, "srat_check": SRAT_CHECK_CHOICES},
    )

    def make_profile(self, machine: Machine) -> Linux2625:
        """Pick the profile's kernel and validate the ``[kernel]`` keys."""
        cls = PROFILES.get(machine.kernel.profile)
        if cls is None:
            raise BootemuError(f"{machine.source}: kernel.profile: numa64 knows "
                               f"{', '.join(PROFILES)}, not {machine.kernel.profile!r}")
        return cls(machine, read_config(machine, cls.DEFAULTS))

    def owned(self, profile: Linux2625) -> tuple[OwnedRange, ...]:
        """The kernel image (``kernel.image_start`` / ``image_size``, brk included)."""
        cfg = profile.cfg
        return (OwnedRange(cfg.image_start, cfg.image_start + cfg.image_size, "kernel image"),)

    def arch_info(self, profile: Linux2625) -> ArchInfo:
        """x86_64: 64-bit longs and phys_addr_t, CONFIG_NUMA; one block per node id (the
        bootmem2 RFCs' NR_MEMBLKS_PER_NODE, which widens when a node registers more); the
        generic x86_64 L1_CACHE_SHIFT of 6 (arch/x86/Kconfig.cpu) gives SMP_CACHE_BYTES 64."""
        return ArchInfo(bits_per_long=64, phys_addr_bits=64, numa=True, memblks_per_node=1,
                        smp_cache_bytes=64)


__all__ = ["PROFILES", "Config", "Linux2625", "Linux61", "Numa64", "read_config"]
