"""The x86_32 reader of ``import-dmesg``: ``.config``, ``System.map`` and log -> ``[kernel]``.

Registered in :data:`bootemu.importers.artifacts.READERS`. For the 2008 profiles (2.6.25 and
its successors) it writes the keys of :mod:`bootemu_arches.x86_32.config` that the build decides,
from the artifacts when given and otherwise from what the log prints; for ``6.1`` it only
decides the highmem model (the 6.1 image keys come from memblock=debug, see
:func:`bootemu.importers.kernel_config`). Every key gets a note naming its source: a
``.config`` line (``file:line``), a System.map symbol, or the log line.

Sources of the rules, Linux 2.6.25: arch/x86/Kconfig (HIGHMEM4G/64G, X86_PAE, NR_CPUS,
X86_L1_CACHE_SHIFT in Kconfig.cpu, HUGETLB_PAGE), include/asm-x86/page_32.h (HPAGE_SHIFT),
include/linux/pageblock-flags.h (pageblock_order = HUGETLB_PAGE_ORDER, else MAX_ORDER - 1),
include/linux/percpu.h (PERCPU_ENOUGH_ROOM), include/linux/spinlock_types*.h,
include/asm-x86/fixmap_32.h, include/asm-x86/kmap_types.h (KM_TYPE_NR 13),
include/asm-x86/apicdef.h (MAX_IO_APICS 64), include/asm-x86/acpi.h (FIX_ACPI_PAGES 4),
arch/x86/mm/init_32.c mem_init() (the "virtual kernel memory layout" lines), mm/slub.c
kmem_cache_init() (``HWalign=%d`` is cache_line_size() = L1_CACHE_BYTES on 2.6.25 x86).
"""

from __future__ import annotations

import re

from bootemu_arches.x86_32.v2_6_25_early import boot_tables_end

from bootemu.importers.artifacts import ArtifactInput, KernelKeys
from bootemu.importers.kbuild import Kconfig, SystemMap

#: include/asm-x86/page_32.h (CONFIG_HUGETLB_PAGE): HPAGE_SHIFT - PAGE_SHIFT; without huge
#: pages pageblock_order is MAX_ORDER - 1 = 10.
PAGEBLOCK_ORDER = {"pae": 9, "nopae": 10, "no-hugetlb": 10}
#: include/linux/percpu.h: PERCPU_MODULE_RESERVE with CONFIG_MODULES.
PERCPU_MODULE_RESERVE = 8192
#: include/asm-x86/kmap_types.h (2.6.25): KM_TYPE_NR, doubled by DEBUG_HIGHMEM's fences.
KM_TYPE_NR = 13

_PKMAP = re.compile(r"pkmap\s*:\s*0x([0-9a-f]+) - 0x([0-9a-f]+)\s*\(\s*(\d+) kB\)")
_SECTION = re.compile(r"\.(text|data|init)\s*:\s*0x([0-9a-f]+) - 0x([0-9a-f]+)")
_HWALIGN = re.compile(r"HWalign=(\d+)")
#: mm/slub.c kmem_cache_init(): ``CPUs=%d`` is nr_cpu_ids, the possible CPUs.
_SLUB_CPUS = re.compile(r"^SLUB: .*CPUs=(\d+),")
_PROCESSORS = re.compile(r"^Processors: (\d+)$")
_MPTABLE = re.compile(r"found SMP MP-table at \[([0-9a-f]+)\] ([0-9a-f]+)")
_DMI = re.compile(r"^DMI (?:(\d+\.\d+) )?present\.$")
_CONSOLE = re.compile(r"^Console: (?:colour|mono) .* (\d+)x(\d+)$")
_SEABIOS = re.compile(r"SeaBIOS \(version (\S+)\)")
#: The bitmap's first pfn, which is PFN_UP(init_pg_tables_end): the 2008 trace's init_bootmem
#: line, or the bootmem2 RFC's own ``bootmem: N pages on N block(s) - map @ pfn X`` line.
_INIT_BOOTMEM = re.compile(
    r"bootmem_trace: init_bootmem mapstart=([0-9a-f]+) |^bootmem: \d+ pages on \d+ block\(s\) "
    r"- map @ pfn ([0-9a-f]+)$"
)
_PERCPU_TRACE = re.compile(
    r"bootmem_trace: __alloc_bootmem nid=-1 size=([0-9a-f]+) "
    r"align=1000 goal=1000000 "
)


