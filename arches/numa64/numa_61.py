"""arch/x86/mm/numa.c of Linux 6.1: the numa_meminfo checks and the NUMA distance table.

What numa_init() does with a ``numa_meminfo`` between the firmware parser (SRAT or
dummy_numa_init()) and numa_register_memblks(), shared by the physical and the emulated
(:mod:`bootemu_arches.numa64.numa_emu_61`) configurations: numa_cleanup_meminfo(),
numa_meminfo_cover_memory(), and numa_alloc_distance() / numa_set_distance().

Source: arch/x86/mm/numa.c between v5.16 and v6.4 (code-index id 29493980017: the version with
memblock_free(numa_distance, size), memblock_phys_alloc_range() in numa_alloc_distance() and the
NODE_MIN_SIZE check in numa_register_memblks(), which v6.5 dropped). A meminfo is a list of
``[nid, start, end]`` byte ranges in table order; RAM is sorted disjoint pfn ranges
(memblock.memory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bootemu_arches.numa64.srat_2625 import pieces

from bootemu.models import pfn_down, pfn_phys

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot

#: include/linux/topology.h.
LOCAL_DISTANCE, REMOTE_DISTANCE = 10, 20
#: arch/x86/include/asm/numa.h, 6.1: nodes whose hull is below 4 MiB get no NODE_DATA.
NODE_MIN_SIZE = 4 << 20

Blk = list[int]  # [nid, start, end)


def cleanup_meminfo(
    boot: Boot, blks: list[Blk], ram: list[tuple[int, int]], max_pfn: int
) -> list[Blk] | None:
    """numa_cleanup_meminfo(): blocks without memory move to numa_reserved_meminfo (dropped
    here), the rest is cut at max_pfn; overlaps of different nodes fail (None), of the same
    node are whined about; same-node blocks merge when no other node's block lies between
    (``NUMA: Node ... + ... -> ...``)."""
    high = pfn_phys(max_pfn)
    memory = [(pfn_phys(s), pfn_phys(e)) for s, e in ram]
    blks = [
        [n, s, min(e, high)]
        for n, s, e in blks
        if any(ms < e and s < me for ms, me in memory) and s < min(e, high)
    ]
    i = 0
    while i < len(blks):
        j = i + 1
        while j < len(blks):
            (ni, si, ei), (nj, sj, ej) = blks[i], blks[j]
            if ei > sj and si < ej:
                if ni != nj:
                    boot.printk(
                        "numa.overlap",
                        f"NUMA: node {ni} [mem {si:#010x}-{ei - 1:#010x}] "
                        f"overlaps with node {nj} [mem {sj:#010x}-{ej - 1:#010x}]",
                        node=ni,
                        other=nj,
                    )
                    return None
                boot.printk(
                    "numa.overlap",
                    f"NUMA: Warning: node {ni} [mem {si:#010x}-"
                    f"{ei - 1:#010x}] overlaps with itself [mem {sj:#010x}-"
                    f"{ej - 1:#010x}]",
                    node=ni,
                )
            lo, hi = min(si, sj), max(ei, ej)
            if ni != nj or any(n != ni and lo < e and hi > s for n, s, e in blks):
                j += 1
                continue
            boot.printk(
                "numa.merge",
                f"NUMA: Node {ni} [mem {si:#010x}-{ei - 1:#010x}] + "
                f"[mem {sj:#010x}-{ej - 1:#010x}] -> [mem {lo:#010x}-{hi - 1:#010x}]",
                node=ni,
                start=lo,
                end=hi,
            )
            blks[i] = [ni, lo, hi]
            del blks[j]
        i += 1
    return blks


def cover_memory(boot: Boot, blks: list[Blk], ram: list[tuple[int, int]], max_pfn: int) -> bool:
    """numa_meminfo_cover_memory(): the blocks must hold all of memblock.memory below
    max_pfn but 1 MiB ("We seem to lose 3 pages somewhere. Allow 1M of slack.")."""
    numaram = sum(pieces(ram, pfn_down(s), pfn_down(e)) for _, s, e in blks)
    e820ram = pieces(ram, 0, max_pfn)
    if e820ram - numaram >= 256:
        boot.printk(
            "numa.cover",
            f"NUMA: nodes only cover {numaram >> 8}MB of your {e820ram >> 8}MB e820 RAM. Not used.",
            numaram=numaram,
            e820ram=e820ram,
        )
        return False
    return True


class DistanceTable:
    """numa_distance / numa_distance_cnt with numa_set_distance() and numa_alloc_distance().

    The table is created by the first numa_set_distance() after numa_reset_distance(): one byte
    per pair of the nodes known then (numa_nodes_parsed plus the meminfo's nodes), taken with
    memblock_phys_alloc_range(cnt * cnt, PAGE_SIZE, 0, max_pfn_mapped), a real memblock
    reservation that stays (``alloc`` places it and returns its address, or None).
    """

    def __init__(self, boot: Boot, alloc: Callable[[int], int | None]) -> None:
        self.boot = boot
        self.alloc = alloc
        self.cnt = 0
        self.table: list[list[int]] | None = None
        self.failed = False  # numa_distance = (void *)1LU: "don't retry until reset"
        self.addr: int | None = None
        self.warned: set[str] = set()  # pr_warn_once(), per call site

    def _warn_once(self, site: str, line: str) -> None:
        if site not in self.warned:
            self.warned.add(site)
            self.boot.printk("numa.distance_warn", line)

    def _alloc_table(self, known: set[int]) -> bool:
        cnt = max(known, default=-1) + 1  # "for_each_node_mask(i, nodes_parsed) cnt = i; cnt++"
        addr = self.alloc(cnt * cnt)
        if addr is None:
            self.boot.printk("numa.distance_warn", "Warning: can't allocate distance table!")
            self.failed = True
            return False
        self.addr, self.cnt = addr, cnt
        self.table = [
            [LOCAL_DISTANCE if i == j else REMOTE_DISTANCE for j in range(cnt)] for i in range(cnt)
        ]
        self.boot.printk(
            "numa.distance", f"NUMA: Initialized distance table, cnt={cnt}", cnt=cnt, addr=addr
        )
        return True

    def set(self, known: set[int], frm: int, to: int, distance: int) -> None:
        """numa_set_distance(from, to, distance); ``known`` are the nodes numa_alloc_distance()
        would size the table by."""
        if self.table is None and not self.failed and not self._alloc_table(known):
            return
        if frm >= self.cnt or to >= self.cnt or frm < 0 or to < 0:
            self._warn_once(
                "bound",
                f"Warning: node ids are out of bound, from={frm} to={to} distance={distance}",
            )
            return
        if not 0 <= distance <= 255 or (frm == to and distance != LOCAL_DISTANCE):
            self._warn_once(
                "invalid",
                f"Warning: invalid distance parameter, from={frm} to={to} distance={distance}",
            )
            return
        assert self.table is not None
        self.table[frm][to] = distance


__all__ = [
    "LOCAL_DISTANCE",
    "NODE_MIN_SIZE",
    "REMOTE_DISTANCE",
    "DistanceTable",
    "cleanup_meminfo",
    "cover_memory",
]
