"""Machine files from real machines: a kernel boot log, or the running machine's firmware map.

- :func:`import_dmesg` reads a boot log (a ``dmesg`` dump or a serial-console capture, with or
  without ``[    0.000000]`` timestamps) and returns the :class:`~bootemu.models.Machine` that
  reproduces that boot: the ``BIOS-e820`` table, the memory parameters of the command line, the
  arch, profile and highmem model the log shows, the SRAT memory affinity and, where the log
  has it, the kernel image's position. It also returns notes that say what was inferred from
  which line and what came from options.
- :func:`import_memmap` reads ``/sys/firmware/memmap`` (or a directory of the same layout).

Both round-trip the result through :mod:`bootemu.machine` (dump, then load with the ``--set``
overrides), so what they return is exactly what the written machine file loads back to.

The line formats are the kernel's own; each regular expression below names the routine that
prints it. Only the first boot of a log is read (a capture may hold several).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootemu import e820
from bootemu.cmdline import split_cmdline
from bootemu.models import BootemuError, E820Entry, KernelSpec, Machine, NumaMemory

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

#: Command-line parameters that change what bootemu emulates (the early memory set-up). The
#: rest (console=, loglevel=, panic= ...) configure things bootemu does not model; keeping
#: them would only make machine files noisy, so they are dropped and the notes list them.
MEMORY_PARAMS = (
    "mem",
    "memmap",
    "highmem",
    "vmalloc",
    "numa",
    "reservetop",
    "kernelcore",
    "movablecore",
    "movable_node",
    "crashkernel",
)

#: ``max_arch_pfn`` values of x86_32 (arch/x86/include/asm/pgtable_32_types.h MAXMEM and
#: e820.c MAX_ARCH_PFN): PAE 36-bit physical addresses, non-PAE 32-bit.
MAX_ARCH_PFN_PAE = 0x1000000
MAX_ARCH_PFN_NOPAE = 0x100000

ARCH_32 = "x86_32"
ARCH_64 = "numa64"

#: The allocator each profile's kernel used: 2.6.25 had classic bootmem; 6.1 has memblock.
ALLOCATOR_BY_PROFILE = {"2.6.25": "bootmem", "6.1": "memblock"}


def choose_allocator(profile: str) -> tuple[str, str]:
    """The backend for an imported machine, and the note.

    The allocator the profile's kernel really used when that backend is installed (the
    ``bootemu.allocators`` entry points), else the machine-file default; ``--set
    machine.allocator=NAME`` chooses another.
    """
    from bootemu.machine import DEFAULT_ALLOCATOR
    from bootemu.plugins import ALLOCATOR_GROUP, discover

    real = ALLOCATOR_BY_PROFILE[profile]
    if real in discover(ALLOCATOR_GROUP):
        return real, f"allocator {real} (what Linux {profile} used)"
    return DEFAULT_ALLOCATOR, (
        f"allocator {DEFAULT_ALLOCATOR} (Linux {profile} used {real}, which is not installed)"
    )

_RELEASE_32 = re.compile(r"(?:^|[-_.+])(?:i?[3-6]86|pae|bigmem)(?:$|[-_.+])", re.IGNORECASE)
_RELEASE_64 = re.compile(r"(?:amd64|x86_64)", re.IGNORECASE)
_RELEASE_PAE = re.compile(r"(?:pae|bigmem)", re.IGNORECASE)


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
    reserves: list[tuple[int, int, str]] = field(default_factory=list)
    dump_reserved: list[tuple[int, int]] = field(default_factory=list)
    memory_k: dict[str, int] = field(default_factory=dict)
    boots: int = 0


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
            continue
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
        if end & 0xFFF == 0xFFF:
            # 2.6.2x srat_64.c quirk: some versions print nd->end after ``nd->end--``.
            end += 1
        log.srat.append((NumaMemory(node, start, end), ""))


# --------------------------------------------------------------------------------------------
# Decisions: profile, arch, highmem model, command line


def _kernel_version(release: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def infer_profile(log: BootLog, option: str | None, *, source: str) -> tuple[str, str]:
    """The profile and the note saying where it came from.

    ``Linux version 6.x`` → ``"6.1"`` (the only modern profile), ``2.6.x`` → ``"2.6.25"`` (the
    2008 profile). Other versions (3.x–5.x) have no profile of their own: ``--profile`` must
    say which rules to follow, since the emulator claims to reproduce a kernel, not to guess.
    """
    version = _kernel_version(log.release) if log.release else None
    inferred: str | None = None
    if version is not None and version[0] == 6:
        inferred = "6.1"
    elif version is not None and version[:2] == (2, 6):
        inferred = "2.6.25"
    said = f"'Linux version {log.release}'" if log.release else "no 'Linux version' line"
    if option is not None:
        if option not in e820.PROFILES:
            raise BootemuError(
                f"--profile: unknown profile {option!r} (known: {', '.join(e820.PROFILES)})"
            )
        if inferred is None or inferred == option:
            return option, f"profile {option} (from --profile; the log has {said})"
        return option, f"profile {option} (from --profile; the log suggests {inferred}: {said})"
    if inferred is None:
        raise BootemuError(
            f"{source}: cannot tell the profile from {said}: pass --profile "
            f"{' or --profile '.join(e820.PROFILES)}"
        )
    return inferred, f"profile {inferred} ({said})"


def _arch_evidence(log: BootLog) -> tuple[int | None, str]:
    """32 or 64 (bits) and the evidence, strongest first; (None, "") if the log does not say."""
    if log.max_arch_pfn is not None:
        bits = 32 if log.max_arch_pfn <= MAX_ARCH_PFN_PAE else 64
        return bits, f"max_arch_pfn = {log.max_arch_pfn:#x}"
    if log.highmem_line or log.lowmem_line:
        return 32, "'NNNMB LOWMEM available' is printed by i386 kernels only"
    if log.cmdline_64 is not None:
        return 64, "'Command line:' is printed by x86_64 kernels only"
    if log.release and _RELEASE_64.search(log.release):
        return 64, f"64-bit kernel: 'Linux version {log.release}'"
    if log.release and _RELEASE_32.search(log.release):
        return 32, f"i386 kernel: 'Linux version {log.release}'"
    return None, ""


def infer_arch(log: BootLog, option: str | None, *, source: str) -> tuple[str, str]:
    """``"x86_32"`` or ``"numa64"`` (the sample 64-bit NUMA arch), and the note."""
    bits, why = _arch_evidence(log)
    inferred = {32: ARCH_32, 64: ARCH_64}.get(bits) if bits else None
    if option is not None:
        if inferred is None or inferred == option:
            agrees = f"; the log agrees: {why}" if why else ""
            return option, f"arch {option} (from --arch{agrees})"
        return option, f"arch {option} (from --arch; the log suggests {inferred}: {why})"
    if inferred is None:
        said = f"'Linux version {log.release}'" if log.release else "no 'Linux version' line"
        raise BootemuError(
            f"{source}: cannot tell i386 from x86_64 ({said}, no max_arch_pfn, no "
            f"'Command line:' or LOWMEM line): pass --arch {ARCH_32} or --arch {ARCH_64}"
        )
    return inferred, f"arch {inferred} ({why})"


def infer_highmem(log: BootLog) -> tuple[str | None, str]:
    """The x86_32 highmem model (``"64G"``, ``"4G"``, ``"off"`` or None) and the note.

    - ``max_arch_pfn = 0x1000000`` (36-bit physical addresses) means PAE: HIGHMEM64G;
    - ``max_arch_pfn = 0x100000`` means no PAE: HIGHMEM4G if the log prints
      ``NNNMB HIGHMEM available.`` (initmem_init() prints it only with CONFIG_HIGHMEM), else
      no highmem at all;
    - without max_arch_pfn (2008 kernels): a ``pae`` or ``bigmem`` release name means PAE; a
      LOWMEM line without a HIGHMEM line means no highmem; otherwise the log does not say.
    """
    if log.max_arch_pfn == MAX_ARCH_PFN_PAE:
        return "64G", f"highmem 64G (PAE: max_arch_pfn = {log.max_arch_pfn:#x})"
    if log.lowmem_line and not log.highmem_line:
        return "off", "highmem off (a LOWMEM line and no HIGHMEM line: no CONFIG_HIGHMEM)"
    if log.max_arch_pfn == MAX_ARCH_PFN_NOPAE:
        return "4G", f"highmem 4G (no PAE: max_arch_pfn = {log.max_arch_pfn:#x})"
    if log.release and _RELEASE_PAE.search(log.release):
        return "64G", f"highmem 64G (PAE kernel: 'Linux version {log.release}')"
    return None, (
        "highmem model not in the log: the arch's default applies "
        "(--set kernel.highmem=64G|4G|off to choose)"
    )


def memory_cmdline(cmdline: str, *, profile: str) -> tuple[str, list[str]]:
    """The memory parameters of ``cmdline`` (:data:`MEMORY_PARAMS`), in order, and the rest.

    Words are split as the kernel's parse_args() does (:func:`bootemu.cmdline.split_cmdline`)
    and kept verbatim, so ``memmap=64M$0x10000000`` survives as written.
    """
    kept: list[str] = []
    dropped: list[str] = []
    for param, value in split_cmdline(cmdline, profile=profile):
        word = param if value is None else f"{param}={value}"
        if " " in word or "\t" in word:
            word = f'{param}="{value}"'
        (kept if param in MEMORY_PARAMS else dropped).append(word)
    return " ".join(kept), dropped


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


#: The ``[kernel]`` keys each arch documents for the kernel image (arches/x86_32/config.py;
#: arches/numa64.py), and which fact of :class:`KernelImage` fills each. Sizes come from the
#: ``Memory:`` line in KiB (mem_init_print_info() truncates to KiB), so they are multiples of
#: 1024 within 1 KiB of the real section sizes.
IMAGE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    ARCH_32: (
        ("image_start", "start"),
        # 6.1 keeps [_text, _brk_end) reserved (early_reserve_memory() + reserve_brk()); the
        # unused brk tail up to _end is never reserved, and _end itself is not printed.
        ("image_end", "brk_end"),
        ("text_size", "code"),
        ("data_size", "rwdata"),
        ("rodata_size", "rodata"),
        ("init_size", "init"),
        ("bss_size", "bss"),
    ),
}


def kernel_config(arch: str, image: KernelImage) -> tuple[list[tuple[str, int]], list[str]]:
    """The ``[kernel]`` keys of :data:`IMAGE_KEYS` that ``arch`` reads, valued from the log.

    Only keys the arch documents are written; facts the log lacks are left to the arch's
    defaults. Returns ``(config items, notes)``.
    """
    facts: dict[str, int | None] = {"start": image.start, "end": image.end,
                                    "brk_end": image.brk_end}
    facts.update({k: v * 1024 for k, v in image.sections_k})
    keys = IMAGE_KEYS.get(arch, ())
    config = [(key, facts[fact]) for key, fact in keys if facts.get(fact) is not None]
    config = [(k, v) for k, v in config if v is not None]
    notes: list[str] = []
    if image.start is None and image.end is None and not image.sections_k:
        notes.append("kernel image: not in the log (no memblock=debug, no Memory: line)")
    elif not keys:
        notes.append(f"kernel image: arch {arch} reads no image keys; the log's facts are unused")
    else:
        written = ", ".join(f"{k}={v:#x}" for k, v in config) or "nothing"
        sources = []
        if image.end is not None:
            sources.append("memblock=debug reserve_brk() and MEMBLOCK dump")
        if image.sections_k:
            sources.append("Memory: line")
        notes.append(f"kernel image: {written} (from {' and '.join(sources)})")
    return [(k, int(v)) for k, v in config], notes


# --------------------------------------------------------------------------------------------
# /sys/firmware/memmap

#: arch/x86/kernel/e820.c e820_type_to_string() (6.1), the ``type`` file of each entry, matched
#: case-insensitively: 2.6.2x-3.x kernels print ``reserved`` in lower case for every type
#: they have no name for. ``System RAM (kernel)`` is E820_TYPE_RESERVED_KERN in 6.1x+; for
#: ``Unknown E820 type`` the kernel hides the number, and what it does with such memory is
#: what it does with reserved memory (it is not RAM), so it is imported as reserved.
MEMMAP_TYPES: dict[str, int] = {
    "System RAM": e820.E820_RAM,
    "System RAM (kernel)": e820.E820_RAM,
    "Reserved": e820.E820_RESERVED,
    "ACPI Tables": e820.E820_ACPI,
    "ACPI Non-volatile Storage": e820.E820_NVS,
    "Unusable memory": e820.E820_UNUSABLE,
    "Persistent Memory (legacy)": e820.E820_PRAM,
    "Persistent Memory": e820.E820_PMEM,
    "Soft Reserved": e820.E820_SOFT_RESERVED,
    "Unknown E820 type": e820.E820_RESERVED,
}
_MEMMAP_TYPES_LOWER = {k.lower(): v for k, v in MEMMAP_TYPES.items()}


def _read_sysfs(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise BootemuError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise BootemuError(f"{path}: cannot read: {reason}") from None


def _read_hex(path: Path) -> int:
    """drivers/firmware/memmap.c start_show() / end_show(): ``0x%llx``."""
    text = _read_sysfs(path)
    if not re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        raise BootemuError(f"{path}: expected a hex address like 0x9fbff, got {text!r}")
    return int(text, 16)


def read_memmap(directory: Path) -> list[E820Entry]:
    """The firmware map in ``directory`` (``N/start``, ``N/end``, ``N/type``), in N order.

    drivers/firmware/memmap.c: one directory per entry, numbered from 0 in the order
    firmware_map_add_early() was called (the e820 table's order); ``end`` is inclusive.
    Entries are sorted numerically (``10`` after ``9``). Missing files, bad numbers and unknown
    type strings raise BootemuError naming the file.
    """
    if not directory.exists():
        raise BootemuError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise BootemuError(f"{directory}: not a directory")
    numbered = sorted(
        (int(p.name), p) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()
    )
    if not numbered:
        raise BootemuError(f"{directory}: no entries (expected N/start, N/end, N/type)")
    entries: list[E820Entry] = []
    for _, entry_dir in numbered:
        start = _read_hex(entry_dir / "start")
        last = _read_hex(entry_dir / "end")
        if last < start:
            raise BootemuError(f"{entry_dir / 'end'}: {last:#x} is below start {start:#x}")
        type_text = _read_sysfs(entry_dir / "type")
        etype = _MEMMAP_TYPES_LOWER.get(type_text.lower())
        if etype is None:
            known = ", ".join(repr(k) for k in MEMMAP_TYPES)
            raise BootemuError(f"{entry_dir / 'type'}: unknown type {type_text!r} (known: {known})")
        entries.append(E820Entry(start, last + 1, etype))
    return entries


# --------------------------------------------------------------------------------------------
# The two importers


def _machine_name(source: str) -> str:
    stem = Path(source).stem
    return stem if stem and stem not in ("-", "<stdin>") else "imported"


def _finish(machine: Machine, overrides: Sequence[str]) -> Machine:
    """Dump ``machine`` and load it back with ``overrides``: the result is what the file holds."""
    from bootemu.machine import dump_machine, machine_from_toml

    return machine_from_toml(
        dump_machine(machine), source=machine.source, default_name=machine.name,
        overrides=overrides,
    )


def import_dmesg(
    text: str,
    *,
    source: str,
    arch: str | None,
    profile: str | None,
    overrides: Sequence[str],
) -> tuple[Machine, list[str]]:
    """The machine that reproduces the boot logged in ``text``, and notes on how it was read.

    ``source`` names the log in messages and gives the machine its name (the file's stem).
    ``arch`` / ``profile`` are taken instead of what the log suggests; ``overrides`` are
    ``KEY=VALUE`` strings applied last (``kernel.highmem=64G``). Raises BootemuError, one line,
    when the text is not an x86 boot log or a decision cannot be made.
    """
    log = read_boot_log(text, source=source)
    if not log.e820:
        if log.release is None:
            raise BootemuError(f"{source}: no BIOS-e820 lines: not a boot log of an x86 kernel")
        raise BootemuError(
            f"{source}: 'Linux version {log.release}' but no BIOS-e820 lines: not an x86 boot "
            f"log, or the capture starts after the firmware memory map"
        )
    notes: list[str] = []
    if log.boots > 1:
        notes.append("the log holds more than one boot; the first one is imported")
    chosen_profile, note = infer_profile(log, profile, source=source)
    notes.append(note)
    chosen_arch, note = infer_arch(log, arch, source=source)
    notes.append(note)
    notes.append(f"firmware map: {len(log.e820)} BIOS-e820 entries")

    highmem: str | None = None
    if chosen_arch == ARCH_32:
        highmem, note = infer_highmem(log)
        notes.append(note)

    raw_cmdline, where = (
        (log.cmdline_64, "Command line:")
        if log.cmdline_64 is not None
        else (log.cmdline_all, "Kernel command line:")
    )
    cmdline = ""
    if raw_cmdline is None:
        notes.append("no command line in the log: kernel.cmdline is empty")
    else:
        cmdline, dropped = memory_cmdline(raw_cmdline, profile=chosen_profile)
        said = f"the memory parameters of '{where}'" if cmdline else f"'{where}' has none"
        rest = f"; not modelled, dropped: {' '.join(dropped)}" if dropped else ""
        notes.append(f"kernel.cmdline {cmdline!r} ({said}{rest})")

    numa: tuple[NumaMemory, ...] = ()
    if log.srat:
        if chosen_arch == ARCH_32:
            notes.append(f"{len(log.srat)} SRAT memory-affinity lines ignored: x86_32 has no NUMA")
        else:
            numa = tuple(entry for entry, _flags in log.srat)
            flagged = [f"{e.start:#x}-{e.end - 1:#x} {f}" for e, f in log.srat if f]
            notes.append(
                f"numa.memory: {len(numa)} SRAT memory-affinity entries on "
                f"{len({e.node for e in numa})} node(s)"
                + (f" (flags kept as plain memory: {'; '.join(flagged)})" if flagged else "")
            )

    allocator, note = choose_allocator(chosen_profile)
    notes.append(note)
    config, image_notes = kernel_config(chosen_arch, find_kernel_image(log))
    notes.extend(image_notes)
    for item in overrides:
        notes.append(f"{item} (from --set)")

    machine = Machine(
        name=_machine_name(source),
        arch=chosen_arch,
        allocator=allocator,
        kernel=KernelSpec(
            profile=chosen_profile, cmdline=cmdline, highmem=highmem, config=tuple(config)
        ),
        e820=tuple(log.e820),
        numa=numa,
        source=source,
    )
    return _finish(machine, overrides), notes


def import_memmap(directory: Path, *, arch: str, overrides: Sequence[str]) -> Machine:
    """A machine whose firmware map is the one in ``directory`` (``/sys/firmware/memmap``).

    The kernel that exposes that directory is modern (it exists since 2.6.27), so the profile
    is ``"6.1"``. Nothing else is known: no command line, no NUMA affinity, the arch's default
    highmem model and kernel image. ``overrides`` (``KEY=VALUE``) fill those in.
    """
    entries = read_memmap(directory)
    machine = Machine(
        name="memmap",
        arch=arch,
        allocator=choose_allocator("6.1")[0],
        kernel=KernelSpec(profile="6.1"),
        e820=tuple(entries),
        source=str(directory),
    )
    return _finish(machine, overrides)