def kernel_keys(inp: ArtifactInput) -> KernelKeys:
    """The x86_32 ``[kernel]`` keys of ``inp`` (see the module docstring)."""
    out = KernelKeys()
    highmem_from_log(inp, out)
    if inp.kconfig is not None:
        highmem_from_kconfig(inp.kconfig, out)
    if inp.profile == "6.1":
        return out  # the 6.1 keys are read elsewhere (memblock=debug, Memory: line)
    from_log(inp, out)
    if inp.kconfig is not None:
        from_kconfig(inp.kconfig, out)
    if inp.system_map is not None:
        from_system_map(inp.system_map, inp.kconfig, out)
    return out


# --------------------------------------------------------------------------------------------
# The highmem model


def highmem_from_log(inp: ArtifactInput, out: KernelKeys) -> None:
    """PAE or 4G from mem_init()'s ``pkmap`` line (LAST_PKMAP pages: 512 with PAE = 2048 kB,
    1024 without = 4096 kB); HIGHMEM4G from find_max_low_pfn()'s warning pair; no highmem
    when the virtual layout or the LOWMEM line comes without any highmem trace."""
    lines = inp.log.lines
    for line in lines:
        m = _PKMAP.search(line)
        if m:
            kb = int(m.group(3))
            model = {2048: "64G", 4096: "4G"}.get(kb)
            if model:
                out.highmem = model
                out.notes.append(
                    f"highmem {model} ('{line.strip()}': LAST_PKMAP pages of "
                    f"{'PAE' if model == '64G' else 'non-PAE'} page tables)"
                )
                return
    if "Warning only 4GB will be used." in lines:
        out.highmem = "4G"
        out.notes.append("highmem 4G ('Warning only 4GB will be used.': HIGHMEM4G)")
        return
    if any(line.startswith("virtual kernel memory layout") for line in lines) or (
        inp.log.lowmem_line and not inp.log.highmem_line
    ):
        out.highmem = "off"
        why = "no HIGHMEM line" if not inp.log.highmem_line else "no pkmap area"
        out.notes.append(f"highmem off ({why}: no CONFIG_HIGHMEM)")


def highmem_from_kconfig(kc: Kconfig, out: KernelKeys) -> None:
    """arch/x86/Kconfig's highmem choice (the ``.config`` wins over the log)."""
    for option, model in (("HIGHMEM64G", "64G"), ("HIGHMEM4G", "4G"), ("NOHIGHMEM", "off")):
        if kc.enabled(option):
            said = [n for n in out.notes if n.startswith("highmem ")]
            out.notes = [n for n in out.notes if not n.startswith("highmem ")]
            tail = ""
            if out.highmem is not None:
                verdict = "agrees" if out.highmem == model else f"said {out.highmem}"
                tail = f"; the log {verdict}: {said[0].split(' (', 1)[1][:-1]}" if said else ""
            out.highmem = model
            out.notes.append(f"highmem {model} (CONFIG_{option}=y at {kc.where(option)}{tail})")
            return


def _option(kc: Kconfig, name: str) -> str:
    """``CONFIG_X=y at file:line`` / ``CONFIG_X not set at ...`` / ``no CONFIG_X in file``."""
    if not kc.has(name):
        return f"no CONFIG_{name} in {kc.path}"
    value = kc.options[name]
    state = " not set" if value == "n" else f"={value}"
    return f"CONFIG_{name}{state} at {kc.where(name)}"


# --------------------------------------------------------------------------------------------
# From the log alone


