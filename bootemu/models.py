"""The public data model shared by the core, the arches and the allocator backends.

Plugins import only from :mod:`bootemu` (this module, :mod:`bootemu.e820`, :mod:`bootemu.units`,
:mod:`bootemu.hookspecs`); they never import each other. Every range is half-open
``[start, end)``; addresses are bytes, pfns are page frame numbers (``addr >> PAGE_SHIFT``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: include/linux/mmzone.h: MAX_ORDER 11, so free lists of orders 0..10.
MAX_ORDER = 11
#: -EBUSY, returned by reserve_bootmem(..., BOOTMEM_EXCLUSIVE) on a conflict.
EBUSY = -16


def pfn_up(addr: int) -> int:
    """PFN_UP(): the first pfn at or above ``addr``."""
    return (addr + PAGE_SIZE - 1) >> PAGE_SHIFT


def pfn_down(addr: int) -> int:
    """PFN_DOWN(): the pfn that contains ``addr``."""
    return addr >> PAGE_SHIFT


def pfn_phys(pfn: int) -> int:
    """PFN_PHYS(): the physical address of ``pfn``."""
    return pfn << PAGE_SHIFT


def align_up(x: int, a: int) -> int:
    """The kernel's ALIGN(x, a) for a power of two ``a``; ALIGN(x, 0) is 0, as in C."""
    if a == 0:
        return 0
    return (x + a - 1) & ~(a - 1)


# --------------------------------------------------------------------------------------------
# Errors


class BootemuError(Exception):
    """Bad input or usage: the CLI prints ``str(error)`` as one line and exits 2."""


