"""Generic mm arithmetic the x86_32 boot path calls into (mm/page_alloc.c, kernel/pid.c).

Pure functions of integers, each following one kernel routine of a named version; the arch
profiles use them to size zones, per-cpu page lists and the early hash tables.
"""

from __future__ import annotations

from collections.abc import Sequence

from bootemu.models import PAGE_SHIFT, PAGE_SIZE

#: include/linux/mmzone.h: MAX_ORDER 11, so the buddy works on blocks of up to 1024 pages;
#: alloc_node_mem_map() aligns the node's mem_map to that.
MAX_ORDER_NR_PAGES = 1 << 10

#: include/linux/list.h: sizeof(struct hlist_head) is one pointer, 4 bytes on i386.
HLIST_HEAD_SIZE = 4


def fls(x: int) -> int:
    """fls(): the 1-based index of the highest set bit, 0 for 0."""
    return x.bit_length()


def ilog2(x: int) -> int:
    """ilog2() of a positive integer."""
    return x.bit_length() - 1


def roundup_pow_of_two(x: int) -> int:
    """roundup_pow_of_two() (x >= 1)."""
    return 1 << (x - 1).bit_length()


def pages_to_mb(pages: int) -> int:
    """pages_to_mb(): truncating, 256 pages a MiB."""
    return pages >> (20 - PAGE_SHIFT)


def zone_batchsize(present: int) -> int:
    """mm/page_alloc.c zone_batchsize(), 2.6.25: the per-cpu list batch of a zone.

    About a quarter per mille of the zone, at most 512 KiB worth, then clamped to 2^n - 1:
    ``b = present/1024``, capped at 128 pages, ``b /= 4`` (at least 1),
    ``(1 << (fls(b + b/2) - 1)) - 1``. A 4064-page DMA zone gives 0, a big zone 31.
    """
    batch = present // 1024
    if batch * PAGE_SIZE > 512 * 1024:
        batch = (512 * 1024) // PAGE_SIZE
    batch //= 4
    if batch < 1:
        batch = 1
    return (1 << (fls(batch + batch // 2) - 1)) - 1


def pcp_held(order0_frees: int, batch: int) -> int:
    """Pages left on a zone's hot per-cpu list after ``order0_frees`` single-page frees.

    mm/page_alloc.c, 2.6.25: setup_pageset() gives the hot list ``high = 6 * batch`` and
    ``pcp->batch = max(1, batch)``; free_hot_cold_page() adds the page and, once the count
    reaches ``high``, moves ``pcp->batch`` pages to the buddy lists. Starting empty, after N
    frees the list holds N while N < high, then ``high - b + (N - high) mod b``
    (boot-allocators reference §5.3). With batch 0 (high 0) every free is flushed at once.
    """
    high = 6 * batch
    step = max(1, batch)
    if order0_frees < high:
        return order0_frees
    if high == 0:
        return 0
    return high - step + (order0_frees - high) % step


def wait_table_entries(pages: int) -> int:
    """mm/page_alloc.c wait_table_hash_nr_entries(), 2.6.25: one waitqueue per 256 pages,
    rounded up to a power of two, between 4 and 4096."""
    size = 1
    pages //= 256  # PAGES_PER_WAITQUEUE
    while size < pages:
        size <<= 1
    return max(min(size, 4096), 4)


def usemap_size_2625(zonesize: int, pageblock_order: int, bits: int = 3) -> int:
    """mm/page_alloc.c usemap_size(), 2.6.25: bytes of a zone's pageblock flags.

    The zone size is rounded up to whole pageblocks, NR_PAGEBLOCK_BITS (3 in 2.6.25: the
    migrate type) per block, rounded up to whole longs (32 bits on i386).
    """
    nr = -(-zonesize >> pageblock_order)
    nbits = -(-(nr * bits) // 32) * 32
    return nbits // 8


def usemap_size_61(zone_start_pfn: int, zonesize: int, pageblock_order: int,
                   bits: int = 4) -> int:
    """mm/page_alloc.c usemap_size(), 6.1: as 2.6.25, but the zone is first extended down to
    its pageblock boundary (``zonesize += zone_start_pfn & (pageblock_nr_pages - 1)``) and
    NR_PAGEBLOCK_BITS is 4 (migrate type plus skip bit)."""
    zonesize += zone_start_pfn & ((1 << pageblock_order) - 1)
    return usemap_size_2625(zonesize, pageblock_order, bits)


def node_mem_map_bytes(node_start_pfn: int, node_end_pfn: int, struct_page_size: int) -> int:
    """mm/page_alloc.c alloc_node_mem_map() (2.6.25 and 6.1): the node's struct page array.

    Its ends are aligned to MAX_ORDER_NR_PAGES (start down, end up) "for the buddy allocator
    to function correctly": ``(end - start) * sizeof(struct page)`` bytes.
    """
    start = node_start_pfn & ~(MAX_ORDER_NR_PAGES - 1)
    end = -(-node_end_pfn // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
    return (end - start) * struct_page_size


def large_system_hash(
    nr_kernel_pages: int,
    nr_all_pages: int,
    bucketsize: int,
    scale: int,
    numentries: int = 0,
) -> tuple[int, int]:
    """mm/page_alloc.c alloc_large_system_hash(), 2.6.25 (same sizing in 6.1 on 32-bit).

    Returns ``(log2qty, size)``. Unless the command line gave ``numentries``: lowmem pages
    (``nr_kernel_pages``) rounded up to a whole MiB, one bucket per ``2**scale`` bytes, at
    least one page worth of buckets; then rounded up to a power of two and capped so the table
    is at most 1/16 of all memory (``nr_all_pages``).
    """
    if not numentries:
        pages_per_mb = 1 << (20 - PAGE_SHIFT)
        numentries = -(-nr_kernel_pages // pages_per_mb) * pages_per_mb
        if scale > PAGE_SHIFT:
            numentries >>= scale - PAGE_SHIFT
        else:
            numentries <<= PAGE_SHIFT - scale
        if numentries * bucketsize < PAGE_SIZE:  # at least a 0-order allocation
            numentries = PAGE_SIZE // bucketsize
    numentries = roundup_pow_of_two(numentries)
    cap = ((nr_all_pages << PAGE_SHIFT) >> 4) // bucketsize
    numentries = min(numentries, cap) if cap else numentries
    log2qty = ilog2(numentries)
    return log2qty, bucketsize << log2qty


def hash_line(tablename: str, log2qty: int, size: int, *, linear: bool = False) -> str:
    """The alloc_large_system_hash() line; 6.1 adds ``, linear`` (not vmalloc'ed)."""
    tail = ", linear" if linear else ""
    return (f"{tablename} hash table entries: {1 << log2qty} "
            f"(order: {ilog2(size) - PAGE_SHIFT}, {size} bytes{tail})")


def pidhash_shift(nr_kernel_pages: int) -> int:
    """kernel/pid.c pidhash_init(), 2.6.25: ``max(4, fls(megabytes * 4))`` capped at 12,
    where megabytes is lowmem (nr_kernel_pages) in MiB."""
    megabytes = nr_kernel_pages >> (20 - PAGE_SHIFT)
    return min(12, max(4, fls(megabytes * 4)))


def absent_pages(active: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """__absent_pages_in_range() (mm/page_alloc.c): pfns of ``[start, end)`` that no active
    range covers (``active`` sorted and disjoint)."""
    if end <= start:
        return 0
    covered = sum(max(0, min(e, end) - max(s, start)) for s, e in active)
    return (end - start) - covered
