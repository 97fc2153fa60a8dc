"""The typed contract between the core, an arch and a backend (public; see docs/plugins.md).

- :class:`ArchInfo`: the facts of the emulated kernel build that backends read (word size,
  physical address width, NUMA, blocks per node). Every arch declares one per boot through
  the ``bootemu_arch_info`` hook; there are no defaults, so a backend never guesses 32 bits.
- :class:`Allocator`: what an arch can ask of the boot-time allocator, whichever backend
  answers (the core's :class:`bootemu.plugins.AllocatorFacade` implements it).
- :class:`Profile`: the object a :class:`bootemu.archbase.ProfileArch` runs each phase in.

This module imports nothing from the core but :mod:`bootemu.models`, so
:mod:`bootemu.hookspecs` can name these types without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bootemu.models import AllocRequest, BitmapRequest, BootemuError, Layout, PageSink

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from bootemu.boot import Boot
    from bootemu.pagealloc import PageAllocModel


@dataclass(frozen=True)
class ArchInfo:
    """The build facts of the emulated kernel that backends depend on. All are required.

    - ``bits_per_long``: BITS_PER_LONG, 32 or 64. Bootmem bitmaps are rounded to longs and
      released a long at a time (``free_all_bootmem_core()``), so it changes sizes and traces.
    - ``phys_addr_bits``: ``sizeof(phys_addr_t) * 8``, 32 or 64 (64 on x86_32 PAE). Memblock's
      region size and its address clamp (``memblock_cap_size()``) depend on it.
    - ``numa``: CONFIG_NUMA. Memblock regions carry a node id only with it.
    - ``memblks_per_node``: NR_MEMBLKS_PER_NODE of the bootmem2 RFCs (``bid = nid *
      NR_MEMBLKS_PER_NODE + bnr``); 1 where NR_NODE_MEMBLKS equals MAX_NUMNODES (x86_32).
    - ``smp_cache_bytes``: SMP_CACHE_BYTES (``1 << CONFIG_X86_L1_CACHE_SHIFT`` on x86), the
      alignment memblock gives a request that asked for none.
    """

    bits_per_long: int
    phys_addr_bits: int
    numa: bool
    memblks_per_node: int
    smp_cache_bytes: int

    def __post_init__(self) -> None:
        if self.bits_per_long not in (32, 64):
            raise BootemuError(f"ArchInfo: bits_per_long {self.bits_per_long!r} is not 32 or 64")
        if self.phys_addr_bits not in (32, 64):
            raise BootemuError(f"ArchInfo: phys_addr_bits {self.phys_addr_bits!r} is not 32 or 64")
        if self.phys_addr_bits < self.bits_per_long:
            raise BootemuError("ArchInfo: phys_addr_bits is narrower than bits_per_long")
        if not isinstance(self.numa, bool):
            raise BootemuError(f"ArchInfo: numa {self.numa!r} is not a boolean")
        if isinstance(self.memblks_per_node, bool) or not (
            isinstance(self.memblks_per_node, int) and self.memblks_per_node >= 1
        ):
            raise BootemuError(
                f"ArchInfo: memblks_per_node {self.memblks_per_node!r} is not an integer >= 1"
            )
        n = self.smp_cache_bytes
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n & (n - 1):
            raise BootemuError(f"ArchInfo: smp_cache_bytes {n!r} is not a power of two")


class Allocator(Protocol):
    """The boot-time allocator as an arch sees it: keyword arguments only, bytes and pfns.

    The rules every backend holds an arch to are in docs/plugins.md ("Cross-backend rules").
    """

    def register_block(self, *, node: int, start_pfn: int, end_pfn: int) -> None: ...

    def bitmap_requests(self) -> list[BitmapRequest]: ...

    def enable(self, *, placements: Mapping[str, int]) -> None: ...

    def free(self, *, addr: int, size: int, node: int | None) -> None: ...

    def reserve(
        self, *, addr: int, size: int, node: int | None, exclusive: bool, label: str = ""
    ) -> int: ...

    def alloc(self, *, request: AllocRequest) -> int | None: ...

    def handoff(self, *, sink: PageSink, node: int | None) -> int: ...

    def overhead_bytes(self) -> int: ...

    def stats(self) -> dict[str, Any]: ...


class Profile(Protocol):
    """One kernel generation of an arch, as :class:`bootemu.archbase.ProfileArch` drives it:
    a :class:`bootemu.archbase.BootSteps` (whose phases are made of its steps) with
    ``arch_info()``.

    ``boot`` is set before each phase. ``layout`` returns the page-frame layout and
    ``handoff`` the pages the arch counted as released (``totalram_pages``); the other phases
    return nothing.
    """

    boot: Boot

    def arch_info(self) -> ArchInfo: ...

    def firmware(self, boot: Boot) -> None: ...

    def cmdline(self, boot: Boot) -> None: ...

    def layout(self, boot: Boot) -> Layout: ...

    def register(self, boot: Boot, allocator: Allocator) -> None: ...

    def enable(self, boot: Boot, allocator: Allocator) -> None: ...

    def reserve(self, boot: Boot, allocator: Allocator) -> None: ...

    def allocate(self, boot: Boot, allocator: Allocator) -> None: ...

    def handoff(self, boot: Boot, allocator: Allocator, pagealloc: PageAllocModel) -> int: ...

    def summary(self, boot: Boot, pagealloc: PageAllocModel | None) -> None: ...


__all__ = ["Allocator", "ArchInfo", "Profile"]
