"""NUMA discovery of a spring-2008 x86_64 kernel: early_node_map[], the SRAT, the node hash.

Read from the local mirror of the kernel history (``git show v2.6.25:<file>`` and commit
6ec6e0d9f2f): mm/page_alloc.c add_active_range(), remove_all_active_ranges(),
__absent_pages_in_range(); arch/x86/kernel/e820_64.c e820_register_active_regions() and
e820_find_active_region(); arch/x86/mm/srat_64.c acpi_numa_processor_affinity_init(),
acpi_numa_memory_affinity_init(), conflicting_nodes(), cutoff_node(), bad_srat(),
nodes_cover_memory(), acpi_scan_nodes(); arch/x86/mm/numa_64.c compute_hash_shift(),
extract_lsb_from_nodes(), allocate_cachealigned_memnodemap(), populate_memnodemap(),
numa_initmem_init().

``kernel.srat_check`` picks the SRAT code: ``"hulls"`` is 2.6.25 as released (each node is one
hull: a later range of a node prints and registers the node's whole hull, so interleaved nodes
register overlapping active ranges and __absent_pages_in_range() BUG()s); ``"memblks"`` is
2.6.25 plus Suresh Siddha's 6ec6e0d9f2f "srat, x86: add support for nodes spanning other
nodes" (CONFIG_NODES_SPAN_OTHER_NODES, merged for 2.6.26): each range is checked against the
earlier ranges, printed and registered as it is, and the node hash is built from the ranges.
Mixed into :class:`bootemu_arches.numa64.kernel_2625.Linux2625`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bootemu.models import KernelBug, Machine, pfn_down, pfn_phys

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu_arches.numa64 import Config

    from bootemu.boot import Boot

#: arch/x86/mm/srat_64.c: NODE_MIN_SIZE, nodes smaller than this are dropped.
NODE_MIN_SIZE = 4 << 20
#: include/asm-x86/mmzone_64.h: struct memnode's ``s16 embedded_map[64-8]``.
EMBEDDED_MEMNODEMAP = 64 - 8
#: include/asm-x86/pgtable_64.h, 2.6.25: MAXMEM = 0x3fffffffffff (64 TiB - 1); end_user_pfn
#: starts at MAXMEM >> PAGE_SHIFT and e820_end_of_ram() caps end_pfn_map there.
MAXMEM_PFN = 0x3FFFFFFFFFFF >> 12
#: The ``#UD`` a BUG() raises before trap_init(): early_idt_handler prints this and halts.
EARLY_BUG = "PANIC: early exception 06"


@dataclass
class Numa:
    """What NUMA discovery decided: ``memblks`` are ``(node, start, end)`` byte ranges (the
    affinity ranges that were accepted, or one faked node), ``spans`` each node's bootmem
    range (``nodes[i]`` after cutoff_node(), what setup_node_bootmem() is given)."""

    memblks: list[tuple[int, int, int]]
    spans: dict[int, tuple[int, int]]
    faked: bool


def pieces(ranges: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Pages of the sorted disjoint pfn ``ranges`` inside ``[lo, hi)``."""
    return sum(max(0, min(e, hi) - max(s, lo)) for s, e in ranges)


def max_active_regions(nodes_shift: int) -> int:
    """mm/page_alloc.c, 2.6.25: MAX_ACTIVE_REGIONS = MAX_NUMNODES * 50 when MAX_NUMNODES is
    at least 32, else 256."""
    numnodes = 1 << nodes_shift
    return numnodes * 50 if numnodes >= 32 else 256


@contextmanager
def early_bug() -> Iterator[None]:
    """A BUG() raised inside: printed as the early exception the kernel shows."""
    try:
        yield
    except KernelBug as exc:
        if any(line.startswith(EARLY_BUG) for line in exc.printk):
            raise
        fn = exc.where.split(": ")[-1]
        raise KernelBug(
            exc.where,
            exc.reason,
            printk=[f"{EARLY_BUG} (invalid opcode: BUG() in {fn})", *exc.printk],
        ) from exc


