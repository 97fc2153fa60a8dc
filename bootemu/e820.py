"""The x86 firmware memory map (e820) and the kernel's algorithms over it.

Two kernel generations are followed, selected by ``profile``:

- ``"2.6.25"`` (and ``"2.6.26-rc1"``, the same code): arch/x86/kernel/e820_32.c of Linux
  2.6.25 (sanitize_e820_map(), print_memory_map(), limit_regions(), update_memory_range(),
  propagate_e820_map(), e820_register_memory());
- ``"6.1"``: arch/x86/kernel/e820.c of modern kernels (e820__update_table(),
  e820__print_table(), e820__range_update(), e820__range_remove(), parse_memopt(),
  e820__end_of_ram_pfn(), e820__setup_pci_gap()).

Tables are sequences of :class:`~bootemu.models.E820Entry` with *exclusive* ends, in the
kernel's array order. Every function returns a new list; nothing is edited in place. Range
edits return the table unsanitized, exactly as the kernel leaves it before its next sanitize.
"""

from __future__ import annotations

from collections.abc import Sequence

from bootemu.models import E820Entry, KernelBug, merge_ranges, pfn_down, pfn_up

# --------------------------------------------------------------------------------------------
# Types and limits

E820_RAM = 1
E820_RESERVED = 2
E820_ACPI = 3
E820_NVS = 4
E820_UNUSABLE = 5  # added after 2.6.26; 2.6.25 prints it as "type 5"
E820_PMEM = 7
E820_PRAM = 12
E820_RESERVED_KERN = 128  # modern, kernel-internal; printed as "usable"
E820_SOFT_RESERVED = 0xEFFFFFFF

#: Type names accepted in machine files (``type = "acpi"``); integers are accepted too.
TYPE_BY_NAME: dict[str, int] = {
    "usable": E820_RAM,
    "reserved": E820_RESERVED,
    "acpi": E820_ACPI,
    "nvs": E820_NVS,
    "unusable": E820_UNUSABLE,
    "pmem": E820_PMEM,
    "pram": E820_PRAM,
    "soft-reserved": E820_SOFT_RESERVED,
}
_NAME_BY_TYPE = {v: k for k, v in TYPE_BY_NAME.items()}

#: e820 types are ``u32`` in struct e820_entry.
MAX_TYPE = 0xFFFFFFFF

PROFILES = ("2.6.25", "2.6.26-rc1", "6.1")
#: The profiles whose e820 code is arch/x86/kernel/e820_32.c of 2.6.25: v2.6.26-rc1 (the
#: bootmem2 RFC kernel's tree) only dropped copy_e820_map()'s 640K-1M fixup, which the
#: 2.6.25 profile does not emulate either.
E820_32 = ("2.6.25", "2.6.26-rc1")

#: include/asm-x86/e820.h (2.6.25): E820MAX, the size of the kernel's table.
E820MAX = 128
#: Modern asm/e820/types.h: E820_MAX_ENTRIES = E820MAX + 3 * MAX_NUMNODES; MAX_NUMNODES is
#: config dependent (1 << NODES_SHIFT); 64 is assumed here (NODES_SHIFT 6, x86_64 distro).
E820_MAX_ENTRIES_MODERN = E820MAX + 3 * 64

#: u64 arithmetic: ULLONG_MAX and the first value that no longer fits.
ULLONG_MAX = (1 << 64) - 1


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")


def max_entries(profile: str) -> int:
    """How many entries the kernel's e820 table holds in ``profile``."""
    _check_profile(profile)
    return E820MAX if profile in E820_32 else E820_MAX_ENTRIES_MODERN


def type_name(t: int) -> str:
    """The machine-file name of type ``t`` (``"usable"``), or its number as a string."""
    return _NAME_BY_TYPE.get(t, str(t))


