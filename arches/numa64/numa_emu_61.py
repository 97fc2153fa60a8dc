"""NUMA emulation, ``numa=fake=``, as arch/x86/mm/numa_emulation.c of Linux 6.1 does it.

Source: torvalds/linux arch/x86/mm/numa_emulation.c read at gregkh/linux 49b9619c (the v5.15
window: uniform split with the "no memory on this physical node" skip, nid 0 for
split_nodes_size_interleave(), memblock_phys_alloc_range() for the distance copy); v6.1
differs only in memblock_free_ptr() having become memblock_free(). The 5.7 version
(torvalds/linux 3b02a051) was compared for the arithmetic, which is unchanged.
FAKE_NODE_MIN_SIZE and its mask from arch/x86/include/asm/numa.h.

numa_init() calls numa_emulation() on the cleaned-up physical meminfo (SRAT, or the one block
of dummy_numa_init()); the option string is kept by numa_emu_cmdline() and parsed here:

- ``numa=fake=N``: split_nodes_interleave(), N nodes of equal RAM (holes excluded), rounded
  down to FAKE_NODE_MIN_SIZE with the remainder spread as "big" nodes, dealt round robin over
  the physical nodes;
- ``numa=fake=<size>[MG]``: split_nodes_size_interleave(), nodes of at least that RAM (and at
  least total / MAX_NUMNODES, FAKE_NODE_MIN_SIZE aligned);
- ``numa=fake=<N>U``: each physical node cut by address into N pieces of
  ALIGN(size / N, FAKE_NODE_MIN_SIZE).

Every split extends a node to 4 GiB when less than FAKE_NODE_MIN_SIZE of RAM would be left
below the DMA32 boundary, and (all but uniform) to the end of the physical block when less than
a node's RAM would be left. ``:d,d,...`` after the spec overrides the distance table row by
row. Anything the kernel cannot parse makes it fall back silently (``N`` = 0) or prints what
it prints; nothing here raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bootemu_arches.numa64.numa_61 import (
    LOCAL_DISTANCE,
    REMOTE_DISTANCE,
    DistanceTable,
    cleanup_meminfo,
)
from bootemu_arches.numa64.srat_2625 import pieces

from bootemu.models import KernelPanic, pfn_phys
from bootemu.units import U64_MASK, memparse_prefix, strtoull_prefix

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot

#: arch/x86/include/asm/numa.h: FAKE_NODE_MIN_SIZE (32 MiB); FAKE_NODE_MIN_HASH_MASK = ~(it - 1).
FAKE_NODE_MIN_SIZE = 32 << 20
#: CONFIG_NODES_SHIFT 10 of the Debian 6.1 amd64 build: CONFIG_MAXSMP (NR_CPUS 8192 in every
#: real log's setup_percpu line) forces "default 10 if MAXSMP".
MAX_NUMNODES = 1 << 10
#: arch/x86/include/asm/numa.h: NR_NODE_MEMBLKS = MAX_NUMNODES * 2.
NR_NODE_MEMBLKS = MAX_NUMNODES * 2
#: PFN_PHYS(MAX_DMA32_PFN): 4 GiB.
DMA32_END = 1 << 32
NUMA_NO_NODE = -1


def u64(x: int) -> int:
    """C u64 arithmetic: ``limit - end`` wraps when end is past limit."""
    return x & U64_MASK


def c_int(x: int) -> int:
    """An unsigned long stored into an int (two's complement truncation)."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def get_option(text: str, pos: int) -> tuple[int, int, int]:
    """lib/cmdline.c get_option(&str, &int): ``(ret, value, new pos)``; 2 when a comma
    follows the number (consumed), 1 at anything else, 0 when no number was read."""
    if pos >= len(text):
        return 0, 0, pos
    neg = text[pos] == "-"
    cur = pos + 1 if neg else pos
    value, end = strtoull_prefix(text, cur)
    value = c_int(-value if neg else value)
    if end == cur:
        return 0, value, end
    if text[end : end + 1] == ",":
        return 2, value, end + 1
    return (3 if text[end : end + 1] == "-" else 1), value, end


class Meminfo:
    """struct numa_meminfo: ``blk`` is the array, ``nr`` how many are live. Removing shifts
    the rest left and leaves the old last entry in place past ``nr`` (memmove, no clear):
    the uniform split reads ``pi.blk[0]`` even when nothing is live."""

    def __init__(self, blks: list[list[int]]) -> None:
        # numa_cleanup_meminfo() cleared the unused tail to {0, 0, NUMA_NO_NODE}.
        self.blk = [list(b) for b in blks] + [[NUMA_NO_NODE, 0, 0]]
        self.nr = len(blks)

    def find(self, nid: int) -> int:
        """emu_find_memblk_by_nid()."""
        return next((i for i in range(self.nr) if self.blk[i][0] == nid), -1)

    def remove(self, idx: int) -> None:
        """numa_remove_memblk_from()."""
        self.nr -= 1
        self.blk[idx : self.nr] = [list(b) for b in self.blk[idx + 1 : self.nr + 1]]


@dataclass
class Split:
    """The emulated meminfo being built (``ei``) and emu_nid_to_phys[]."""

    boot: Boot
    ram: list[tuple[int, int]]
    ei: list[list[int]] = field(default_factory=list)
    emu2phys: dict[int, int] = field(default_factory=dict)

    def hole(self, start: int, end: int) -> int:
        """mem_hole_size(): bytes of [start, end) (whole pages inside) no memory covers,
        whatever its node (absent_pages_in_range() over all of memblock.memory)."""
        s, e = -(-start // 4096), end // 4096
        return pfn_phys(e - s - pieces(self.ram, s, e)) if s < e else 0

    def setup_memblk(self, pi: Meminfo, nid: int, phys_blk: int, size: int) -> bool:
        """emu_setup_memblk(): the next ``size`` bytes of physical block ``phys_blk`` become a
        block of fake node ``nid``."""
        if len(self.ei) >= NR_NODE_MEMBLKS:
            self.boot.printk("numa.emu", "NUMA: Too many emulated memblks, failing emulation")
            return False
        pb = pi.blk[phys_blk]
        start, end = pb[1], pb[1] + size
        self.ei.append([nid, start, end])
        self.emu2phys.setdefault(nid, pb[0])
        pb[1] += size
        if pb[1] >= pb[2]:
            pi.remove(phys_blk)
        self.boot.printk(
            "numa.emu.node",
            f"Faking node {nid} at [mem {start:#018x}-{end - 1:#018x}] ({(end - start) >> 20}MB)",
            node=nid,
            start=start,
            end=end,
        )
        return True

    def dma32_and_tail(self, start: int, end: int, limit: int, size: int, uniform: bool) -> int:
        """The two end adjustments every split makes before emu_setup_memblk()."""
        # Less than FAKE_NODE_MIN_SIZE of RAM left below 4 GiB for the next node: go to 4 GiB.
        if end < DMA32_END and DMA32_END - end - self.hole(end, DMA32_END) < FAKE_NODE_MIN_SIZE:
            end = DMA32_END
        # Less than a node's RAM left in the physical block: take it all (not when uniform).
        # C u64: past the limit the difference wraps and the test is false.
        if not uniform and u64(limit - end - self.hole(end, limit)) < size:
            end = limit
        return end

    def interleave(
        self, pi: Meminfo, parsed: set[int], addr: int, max_addr: int, nr_nodes: int
    ) -> int:
        """split_nodes_interleave(): ``nr_nodes`` nodes of equal RAM, 0 or -1."""
        if nr_nodes <= 0:
            return -1  # silently: numa=fake=0 or garbage
        if nr_nodes > MAX_NUMNODES:
            self.boot.printk(
                "numa.emu", f"numa=fake={nr_nodes} too large, reducing to {MAX_NUMNODES}"
            )
            nr_nodes = MAX_NUMNODES
        # "x86_32 freaks on __udivdi3()": the division in pages.
        size = pfn_phys(((max_addr - addr - self.hole(addr, max_addr)) >> 12) // nr_nodes)
        big = (size % FAKE_NODE_MIN_SIZE) * nr_nodes // FAKE_NODE_MIN_SIZE
        size -= size % FAKE_NODE_MIN_SIZE
        if not size:
            self.boot.printk(
                "numa.emu", "Not enough memory for each node.  NUMA emulation disabled."
            )
            return -1
        mask = set(parsed)
        nid = 0
        while mask:
            for i in sorted(mask):
                phys_blk = pi.find(i)
                if phys_blk < 0:
                    mask.discard(i)
                    continue
                _, start, limit = pi.blk[phys_blk]
                end = start + size + (FAKE_NODE_MIN_SIZE if nid < big else 0)
                while end - start - self.hole(start, end) < size:
                    end += FAKE_NODE_MIN_SIZE
                    if end > limit:
                        end = limit
                        break
                end = self.dma32_and_tail(start, end, limit, size, uniform=False)
                if not self.setup_memblk(pi, nid % nr_nodes, phys_blk, min(end, limit) - start):
                    return -1
                nid += 1
        return 0

    def find_end_of_node(self, start: int, max_addr: int, size: int) -> int:
        """find_end_of_node(): grow by FAKE_NODE_MIN_SIZE until ``size`` of RAM or max_addr."""
        end = start + size
        while end - start - self.hole(start, end) < size:
            end += FAKE_NODE_MIN_SIZE
            if end > max_addr:
                return max_addr
        return end

    def size_uniform(
        self,
        pi: Meminfo,
        parsed: set[int],
        addr: int,
        max_addr: int,
        size: int,
        nr_nodes: int,
        pblk: list[int] | None,
        nid: int,
    ) -> int:
        """split_nodes_size_interleave_uniform(): the next nid, or -1."""
        if (not size and not nr_nodes) or (nr_nodes and pblk is None):
            return -1
        uniform = bool(nr_nodes)
        if uniform:
            assert pblk is not None
            mask = {pblk[0]}
            # uniform_size(): unsigned long / int, so a negative int divides as a huge one.
            min_size = size = pfn_phys(((max_addr >> 12) - (addr >> 12)) // u64(nr_nodes))
        else:
            mask = set(parsed)
            hole_pfns = self.hole(addr, max_addr) >> 12
            min_size = pfn_phys(((max_addr >> 12) - (addr >> 12) - hole_pfns) // MAX_NUMNODES)
        min_size = -(-max(min_size, FAKE_NODE_MIN_SIZE) // FAKE_NODE_MIN_SIZE) * FAKE_NODE_MIN_SIZE
        if size < min_size:
            self.boot.printk(
                "numa.emu",
                f"Fake node size {size >> 20}MB too small, increasing to {min_size >> 20}MB",
            )
            size = min_size
        size -= size % FAKE_NODE_MIN_SIZE
        while mask:
            for i in sorted(mask):
                phys_blk = pi.find(i)
                if phys_blk < 0:
                    mask.discard(i)
                    continue
                _, start, limit = pi.blk[phys_blk]
                end = start + size if uniform else self.find_end_of_node(start, limit, size)
                end = self.dma32_and_tail(start, end, limit, size, uniform)
                if not self.setup_memblk(pi, nid % MAX_NUMNODES, phys_blk, min(end, limit) - start):
                    return -1
                nid += 1
        return nid


@dataclass
class Emulated:
    """What a successful numa_emulation() committed."""

    meminfo: list[list[int]]  # the new numa_meminfo, cleaned up
    nodes_parsed: set[int]  # numa_nodes_parsed: the emulated nodes only
    emu2phys: dict[int, int]  # emulated nid -> physical nid, for nids 0..max_emu_nid
    cpu_nodes: tuple[int, ...] | None  # __apicid_to_node[] remapped (None: no CPU affinity)
    distance: list[list[int]]  # node_distance(i, j) for i, j < len(distance)


def numa_emulation(
    boot: Boot,
    spec: str,
    meminfo: list[list[int]],
    parsed: set[int],
    ram: list[tuple[int, int]],
    max_pfn: int,
    cpu_phys: tuple[int, ...] | None,
    alloc: Callable[[int], int | None],
) -> tuple[Emulated | None, str]:
    """numa_emulation(meminfo, numa_dist_cnt = 0): no SLIT is modelled, so the physical
    distance table is empty and every default distance is LOCAL or REMOTE by physical node.

    ``spec`` is what emu_cmdline points at; the kernel advances that pointer while parsing,
    so the rest is returned for a later call (numa_init() may run again, for the dummy
    configuration, after the SRAT one failed). ``cpu_phys``: the SRAT's node of each CPU
    (__apicid_to_node[]). ``alloc``: memblock_phys_alloc_range() of the distance table.
    """
    split = Split(boot, ram)
    pi = Meminfo(meminfo)
    max_addr = pfn_phys(max_pfn)
    pos = 0
    ret = -1
    # 6.1 quirk: strchr() anywhere in the string, upper case only ("256m" is 256 nodes).
    if "U" in spec:
        n, pos = strtoull_prefix(spec, 0)
        nid = 0
        for i in sorted(parsed):
            # "we should always be looking at blk[0]": whichever physical node is first now.
            blk0 = pi.blk[0]
            ret = split.size_uniform(pi, parsed, blk0[1], blk0[2], 0, c_int(n), blk0, nid)
            if ret < 0:
                break
            if ret == nid:
                continue  # no memory found for this physical node
            if ret - nid < n:
                boot.printk(
                    "numa.emu",
                    f"numa_emulation: phys: {i} only got {ret - nid} of {n} nodes, failing",
                )
                ret = -1
                break
            nid = ret
    elif "M" in spec or "G" in spec:
        size, pos = memparse_prefix(spec, 0)
        ret = split.size_uniform(pi, parsed, 0, max_addr, size, 0, None, 0)
    else:
        n, pos = strtoull_prefix(spec, 0)
        ret = split.interleave(pi, parsed, 0, max_addr, c_int(n))
    if spec[pos : pos + 1] == ":":
        pos += 1
    rest = spec[pos:]
    if ret < 0:
        return None, rest
    ei = cleanup_meminfo(boot, split.ei, ram, max_pfn)
    if ei is None:
        boot.printk("numa.emu", "NUMA: Warning: constructed meminfo invalid, disabling emulation")
        return None, rest
    if not split.emu2phys:
        # 6.1 quirk: no fake node at all (no physical block had memory) leaves dfl_phys_nid
        # NUMA_NO_NODE; the distance loop then reads phys_dist[-1] of a NULL table.
        raise KernelPanic(
            "BUG: unable to handle page fault in numa_emulation(): no emulated "
            "node, phys_dist[-1] of a NULL distance table"
        )
    # setup_emu2phys_nid(): the highest emulated nid and the physical node of the lowest.
    max_emu_nid = max(split.emu2phys)
    dfl_phys = split.emu2phys[min(split.emu2phys)]
    new_parsed = {n for n, s, e in ei if s != e}
    cpus = None
    if cpu_phys is not None:
        # __apicid_to_node[]: the lowest emulated nid on the CPU's physical node, else 0.
        first = {}
        for emu in sorted(split.emu2phys, reverse=True):
            first[split.emu2phys[emu]] = emu
        cpus = tuple(first.get(p, 0) for p in cpu_phys)
    emu2phys = {i: split.emu2phys.get(i, dfl_phys) for i in range(max_emu_nid + 1)}
    # Transform the distance table: numa_reset_distance(), then numa_set_distance() for every
    # pair, from the ":" list where get_option() says a comma followed, else by phys node.
    # 6.1 quirk: the last number of the list (no comma after it) is read and then ignored.
    table = DistanceTable(boot, alloc)
    known = new_parsed | {n for n, _, _ in ei}
    dpos = 0
    for i in range(max_emu_nid + 1):
        for j in range(max_emu_nid + 1):
            got, dist, dpos = get_option(rest, dpos)
            if got != 2:
                dist = LOCAL_DISTANCE if emu2phys[i] == emu2phys[j] else REMOTE_DISTANCE
            table.set(known, i, j, dist)
    distance = table.table or []
    return Emulated(ei, new_parsed, emu2phys, cpus, distance), rest


__all__ = [
    "FAKE_NODE_MIN_SIZE",
    "MAX_NUMNODES",
    "Emulated",
    "Meminfo",
    "Split",
    "get_option",
    "numa_emulation",
]