class KernelPanic(Exception):  # noqa: N818 - named after the kernel routine
    """The emulated kernel called panic(): the boot ends with outcome ``"panic"``.

    ``message`` is the panic string (``"Out of memory"``); ``printk`` holds the lines the kernel
    printed just before (``"bootmem alloc of 4096 bytes failed!"``).
    """

    def __init__(self, message: str, printk: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.printk = tuple(printk)


class KernelBug(KernelPanic):
    """The emulated kernel hit BUG(): treated like a panic during early boot.

    ``where`` names the kernel routine (``"mm/bootmem.c: free_bootmem_core()"``).
    """

    def __init__(self, where: str, reason: str, printk: Sequence[str] = ()) -> None:
        super().__init__(f"kernel BUG in {where}: {reason}", printk)
        self.where = where
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Layout: what the arch decided


@dataclass(frozen=True, order=True)
class Block:
    """A contiguous pfn range that resides entirely on one node."""

    start_pfn: int
    end_pfn: int
    node: int

    @property
    def pages(self) -> int:
        return self.end_pfn - self.start_pfn


@dataclass(frozen=True)
class Zone:
    """One zone of one node, as free_area_init_core() sizes it.

    ``spanned`` = end_pfn - start_pfn; ``present`` = pages of RAM inside the span (the arch
    computes it from its rules: 2.6.25 x86_32 counts holes as present, 6.1 does not).
    """

    node: int
    name: str
    start_pfn: int
    end_pfn: int
    present: int

    @property
    def spanned(self) -> int:
        return self.end_pfn - self.start_pfn


@dataclass(frozen=True, order=True)
class OwnedRange:
    """Bytes ``[start, end)`` the arch itself occupies before any allocator runs: the kernel
    image, firmware tables, boot page tables, the device tree blob ... The arch must reserve
    them; the checks flag an allocation or a handed-off page there that no reserve covered."""

    start: int
    end: int
    label: str


@dataclass
class Layout:
    """The page-frame layout an arch computed in the ``layout`` phase.

    ``ram`` lists the pfn ranges of RAM the kernel manages (whole pages of usable memory below
    ``max_pfn``): the universe of the conservation check. ``blocks`` say which node each RAM
    range physically resides on. ``zone_limits`` are the global zone boundaries in pfn order
    (``[("DMA", 4096), ("Normal", max_low_pfn), ("HighMem", max_pfn)]``): a pfn belongs to the
    first zone whose limit is above it. ``owned`` lists the ranges the arch occupies itself
    (:class:`OwnedRange`), which it must reserve before anything is allocated.
    """

    max_pfn: int
    ram: tuple[tuple[int, int], ...]
    blocks: tuple[Block, ...]
    zones: tuple[Zone, ...]
    zone_limits: tuple[tuple[str, int], ...]
    max_low_pfn: int | None = None
    lowmem_mb: int | None = None
    highmem_mb: int | None = None
    owned: tuple[OwnedRange, ...] = ()
    _starts: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.blocks = tuple(sorted(self.blocks))
        self._starts = [b.start_pfn for b in self.blocks]

    @property
    def nodes(self) -> tuple[int, ...]:
        """Node ids that appear in a block or a zone, ascending."""
        return tuple(sorted({b.node for b in self.blocks} | {z.node for z in self.zones}))

    @property
    def block_starts(self) -> list[int]:
        """The blocks' start pfns, ascending (for bisecting into :attr:`blocks`)."""
        return self._starts

    def node_of(self, pfn: int) -> int | None:
        """The node ``pfn`` physically resides on, or None if no block holds it."""
        i = bisect.bisect_right(self._starts, pfn) - 1
        if i >= 0 and self.blocks[i].start_pfn <= pfn < self.blocks[i].end_pfn:
            return self.blocks[i].node
        return None

    def node_pieces(self, start_pfn: int, end_pfn: int) -> list[tuple[int, int, int | None]]:
        """Split ``[start_pfn, end_pfn)`` into ``(start, end, node)`` pieces by residence.

        Pieces that no block covers get node None. Cost grows with the number of blocks
        crossed, never with the number of pages.
        """
        out: list[tuple[int, int, int | None]] = []
        pos = start_pfn
        i = max(bisect.bisect_right(self._starts, pos) - 1, 0)
        while pos < end_pfn:
            while i < len(self.blocks) and self.blocks[i].end_pfn <= pos:
                i += 1
            if i == len(self.blocks):
                out.append((pos, end_pfn, None))
                break
            b = self.blocks[i]
            if b.start_pfn > pos:
                stop = min(b.start_pfn, end_pfn)
                out.append((pos, stop, None))
                pos = stop
                continue
            stop = min(b.end_pfn, end_pfn)
            out.append((pos, stop, b.node))
            pos = stop
        return out

    def zone_of(self, pfn: int) -> str:
        """The name of the zone ``pfn`` falls in, by the global zone boundaries."""
        for name, limit in self.zone_limits:
            if pfn < limit:
                return name
        return self.zone_limits[-1][0]

    def zone_pieces(self, start_pfn: int, end_pfn: int) -> list[tuple[int, int, str]]:
        """Split ``[start_pfn, end_pfn)`` at the global zone boundaries."""
        out: list[tuple[int, int, str]] = []
        pos = start_pfn
        for name, limit in self.zone_limits:
            if pos >= end_pfn:
                break
            if pos < limit:
                stop = min(limit, end_pfn)
                out.append((pos, stop, name))
                pos = stop
        if pos < end_pfn:
            out.append((pos, end_pfn, self.zone_limits[-1][0]))
        return out

    @property
    def ram_pages(self) -> int:
        return sum(end - start for start, end in self.ram)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and coalesce half-open ranges (adjacent ones merge)."""
    out: list[list[int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((s, e) for s, e in out)


def subtract(
    a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``a - b`` for sorted, disjoint half-open range lists (pfns or bytes alike)."""
    out: list[tuple[int, int]] = []
    bl = list(b)
    j = 0
    for s, e in a:
        while j < len(bl) and bl[j][1] <= s:
            j += 1
        pos, k = s, j
        while k < len(bl) and bl[k][0] < e:
            if bl[k][0] > pos:
                out.append((pos, bl[k][0]))
            pos = max(pos, bl[k][1])
            k += 1
        if pos < e:
            out.append((pos, e))
    return out


def intersect(
    a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``a & b`` for sorted, disjoint half-open range lists."""
    al, bl = list(a), list(b)
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(al) and j < len(bl):
        s, e = max(al[i][0], bl[j][0]), min(al[i][1], bl[j][1])
        if s < e:
            out.append((s, e))
        if al[i][1] < bl[j][1]:
            i += 1
        else:
            j += 1
    return out


def find_free(
    space: Iterable[tuple[int, int]], busy: Iterable[tuple[int, int]], size: int, align: int = 1
) -> int | None:
    """The lowest start, a multiple of ``align``, of ``size`` units inside ``space`` that
    touch nothing ``busy`` (any ranges; they are merged first); None if nothing fits."""
    for s, e in subtract(merge_ranges(space), merge_ranges(busy)):
        start = -(-s // align) * align
        if start + size <= e:
            return start
    return None


# --------------------------------------------------------------------------------------------
# Allocator requests


#: The kernel's allocation entry points a request can name (mm/bootmem.c, 2.6.25).
ALLOC_WRAPPERS = (
    "__alloc_bootmem",  # any node, panics on failure
    "__alloc_bootmem_nopanic",  # any node, NULL on failure
    "__alloc_bootmem_node",  # that node first; classic bootmem falls back to all nodes
    "__alloc_bootmem_low",  # any node below ARCH_LOW_ADDRESS_LIMIT, panics
    "__alloc_bootmem_low_node",  # that node below the low limit, NULL on failure
)

#: mm/bootmem.c, 2.6.25: ARCH_LOW_ADDRESS_LIMIT defaults to 0xffffffff.
ARCH_LOW_ADDRESS_LIMIT = 0xFFFFFFFF


@dataclass(frozen=True)
class AllocRequest:
    """One early allocation, as the kernel asked for it.

    ``wrapper`` is the kernel entry point (one of :data:`ALLOC_WRAPPERS`): it tells the backend
    which node(s) to search, whether there is a low limit, whether to fall back to other nodes
    and whether failure panics. ``node`` is required by the ``*_node`` wrappers and None
    otherwise. ``caller`` is the kernel routine that made the request
    (``"alloc_large_system_hash"``), ``label`` a short human name (``"dentry hash"``).
    ``max_addr``, when not None, replaces the wrapper's byte limit (0 = no limit): a replayed
    real call that named its own (RFC ``bootmem_alloc_node(..., limit)``, 6.1
    ``memblock_phys_alloc_range(..., end)`` and ``memblock_alloc_try_nid(..., max_addr, ...)``).
    """

    size: int
    align: int
    goal: int
    wrapper: str = "__alloc_bootmem"
    node: int | None = None
    caller: str = ""
    label: str = ""
    max_addr: int | None = None

    def __post_init__(self) -> None:
        if self.wrapper not in ALLOC_WRAPPERS:
            raise ValueError(f"unknown allocation wrapper {self.wrapper!r}")
        if self.wrapper.endswith("_node") and self.node is None:
            raise ValueError(f"{self.wrapper} needs a node")
        if not self.wrapper.endswith("_node") and self.node is not None:
            raise ValueError(f"{self.wrapper} takes no node")

    @property
    def low(self) -> bool:
        """True for the ``*_low*`` wrappers (limit ARCH_LOW_ADDRESS_LIMIT)."""
        return "_low" in self.wrapper

    @property
    def limit(self) -> int:
        """The byte limit the wrapper passes to the core search (0 = none), or ``max_addr``."""
        if self.max_addr is not None:
            return self.max_addr
        return ARCH_LOW_ADDRESS_LIMIT if self.low else 0

    @property
    def panics(self) -> bool:
        """Whether the classic (2.6.25) wrapper panics when nothing is found."""
        return self.wrapper in ("__alloc_bootmem", "__alloc_bootmem_node", "__alloc_bootmem_low")


@dataclass(frozen=True)
class BitmapRequest:
    """Memory a backend needs for its bookkeeping before it can be enabled.

    ``key`` names the bitmap (``"node0"``, ``"global"``, ``"block3"``); ``node`` and the pfn
    range ``[start_pfn, end_pfn)`` it covers tell the arch where it would best be placed (a node
    bitmap on its node, a block bitmap inside its block); ``nbytes`` is its size.
    """

    key: str
    node: int | None
    start_pfn: int
    end_pfn: int
    nbytes: int

    @property
    def pages(self) -> int:
        return pfn_up(self.nbytes)


class PageSink(Protocol):
    """Where a backend releases free pages at handoff (the page-allocator model)."""

    def free_run(self, *, node: int, start_pfn: int, end_pfn: int, order: int) -> None:
        """Release ``[start_pfn, end_pfn)`` to ``node``'s free lists.

        ``order`` is the chunk order the kernel routine used for this run (0 for single
        pages, 5 for 32-page words on 32-bit ...): the buddy state does not depend on it, the
        trace and the statistics do.
        """
        ...


# --------------------------------------------------------------------------------------------
# The machine file (docs/ARCHITECTURE.md, "The machine file"); loaded by bootemu.machine


@dataclass(frozen=True, order=True)
class E820Entry:
    """One firmware memory-map entry: bytes ``[start, end)`` of numeric e820 ``type``."""

    start: int
    end: int
    type: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class NumaMemory:
    """One SRAT-style memory-affinity entry: bytes ``[start, end)`` reside on ``node``."""

    node: int
    start: int
    end: int


@dataclass(frozen=True)
class WorkloadOp:
    """An extra early request from the machine file's ``[[workload]]`` list, run in order.

    ``op`` is ``"alloc"`` (``size``, ``align``, ``goal``, ``node``, ``wrapper``), ``"reserve"``
    (``addr``, ``size``, ``node``, ``exclusive``) or ``"free"`` (``addr``, ``size``, ``node``).
    """

    op: str
    size: int
    align: int = 0
    goal: int = 0
    node: int | None = None
    addr: int | None = None
    wrapper: str | None = None
    exclusive: bool = False
    label: str = ""


@dataclass(frozen=True)
class KernelSpec:
    """The ``[kernel]`` table: profile, command line, highmem model, arch-specific config.

    ``config`` holds the remaining keys of ``[kernel]`` (sizes already parsed to integers);
    each arch documents and validates the keys it reads (``image_start``, ``initrd_size`` ...).
    """

    profile: str = "2.6.25"
    cmdline: str = ""
    highmem: str | None = None
    config: tuple[tuple[str, int | str | bool], ...] = ()

    def get(self, key: str, default: int | str | bool | None = None) -> int | str | bool | None:
        for k, v in self.config:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Machine:
    """A machine file, validated. ``source`` names where it came from, for error messages.

    ``[machine]`` and ``[[workload]]`` are the core's; the other tables are the arch's,
    validated against its ``MACHINE_SCHEMA`` (:mod:`bootemu.schema`): ``kernel``, ``e820`` and
    ``numa`` hold the tables of the x86 family, ``tables`` every other arch table, converted
    (``machine.tables["dt"]["memory"][0]["reg"]``). ``raw`` keeps the arch tables as the file
    wrote them (None for a machine built in code), ``validated_for`` the arch whose schema
    checked them (None: not yet, its plugin was not installed when the file was loaded).
    """

    name: str
    arch: str
    allocator: str
    kernel: KernelSpec
    e820: tuple[E820Entry, ...]
    numa: tuple[NumaMemory, ...] = ()
    workload: tuple[WorkloadOp, ...] = ()
    source: str = "<memory>"
    description: str = ""
    tables: dict[str, Any] = field(default_factory=dict, hash=False)
    raw: dict[str, Any] | None = field(default=None, hash=False, compare=False, repr=False)
    validated_for: str | None = field(default=None, hash=False, compare=False, repr=False)