def type_text(t: int, *, profile: str) -> str:
    """How the kernel prints type ``t`` in its table dumps.

    2.6.25 print_memory_map(): ``(usable)``, ``(reserved)``, ``(ACPI data)``, ``(ACPI NVS)``,
    else ``type N`` (no brackets). Modern e820_print_type(): ``usable`` (RAM and
    RESERVED_KERN), ``reserved``, ``ACPI data``, ``ACPI NVS``, ``unusable``,
    ``persistent (type N)`` for 7 and 12, ``soft reserved``, else ``type N``.
    """
    _check_profile(profile)
    if profile in E820_32:
        old = {E820_RAM: "(usable)", E820_RESERVED: "(reserved)", E820_ACPI: "(ACPI data)",
               E820_NVS: "(ACPI NVS)"}
        return old.get(t, f"type {t}")
    if t in (E820_RAM, E820_RESERVED_KERN):
        return "usable"
    if t in (E820_PMEM, E820_PRAM):
        return f"persistent (type {t})"
    modern = {E820_RESERVED: "reserved", E820_ACPI: "ACPI data", E820_NVS: "ACPI NVS",
              E820_UNUSABLE: "unusable", E820_SOFT_RESERVED: "soft reserved"}
    return modern.get(t, f"type {t}")


# --------------------------------------------------------------------------------------------
# Printing


def format_entry(who: str, e: E820Entry, *, profile: str) -> str:
    """One line of the kernel's table dump, for the table printed as ``who``.

    2.6.25 print_memory_map(): ``" %s: %016Lx - %016Lx "`` + type, leading space, exclusive
    end: `` BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)``. Modern
    e820_print_table(): ``"%s: [mem %#018Lx-%#018Lx] "`` + type, inclusive end:
    ``BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable``. Ends are computed in
    u64 arithmetic, so a zeroed entry prints an end of ``0xffffffffffffffff``.
    """
    text = type_text(e.type, profile=profile)
    if profile in E820_32:
        return f" {who}: {e.start:016x} - {e.end & ULLONG_MAX:016x} {text}"
    # The kernel's vsprintf prints "0x" for zero too (unlike C's "%#x"), as Python does.
    return f"{who}: [mem {e.start:#018x}-{(e.end - 1) & ULLONG_MAX:#018x}] {text}"


def format_table(who: str, entries: Sequence[E820Entry], *, profile: str) -> list[str]:
    """The whole table as the kernel prints it (one :func:`format_entry` line per entry)."""
    return [format_entry(who, e, profile=profile) for e in entries]


def format_range(start: int, end: int) -> str:
    """``[mem %#010Lx-%#010Lx]`` for bytes ``[start, end)``, as modern e820 messages print."""
    return f"[mem {start:#010x}-{(end - 1) & ULLONG_MAX:#010x}]"


def _clamp_size(start: int, size: int) -> int:
    """Modern range edits: ``if (size > ULLONG_MAX - start) size = ULLONG_MAX - start``."""
    return min(size, ULLONG_MAX - start)


def format_update(start: int, size: int, old_type: int, new_type: int) -> str:
    """The debug line of modern __e820__range_update():
    ``e820: update [mem 0x00000000-0x00000fff] usable ==> reserved``."""
    size = _clamp_size(start, size)
    old = type_text(old_type, profile="6.1")
    new = type_text(new_type, profile="6.1")
    return f"e820: update {format_range(start, start + size)} {old} ==> {new}"


def format_remove(start: int, size: int, old_type: int | None) -> str:
    """The debug line of modern e820__range_remove():
    ``e820: remove [mem 0x000a0000-0x000fffff] usable`` (no type when any type is removed)."""
    size = _clamp_size(start, size)
    line = f"e820: remove {format_range(start, start + size)} "
    if old_type is not None:
        line += type_text(old_type, profile="6.1")
    return line.rstrip()


# --------------------------------------------------------------------------------------------
# Sanitizing: the change-point algorithm