class NodeMap:
    """mm/page_alloc.c early_node_map[] of 2.6.25: ``[nid, start_pfn, end_pfn]`` entries in
    registration order (sorted only by free_area_init_nodes()), never more than a few per node.
    """

    def __init__(self, max_regions: int) -> None:
        self.max_regions = max_regions
        self.entries: list[list[int]] = []

    def add(self, boot: Boot, nid: int, start: int, end: int) -> None:
        """add_active_range(): print, then merge with an entry of the same node if the new
        range is inside it or touches/overlaps its end or start, else append.

        2.6.25 quirk: ranges of *other* nodes are not looked at, so two nodes may register the
        same pfns (the hull kernel does, on interleaved nodes).
        """
        boot.printk(
            "numa.active_range",
            f"Entering add_active_range({nid}, {start}, {end}) "
            f"{len(self.entries)} entries of {self.max_regions} used",
            nid=nid,
            start_pfn=start,
            end_pfn=end,
        )
        for ent in self.entries:
            if ent[0] != nid:
                continue
            if start >= ent[1] and end <= ent[2]:
                return
            if start <= ent[2] and end > ent[2]:  # merge forward
                ent[2] = end
                return
            if start < ent[2] and end >= ent[1]:  # merge backward
                ent[1] = start
                return
        if len(self.entries) >= self.max_regions:
            boot.printk(
                "numa.active_range", f"More than {self.max_regions} memory regions, truncating"
            )
            return
        self.entries.append([nid, start, end])

    def remove_all(self) -> None:
        """remove_all_active_ranges()."""
        self.entries = []

    def sort(self) -> None:
        """sort_node_map(): by start pfn (the kernel's sort() is a heapsort, not stable; equal
        starts only occur on overlapping maps, which BUG() before this point)."""
        self.entries.sort(key=lambda ent: ent[1])

    def ranges(self, nid: int | None = None) -> list[tuple[int, int]]:
        """The entries of ``nid`` (None: every node), in map order."""
        return [(s, e) for n, s, e in self.entries if nid is None or n == nid]

    def absent(self, nid: int | None, lo: int, hi: int) -> int:
        """__absent_pages_in_range(nid, lo, hi) walked over the map *in its current order*.

        The kernel assumes a sorted map: it keeps the previous range's end and BUG()s when a
        later range of the walk starts below it (``BUG_ON(prev_end_pfn > start_pfn)``), which
        is what overlapping or unsorted ranges do. Raised as the early ``#UD`` panic.
        """
        mine = self.ranges(nid)
        if not mine:
            return 0
        prev_end = min(mine[0][0], hi)
        holes = prev_end - lo if mine[0][0] > lo else 0
        for start, end in mine:
            if prev_end >= hi:
                break
            start_pfn = min(start, hi)
            prev_end = max(prev_end, lo)
            if start_pfn > lo:
                if prev_end > start_pfn:
                    raise KernelBug(
                        "mm/page_alloc.c: __absent_pages_in_range()",
                        f"BUG_ON(prev_end_pfn {prev_end} > start_pfn {start_pfn})",
                        printk=[
                            f"{EARLY_BUG} (invalid opcode: BUG() in __absent_pages_in_range())"
                        ],
                    )
                holes += start_pfn - prev_end
            prev_end = end
        if hi > prev_end:
            holes += hi - max(lo, prev_end)
        return holes


