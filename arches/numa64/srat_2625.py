"""NUMA discovery of a spring-2008 x86_64 kernel: the SRAT checks and the node hash.

arch/x86/mm/srat_64.c before and after Suresh Siddha's "srat, x86_64: Add support for nodes
spanning other nodes" (25 March 2008, merged for 2.6.26; code-index ids 23818220 / 12496335:
acpi_numa_memory_affinity_init(), conflicting_nodes() / conflicting_memblks(), cutoff_node(),
bad_srat(), nodes_cover_memory(), acpi_scan_nodes()) and arch/x86/mm/numa_64.c of 2.6.24/25
(id 125227935: compute_hash_shift(), populate_memnodemap(), numa_initmem_init()). Mixed into
:class:`arches.numa64.v2_6_25.Linux2625`; ``kernel.srat_check`` picks the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bootemu.models import Machine, pfn_down, pfn_phys

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from arches.numa64 import Config
    from bootemu.boot import Boot

#: arch/x86/mm/srat_64.c: NODE_MIN_SIZE, nodes smaller than this are dropped.
NODE_MIN_SIZE = 4 << 20
#: numa_64.c allocate_cachealigned_memnodemap(): the map embedded in struct memnode.
EMBEDDED_MEMNODEMAP = 48
#: L1_CACHE_BYTES of a generic x86_64 build (CONFIG_X86_L1_CACHE_SHIFT 7).
L1_CACHE_BYTES = 128


@dataclass
class Numa:
    """What NUMA discovery decided: ``memblks`` are ``(node, start, end)`` byte ranges (the
    affinity ranges that were accepted, or one faked node), ``spans`` each node's hull."""

    memblks: list[tuple[int, int, int]]
    spans: dict[int, tuple[int, int]]
    faked: bool