def sanitize(entries: Sequence[E820Entry], *, profile: str = "2.6.25") -> list[E820Entry] | None:
    """sanitize_e820_map() (e820_32.c, 2.6.25) / e820__update_table() (e820.c, 6.1).

    Rebuilds the table from its change points so that it is sorted and free of overlaps:

    - every entry of non-zero size gives a start point and an (exclusive) end point;
      zero-size entries are ignored;
    - points are sorted by address, start points before end points at equal addresses;
    - sweeping the points, the type in force is the highest numeric type among the entries
      covering that address (RAM, 1, loses to everything), 0 where none does;
    - an output entry is closed and a new one opened whenever that type changes, so
      adjacent or overlapping entries of one type merge and zero-length pieces vanish;
    - 6.1 only: a PRAM (12) point always closes and reopens, so PRAM entries never merge
      (``current_type == E820_TYPE_PRAM`` in the kernel's test);
    - output stops at the table size (E820MAX = 128 in 2.6.25, E820_MAX_ENTRIES =
      128 + 3 * MAX_NUMNODES, taken as 128 + 3 * 64, in 6.1); later pieces are dropped.

    Returns None (the kernel's -1: the table is left unchanged) when there are fewer than two
    entries, or when an entry wraps: its end is below its start or beyond ``2**64 - 1`` (the
    kernel's ``addr + size < addr`` in u64).
    """
    _check_profile(profile)
    if len(entries) < 2:
        return None
    for e in entries:
        if e.end < e.start or e.end > ULLONG_MAX:
            return None
    # (address, 0 = start / 1 = end, index): sorting the tuple puts starts before ends at an
    # equal address, as the 2.6.25 bubble sort and the modern cpcompare() do.
    points = []
    for idx, e in enumerate(entries):
        if e.end != e.start:
            points.append((e.start, 0, idx))
            points.append((e.end, 1, idx))
    points.sort()

    limit = max_entries(profile)
    never_merge = E820_PRAM if profile not in E820_32 else None
    active: dict[int, int] = {}  # type -> number of covering entries
    out: list[E820Entry] = []
    last_type = 0
    last_addr = 0
    for addr, is_end, idx in points:
        t = entries[idx].type
        if is_end:
            active[t] -= 1
            if active[t] == 0:
                del active[t]
        else:
            active[t] = active.get(t, 0) + 1
        current_type = max(active) if active else 0
        if current_type != last_type or current_type == never_merge:
            if last_type != 0 and addr != last_addr:  # only non-zero pieces are kept
                out.append(E820Entry(last_addr, addr, last_type))
                if len(out) >= limit:
                    break  # no more space left for new entries
            if current_type != 0:
                last_addr = addr
            last_type = current_type
    return out


# --------------------------------------------------------------------------------------------
# Range edits


def _append(table: list[E820Entry], entry: E820Entry, limit: int) -> None:
    """add_memory_region() / __e820__range_add(): append unless the table is full.

    (The kernel prints ``Ooops! Too many entries in the memory map!`` (2.6.25) or
    ``e820: too many entries; ignoring [mem ...]`` (modern) and drops the entry.)
    """
    if len(table) < limit:
        table.append(entry)


def update_range_2625(
    entries: Sequence[E820Entry], start: int, size: int, old_type: int, new_type: int
) -> list[E820Entry]:
    """update_memory_range() of arch/x86/kernel/e820_32.c, 2.6.25 (used by MTRR trimming).

    Every entry of ``old_type`` that the range "totally covers" is retyped in place; for any
    other entry of ``old_type`` the intersection with ``[start, start + size)`` is *appended*
    as a ``new_type`` entry, leaving the original overlapping it (update_e820() then
    sanitizes, and the higher type wins). Entries appended during the walk are visited too,
    as the kernel's loop re-reads ``nr_map``; being ``new_type`` they are skipped.
    """
    if old_type == new_type:
        # A BUG_ON in the kernel: an emulated BUG (outcome panic), never a Python error.
        raise KernelBug("arch/x86/kernel/e820_32.c: update_memory_range()",
                        "BUG_ON(old_type == new_type)")
    table = list(entries)
    end = start + size
    i = 0
    while i < len(table):
        e = table[i]
        i += 1
        if e.type != old_type:
            continue
        # 2.6.25 quirk: "totally covered" compares the entry's *size* with the range's size,
        # not its end with the range's end, so an entry starting inside (or even beyond) the
        # range is retyped whole as long as it is not larger than the range.
        if e.start >= start and e.size <= size:
            table[i - 1] = E820Entry(e.start, e.end, new_type)
            continue
        final_start = max(start, e.start)
        final_end = min(end, e.end)
        if final_start >= final_end:
            continue
        _append(table, E820Entry(final_start, final_end, new_type), E820MAX)
    return table


