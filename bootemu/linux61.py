"""Generic mm arithmetic of Linux 6.1 that more than one arch profile uses.

Pure functions of integers, each following one routine of mm/ in 6.1 (checked against the
6.1-era mm/page_alloc.c and mm/vmalloc.c, and against the real Debian 6.1.176 boots in
``real-boots/``). The arch decides the inputs (``sizeof(struct page)``, SPARSEMEM or not, the
page-block order, how many migrate types its build has); the arithmetic is the same on every
arch.
"""

from __future__ import annotations

from bootemu.models import PAGE_SHIFT, PAGE_SIZE

#: mm/page_alloc.c, 6.1, 64-bit only: from 64 GiB of kernel pages on, each quadrupling of
#: memory adds one to the hash scale (ADAPT_SCALE_BASE, ADAPT_SCALE_SHIFT).
ADAPT_SCALE_NPAGES = (64 << 30) >> PAGE_SHIFT
ADAPT_SCALE_SHIFT = 2
#: alloc_large_system_hash(): ``max = min(max, 0x80000000ULL)`` buckets.
HASH_MAX_ENTRIES = 0x80000000

#: alloc_large_system_hash(): how the table was obtained, as the line prints it.
HASH_LINEAR = "linear"
HASH_VMALLOC = "vmalloc"
HASH_VMALLOC_HUGE = "vmalloc hugepage"


def roundup_pow_of_two(n: int) -> int:
    """include/linux/log2.h roundup_pow_of_two() (n >= 1)."""
    return 1 << (n - 1).bit_length()


def calc_memmap_size(spanned: int, present: int, struct_page_size: int, *,
                     sparsemem: bool) -> int:
    """mm/page_alloc.c calc_memmap_size(), 6.1: pages of ``struct page`` a zone is charged.

    ``PAGE_ALIGN(pages * sizeof(struct page)) >> PAGE_SHIFT`` with pages = spanned, except
    with SPARSEMEM when the zone has many holes (spanned > present + present / 16): then only
    the present pages are counted, since holes cost no memmap there.
    """
    pages = spanned
    if sparsemem and spanned > present + (present >> 4):
        pages = present
    return -(-pages * struct_page_size // PAGE_SIZE)


def alloc_large_system_hash(nr_kernel_pages: int, nr_all_pages: int, bucketsize: int,
                            scale: int, *, numentries: int = 0, bits_per_long: int = 64,
                            low_limit: int = 0, high_limit: int = 0) -> tuple[int, int]:
    """mm/page_alloc.c alloc_large_system_hash(), 6.1: the table's size.

    Returns ``(log2qty, size)``. Unless the command line gave ``numentries``: kernel pages
    rounded up to a whole MiB; on 64-bit without ``high_limit`` the scale grows by one per
    quadrupling above 64 GiB; one bucket per ``2**scale`` bytes, at least one page of
    buckets. Then a power of two, at least ``low_limit``, at most 1/16 of all memory (or
    ``high_limit``) and 2^31 buckets.
    """
    if not numentries:
        numentries = -(-nr_kernel_pages // (1 << (20 - PAGE_SHIFT))) << (20 - PAGE_SHIFT)
        if bits_per_long > 32 and not high_limit:
            adapt = ADAPT_SCALE_NPAGES
            while adapt < numentries:
                scale += 1
                adapt <<= ADAPT_SCALE_SHIFT
        if scale > PAGE_SHIFT:
            numentries >>= scale - PAGE_SHIFT
        else:
            numentries <<= PAGE_SHIFT - scale
        if numentries * bucketsize < PAGE_SIZE:
            numentries = PAGE_SIZE // bucketsize
    numentries = roundup_pow_of_two(numentries)
    cap = high_limit or ((nr_all_pages << PAGE_SHIFT) >> 4) // bucketsize
    cap = min(cap, HASH_MAX_ENTRIES)
    numentries = max(numentries, low_limit)
    # The cap applies even below one bucket: the kernel's ilog2(0) is then undefined; an
    # emulated machine that small keeps one bucket instead.
    numentries = max(1, min(numentries, cap))
    log2qty = numentries.bit_length() - 1
    return log2qty, bucketsize << log2qty


def vmalloc_kind(size: int, online_nodes: int, pmd_size: int) -> str:
    """mm/vmalloc.c __vmalloc_node_range(), 6.1, as vmalloc_huge() calls it (NUMA_NO_NODE):
    PMD mappings when the size per online node reaches a PMD, so the line says ``vmalloc
    hugepage``; otherwise ``vmalloc``."""
    return HASH_VMALLOC_HUGE if size // max(1, online_nodes) >= pmd_size else HASH_VMALLOC


def hash_table_line(tablename: str, log2qty: int, size: int, how: str) -> str:
    """alloc_large_system_hash()'s line, 6.1: the order printed is ``ilog2(size) -
    PAGE_SHIFT`` (a fix to get_order() came only in 2025)."""
    order = size.bit_length() - 1 - PAGE_SHIFT
    return (f"{tablename} hash table entries: {1 << log2qty} (order: {order}, {size} bytes, "
            f"{how})")


def zonelists_line(nr_online_nodes: int, total_pages: int, pageblock_order: int,
                   migrate_types: int) -> str:
    """mm/page_alloc.c build_all_zonelists(), 6.1: one zonelist per online node; mobility
    grouping is off when fewer than pageblock_nr_pages * MIGRATE_TYPES pages exist.
    ``total_pages`` is vm_total_pages: every zone's managed pages (minus its high watermark,
    still 0 at that point)."""
    grouping = "off" if total_pages < (1 << pageblock_order) * migrate_types else "on"
    return (f"Built {nr_online_nodes} zonelists, mobility grouping {grouping}.  "
            f"Total pages: {total_pages}")


__all__ = [
    "HASH_LINEAR",
    "HASH_VMALLOC",
    "HASH_VMALLOC_HUGE",
    "alloc_large_system_hash",
    "calc_memmap_size",
    "hash_table_line",
    "roundup_pow_of_two",
    "vmalloc_kind",
    "zonelists_line",
]
