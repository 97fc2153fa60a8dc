"""Reading a kernel boot log: the lines import-dmesg needs, in both eras' formats.

:func:`read_boot_log` scans a ``dmesg`` dump or serial-console capture (timestamps, syslog
levels, terminal escapes and carriage returns are tolerated) and collects the facts of its
first boot in a :class:`BootLog`; :func:`find_kernel_image` says where the kernel image lies.
Nothing here decides anything: that is :mod:`bootemu.importers`. Each regular expression names
the kernel routine whose ``printk`` it reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bootemu import e820
from bootemu.models import BootemuError, E820Entry, NumaMemory

# --------------------------------------------------------------------------------------------
# Cleaning a captured line

#: printk timestamps (``[    0.000000] ``), syslog levels (``<6>``), terminal escapes and
#: carriage returns of serial captures.
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\] ?")
_SYSLOG_LEVEL = re.compile(r"^<\d+>")
_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[()][A-Za-z0-9]|[A-Za-z])")


def strip_dmesg_prefix(line: str) -> str:
    """A captured console or ``dmesg`` line without what printk and the capture added.

    Removes a trailing carriage return, terminal escape sequences, a ``<N>`` syslog level and
    the ``[    0.000000] `` timestamp, keeping the kernel's own leading blanks (``"  DMA ..."``).
    """
    line = _ESCAPE.sub("", line.rstrip("\r\n")).replace("\r", "")
    line = _SYSLOG_LEVEL.sub("", line)
    return _TIMESTAMP.sub("", line)


# --------------------------------------------------------------------------------------------
# The e820 table, both formats

#: arch/x86/kernel/e820.c e820__print_table(), modern: ``"%s: [mem %#018Lx-%#018Lx] "`` + type,
#: inclusive end. (Kernels from 2025 on may put a size between the range and the type.)
_E820_MODERN = re.compile(
    r"BIOS-e820: \[mem (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\]\s+"
    r"(?:\d+(?:\.\d+)? ?[KMGTPE]?i?B\s+)?(?P<type>\S.*?)\s*$"
)
#: arch/x86/kernel/e820_32.c print_memory_map() (2.6.25) and e820_print_map() up to 3.x:
#: ``" %s: %016Lx - %016Lx "`` + type, exclusive end.
_E820_OLD = re.compile(
    r"BIOS-e820: ([0-9a-fA-F]{8,16}) - ([0-9a-fA-F]{8,16})\s+(?P<type>\S.*?)\s*$"
)

#: Type texts of modern e820_print_type() (``persistent (type N)`` and ``type N`` are read
#: by number). ``usable`` is also how E820_TYPE_RESERVED_KERN prints: it is RAM to us.
_MODERN_TYPE_TEXT = {
    "usable": e820.E820_RAM,
    "reserved": e820.E820_RESERVED,
    "ACPI data": e820.E820_ACPI,
    "ACPI NVS": e820.E820_NVS,
    "unusable": e820.E820_UNUSABLE,
    "soft reserved": e820.E820_SOFT_RESERVED,
}
#: Type texts of 2.6.25 print_memory_map() plus ``(unusable)`` of 2.6.28-3.x e820_print_type().
_OLD_TYPE_TEXT = {
    "(usable)": e820.E820_RAM,
    "(reserved)": e820.E820_RESERVED,
    "(ACPI data)": e820.E820_ACPI,
    "(ACPI NVS)": e820.E820_NVS,
    "(unusable)": e820.E820_UNUSABLE,
}
_TYPE_NUMBER = re.compile(r"^(?:persistent \()?type (\d+)\)?$")


def _e820_type(text: str, table: dict[str, int]) -> int | None:
    if text in table:
        return table[text]
    m = _TYPE_NUMBER.match(text)
    if m and int(m.group(1)) <= e820.MAX_TYPE:
        return int(m.group(1))
    return None


def parse_e820_line(line: str, *, where: str = "<log>") -> E820Entry | None:
    """The firmware-map entry of one ``BIOS-e820:`` line, or None if ``line`` is not one.

    Both formats: modern ``BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable``
    (inclusive end) and 2008 `` BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)``
    (exclusive end). The returned entry has an exclusive end. A ``BIOS-e820:`` line whose type
    text is unknown raises BootemuError naming ``where``.
    """
    m = _E820_MODERN.search(line)
    if m:
        start, last, text = int(m.group(1), 16), int(m.group(2), 16), m.group("type")
        end, table = last + 1, _MODERN_TYPE_TEXT
    else:
        m = _E820_OLD.search(line)
        if not m:
            return None
        start, end, text = int(m.group(1), 16), int(m.group(2), 16), m.group("type")
        table = _OLD_TYPE_TEXT
    etype = _e820_type(text, table)
    if etype is None:
        raise BootemuError(f"{where}: unknown e820 type {text!r}")
    if end < start:
        raise BootemuError(f"{where}: e820 entry ends before it starts")
    return E820Entry(start, end, etype)


# --------------------------------------------------------------------------------------------
# Other lines the importer reads

#: init/version.c linux_banner: ``Linux version 6.1.0-50-686-pae (...)``.
_VERSION = re.compile(r"Linux version (\S+)")
#: arch/x86/kernel/setup.c setup_arch(), x86_64 only: ``Command line: %s``.
_CMDLINE_64 = re.compile(r"(?:^|\s)Command line: ?(.*)$")
#: init/main.c start_kernel(), every arch: ``Kernel command line: %s``.
_CMDLINE_ALL = re.compile(r"Kernel command line: ?(.*)$")
#: arch/x86/mm/srat.c acpi_numa_processor_affinity_init() (6.1):
#: ``SRAT: PXM %u -> APIC 0x%02x -> Node %u``; 2.6.2x prints the APIC id in decimal.
_SRAT_CPU = re.compile(r"SRAT: PXM (\d+) -> APIC (?:0x)?[0-9a-fA-F]+ -> Node (\d+)")
#: arch/x86/kernel/smpboot.c prefill_possible_map(): ``Allowing %d CPUs, %d hotplug CPUs``.
_SMPBOOT_CPUS = re.compile(r"Allowing (\d+) CPUs, (\d+) hotplug CPUs")
#: arch/x86/kernel/e820.c e820_end_pfn() (modern): ``last_pfn = %#lx max_arch_pfn = %#lx``.
_LAST_PFN = re.compile(r"last_pfn = (0x[0-9a-f]+) max_arch_pfn = (0x[0-9a-f]+)")
#: arch/x86/mm/init_32.c / numa_32.c initmem_init(): ``%ldMB HIGHMEM available.`` (only with
#: CONFIG_HIGHMEM) and ``%ldMB LOWMEM available.`` (always): both only on i386.
_HIGHMEM = re.compile(r"\d+MB HIGHMEM available\.")
_LOWMEM = re.compile(r"\d+MB LOWMEM available\.")
#: drivers/acpi/numa/srat.c acpi_numa_memory_affinity_init() (6.1):
#: ``ACPI: SRAT: Node %u PXM %u [mem %#010Lx-%#010Lx]%s%s`` (inclusive end, then
#: `` hotplug`` / `` non-volatile``).
_SRAT_MODERN = re.compile(
    r"SRAT: Node (\d+) PXM (\d+) \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]( hotplug)?( non-volatile)?"
)
#: arch/x86/mm/srat_64.c (2.6.2x): ``SRAT: Node %u PXM %u %Lx-%Lx`` (exclusive end, no 0x).
_SRAT_OLD = re.compile(r"SRAT: Node (\d+) PXM (\d+) ([0-9a-f]+)-([0-9a-f]+)\s*$")
#: arch/x86/mm/srat_64.c acpi_numa_memory_affinity_init() (2.6.2x), on an entry that overlaps
#: another node: ``SRAT: PXM %d (%lx-%lx) overlaps with PXM %d (%Lx-%Lx)`` (the entry's own
#: range, exclusive end), then bad_srat(): no later entry is parsed or printed.
_SRAT_OLD_OVERLAP = re.compile(
    r"SRAT: PXM (\d+) \(([0-9a-f]+)-([0-9a-f]+)\) overlaps with PXM \d+ \([0-9a-f]+-[0-9a-f]+\)"
)
#: mm/memblock.c memblock_reserve() with memblock=debug: ``memblock_reserve: [%pa-%pa] %pS``.
_MEMBLOCK_RESERVE = re.compile(
    r"memblock_reserve: \[(0x[0-9a-f]+)-(0x[0-9a-f]+)\] (\w+)\+0x[0-9a-f]+/0x[0-9a-f]+"
)
#: mm/memblock.c memblock_dump(): `` reserved[0x2]\t[0x...-0x...], 0x... bytes ...``.
_MEMBLOCK_DUMP_RESERVED = re.compile(r"reserved\[0x[0-9a-f]+\]\s+\[(0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
#: mm/page_alloc.c mem_init_print_info() (6.1): ``Memory: %luK/%luK available (%luK kernel
#: code, %luK rwdata, %luK rodata, %luK init, %luK bss, ...``.
_MEMORY = re.compile(
    r"Memory: (\d+)K/(\d+)K available \((\d+)K kernel code, (\d+)K rwdata, (\d+)K rodata, "
    r"(\d+)K init, (\d+)K bss"
)
_MEMORY_KEYS = ("available", "total", "code", "rwdata", "rodata", "init", "bss")
#: arch/x86/mm/init_32.c mem_init() (2.6.25): ``Memory: %luk/%luk available (%dk kernel code,
#: %dk reserved, %dk data, %dk init, %ldk highmem)``; data is ``_edata - _etext``.
_MEMORY_2625 = re.compile(
    r"Memory: (\d+)k/(\d+)k available \((\d+)k kernel code, (\d+)k reserved, (\d+)k data, "
    r"(\d+)k init"
)


@dataclass
class BootLog:
    """What one boot log says, before any decision: the facts the importer reads.

    Line numbers are 1-based positions in the log, for notes and error messages.
    """

    release: str | None = None
    release_line: str = ""
    e820: list[E820Entry] = field(default_factory=list)
    cmdline_64: str | None = None
    cmdline_all: str | None = None
    max_arch_pfn: int | None = None
    highmem_line: bool = False
    lowmem_line: bool = False
    srat: list[tuple[NumaMemory, str]] = field(default_factory=list)
    #: The SRAT entry 2.6.2x rejected for overlapping another node (printed by no "SRAT: Node"
    #: line; the table's last entry the kernel read), and the PXM -> node map of the lines.
    srat_rejected: NumaMemory | None = None
    srat_pxm_nodes: dict[int, int] = field(default_factory=dict)
    reserves: list[tuple[int, int, str]] = field(default_factory=list)
    dump_reserved: list[tuple[int, int]] = field(default_factory=list)
    memory_k: dict[str, int] = field(default_factory=dict)
    cpu_nodes: list[int] = field(default_factory=list)
    possible_cpus: int | None = None
    boots: int = 0
    #: The command line as printed, trailing blanks included (2.6.25 sizes two allocations
    #: by its length; the kernel prints boot_command_line verbatim).
    cmdline_all_raw: str | None = None
    #: Every line up to the end of the first boot (firmware lines before its banner too),
    #: cleaned (:func:`strip_dmesg_prefix`), for the arch's own readers
    #: (:mod:`bootemu.importers.artifacts`).
    lines: list[str] = field(default_factory=list)


def read_boot_log(text: str, *, source: str) -> BootLog:
    """Scan ``text`` and collect the facts of its first boot (see :class:`BootLog`)."""
    log = BootLog()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = strip_dmesg_prefix(raw)
        m = _VERSION.search(line)
        if m:
            log.boots += 1
            if log.boots > 1:
                break  # a second boot in the same capture: the first one is imported
            log.release, log.release_line = m.group(1), line.strip()
            log.lines.append(line)
            continue
        log.lines.append(line)  # the firmware's lines before the banner too
        if "BIOS-e820:" in line:
            entry = parse_e820_line(line, where=f"{source}:{lineno}")
            if entry is not None:
                log.e820.append(entry)
            continue
        m = _CMDLINE_64.search(line)
        if m and log.cmdline_64 is None:
            log.cmdline_64 = m.group(1).strip()
            continue
        m = _CMDLINE_ALL.search(line)
        if m and log.cmdline_all is None:
            log.cmdline_all = m.group(1).strip()
            log.cmdline_all_raw = m.group(1)
            continue
        m = _LAST_PFN.search(line)
        if m and log.max_arch_pfn is None:
            log.max_arch_pfn = int(m.group(2), 16)
            continue
        if _HIGHMEM.search(line):
            log.highmem_line = True
        elif _LOWMEM.search(line):
            log.lowmem_line = True
        elif "SRAT: Node" in line:
            _read_srat(line, log)
        elif "SRAT: PXM" in line:
            m = _SRAT_CPU.search(line)
            if m:
                log.cpu_nodes.append(int(m.group(2)))
                log.srat_pxm_nodes.setdefault(int(m.group(1)), int(m.group(2)))
                continue
            m = _SRAT_OLD_OVERLAP.search(line)
            if m and log.srat_rejected is None:
                # setup_node() ran before the conflict check: the PXM's node, as the earlier
                # lines map it; a PXM no line names yet got first_unset_node()
                # (drivers/acpi/numa.c acpi_map_pxm_to_node()).
                pxm = int(m.group(1))
                taken = set(log.srat_pxm_nodes.values())
                first_unset = min(set(range(len(taken) + 1)) - taken)
                node = log.srat_pxm_nodes.get(pxm, first_unset)
                log.srat_rejected = NumaMemory(node, int(m.group(2), 16), int(m.group(3), 16))
        elif "Allowing" in line and log.possible_cpus is None:
            m = _SMPBOOT_CPUS.search(line)
            if m:
                log.possible_cpus = int(m.group(1))  # possible CPUs: what nr_cpu_ids counts
        elif "memblock_reserve:" in line:
            m = _MEMBLOCK_RESERVE.search(line)
            if m:
                log.reserves.append((int(m.group(1), 16), int(m.group(2), 16) + 1, m.group(3)))
        elif "reserved[0x" in line:
            m = _MEMBLOCK_DUMP_RESERVED.search(line)
            if m:
                log.dump_reserved.append((int(m.group(1), 16), int(m.group(2), 16) + 1))
        elif "Memory:" in line and not log.memory_k:
            m = _MEMORY.search(line)
            keys: tuple[str, ...] = _MEMORY_KEYS
            if m is None:
                # 2.6.25's "data" (_edata - _etext) feeds the same data_size key as 6.1's
                # rwdata: the arch reads data_size by its profile's meaning.
                m = _MEMORY_2625.search(line)
                keys = ("available", "total", "code", "reserved", "rwdata", "init")
            if m:
                log.memory_k = {k: int(v) for k, v in zip(keys, m.groups(), strict=True)}
    return log


def _read_srat(line: str, log: BootLog) -> None:
    m = _SRAT_MODERN.search(line)
    if m:
        node, start, end = int(m.group(1)), int(m.group(3), 16), int(m.group(4), 16) + 1
        flags = "".join(f for f in (m.group(5), m.group(6)) if f).strip()
        log.srat.append((NumaMemory(node, start, end), flags))
        return
    m = _SRAT_OLD.search(line)
    if m:
        node, start, end = int(m.group(1)), int(m.group(3), 16), int(m.group(4), 16)
        log.srat_pxm_nodes.setdefault(int(m.group(2)), node)
        if end & 0xFFF == 0xFFF:
            # 2.6.2x srat_64.c quirk: some versions print nd->end after ``nd->end--``.
            end += 1
        log.srat.append((NumaMemory(node, start, end), ""))


# --------------------------------------------------------------------------------------------
# The kernel image


@dataclass(frozen=True)
class KernelImage:
    """Where the log says the kernel image lies, and how big its sections are.

    - ``start`` / ``end``: physical ``[_text, __end_of_kernel_reserve)``. 6.1's
      early_reserve_memory() reserves that range before ``memblock=debug`` is parsed, so it is
      never printed itself; what the log shows is reserve_brk(): the first
      ``memblock_reserve: [...] setup_arch+...`` line, the brk area that starts right where
      the image ends (vmlinux.lds.S puts ``.brk`` after ``__end_of_kernel_reserve``). The
      image start is the start of the ``MEMBLOCK configuration`` ``reserved[...]`` region
      that the brk area extends.
    - ``brk_end``: the end of the brk area actually used.
    - ``sections_k``: the ``Memory:`` line's section sizes in KiB (``code``, ``rwdata``,
      ``rodata``, ``init``, ``bss``).
    """

    start: int | None = None
    end: int | None = None
    brk_end: int | None = None
    sections_k: tuple[tuple[str, int], ...] = ()


_ONE_MB = 1 << 20


def find_kernel_image(log: BootLog) -> KernelImage:
    """The kernel image facts of ``log`` (see :class:`KernelImage`); unknown parts are None."""
    start = end = brk_end = None
    brk = next((r for r in log.reserves if r[2] == "setup_arch"), None)
    # reserve_brk() is the first reserve setup_arch() makes itself; the brk area lies above
    # the first megabyte (the kernel loads at CONFIG_PHYSICAL_START, 16 MiB here). A later
    # setup_arch reserve of [0, 1M) would mean the brk area was empty and nothing was printed.
    if brk is not None and brk[0] >= _ONE_MB:
        end, brk_end = brk[0], brk[1]
        region = next((r for r in log.dump_reserved if r[0] < brk[0] <= r[1]), None)
        if region is not None:
            start = region[0]
    names = ("code", "rwdata", "rodata", "init", "bss")
    sections = tuple((k, log.memory_k[k]) for k in names if k in log.memory_k)
    return KernelImage(start=start, end=end, brk_end=brk_end, sections_k=sections)