def update_range(
    entries: Sequence[E820Entry], start: int, size: int, old_type: int, new_type: int
) -> list[E820Entry]:
    """Modern __e820__range_update() (arch/x86/kernel/e820.c): retype, split or trim.

    For each entry of ``old_type``: fully inside the range → retyped; the range strictly
    inside the entry → the entry keeps its head, the range is appended as ``new_type`` and
    the tail appended as ``old_type``; a partial overlap → the overlap is appended as
    ``new_type`` and the entry shrinks to the part outside. ``size`` is clamped so that the
    end does not pass ULLONG_MAX.
    """
    if old_type == new_type:
        # A BUG_ON in the kernel (reachable from memmap=nn%ss-T+T): an emulated BUG, so the
        # boot ends as a panic with its trace and report, never as a Python error.
        raise KernelBug("arch/x86/kernel/e820.c: __e820__range_update()",
                        "BUG_ON(old_type == new_type)")
    size = _clamp_size(start, size)
    end = start + size
    limit = E820_MAX_ENTRIES_MODERN
    table = list(entries)
    i = 0
    while i < len(table):  # the kernel re-reads nr_entries: appended entries are visited
        e = table[i]
        i += 1
        if e.type != old_type:
            continue
        if e.start >= start and e.end <= end:
            table[i - 1] = E820Entry(e.start, e.end, new_type)
            continue
        if e.start < start and e.end > end:
            _append(table, E820Entry(start, end, new_type), limit)
            _append(table, E820Entry(end, e.end, e.type), limit)
            table[i - 1] = E820Entry(e.start, start, e.type)
            continue
        final_start = max(start, e.start)
        final_end = min(end, e.end)
        if final_start >= final_end:
            continue
        _append(table, E820Entry(final_start, final_end, new_type), limit)
        table[i - 1] = _cut(e, final_start, final_end)
    return table


def _cut(e: E820Entry, final_start: int, final_end: int) -> E820Entry:
    """Shrink ``e`` by the overlap ``[final_start, final_end)`` at its head or its tail.

    The kernel first reduces the size, then moves the start to final_end unless the entry
    began before final_start (then the overlap was its tail).
    """
    size = e.size - (final_end - final_start)
    if e.start < final_start:
        return E820Entry(e.start, e.start + size, e.type)
    return E820Entry(final_end, final_end + size, e.type)


def remove_range(
    entries: Sequence[E820Entry], start: int, size: int, old_type: int | None
) -> list[E820Entry]:
    """Modern e820__range_remove() (arch/x86/kernel/e820.c).

    ``old_type`` None removes any type (the kernel's ``checktype == 0``). An entry fully
    inside the range is zeroed in place (``E820Entry(0, 0, 0)``, dropped by the next
    sanitize); a range strictly inside an entry splits it (the tail is appended); a partial
    overlap trims the entry. ``size`` is clamped so that the end does not pass ULLONG_MAX.
    """
    size = _clamp_size(start, size)
    end = start + size
    limit = E820_MAX_ENTRIES_MODERN
    table = list(entries)
    i = 0
    while i < len(table):
        e = table[i]
        i += 1
        if old_type is not None and e.type != old_type:
            continue
        if e.start >= start and e.end <= end:
            table[i - 1] = E820Entry(0, 0, 0)  # memset(entry, 0, ...)
            continue
        if e.start < start and e.end > end:
            _append(table, E820Entry(end, e.end, e.type), limit)
            table[i - 1] = E820Entry(e.start, start, e.type)
            continue
        final_start = max(start, e.start)
        final_end = min(end, e.end)
        if final_start >= final_end:
            continue
        table[i - 1] = _cut(e, final_start, final_end)
    return table