def from_log(inp: ArtifactInput, out: KernelKeys) -> None:
    """What a 2008 i386 log says about the build and the firmware."""
    log = inp.log
    smp = " SMP " in f" {log.release_line} "
    out.set(
        "smp",
        smp,
        f"'#1{' SMP' if smp else ''} ...' in the Linux version line: "
        f"UTS_VERSION {'has' if smp else 'lacks'} SMP",
    )
    out.set(
        "spinlock_size",
        4 if smp else 0,
        f"sizeof(spinlock_t) of a non-debug {'SMP' if smp else 'UP'} build",
    )
    scanned = False
    for line in log.lines:
        if m := _HWALIGN.search(line):
            shift = int(m.group(1)).bit_length() - 1
            out.set("l1_cache_shift", shift, f"'HWalign={m.group(1)}' in the SLUB line")
            if smp and (m := _SLUB_CPUS.match(line.strip())):
                # nr_cpu_ids: the possible CPUs setup_per_cpu_areas() allocated for, whether
                # the MP table or ACPI's MADT listed them
                out.set(
                    "mp_cpus",
                    int(m.group(1)),
                    f"'CPUs={m.group(1)}' in the SLUB line: nr_cpu_ids, the possible CPUs",
                )
        elif m := _PROCESSORS.match(line.strip()):
            out.set("mp_cpus", int(m.group(1)), f"'{line.strip()}' (MP table processors)")
        elif line.startswith("Scan SMP from"):
            scanned = True
        elif m := _MPTABLE.search(line):
            out.set("mp_table", int(m.group(2), 16), f"'{line.strip()}'")
        elif m := _DMI.match(line.strip()):
            out.set("dmi_version", m.group(1) or "0.0", f"'{line.strip()}'")
        elif line.strip() == "DMI not present or invalid.":
            out.set("dmi_version", "", f"'{line.strip()}'")
        elif m := _CONSOLE.match(line.strip()):
            out.set("console_cols", int(m.group(1)), f"'{line.strip()}'")
            out.set("console_rows", int(m.group(2)), f"'{line.strip()}'")
        elif m := _SEABIOS.search(line):
            out.set(
                "dmi_bios_version",
                m.group(1),
                f"'SeaBIOS (version {m.group(1)})': SeaBIOS's SMBIOS type 0 version string",
            )
    out.set(
        "find_smp_config",
        scanned,
        "'Scan SMP from' lines" if scanned else "no 'Scan SMP from' line: no X86_FIND_SMP_CONFIG",
    )
    if not scanned:
        out.set("mp_table", 0, "the kernel does not look for it")
    if not any(
        _DMI.match(x.strip()) or x.strip() == "DMI not present or invalid." for x in log.lines
    ):
        out.set("dmi_version", False, "no DMI line: no CONFIG_DMI")
    if not any(_CONSOLE.match(x.strip()) for x in log.lines):
        out.set("console_cols", 0, "no 'Console:' line: no VT console")
    if not any(x.startswith("ACPI") for x in log.lines):
        # ACPI_SLEEP depends on ACPI, which prints its tables ("ACPI: RSDP ...") at boot
        out.set("acpi_sleep", False, "no 'ACPI' line: no CONFIG_ACPI, so no ACPI_SLEEP")
    if smp and out.get("mp_cpus") is not None:
        cpus = out.get("mp_cpus")
        out.set("nr_cpus", cpus, f"NR_CPUS is not in the log; it is at least the {cpus} possible")
    image_from_log(inp, out)
    pageblock_from_trace(inp, out)


def image_from_log(inp: ArtifactInput, out: KernelKeys) -> None:
    """The image from mem_init()'s "virtual kernel memory layout" (.text = [_text, _etext),
    .data = [_etext, _edata), .init = [__init_begin, __init_end), exact bytes) and, in a traced
    log, _end from the bitmap's pfn: ``init_bootmem mapstart`` is PFN_UP(init_pg_tables_end),
    and the highest page-aligned ``_end`` whose boot tables end there stands for it (every
    such ``_end`` gives the same tables)."""
    page_offset = 0xC0000000
    for line in inp.log.lines:
        m = _SECTION.search(line)
        if not m:
            continue
        name, lo, hi = m.group(1), int(m.group(2), 16), int(m.group(3), 16)
        key = {"text": "text_size", "data": "data_size", "init": "init_size"}[name]
        out.set(key, hi - lo, f"'{line.strip()}'")
        if name == "text":
            out.set("image_start", lo - page_offset, f"'{line.strip()}' (_text)")
    pae = out.highmem == "64G"
    for line in inp.log.lines:
        if m := _INIT_BOOTMEM.search(line.strip()):
            end = int(m.group(1) or m.group(2), 16) << 12
            for k in range(1, 64):
                pg0 = end - k * 4096
                if boot_tables_end(pg0, pae) == end:
                    out.set(
                        "image_end",
                        pg0,
                        f"'{line.strip()}': boot page tables built "
                        f"from pg0 = {pg0:#x} end at pfn {end >> 12:#x}",
                    )
                    break
        elif (m := _PERCPU_TRACE.search(line)) and out.get("smp"):
            cpus = int(out.get("mp_cpus", 1) or 1)
            out.set(
                "percpu_size",
                int(m.group(1), 16) // cpus,
                f"'{line.strip()}': setup_per_cpu_areas() for {cpus} CPU(s)",
            )