def pieces(ranges: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Pages of the sorted disjoint pfn ``ranges`` inside ``[lo, hi)``."""
    return sum(max(0, min(e, hi) - max(s, lo)) for s, e in ranges)


class Srat2625:
    """numa_initmem_init() and the SRAT parsing of 2008 (needs ``machine``, ``cfg``,
    ``numa_off``, ``srat_off``, ``busy`` and ``find_area()`` of the kernel class)."""

    machine: Machine
    cfg: Config
    numa_off: bool
    srat_off: bool
    busy: list[tuple[int, int, str]]

    def find_area(self, boot: Boot, start: int, end: int, size: int, align: int) -> int | None:
        raise NotImplementedError

    def numa_init(self, boot: Boot, ram: list[tuple[int, int]], max_pfn: int) -> Numa:
        """numa_64.c numa_initmem_init(): the SRAT if usable, else one faked node."""
        if not self.numa_off and not self.srat_off and self.machine.numa:
            found = self.acpi_scan_nodes(boot, ram, max_pfn)
            if found is not None:
                return found
        return self.dummy_numa(boot, max_pfn)

    def dummy_numa(self, boot: Boot, max_pfn: int) -> Numa:
        """numa_initmem_init()'s fallback: node 0 covering all memory."""
        end = pfn_phys(max_pfn)
        boot.printk("numa.fallback", "NUMA turned off" if self.numa_off else
                    "No NUMA configuration found", numa_off=self.numa_off)
        boot.printk("numa.fake", f"Faking a node at {0:016x}-{end:016x}", start=0, end=end)
        return Numa([(0, 0, end)], {0: (0, end)}, True)

    def bad_srat(self, boot: Boot) -> None:
        boot.printk("numa.srat.bad", "SRAT: SRAT not used.")

    def acpi_scan_nodes(self, boot: Boot, ram: list[tuple[int, int]], max_pfn: int
                        ) -> Numa | None:
        """srat_64.c acpi_numa_memory_affinity_init() per entry, then acpi_scan_nodes()."""
        for cpu, node in enumerate(self.cfg.cpu_nodes):
            boot.printk("numa.srat.cpu", f"SRAT: PXM {node} -> APIC {cpu} -> Node {node}",
                        cpu=cpu, node=node)
        hulls: dict[int, tuple[int, int]] = {}
        memblks: list[tuple[int, int, int]] = []
        by_hull = self.cfg.srat_check == "hulls"
        for m in self.machine.numa:
            if by_hull:  # 2.6.25 conflicting_nodes(): the new range against every hull
                hits = [(n, s, e) for n, (s, e) in sorted(hulls.items())
                        if (e > m.start and s < m.end) or (s, e) == (m.start, m.end)]
            else:  # Siddha's conflicting_memblks(): against every earlier range
                hits = [(n, s, e) for n, s, e in memblks
                        if (e > m.start and s < m.end) or (s, e) == (m.start, m.end)]
            if hits:
                n, s, e = hits[0]
                hs, he = hulls[n]
                if n != m.node:
                    boot.printk("numa.srat.overlap", f"SRAT: PXM {m.node} ({m.start:x}-{m.end:x})"
                                f" overlaps with PXM {n} ({hs:x}-{he:x})", node=m.node, other=n)
                    self.bad_srat(boot)
                    return None
                boot.printk("numa.srat.overlap", f"SRAT: Warning: PXM {m.node} ({m.start:x}-"
                            f"{m.end:x}) overlaps with itself ({hs:x}-{he:x})", node=m.node)
            s, e = hulls.get(m.node, (m.start, m.end))
            hulls[m.node] = (min(s, m.start), max(e, m.end))
            memblks.append((m.node, m.start, m.end))
            shown = hulls[m.node] if by_hull else (m.start, m.end)
            boot.printk("numa.srat.memory", f"SRAT: Node {m.node} PXM {m.node} "
                        f"{shown[0]:x}-{shown[1]:x}", node=m.node, start=m.start, end=m.end)
        # cutoff_node(): every hull cut to [0, end of RAM); nodes below NODE_MIN_SIZE dropped.
        top = pfn_phys(max_pfn)
        spans = {n: (min(s, top), min(e, top)) for n, (s, e) in hulls.items()}
        small = {n for n, (s, e) in spans.items() if e - s < NODE_MIN_SIZE}
        spans = {n: v for n, v in spans.items() if n not in small}
        memblks = [b for b in memblks if b[0] not in small]
        if not self.nodes_cover_memory(boot, ram, spans):
            self.bad_srat(boot)
            return None
        keys = [(s, e, n) for n, (s, e) in spans.items()] if by_hull else \
               [(s, e, n) for n, s, e in memblks]
        if self.compute_hash_shift(boot, keys) < 0:
            boot.printk("numa.srat.hash", "SRAT: No NUMA node hash function found. Contact "
                        "maintainer")
            self.bad_srat(boot)
            return None
        return Numa(memblks, spans, False)

    def nodes_cover_memory(self, boot: Boot, ram: list[tuple[int, int]],
                           spans: dict[int, tuple[int, int]]) -> bool:
        """srat_64.c nodes_cover_memory(): RAM inside the node hulls vs RAM in the e820.

        [R] Both sides are counted from e820 RAM (absent_pages_in_range() over active ranges
        that cover all RAM at this point of setup_arch()).
        """
        pxmram = sum(pieces(ram, pfn_down(s), pfn_down(e)) for s, e in spans.values())
        e820ram = pieces(ram, 0, ram[-1][1]) if ram else 0
        # 2.6.25 quirk: RAM in overlapping hulls is counted once per hull, and the slack is
        # "1*1024*1024" *pages* (4 GiB), where the comment means 1 MiB ("We seem to lose 3
        # pages somewhere. Allow a bit of slack.").
        if e820ram - pxmram >= 1024 * 1024:
            boot.printk("numa.srat.cover", f"SRAT: PXMs only cover {pxmram >> 8}MB of your "
                        f"{e820ram >> 8}MB e820 RAM. Not used.", pxmram=pxmram, e820ram=e820ram)
            return False
        return True

    def compute_hash_shift(self, boot: Boot, ranges: list[tuple[int, int, int]]) -> int:
        """numa_64.c compute_hash_shift(): the memnodemap that phys_to_nid() reads.

        The shift is the lowest set bit of all range starts (63 with one range); every
        2^shift chunk may belong to one range only, else "not aligned" and -1.
        """
        used = [(s, e, n) for s, e, n in ranges if s < e]
        starts = 0
        for s, _, _ in used:
            starts |= s
        shift = 63 if len(used) <= 1 or starts == 0 else (starts & -starts).bit_length() - 1
        memtop = max((e for _, e, _ in used), default=0)
        size = (memtop >> shift) + 1
        if size > EMBEDDED_MEMNODEMAP:  # allocate_cachealigned_memnodemap()
            pad = L1_CACHE_BYTES - 1
            addr = self.find_area(boot, 0x8000, memtop, pad + size, 1)
            if addr is None:
                boot.printk("numa.memnodemap", "NUMA: Unable to allocate Memory to Node hash map")
                return -1
            self.busy.append((addr, addr + pad + size, "MEMNODEMAP"))
            boot.printk("numa.memnodemap", f"NUMA: Allocated memnodemap from {addr:x} - "
                        f"{addr + pad + size:x}", start=addr, end=addr + pad + size)
        boot.printk("numa.hash_shift", f"NUMA: Using {shift} for the hash shift.", shift=shift)
        chunks = sorted((s >> shift, -(-(e - s) >> shift) + (s >> shift)) for s, e, _ in used)
        # populate_memnodemap() answers -1 ("overlap") when no range is left at all, as when
        # cutoff_node() has dropped every node below NODE_MIN_SIZE: the SRAT is not used.
        overlap = not used or any(
            s2 < e1 for (_, e1), (s2, _) in zip(chunks, chunks[1:], strict=False))
        if overlap:
            boot.printk("numa.hash_shift", "Your memory is not aligned you need to rebuild "
                        f"your kernel with a bigger NODEMAPSIZE shift={shift}", shift=shift)
            return -1
        boot.facts["memnode_shift"] = shift
        return shift


__all__ = ["NODE_MIN_SIZE", "Numa", "Srat2625", "pieces"]