# --------------------------------------------------------------------------------------------
# mem=


def limit_regions_2625(entries: Sequence[E820Entry], size: int) -> list[E820Entry]:
    """limit_regions() of arch/x86/kernel/e820_32.c, 2.6.25 (``mem=``, ``memmap=nn``).

    Walks the table in array order, skipping entries that end below ``size`` and every
    non-RAM entry. At the first RAM entry ending at or above ``size``: if it starts at or
    above ``size`` the table is cut before it, otherwise it is shortened to end at ``size``
    and the table is cut after it. 2.6.25 quirk: cutting drops *every* later entry, reserved
    and ACPI ones included. If no RAM entry reaches ``size`` the table is unchanged.
    """
    for i, e in enumerate(entries):
        if e.end < size or e.type != E820_RAM:
            continue
        if e.start >= size:
            return list(entries[:i])
        return [*entries[:i], E820Entry(e.start, size, e.type)]
    return list(entries)


def mem_limit(entries: Sequence[E820Entry], size: int) -> list[E820Entry]:
    """Modern parse_memopt() (``mem=``) and ``memmap=nn``: remove usable RAM at and above
    ``size``, keep every other entry; the kernel removes ``[size, ULLONG_MAX)`` of type RAM.

    (parse_memopt() refuses ``mem=0`` before getting here; ``memmap=0`` does not.)
    """
    return remove_range(entries, size, ULLONG_MAX - size, E820_RAM)


# --------------------------------------------------------------------------------------------
# Page frames


def ram_pfn_ranges(
    entries: Sequence[E820Entry], *, limit_pfn: int | None = None
) -> list[tuple[int, int]]:
    """Whole pages of usable RAM, ``[PFN_UP(start), PFN_DOWN(end))`` per E820_RAM entry,
    clipped to ``limit_pfn``, empty ranges dropped, sorted and merged: what page_is_ram()
    (arch/x86/mm/init_32.c) answers, as ranges."""
    ranges = []
    for e in entries:
        if e.type != E820_RAM:
            continue
        lo, hi = pfn_up(e.start), pfn_down(e.end)
        if limit_pfn is not None:
            hi = min(hi, limit_pfn)
        if lo < hi:
            ranges.append((lo, hi))
    return list(merge_ranges(ranges))


def find_max_pfn_2625(entries: Sequence[E820Entry]) -> int:
    """propagate_e820_map() / find_max_pfn() of 2.6.25: the largest ``PFN_DOWN(end)`` over
    RAM entries that hold at least one whole page; no clipping at 4 GiB; 0 if none."""
    best = 0
    for e in entries:
        if e.type == E820_RAM and pfn_up(e.start) < pfn_down(e.end):
            best = max(best, pfn_down(e.end))
    return best


def end_of_ram_pfn(
    entries: Sequence[E820Entry], max_arch_pfn: int, *, limit_pfn: int | None = None
) -> int:
    """Modern e820_end_pfn(limit_pfn, E820_TYPE_RAM): ``e820__end_of_ram_pfn()`` when
    ``limit_pfn`` is None (= ``max_arch_pfn``), ``e820__end_of_low_ram_pfn()`` with 4 GiB.

    In array order over RAM entries, with ``(addr + size) >> PAGE_SHIFT`` (the start is not
    rounded): entries starting at or above the limit are skipped; the first one crossing it
    makes the result the limit; otherwise the largest end wins. The result never exceeds
    ``max_arch_pfn``. This is why a non-PAE kernel silently ignores RAM above 4 GiB.
    """
    limit = max_arch_pfn if limit_pfn is None else limit_pfn
    last = 0
    for e in entries:
        if e.type != E820_RAM:
            continue
        start_pfn, end_pfn = e.start >> 12, e.end >> 12
        if start_pfn >= limit:
            continue
        if end_pfn > limit:
            last = limit
            break
        last = max(last, end_pfn)
    return min(last, max_arch_pfn)


