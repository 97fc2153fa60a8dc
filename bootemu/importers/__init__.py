"""Machine files from real machines: a kernel boot log, or the running machine's firmware map.

- :func:`import_dmesg` reads a boot log (a ``dmesg`` dump or a serial-console capture, with or
  without ``[    0.000000]`` timestamps) and returns the :class:`~bootemu.models.Machine` that
  reproduces that boot: the ``BIOS-e820`` table, the memory parameters of the command line, the
  arch, profile and highmem model the log shows, the SRAT memory affinity and, where the log
  has it, the kernel image's position. Given the kernel's ``.config`` and ``System.map``
  (:mod:`bootemu.importers.kbuild`), the arch's reader (:mod:`bootemu.importers.artifacts`)
  turns them, with the log, into the arch's ``[kernel]`` keys. It also returns notes that say
  what was inferred from which line or file and what came from options.
- :func:`import_memmap` reads ``/sys/firmware/memmap`` (or a directory of the same layout).

Both round-trip the result through :mod:`bootemu.machine` (dump, then load with the ``--set``
overrides), so what they return is exactly what the written machine file loads back to.

The pieces: :mod:`bootemu.importers.bootlog` reads the log's lines (the kernel's own formats,
each regular expression naming the routine that prints it; only the first boot of a capture),
:mod:`bootemu.importers.memmap` reads the sysfs tree, and this module decides: profile, arch,
highmem model, command line, kernel-image keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bootemu import e820
from bootemu.cmdline import split_cmdline
from bootemu.importers.artifacts import ArtifactInput, kernel_keys
from bootemu.importers.bootlog import (
    BootLog,
    KernelImage,
    find_kernel_image,
    parse_e820_line,
    read_boot_log,
    strip_dmesg_prefix,
)
from bootemu.importers.kbuild import Kconfig, SystemMap
from bootemu.importers.memmap import MEMMAP_TYPES, read_memmap
from bootemu.models import BootemuError, KernelSpec, Machine, NumaMemory

__all__ = [
    "ARCH_32",
    "ARCH_64",
    "MEMMAP_TYPES",
    "BootLog",
    "KernelImage",
    "find_kernel_image",
    "import_dmesg",
    "import_memmap",
    "infer_arch",
    "infer_highmem",
    "infer_profile",
    "memory_cmdline",
    "parse_e820_line",
    "read_boot_log",
    "read_memmap",
    "strip_dmesg_prefix",
]


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

#: Kernel release names (``uname -r``) of distribution builds: Debian's ``-686``, ``-686-pae``,
#: ``-amd64``, 2008's ``-686-bigmem``, Fedora's ``.i686``, ``.x86_64``, ``PAE``.
_RELEASE_32 = re.compile(r"(?:^|[-_.+])(?:i?[3-6]86|pae|bigmem)(?:$|[-_.+])", re.IGNORECASE)
_RELEASE_64 = re.compile(r"(?:amd64|x86_64)", re.IGNORECASE)
_RELEASE_PAE = re.compile(r"(?:pae|bigmem)", re.IGNORECASE)

#: The allocator each profile's kernel used: 2.6.25 had classic bootmem; 6.1 has memblock.
ALLOCATOR_BY_PROFILE = {"2.6.25": "bootmem", "2.6.26-rc1": "bootmem", "6.1": "memblock"}


#: The bootmem2 RFC v1 (2008-05-05) prints, from its init: ``bootmem: %lu pages on %d
#: block(s) - map @ pfn %lx``: a kernel that prints it ran the posted RFC code.
_RFC_BOOTMEM_LINE = re.compile(r"^bootmem: \d+ pages on \d+ block\(s\)")
RFC_ALLOCATOR = "bootmem2-rfc1"


def choose_allocator(profile: str, log: BootLog | None = None) -> tuple[str, str]:
    """The backend for an imported machine, and the note.

    The allocator the log's kernel really ran (the RFC's ``bootmem: N pages on N block(s)``
    line means the posted bootmem2 RFC, :data:`RFC_ALLOCATOR`), else the one the profile's
    kernel used, when that backend is installed (the ``bootemu.allocators`` entry points);
    otherwise the machine-file default. ``--set machine.allocator=NAME`` chooses another.
    """
    from bootemu.machine import DEFAULT_ALLOCATOR
    from bootemu.plugins import ALLOCATOR_GROUP, discover

    real = ALLOCATOR_BY_PROFILE.get(profile, "bootmem")
    why = f"what Linux {profile} used"
    rfc = next((x for x in (log.lines if log else ()) if _RFC_BOOTMEM_LINE.match(x.strip())), None)
    if rfc is not None:
        real, why = RFC_ALLOCATOR, f"the posted bootmem2 RFC prints '{rfc.strip()}'"
    if real in discover(ALLOCATOR_GROUP):
        return real, f"allocator {real} ({why})"
    return DEFAULT_ALLOCATOR, (
        f"allocator {DEFAULT_ALLOCATOR} (the kernel ran {real} ({why}), which is not installed)"
    )



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
    elif log.release and log.release.startswith("2.6.26-rc1") and "2.6.26-rc1" in e820.PROFILES:
        inferred = "2.6.26-rc1"  # the bootmem2 RFC's base tree
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
    if inferred == "2.6.25" and log.release and log.release.startswith("2.6.26-rc1"):
        return inferred, (f"profile {inferred} ({said}; the 2.6.26-rc1 profile is not "
                          "installed, its base 2.6.25 is used)")
    return inferred, f"profile {inferred} ({said})"


def _arch_evidence(log: BootLog) -> tuple[int | None, str]:
    """32 or 64 (bits) and the evidence, strongest first; (None, "") if the log does not say."""
    if log.max_arch_pfn is not None:
        bits = 32 if log.max_arch_pfn <= MAX_ARCH_PFN_PAE else 64
        what = {MAX_ARCH_PFN_PAE: "i386 with PAE", MAX_ARCH_PFN_NOPAE: "i386 without PAE"}
        return bits, f"max_arch_pfn = {log.max_arch_pfn:#x}: {what.get(log.max_arch_pfn, 'x86_64')}"
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


#: The ``[kernel]`` keys each arch documents for the kernel image, per profile
#: (arches/x86_32/config.py, arches/numa64/__init__.py), and which fact fills each. Facts:
#: ``start`` (_text), ``brk_end`` (6.1 keeps [_text, _brk_end) reserved:
#: early_reserve_memory() + reserve_brk(); the unused brk tail up to _end is never reserved,
#: and _end itself is not printed), ``size`` (brk_end - start), and the ``Memory:`` line's
#: sections ``code``, ``rwdata`` (2.6.25: data), ``rodata``, ``init``, ``bss``, in bytes: the
#: line truncates to KiB, so they are multiples of 1024 within 1 KiB of the real sizes.
IMAGE_KEYS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    (ARCH_32, "6.1"): (
        ("image_start", "start"),
        ("image_end", "brk_end"),
        ("text_size", "code"),
        ("data_size", "rwdata"),
        ("rodata_size", "rodata"),
        ("init_size", "init"),
        ("bss_size", "bss"),
    ),
    # 2.6.25 logs have no memblock=debug; the Memory: line has code, data and init.
    (ARCH_32, "2.6.25"): (("text_size", "code"), ("data_size", "rwdata"), ("init_size", "init")),
    # numa64 reads image_start / image_size ("_text to _end, brk included"); its text, data
    # and init sizes are 2.6.25 figures only.
    (ARCH_64, "6.1"): (("image_start", "start"), ("image_size", "size")),
    (ARCH_64, "2.6.25"): (("text_size", "code"), ("data_size", "rwdata"), ("init_size", "init")),
}


def infer_cpu_nodes(log: BootLog, numa: Sequence[NumaMemory]) -> tuple[str | None, str]:
    """numa64's ``kernel.cpu_nodes`` from the log: the node of each CPU.

    The SRAT processor-affinity lines give each CPU's node; without them (``numa=off``, or no
    SRAT) every CPU the kernel allows (``smpboot: Allowing N CPUs``) is on node 0 — with no
    affinity table, or with NUMA off, node 0 is the only node. None: the arch's default.
    """
    if log.cpu_nodes:
        nodes = ",".join(str(n) for n in log.cpu_nodes)
        return nodes, f"kernel.cpu_nodes {nodes!r} (from the SRAT processor-affinity lines)"
    if log.possible_cpus:
        nodes = ",".join("0" for _ in range(log.possible_cpus))
        return nodes, (
            f"kernel.cpu_nodes {nodes!r} ({log.possible_cpus} CPU(s) from 'smpboot: Allowing', "
            "no SRAT processor lines: all on node 0)"
        )
    default = "one per node named in numa.memory" if numa else "one CPU"
    return None, f"kernel.cpu_nodes: not in the log, the arch's default ({default})"


def kernel_config(
    arch: str, profile: str, image: KernelImage
) -> tuple[list[tuple[str, int]], list[str]]:
    """The ``[kernel]`` keys of :data:`IMAGE_KEYS` that ``arch`` reads, valued from the log.

    Only keys the arch documents for ``profile`` are written; facts the log lacks are left to
    the arch's defaults. Returns ``(config items, notes)``.
    """
    facts: dict[str, int] = {k: v * 1024 for k, v in image.sections_k}
    if image.start is not None:
        facts["start"] = image.start
    if image.brk_end is not None:
        facts["brk_end"] = image.brk_end
        if image.start is not None:
            facts["size"] = image.brk_end - image.start
    keys = IMAGE_KEYS.get((arch, profile), ())
    config = [(key, facts[fact]) for key, fact in keys if fact in facts]
    if not facts:
        return config, ["kernel image: not in the log (no memblock=debug, no Memory: line)"]
    if not keys:
        return config, [f"kernel image: arch {arch} reads no image keys; the log's are unused"]
    written = ", ".join(f"{k}={v:#x}" for k, v in config) or "nothing the arch reads"
    sources = []
    if image.brk_end is not None:
        sources.append("memblock=debug: reserve_brk() and the MEMBLOCK dump")
    if image.sections_k:
        sources.append("the Memory: line")
    return config, [f"kernel image: {written} (from {' and '.join(sources)})"]


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
    kconfig: Kconfig | None = None,
    system_map: SystemMap | None = None,
) -> tuple[Machine, list[str]]:
    """The machine that reproduces the boot logged in ``text``, and notes on how it was read.

    ``source`` names the log in messages and gives the machine its name (the file's stem).
    ``arch`` / ``profile`` are taken instead of what the log suggests; ``kconfig`` /
    ``system_map`` are the kernel's build artifacts, read by the arch's reader
    (:mod:`bootemu.importers.artifacts`) into ``[kernel]`` keys; ``overrides`` are
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
    elif chosen_profile != "6.1" and log.cmdline_all_raw is not None and raw_cmdline is \
            log.cmdline_all:
        # 2008 kernels size setup_command_line()'s two copies by the whole line: keep it
        # verbatim (the arch models only its memory parameters).
        cmdline = log.cmdline_all_raw
        notes.append(f"kernel.cmdline {cmdline!r} (the whole 'Kernel command line:', "
                     f"{len(cmdline.encode())} bytes: setup_command_line() sizes two copies "
                     "by it)")
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

    allocator, note = choose_allocator(chosen_profile, log)
    notes.append(note)
    config, image_notes = kernel_config(
        chosen_arch, chosen_profile, find_kernel_image(log)
    )
    derived = kernel_keys(chosen_arch, ArtifactInput(
        log=log, profile=chosen_profile, source=source, kconfig=kconfig, system_map=system_map))
    if derived is None or not any(k in derived.values for k, _ in config):
        notes.extend(image_notes)  # else the arch's reader has said better where they come from
    if derived is not None:
        if derived.highmem is not None:
            # the arch's reader saw more (pkmap line, .config): its note replaces the guess
            notes[:] = [n for n in notes if not n.startswith("highmem ")]
            highmem = derived.highmem
        config = [(k, v) for k, v in config if k not in derived.values] + derived.keys
        notes.extend(derived.all_notes())
    elif kconfig is not None or system_map is not None:
        notes.append(f"arch {chosen_arch} reads no build artifacts: --kconfig/--system-map unused")
    if chosen_arch != ARCH_32:
        cpu_nodes, note = infer_cpu_nodes(log, numa)
        if cpu_nodes is not None:
            config.append(("cpu_nodes", cpu_nodes))
        notes.append(note)
    if derived is not None and derived.get("srat_check") == "hulls":
        # x86_64 2.6.25 as released printed each node's hull: its ranges, read back (numa64)
        from bootemu_arches.numa64.kbuild import srat_ranges

        numa = tuple(srat_ranges(numa, hulls=True))
        shown = ", ".join(f"{m.node}:{m.start:#x}-{m.end:#x}" for m in numa)
        notes.append(f"numa.memory: the SRAT lines are node hulls (2.6.25), read back as {shown}")
    if log.srat_rejected is not None and chosen_arch != ARCH_32:
        # 2.6.2x printed the overlapping entry only in its error line, then dropped the table
        numa = (*numa, log.srat_rejected)
        r = log.srat_rejected
        notes.append(
            f"numa.memory: + {r.node}:{r.start:#x}-{r.end:#x}, the entry of the 'overlaps with"
            " PXM' line (the kernel read no entry after it)"
        )
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