class Srat2625:
    """acpi_numa_init() and numa_initmem_init() of 2008 (needs ``machine``, ``cfg``,
    ``numa_off``, ``srat_off``, ``busy``, ``end_user_pfn``, ``e820_table`` and
    ``find_area()`` of the kernel class)."""

    machine: Machine
    cfg: Config
    numa_off: bool
    srat_off: bool
    busy: list[tuple[int, int, str]]
    end_user_pfn: int | None
    node_map: NodeMap
    end_pfn_map: int
    #: the memnodemap: (first chunk, end chunk, node) and the shift; phys_to_nid() reads it.
    memnode: list[tuple[int, int, int]]
    memnode_shift: int

    def find_area(self, boot: Boot, start: int, end: int, size: int, align: int) -> int | None:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------
    # e820 -> early_node_map

    def register_active_regions(self, boot: Boot, nid: int, start_pfn: int, end_pfn: int) -> None:
        """e820_64.c e820_register_active_regions(): each e820 entry's whole pages inside
        ``[start_pfn, end_pfn)``, RAM only, cut at ``mem=`` (end_user_pfn), added in table
        order; a non-RAM entry past end_pfn_map raises end_pfn_map."""
        user = self.end_user_pfn if self.end_user_pfn is not None else MAXMEM_PFN
        for ent in boot.e820:
            s, e = -(-ent.start // 4096), ent.end // 4096
            if s >= e:
                continue
            if ent.type != 1 and e > self.end_pfn_map:
                self.end_pfn_map = e
            if ent.type != 1 or e <= start_pfn or s >= end_pfn:
                continue
            s, e = max(s, start_pfn), min(e, end_pfn)
            if s >= user:
                continue
            self.node_map.add(boot, nid, s, min(e, user))

    # ---------------------------------------------------------------------------------------
    # numa_initmem_init()

    def numa_init(self, boot: Boot, ram: list[tuple[int, int]], max_pfn: int) -> Numa:
        """numa_64.c numa_initmem_init() after acpi_numa_init(): the SRAT nodes if
        acpi_scan_nodes() accepts them, else one node faked over all memory."""
        parsed = self.acpi_numa_init(boot)
        if parsed is not None and not self.numa_off:
            found = self.acpi_scan_nodes(boot, parsed, max_pfn)
            if found is not None:
                return found
        return self.dummy_numa(boot, max_pfn)

    def dummy_numa(self, boot: Boot, max_pfn: int) -> Numa:
        """numa_initmem_init()'s fallback: node 0 covering all memory (memnode_shift 63)."""
        end = pfn_phys(max_pfn)
        boot.printk(
            "numa.fallback",
            "NUMA turned off" if self.numa_off else "No NUMA configuration found",
            numa_off=self.numa_off,
        )
        boot.printk("numa.fake", f"Faking a node at {0:016x}-{end:016x}", start=0, end=end)
        self.memnode, self.memnode_shift = [(0, 1, 0)], 63
        self.register_active_regions(boot, 0, 0, max_pfn)
        return Numa([(0, 0, end)], {0: (0, end)}, True)

    def bad_srat(self, boot: Boot) -> None:
        """srat_64.c bad_srat(): the SRAT is dropped and every active range removed."""
        boot.printk("numa.srat.bad", "SRAT: SRAT not used.")
        self.node_map.remove_all()

    def acpi_numa_init(self, boot: Boot) -> _Parsed | None:
        """The SRAT's processor entries, then its memory entries, as srat_64.c takes them.

        Returns the parsed nodes, or None when the SRAT is disabled (``numa=off``,
        ``numa=noacpi``), absent, names no enabled CPU (acpi_numa stays 0) or was rejected.
        """
        if self.numa_off or self.srat_off or not self.machine.numa:
            return None
        cpus = self.cfg.cpu_nodes
        for apic, node in enumerate(cpus):
            boot.printk(
                "numa.srat.cpu",
                f"SRAT: PXM {node} -> APIC {apic} -> Node {node}",
                cpu=apic,
                node=node,
            )
        if not cpus:
            return None
        patched = self.cfg.srat_check == "memblks"
        parsed = _Parsed({}, [])
        for m in self.machine.numa:
            # conflicting_nodes() (2.6.25) / conflicting_memblks() (6ec6e0d9f2f): the first
            # node whose hull (or range) overlaps the new range, or equals it.
            if patched:
                others = [(n, s, e) for n, s, e in parsed.memblks]
            else:
                others = [(n, s, e) for n, (s, e) in sorted(parsed.nodes.items())]
            hit = next(
                (
                    n
                    for n, s, e in others
                    if s != e and ((e > m.start and s < m.end) or (s, e) == (m.start, m.end))
                ),
                None,
            )
            if hit is not None:
                hs, he = parsed.nodes[hit]
                if hit != m.node:
                    boot.printk(
                        "numa.srat.overlap",
                        f"SRAT: PXM {m.node} ({m.start:x}-{m.end:x})"
                        f" overlaps with PXM {hit} ({hs:x}-{he:x})",
                        node=m.node,
                        other=hit,
                    )
                    self.bad_srat(boot)
                    return None
                boot.printk(
                    "numa.srat.overlap",
                    f"SRAT: Warning: PXM {m.node} ({m.start:x}-"
                    f"{m.end:x}) overlaps with itself ({hs:x}-{he:x})",
                    node=m.node,
                )
            s, e = parsed.nodes.get(m.node, (m.start, m.end))
            parsed.nodes[m.node] = (min(s, m.start), max(e, m.end))
            shown = (m.start, m.end) if patched else parsed.nodes[m.node]
            boot.printk(
                "numa.srat.memory",
                f"SRAT: Node {m.node} PXM {m.node} {shown[0]:x}-{shown[1]:x}",
                node=m.node,
                start=m.start,
                end=m.end,
            )
            self.register_active_regions(boot, m.node, pfn_down(shown[0]), pfn_down(shown[1]))
            parsed.memblks.append((m.node, m.start, m.end))
        return parsed

    def acpi_scan_nodes(self, boot: Boot, parsed: _Parsed, max_pfn: int) -> Numa | None:
        """srat_64.c acpi_scan_nodes(): cutoff_node(), NODE_MIN_SIZE, nodes_cover_memory(),
        compute_hash_shift(); None (after bad_srat()) when one of them refuses."""
        top = pfn_phys(max_pfn)
        nodes: dict[int, tuple[int, int]] = {}
        for n, (s, e) in sorted(parsed.nodes.items()):  # cutoff_node(n, 0, end)
            e = min(e, top)
            nodes[n] = (min(s, e), e)
        # Too small nodes are unparsed but keep their (cut) bounds in nodes[].
        parsed_nodes = [n for n, (s, e) in nodes.items() if not (e and e - s < NODE_MIN_SIZE)]
        if not self.nodes_cover_memory(boot, nodes, parsed_nodes, max_pfn):
            self.bad_srat(boot)
            return None
        if self.cfg.srat_check == "memblks":
            keys = [(s, e, n) for n, s, e in parsed.memblks]
        else:
            keys = [(s, e, n) for n, (s, e) in sorted(nodes.items())]
        if self.compute_hash_shift(boot, keys, max_pfn) < 0:
            boot.printk(
                "numa.srat.hash", "SRAT: No NUMA node hash function found. Contact maintainer"
            )
            self.bad_srat(boot)
            return None
        return Numa(parsed.memblks, {n: nodes[n] for n in parsed_nodes}, False)

    def nodes_cover_memory(
        self, boot: Boot, nodes: dict[int, tuple[int, int]], parsed_nodes: list[int], max_pfn: int
    ) -> bool:
        """srat_64.c nodes_cover_memory(): RAM inside the node hulls vs RAM below end_pfn,
        both from absent_pages_in_range() over the (unsorted) early_node_map.

        2.6.25 quirk: RAM in overlapping hulls is counted once per hull, and the slack is
        ``1*1024*1024`` *pages* (4 GiB), where the comment means a little ("We seem to lose 3
        pages somewhere. Allow a bit of slack.").
        """
        pxmram = 0
        for n in parsed_nodes:
            s, e = pfn_down(nodes[n][0]), pfn_down(nodes[n][1])
            pxmram += e - s - self.node_map.absent(None, s, e)
            pxmram = max(pxmram, 0)
        e820ram = max_pfn - self.node_map.absent(None, 0, max_pfn)
        if e820ram - pxmram >= 1024 * 1024:
            boot.printk(
                "numa.srat.cover",
                f"SRAT: PXMs only cover {pxmram >> 8}MB of your "
                f"{e820ram >> 8}MB e820 RAM. Not used.",
                pxmram=pxmram,
                e820ram=e820ram,
            )
            return False
        return True

    def compute_hash_shift(
        self, boot: Boot, ranges: list[tuple[int, int, int]], max_pfn: int
    ) -> int:
        """numa_64.c compute_hash_shift(): the memnodemap that phys_to_nid() reads.

        extract_lsb_from_nodes(): the shift is the lowest set bit of all range starts (63 with
        at most one range); allocate_cachealigned_memnodemap() takes a map bigger than the
        embedded one from the e820 (reserve_early "MEMNODEMAP"); populate_memnodemap() gives
        each 2^shift chunk from a range's start to its end to that range's node, and fails
        ("not aligned") when a chunk is taken twice. Chunks are kept as intervals.
        """
        used = [(s, e, n) for s, e, n in ranges if s < e]
        starts = 0
        for s, _, _ in used:
            starts |= s
        shift = 63 if len(used) <= 1 else (starts & -starts).bit_length() - 1 if starts else 64
        memtop = max((e for _, e, _ in used), default=0)
        mapsize = (memtop >> shift) + 1 if shift < 64 else 1
        if mapsize > EMBEDDED_MEMNODEMAP:
            line = self.cfg.smp_cache_bytes  # L1_CACHE_BYTES
            size = -(-2 * mapsize // line) * line  # round_up(sizeof(s16) * size, ...)
            addr = self.find_area(boot, 0x8000, pfn_phys(max_pfn), size, line)
            if addr is None:
                boot.printk("numa.memnodemap", "NUMA: Unable to allocate Memory to Node hash map")
                return -1
            self.busy.append((addr, addr + size, "MEMNODEMAP"))
            boot.printk(
                "numa.memnodemap",
                f"NUMA: Allocated memnodemap from {addr:x} - {addr + size:x}",
                start=addr,
                end=addr + size,
            )
        boot.printk("numa.hash_shift", f"NUMA: Using {shift} for the hash shift.", shift=shift)
        chunks = sorted((s >> shift, -(-e >> shift) if shift < 64 else 1, n) for s, e, n in used)
        ok = bool(chunks) and all(b[0] >= a[1] for a, b in zip(chunks, chunks[1:], strict=False))
        if not ok:
            boot.printk(
                "numa.hash_shift",
                "Your memory is not aligned you need to rebuild "
                f"your kernel with a bigger NODEMAPSIZE shift={shift}",
                shift=shift,
            )
            return -1
        self.memnode, self.memnode_shift = chunks, shift
        boot.facts["memnode_shift"] = shift
        return shift

    def memnode_nid(self, addr: int) -> int | None:
        """phys_to_nid(): the memnodemap entry of ``addr`` (None: NUMA_NO_NODE)."""
        chunk = addr >> self.memnode_shift if self.memnode_shift < 64 else 0
        for lo, hi, n in self.memnode:
            if lo <= chunk < hi:
                return n
        return None


@dataclass
class _Parsed:
    """srat_64.c's ``nodes[]`` (hull of each parsed node) and, in order, every accepted range
    (``node_memblk_range[]`` of 6ec6e0d9f2f; the faithful SRAT order either way)."""

    nodes: dict[int, tuple[int, int]]
    memblks: list[tuple[int, int, int]]


__all__ = [
    "EARLY_BUG",
    "NODE_MIN_SIZE",
    "NodeMap",
    "Numa",
    "Srat2625",
    "early_bug",
    "max_active_regions",
    "pieces",
]