# --------------------------------------------------------------------------------------------
# Finding free memory


def find_area(
    entries: Sequence[E820Entry],
    start: int,
    end: int,
    size: int,
    align: int,
    busy: Sequence[tuple[int, int]],
) -> int | None:
    """find_e820_area() of arch/x86/kernel/e820.c (2.6.26 onwards), with ``busy`` standing in
    for the early reservations (``[start, end)`` byte ranges).

    Walks the RAM entries in array order; in each, starts at the entry's start or ``start``
    (whichever is higher) rounded up to ``align``, and while ``[addr, addr + size)`` overlaps
    a busy range moves past it (rounded up again), as bad_addr() does. Returns the first
    address whose area fits inside the entry and ends at or below ``end``; None where the
    kernel returns -1ULL. ``align`` 0 or 1 means no alignment. On a sanitized table the
    answer is the lowest such address.
    """
    a = max(align, 1)

    def round_up(x: int) -> int:
        return -(-x // a) * a

    spans = sorted((s, e) for s, e in busy if e > s)
    for ent in entries:
        if ent.type != E820_RAM:
            continue
        addr = max(round_up(ent.start), round_up(start))
        if addr >= ent.end:
            continue
        moved = True
        while moved and addr + size <= ent.end:
            moved = False
            for s, e in spans:
                if s < addr + size and addr < e:  # overlaps: jump past it
                    addr = round_up(e)
                    moved = True
                    break
        if addr + size > ent.end or addr + size > end:
            continue
        return addr
    return None


# --------------------------------------------------------------------------------------------
# The PCI gap


def pci_gap_2624(entries: Sequence[E820Entry]) -> tuple[int, int, int]:
    """e820_register_memory() of arch/x86/kernel/e820_32.c (2.6.24/25): the PCI gap.

    Walks the table backwards from 4 GiB looking for the largest gap (at least 4 MiB,
    strictly larger to replace), then rounds the gap start up to a power-of-two boundary
    (1 MiB, doubled while gapsize/16 exceeds it). Returns ``(pci_mem_start, gapstart,
    gapsize)`` for ``Allocating PCI resources starting at %08lx (gap: %08lx:%08lx)``.
    """
    last = 1 << 32
    gapstart, gapsize = 0x10000000, 0x400000
    for e in reversed(entries):
        if last > e.end and last - e.end > gapsize:
            gapsize, gapstart = last - e.end, e.end
        last = min(last, e.start)
    rnd = 0x100000
    while (gapsize >> 4) > rnd:
        rnd += rnd
    pci_mem_start = (gapstart + rnd) & ~(rnd - 1) & 0xFFFFFFFF  # "fun with two's complement"
    return pci_mem_start, gapstart, gapsize


def pci_gap(entries: Sequence[E820Entry]) -> tuple[int, int] | None:
    """Modern e820_search_gap() (arch/x86/kernel/e820.c): ``(gapstart, gapsize)`` of the
    largest gap below 4 GiB of at least 4 MiB, a later (lower) gap of equal size winning; None
    when there is none. e820__setup_pci_gap() prints
    ``[mem %#010lx-%#010lx] available for PCI devices`` from it."""
    last = 1 << 32
    gapsize = 0x400000
    found: tuple[int, int] | None = None
    for e in reversed(entries):
        if last > e.end and last - e.end >= gapsize:
            gapsize = last - e.end
            found = (e.end, gapsize)
        last = min(last, e.start)
    return found