_ZONE_RANGE = re.compile(r"^\s+(\w+)\s+(\d+) ->\s+(\d+)$")
_NODE_RANGE = re.compile(r"^\s+\d+:\s+(\d+) ->\s+(\d+)$")
_ZONE_LINE = re.compile(r"^\s+(\w+) zone: ")
_NODE_ALLOC = re.compile(r"bootmem_trace: __alloc_bootmem_node nid=\d+ size=([0-9a-f]+) ")


def pageblock_from_trace(inp: ArtifactInput, out: KernelKeys) -> None:
    """pageblock_order from a traced log: the first node allocation after a zone's lines is its
    usemap (free_area_init_core() -> setup_usemap(), mm/page_alloc.c), usemap_size() of the
    zone's span (``Zone PFN ranges`` clipped to ``early_node_map``) for some order; the orders
    every zone agrees with are kept, and the largest of them (MAX_ORDER - 1 when it fits:
    no HUGETLB_PAGE) is written."""
    from bootemu_arches.x86_32.mm import usemap_size_2625

    ranges: dict[str, tuple[int, int]] = {}
    node: tuple[int, int] | None = None
    zone: str | None = None
    orders = set(range(1, 11))
    seen = False
    for line in inp.log.lines:
        if m := _ZONE_RANGE.match(line):
            ranges[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        elif (m := _NODE_RANGE.match(line)) and node is None:
            node = (int(m.group(1)), int(m.group(2)))
        elif (m := _ZONE_LINE.match(line)) and m.group(1) in ranges:
            zone = m.group(1)
        elif (m := _NODE_ALLOC.search(line)) and zone is not None and node is not None:
            lo, hi = ranges[zone]
            spanned = max(0, min(hi, node[1]) - max(lo, node[0]))
            size = int(m.group(1), 16)
            orders &= {o for o in range(1, 11) if usemap_size_2625(spanned, o) == size}
            zone, seen = None, True
    if seen and orders:
        order = max(orders)
        out.set(
            "pageblock_order",
            order,
            "the usemap sizes of the traced zones: "
            f"usemap_size() fits pageblock order {sorted(orders)}",
        )


# --------------------------------------------------------------------------------------------
# From the .config and the System.map


def spinlock_size(kc: Kconfig) -> int:
    """sizeof(spinlock_t), include/linux/spinlock_types{,_up}.h (2.6.25)."""
    smp, debug = kc.enabled("SMP"), kc.enabled("DEBUG_SPINLOCK")
    size = 4 if smp or debug else 0  # raw_spinlock_t: empty on UP without DEBUG_SPINLOCK
    if kc.enabled("GENERIC_LOCKBREAK"):
        size += 4  # break_lock
    if debug:
        size += 12  # magic, owner_cpu, owner
    if kc.enabled("DEBUG_LOCK_ALLOC"):
        size += 16 if kc.enabled("LOCK_STAT") else 12  # struct lockdep_map
    return size


def fixmap_slots(kc: Kconfig, nr_cpus: int) -> int:
    """include/asm-x86/fixmap_32.h: __end_of_permanent_fixed_addresses."""
    slots = 4  # FIX_HOLE, FIX_VDSO, FIX_DBGP_BASE, FIX_EARLYCON_MEM_BASE
    slots += kc.enabled("X86_LOCAL_APIC")
    slots += 64 * kc.enabled("X86_IO_APIC")
    slots += 4 * kc.enabled("X86_VISWS_APIC")
    slots += kc.enabled("X86_F00F_BUG") + kc.enabled("X86_CYCLONE_TIMER")
    if kc.enabled("HIGHMEM"):
        slots += KM_TYPE_NR * (2 if kc.enabled("DEBUG_HIGHMEM") else 1) * nr_cpus
    slots += 4 * kc.enabled("ACPI") + kc.enabled("PCI_MMCONFIG") + kc.enabled("PARAVIRT")
    return slots


def from_kconfig(kc: Kconfig, out: KernelKeys) -> None:
    """The Kconfig choices that change the 2.6.25 i386 early memory."""
    smp = kc.enabled("SMP")
    out.set("smp", smp, _option(kc, "SMP"))
    nr_cpus = kc.value_int("NR_CPUS", 1) if smp else 1
    out.set("nr_cpus", nr_cpus or 1, _option(kc, "NR_CPUS") if smp else "UP: one CPU")
    shift = kc.value_int("X86_L1_CACHE_SHIFT")
    if shift is not None:
        out.set(
            "l1_cache_shift",
            shift,
            f"CONFIG_X86_L1_CACHE_SHIFT at {kc.where('X86_L1_CACHE_SHIFT')}",
        )
    if kc.enabled("HUGETLB_PAGE"):
        order = PAGEBLOCK_ORDER["pae" if kc.enabled("X86_PAE") else "nopae"]
        why = f"CONFIG_HUGETLB_PAGE at {kc.where('HUGETLB_PAGE')}: HPAGE_SHIFT - PAGE_SHIFT"
    else:
        order = PAGEBLOCK_ORDER["no-hugetlb"]
        why = "no CONFIG_HUGETLB_PAGE: MAX_ORDER - 1"
    out.set("pageblock_order", order, why)
    out.set("acpi_sleep", kc.enabled("ACPI_SLEEP"), _option(kc, "ACPI_SLEEP"))
    find = kc.enabled("X86_FIND_SMP_CONFIG")
    out.set("find_smp_config", find, _option(kc, "X86_FIND_SMP_CONFIG"))
    for option, key in (("PHYSICAL_START", "image_start"), ("PAGE_OFFSET", "page_offset")):
        value = kc.value_int(option)
        if value is not None:
            out.set(key, value, f"CONFIG_{option} at {kc.where(option)}")
    out.set(
        "spinlock_size",
        spinlock_size(kc),
        "sizeof(spinlock_t) from CONFIG_SMP, "
        "GENERIC_LOCKBREAK, DEBUG_SPINLOCK, DEBUG_LOCK_ALLOC, LOCK_STAT",
    )
    out.set(
        "fixmap_slots",
        fixmap_slots(kc, nr_cpus or 1),
        "fixmap_32.h permanent slots from X86_LOCAL_APIC, X86_IO_APIC, HIGHMEM x NR_CPUS, ACPI ...",
    )
    if not kc.enabled("DMI"):
        out.set("dmi_version", False, f"{_option(kc, 'DMI')}: no dmi_scan_machine()")
    if not kc.enabled("VT") or not (kc.enabled("VGA_CONSOLE") or kc.enabled("DUMMY_CONSOLE")):
        out.set("console_cols", 0, "no CONFIG_VT console: no con_init()")


def from_system_map(sm: SystemMap, kc: Kconfig | None, out: KernelKeys) -> None:
    """The image layout (vmlinux_32.lds.S symbols) and the per-cpu section."""
    img = sm.image()
    page_offset = out.get("page_offset", 0xC0000000)
    assert isinstance(page_offset, int)
    out.set("image_start", img["_text"] - page_offset, f"{sm.path}: _text {img['_text']:x}")
    out.set("image_end", img["_end"] - page_offset, f"{sm.path}: _end {img['_end']:x}")
    out.set("text_size", img["_etext"] - img["_text"], f"{sm.path}: _etext - _text")
    out.set("data_size", img["_edata"] - img["_etext"], f"{sm.path}: _edata - _etext")
    out.set(
        "init_size",
        img["__init_end"] - img["__init_begin"],
        f"{sm.path}: __init_end - __init_begin",
    )
    start, end = sm.address("__per_cpu_start"), sm.address("__per_cpu_end")
    modules = kc is not None and kc.enabled("MODULES")
    size = (end or 0) - (start or 0) + (PERCPU_MODULE_RESERVE if modules else 0)
    if start is not None and end is not None and size > 0:  # UP kernels have no per-cpu copy
        out.set(
            "percpu_size",
            size,
            f"{sm.path}: __per_cpu_end - __per_cpu_start"
            + (" + PERCPU_MODULE_RESERVE (CONFIG_MODULES)" if modules else ""),
        )
