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

Two profiles:

- ``"2.6.25"`` (:mod:`bootemu_arches.numa64.kernel_2625` with
  :mod:`~bootemu_arches.numa64.srat_2625`,
  :mod:`~bootemu_arches.numa64.setup_2625`, :mod:`~bootemu_arches.numa64.mm_2625`,
  :mod:`~bootemu_arches.numa64.init_2625`): x86_64 Linux 2.6.25 as its sources say (early_node_map,
  the SRAT, early_res, setup_node_bootmem(), SPARSEMEM sparse_init(), free_area_init_nodes(),
  the start_kernel() allocations, mem_init()), held to the real x86_64 boots of
  ``real-boots-2008/`` line by line and allocation by allocation. Machines from such a log are
  made by ``import-dmesg`` with the kernel's ``.config`` and ``System.map``
  (:mod:`bootemu_arches.numa64.kbuild`).
- ``"6.1"`` (:mod:`bootemu_arches.numa64.v6_1`): the affinity-table checks and the messages of
  today's kernel (arch/x86/mm/numa.c, mm/page_alloc.c), matched against the real Debian 6.1
  boots in ``real-boots/``; the zone counts and the lines from free_area_init_core() to the
  VFS hashes (``Built N zonelists``, PCI gap, ``setup_percpu:``, hash tables) are in
  :mod:`bootemu_arches.numa64.v6_1_mm`, their generic arithmetic in :mod:`bootemu.linux61`. It
  subclasses :class:`bootemu_arches.numa64.v2_6_25.Numa64Base`, the first (hand-arithmetic) 2008
  model, whose bitmap placement and node-by-node frees it still uses.

``[kernel]`` keys this arch reads (all optional; sizes accept ``memparse()`` strings):

``free_ram``
    2.6.25: how usable RAM reaches the node bitmaps. ``"node"`` (default, what 2.6.25 x86_64
    does: free_bootmem_with_active_regions() -> free_bootmem_node() per node) or
    ``"generic"`` (one free_bootmem() per e820 RAM entry after every node's bitmap exists, as
    x86_32's register_bootmem_low_pages() does for its single node).
``srat_check``
    2.6.25: which srat_64.c: ``"memblks"`` (default; 2.6.25 + commit 6ec6e0d9f2f "srat, x86:
    add support for nodes spanning other nodes", CONFIG_NODES_SPAN_OTHER_NODES, merged for
    2.6.26: each affinity range is checked against the earlier ranges, printed and registered
    as it is, and the node hash is built from the ranges) or ``"hulls"`` (2.6.25 as released:
    a node's later range prints and registers the node's whole hull, so interleaved nodes
    register overlapping active ranges and __absent_pages_in_range() BUG()s).
    ``import-dmesg`` sets it from the System.map (``node_memblk_range``), the .config, or the
    shape of the log's ``SRAT: Node`` lines.
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
    Where the firmware put the MP floating pointer (SeaBIOS: ``0xf5ba0``); 0 = none. 16-byte
    aligned, below 1 MiB. 6.1 prints it (``found SMP MP-table at ...``); 2.6.25's
    find_smp_config() reserves a page there and one at the MP table (16 bytes on, as SeaBIOS
    lays it out), both counted in dma_reserve.

``deferred_struct_page_init``
    6.1: CONFIG_DEFERRED_STRUCT_PAGE_INIT (default true, as Debian's amd64 build has it; the
    ``node N deferred pages initialised`` lines say so). memmap_init() then initialises only
    the low zones and the first section and more of each node's last zone, up to a
    section-aligned ``first_deferred_pfn``; memblock_free_all() skips the pages from there on,
    so the ``Memory:`` line's free figure lacks them (they are freed after it, by
    page_alloc_init_late()), while its reserved figure counts them as released. 2.6.25 has
    no such thing (it came in 4.2): true is an error there. (mm/Kconfig of 6.1: it depends on
    64BIT, so the 6.1 i386 kernels never have it.)

Keys only the 2.6.25 profile reads (defaults: the traced 2008 build of ``real-boots-2008``;
``import-dmesg`` with ``--kconfig`` / ``--system-map`` fills them):

