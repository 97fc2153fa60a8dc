"""Two modern memblock-era routines the 6.1 profile needs to place NODE_DATA where Linux 6.1 does.

- :func:`top_down`: memblock's top-down search (mm/memblock.c
  ``__memblock_find_range_top_down()``): the highest aligned fit below ``hi``.
- :func:`init_mem_mapping`: arch/x86/mm/init.c ``init_mem_mapping()`` /
  ``memory_map_top_down()`` / ``alloc_low_pages()`` of 6.1, reduced to what decides which
  page-table pages come from memblock (they sit at the top of RAM, right where the last node's
  NODE_DATA would go: 3 pages on the real 5 GiB guests, none on the 2 GiB and 512 MiB ones).

Everything is byte ranges; the loops run once per mapped range or page-table page, never per
page of RAM.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from bootemu.models import PAGE_SIZE, KernelPanic, merge_ranges

PMD_SIZE, PUD_SIZE, PGDIR_SIZE = 2 << 20, 1 << 30, 512 << 30
ISA_END_ADDRESS = 1 << 20
#: arch/x86/mm/init.c: INIT_PGT_BUF_SIZE = INIT_PGD_PAGE_COUNT pages of brk, 4 * 4 with
#: CONFIG_X86_5LEVEL and CONFIG_RANDOMIZE_MEMORY (both set in Debian's 6.1 amd64 build).
INIT_PGT_BUF_PAGES = 16

Ranges = list[tuple[int, int]]


def subtract(ranges: Iterable[tuple[int, int]], holes: Iterable[tuple[int, int]]) -> Ranges:
    """Byte ranges minus holes (both any order), sorted and merged."""
    out: Ranges = []
    hs = list(merge_ranges(holes))
    for s, e in merge_ranges(ranges):
        pos = s
        for hs_, he in hs:
            if he <= pos or hs_ >= e:
                continue
            if hs_ > pos:
                out.append((pos, hs_))
            pos = max(pos, he)
        if pos < e:
            out.append((pos, e))
    return out


def top_down(free: Ranges, size: int, align: int, lo: int, hi: int) -> int | None:
    """__memblock_find_range_top_down(): walk the free ranges from the top, clamp each to
    ``[lo, hi)``, take ``round_down(end - size, align)`` if it still starts inside."""
    for s, e in reversed(free):
        s, e = min(max(s, lo), hi), min(max(e, lo), hi)
        if e < size:
            continue
        cand = (e - size) // align * align
        if cand >= s:
            return cand
    return None


class _Free:
    """memblock.memory minus memblock.reserved as sorted ranges, shrinking as page-table pages
    are taken: each search and take bisects (a fresh subtraction per page would make the boot
    quadratic in the page tables, which grow with RAM: one PMD page per GiB)."""

    def __init__(self, ranges: Ranges) -> None:
        self.starts = [s for s, _ in ranges]
        self.ends = [e for _, e in ranges]

    def top_down(self, size: int, align: int, lo: int, hi: int) -> int | None:
        """:func:`top_down` over the same ranges, starting at the last one below ``hi``."""
        k = bisect.bisect_left(self.starts, hi) - 1
        while k >= 0 and self.ends[k] > lo:
            s, e = max(self.starts[k], lo), min(self.ends[k], hi)
            if e >= size:
                cand = (e - size) // align * align
                if cand >= s:
                    return cand
            k -= 1
        return None

    def take(self, a: int, b: int) -> None:
        """Remove ``[a, b)``, which lies inside one range."""
        k = bisect.bisect_right(self.starts, a) - 1
        s, e = self.starts[k], self.ends[k]
        pieces = [(x, y) for x, y in ((s, a), (b, e)) if x < y]
        self.starts[k : k + 1] = [x for x, _ in pieces]
        self.ends[k : k + 1] = [y for _, y in pieces]


def _split(s: int, e: int, memory: Ranges) -> list[tuple[int, int, bool]]:
    """split_mem_range() without gigabyte pages (QEMU's default CPU has no pdpe1gb):
    a 4 KiB head up to the first 2 MiB boundary, 2 MiB pages, a 4 KiB tail; then
    adjust_range_page_size_mask(): a 4 KiB piece whose whole 2 MiB is RAM gets 2 MiB pages.
    Returns ``(start, end, big)``."""
    head_end = min(-(-s // PMD_SIZE) * PMD_SIZE, e)
    mid_end = max(head_end, e // PMD_SIZE * PMD_SIZE)
    out = [(a, b, big) for a, b, big in ((s, head_end, False), (head_end, mid_end, True),
                                         (mid_end, e, False)) if a < b]
    adjusted = []
    for a, b, big in out:
        if not big:
            lo, hi = a // PMD_SIZE * PMD_SIZE, -(-b // PMD_SIZE) * PMD_SIZE
            big = any(ms <= lo and hi <= me for ms, me in memory)
        adjusted.append((a, b, big))
    return adjusted


def init_mem_mapping(memory: Ranges, reserved: Ranges, image: tuple[int, int], end: int
                     ) -> Ranges:
    """The page-table pages init_mem_mapping() takes from memblock, as byte ranges.

    ``memory``: memblock.memory (usable RAM, page-trimmed); ``reserved``: memblock.reserved so
    far; ``image``: the kernel image, which holds the brk page-table buffer; ``end``:
    ``max_pfn << PAGE_SHIFT``. The ISA range is mapped first, then memory_map_top_down() maps
    from the top in growing steps (2 MiB, then x256). A page table comes from the brk buffer
    while it lasts and the range being mapped does not contain the buffer
    (``can_use_brk_pgt``); otherwise from memblock, top-down inside what is already mapped
    (``[min_pfn_mapped, max_pfn_mapped)``).
    """
    have: set[tuple[int, int]] = set()  # (level, index): PUD pages per 512 GiB, PMD per GiB...
    taken: Ranges = []
    free = _Free(subtract(memory, reserved))
    brk = INIT_PGT_BUF_PAGES
    mapped = [0, 0]  # min_pfn_mapped, max_pfn_mapped (as bytes)

    def alloc_page(can_use_brk: bool) -> None:
        nonlocal brk
        if brk and can_use_brk:
            brk -= 1
            return
        if mapped[0] < mapped[1]:
            addr = free.top_down(PAGE_SIZE, PAGE_SIZE, mapped[0], mapped[1])
            if addr is not None:
                taken.append((addr, addr + PAGE_SIZE))
                free.take(addr, addr + PAGE_SIZE)
                return
        raise KernelPanic("alloc_low_pages: can not alloc memory")

    def map_piece(s: int, e: int, can_use_brk: bool) -> None:
        """kernel_physical_mapping_init() of one range: the missing tables, top level first."""
        for a, b, big in _split(s, e, memory):
            for level, size in (("pud", PGDIR_SIZE), ("pmd", PUD_SIZE)) + (
                    () if big else (("pte", PMD_SIZE),)):
                for idx in range(a // size, (b - 1) // size + 1):
                    if (level, idx) not in have:
                        have.add((level, idx))
                        alloc_page(can_use_brk)

    def map_ram(r_start: int, r_end: int) -> int:
        """init_range_memory_mapping(): every RAM piece inside ``[r_start, r_end)``."""
        done = 0
        for ms, me in memory:
            s, e = max(ms, r_start), min(me, r_end)
            if s >= e:
                continue
            map_piece(s, e, can_use_brk=not (s < image[1] and image[0] < e))
            mapped[1] = max(mapped[1], e)  # add_pfn_range_mapped()
            done += e - s
        return done

    map_piece(0, ISA_END_ADDRESS, can_use_brk=True)
    probe = top_down(subtract(memory, reserved), PMD_SIZE, PMD_SIZE, ISA_END_ADDRESS, end)
    if probe is None:
        raise KernelPanic("init_mem_mapping: no 2 MiB of free memory to start mapping")
    real_end = probe + PMD_SIZE
    step, mapped[:] = PMD_SIZE, [real_end, 0]
    last_start, total = real_end, 0
    while last_start > ISA_END_ADDRESS:
        start = ISA_END_ADDRESS
        if last_start > step:
            start = max((last_start - 1) // step * step, ISA_END_ADDRESS)
        total += map_ram(start, last_start)
        last_start = mapped[0] = start
        if total >= step:
            step <<= 21 - 12 - 1  # get_new_step_size(): PMD_SHIFT - PAGE_SHIFT - 1
    if real_end < end:
        map_ram(real_end, end)
    return sorted(taken)


__all__ = ["INIT_PGT_BUF_PAGES", "init_mem_mapping", "subtract", "top_down"]
