"""numa64 6.1: NUMA discovery as arch/x86/mm/numa.c numa_init() runs it, emulation included.

x86_numa_init() tries numa_init(x86_acpi_numa_init) and falls back to
numa_init(dummy_numa_init); each round resets the distance table, reads the firmware's
meminfo (the SRAT's affinity ranges, or one node over [0, max_pfn)), cleans it up
(:func:`bootemu_arches.numa64.numa_61.cleanup_meminfo`), lets numa_emulation()
(:mod:`bootemu_arches.numa64.numa_emu_61`) replace it with fake nodes when ``numa=fake=`` was given,
and checks it in numa_register_memblks(). Sources: arch/x86/mm/numa.c (v5.16-v6.4, code-index
id 29493980017), arch/x86/mm/srat.c acpi_numa_memory_affinity_init(), mm/sparse.c
memory_present() of 6.1. A mixin of :class:`bootemu_arches.numa64.v6_1.Linux61`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bootemu_arches.numa64 import direct_map
from bootemu_arches.numa64.numa_61 import NODE_MIN_SIZE, cleanup_meminfo, cover_memory
from bootemu_arches.numa64.numa_emu_61 import Emulated, numa_emulation
from bootemu_arches.numa64.srat_2625 import Numa
from bootemu_arches.numa64.v2_6_25 import SECTION_PAGES

from bootemu.models import PAGE_SIZE, BootemuError, KernelPanic, pfn_phys

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot


class Numa61:
    """numa_init() of 6.1 with numa_emulation() (needs the attributes below from
    :class:`bootemu_arches.numa64.v6_1.Linux61`)."""

    machine: Any
    cfg: Any
    numa_off: bool
    srat_off: bool
    busy: list[tuple[int, int, str]]
    lay: Any
    emu_cmdline: str | None
    emu: Emulated | None
    memory_nodes: Any

    def numa_fake(self, spec: str) -> None:
        """numa.c numa_setup() -> numa_emu_cmdline(): keep the string; numa_emulation() parses
        it (the last ``numa=fake=`` wins)."""
        self.emu_cmdline = spec

    def numa_init(self, boot: Boot, ram: list[tuple[int, int]], max_pfn: int) -> Numa:
        """x86_numa_init(): numa_init(x86_acpi_numa_init), else numa_init(dummy_numa_init)."""
        if not self.numa_off and not self.srat_off and self.machine.numa:
            found = self.numa_init_with(boot, ram, max_pfn, srat=True)
            if found is not None:
                return found
        found = self.numa_init_with(boot, ram, max_pfn, srat=False)
        if found is None:  # pragma: no cover - the dummy block covers all RAM
            raise KernelPanic("numa_init(dummy_numa_init) failed")
        return found

    def numa_init_with(
        self, boot: Boot, ram: list[tuple[int, int]], max_pfn: int, srat: bool
    ) -> Numa | None:
        """numa.c numa_init(init_func), 6.1: the firmware's meminfo (SRAT or the dummy node),
        numa_cleanup_meminfo(), numa_emulation(), numa_register_memblks()'s checks. None when
        the kernel's numa_init() returns an error."""
        # numa_reset_distance(): a table an earlier failed round allocated is freed again.
        self.busy = [b for b in self.busy if b[2] != "numa_distance"]
        self.emu = None
        if srat:
            blks, parsed = self.srat_meminfo(boot)
        else:
            end = pfn_phys(max_pfn)
            boot.printk(
                "numa.fallback",
                "NUMA turned off" if self.numa_off else "No NUMA configuration found",
                numa_off=self.numa_off,
            )
            boot.printk(
                "numa.fake", f"Faking a node at [mem {0:#018x}-{end - 1:#018x}]", start=0, end=end
            )
            blks, parsed = [[0, 0, end]], {0}
        cleaned = cleanup_meminfo(boot, blks, ram, max_pfn)
        if cleaned is None:
            return None
        blks = cleaned
        emu = None
        if self.emu_cmdline is not None:
            # 6.1 quirk: parsing advances emu_cmdline for good, so a second numa_init() round
            # (the dummy one, after the SRAT one failed below) sees only what was left.
            emu, self.emu_cmdline = numa_emulation(
                boot,
                self.emu_cmdline,
                blks,
                parsed,
                ram,
                max_pfn,
                self.cfg.cpu_nodes if srat else None,
                self.distance_table_alloc(ram, max_pfn),
            )
            if emu is not None:
                blks = emu.meminfo
        # numa_register_memblks(): the coverage check, then NODE_DATA for nodes of 4 MiB+.
        if not cover_memory(boot, blks, ram, max_pfn):
            return None
        spans: dict[int, tuple[int, int]] = {}
        for n, s, e in blks:
            lo, hi = spans.get(n, (s, e))
            spans[n] = (min(lo, s), max(hi, e))
        for n, (lo, hi) in sorted(spans.items()):
            if hi - lo < NODE_MIN_SIZE:
                raise BootemuError(
                    f"{self.machine.source}: node {n} spans [mem {lo:#x}-"
                    f"{hi - 1:#x}], less than NODE_MIN_SIZE (4 MiB): 6.1 leaves "
                    "it offline, which numa64 does not model"
                )
        self.emu = emu
        if emu is not None:
            boot.facts.update(
                numa_emulated_nodes=len(emu.nodes_parsed),
                numa_distance=";".join(",".join(str(d) for d in row) for row in emu.distance),
            )
        return Numa([(n, s, e) for n, s, e in blks], spans, not srat)

    def srat_meminfo(self, boot: Boot) -> tuple[list[list[int]], set[int]]:
        """srat.c acpi_numa_processor/memory_affinity_init(): print each CPU and memory
        affinity; numa_nodes_parsed gets every node named."""
        for cpu, node in enumerate(self.cfg.cpu_nodes):
            boot.printk(
                "numa.srat.cpu",
                f"SRAT: PXM {node} -> APIC {cpu:#04x} -> Node {node}",
                cpu=cpu,
                node=node,
            )
        blks: list[list[int]] = []
        for m in self.machine.numa:
            boot.printk(
                "numa.srat.memory",
                f"ACPI: SRAT: Node {m.node} PXM {m.node} [mem {m.start:#010x}-{m.end - 1:#010x}]",
                node=m.node,
                start=m.start,
                end=m.end,
            )
            blks.append([m.node, m.start, m.end])
        return blks, {m.node for m in self.machine.numa} | set(self.cfg.cpu_nodes)

    def distance_table_alloc(
        self, ram: list[tuple[int, int]], max_pfn: int
    ) -> Callable[[int], int | None]:
        """numa_alloc_distance()'s memblock_phys_alloc_range(size, PAGE_SIZE, 0,
        PFN_PHYS(max_pfn_mapped)): top-down in free memory (init_mem_mapping() has mapped
        all RAM, so max_pfn_mapped = max_pfn); the reservation is exactly ``size`` bytes."""
        memory = [(pfn_phys(s), pfn_phys(e)) for s, e in ram]

        def alloc(size: int) -> int | None:
            free = direct_map.subtract(memory, [(s, e) for s, e, _ in self.busy])
            addr = direct_map.top_down(free, size, PAGE_SIZE, PAGE_SIZE, pfn_phys(max_pfn))
            if addr is not None:
                self.busy.append((addr, addr + size, "numa_distance"))
            return addr

        return alloc

    def cpu_nodes(self) -> tuple[int, ...]:
        """The node of each CPU. Emulated: the SRAT's, remapped by numa_emulation() to the
        first fake node of the CPU's physical node; without SRAT affinities (dummy) every
        CPU is NUMA_NO_NODE and numa_init_array() deals them round robin over the online
        nodes."""
        if self.emu is not None:
            if self.emu.cpu_nodes is not None:
                return self.emu.cpu_nodes
            online = self.memory_nodes()
            return tuple(online[i % len(online)] for i in range(len(self.cfg.cpu_nodes)))
        return super().cpu_nodes()  # type: ignore[misc]

    def nr_node_ids(self) -> int:
        """setup_nr_node_ids(): highest possible node + 1; emulated, the possible nodes are
        numa_nodes_parsed (the fake ones) plus the meminfo's nodes."""
        if self.emu is not None:
            return 1 + max(self.emu.nodes_parsed | {n for n, _, _ in self.emu.meminfo})
        return super().nr_node_ids()  # type: ignore[misc]

    def sections(self) -> list[tuple[int, int]]:
        """mm/sparse.c memory_present(), 6.1: a section's early nid is set once
        (``if (!ms->section_mem_map)``), so the *first* memory range touching it names it."""
        out: list[tuple[int, int]] = []
        for b in self.lay.blocks:  # sorted and disjoint: only a first section can be named
            first = b.start_pfn // SECTION_PAGES
            if out and out[-1][0] >= first:
                first = out[-1][0] + 1
            node = b.node
            out.extend((pnum, node) for pnum in range(first, (b.end_pfn - 1) // SECTION_PAGES + 1))
        return out


__all__ = ["Numa61"]