``smp_cache_bytes``, ``pageblock_order``, ``nodes_shift``
    1 << CONFIG_X86_L1_CACHE_SHIFT (the alignment of alloc_bootmem()); 9 with
    CONFIG_HUGETLB_PAGE, else MAX_ORDER - 1 = 10 (sizes the section usemaps); CONFIG_NODES_SHIFT
    (MAX_ACTIVE_REGIONS of the ``add_active_range`` lines).
``smp``, ``acpi_sleep``, ``hpet``, ``hotplug_cpu``
    CONFIG_SMP (the trampoline early_res), CONFIG_ACPI_SLEEP (two low pages for the wakeup
    code), an HPET (acpi_parse_hpet()'s resource), CONFIG_HOTPLUG_CPU (the ``SMP: Allowing``
    line). Booleans.
``ebda`` / ``ebda_kb``
    The EBDA address (BIOS word 0x40E << 4; 0 = none) and its size word in KiB: reserve_ebda().
``nr_ioapics``
    I/O APICs (ioapic_setup_resources() allocates a resource and name per one).
``possible_cpus``
    The possible CPUs (``SMP: Allowing N CPUs``) when they are not one per ``cpu_nodes``
    entry (which then lists the SRAT's processor entries, printed as such): CPUs past the list
    have no SRAT node and are dealt round robin, CPUs are cut at N. 0 (default): one per
    ``cpu_nodes`` entry.
``command_line_size``
    strlen(boot_command_line), all of it (setup_command_line() copies it twice); default the
    length of ``cmdline``.
``vga_cols`` / ``vga_rows``
    The VGA text console con_init() allocates a screen buffer for; ``vga_cols = 0``: none.

Command-line parameters the 6.1 profile reads besides ``mem=`` and ``numa=`` (``off``,
``noacpi``, and ``fake=`` NUMA emulation: :mod:`bootemu_arches.numa64.numa_emu_61`): ``hashdist=``,
``dhash_entries=``, ``ihash_entries=``. ``numa=fake=`` under 2.6.25 is an error.

Every config value is validated in :meth:`Numa64.bootemu_arch_check_machine`; defaults are the
``DEFAULTS`` of the profile class.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from bootemu_arches.numa64.kernel_2625 import Linux2625
from bootemu_arches.numa64.schema import machine_schema
from bootemu_arches.numa64.v2_6_25 import Numa64Base
from bootemu_arches.numa64.v6_1 import Linux61

from bootemu.archbase import ProfileArch
from bootemu.models import BootemuError, Machine, OwnedRange
from bootemu.units import parse_size

#: The profiles this arch knows, and the class that boots each.
PROFILES: dict[str, type[Numa64Base]] = {"2.6.25": Linux2625, "6.1": Linux61}

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
    deferred_struct_page_init: bool
    smp_cache_bytes: int
    pageblock_order: int
    nodes_shift: int
    ebda: int
    ebda_kb: int
    nr_ioapics: int
    possible_cpus: int
    command_line_size: int
    vga_cols: int
    vga_rows: int
    smp: bool
    acpi_sleep: bool
    hpet: bool
    hotplug_cpu: bool


_SIZE_KEYS = tuple(f.name for f in fields(Config) if f.type == "int")
_BOOL_KEYS = tuple(f.name for f in fields(Config) if f.type == "bool")

#: Defaults of the keys only the 2.6.25 profile reads (its traced 2008 x86_64 build under
#: SeaBIOS/QEMU; import-dmesg fills them from the log, the .config and the System.map).
DEFAULTS_2625: dict[str, Any] = {
    "smp_cache_bytes": 128,  # 1 << CONFIG_X86_L1_CACHE_SHIFT (7)
    "pageblock_order": 10,  # MAX_ORDER - 1 without CONFIG_HUGETLB_PAGE; 9 with it
    "nodes_shift": 6,  # CONFIG_NODES_SHIFT
    "ebda": 0x9FC00,  # the BIOS data area's EBDA segment << 4 (SeaBIOS: 0x9fc00)
    "ebda_kb": 1,  # the EBDA's own size word, KiB
    "nr_ioapics": 1,  # "IOAPIC[0]: ..." lines
    "possible_cpus": 0,  # "SMP: Allowing N CPUs"; 0: one per cpu_nodes entry
    "command_line_size": -1,  # strlen(boot_command_line); -1: that of kernel.cmdline
    "vga_cols": 80,  # "Console: colour VGA+ 80x25"; 0 = no VGA console
    "vga_rows": 25,
    "smp": True,  # CONFIG_SMP (the trampoline early_res)
    "acpi_sleep": True,  # CONFIG_ACPI_SLEEP (two low pages for the wakeup code)
    "hpet": True,  # CONFIG_HPET_TIMER and an ACPI HPET table ("ACPI: HPET id: ...")
    "hotplug_cpu": True,  # CONFIG_HOTPLUG_CPU ("SMP: Allowing N CPUs, M hotplug CPUs")
}


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
    defaults = {**DEFAULTS_2625, **defaults}
    for key in _SIZE_KEYS:
        value = kernel.get(key, None)
        values[key] = defaults[key] if value is None else parse_size(
            value, f"{machine.source}: kernel.{key}")
    for key in _BOOL_KEYS:
        value = kernel.get(key, defaults[key])
        if not isinstance(value, bool):
            raise bad(key, f"{value!r} is not true or false")
        values[key] = value
    if values["command_line_size"] == -1 or kernel.get("command_line_size", None) is None:
        values["command_line_size"] = len(str(kernel.cmdline).encode())
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
    if cfg.smp_cache_bytes & (cfg.smp_cache_bytes - 1) or not 8 <= cfg.smp_cache_bytes <= 4096:
        raise bad("smp_cache_bytes", f"{cfg.smp_cache_bytes} is not a power of two in [8, 4096]")
    if not 1 <= cfg.pageblock_order <= 10:
        raise bad("pageblock_order", f"{cfg.pageblock_order} is not in [1, MAX_ORDER - 1]")
    if not 0 <= cfg.nodes_shift <= 10:
        raise bad("nodes_shift", f"{cfg.nodes_shift} is not in [0, 10]")
    if cfg.initrd_size and not cfg.initrd_start:
        raise bad("initrd_start", "an initrd needs a start address")
    for i, m in enumerate(machine.numa):
        if m.end <= m.start:
            raise BootemuError(f"{machine.source}: numa.memory[{i}]: end is not above start")
    return cfg


class Numa64(ProfileArch):
    """numa64: 64-bit NUMA (x86_64 style): e820 + SRAT, zones DMA/DMA32/Normal, no highmem.

    The plugin is a thin shell (:class:`bootemu.archbase.ProfileArch`): each hook hands its
    phase to the profile's kernel object (:class:`~bootemu_arches.numa64.kernel_2625.Linux2625` or
    :class:`~bootemu_arches.numa64.v6_1.Linux61`), created when the machine is checked.
    """

    #: The machine-file tables this arch reads (:mod:`bootemu_arches.numa64.schema`).
    MACHINE_SCHEMA = machine_schema(
        tuple(PROFILES),
        fields(Config),
        {"free_ram": FREE_RAM_CHOICES, "srat_check": SRAT_CHECK_CHOICES},
    )

    def make_profile(self, machine: Machine) -> Numa64Base:
        """Pick the profile's kernel and validate the ``[kernel]`` keys."""
        cls = PROFILES.get(machine.kernel.profile)
        if cls is None:
            raise BootemuError(f"{machine.source}: kernel.profile: numa64 knows "
                               f"{', '.join(PROFILES)}, not {machine.kernel.profile!r}")
        return cls(machine, read_config(machine, cls.DEFAULTS))

    def owned(self, profile: Numa64Base) -> tuple[OwnedRange, ...]:
        """The kernel image (``kernel.image_start`` / ``image_size``, brk included)."""
        cfg = profile.cfg
        return (OwnedRange(cfg.image_start, cfg.image_start + cfg.image_size, "kernel image"),)


__all__ = ["PROFILES", "Config", "Linux2625", "Linux61", "Numa64", "read_config"]
