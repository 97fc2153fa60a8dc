"""The real kernel's calls as a replay reads them (see :mod:`bootemu.replay`).

- :func:`extra_calls`: what :func:`bootemu.importers.trace.read_trace` leaves to the replay:
  memblock's ``reserved[...]`` dump, the RFC's ``map @ pfn`` line, x86_64's ``Bootmem setup
  node`` lines.
- :func:`request_for`: the :class:`~bootemu.models.AllocRequest` a traced allocation is, on
  whatever backend serves it.
- :func:`import_log`: the log's machine, as import-dmesg reads it (with the kernel's build
  artifacts when given).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bootemu.importers import import_dmesg, strip_dmesg_prefix
from bootemu.importers.trace import TraceCall, read_trace
from bootemu.models import AllocRequest, BootemuError, Machine, pfn_up

__all__ = [
    "TracedLog",
    "import_log",
    "bitmap_bytes",
    "extra_calls",
    "read_calls",
    "real_memory_line",
    "request_for",
    "traced_backend",
]

#: The entry points only the RFC's bootmem2 prints (tools/trace-rfc-bootmem2.patch).
RFC_NAMES = frozenset({"register_block", "alloc_node", "alloc_low_node", "free", "reserve"})

#: mm/memblock.c memblock_dump(): `` reserved[0x2]\t[0x...-0x...], 0x... bytes flags: 0x0``.
_DUMP = re.compile(r"^\s*reserved\[0x[0-9a-f]+\]\s+\[0x([0-9a-f]+)-0x([0-9a-f]+)\]")
#: The RFC's bootmem_setup() printk: ``bootmem: 229376 pages on 1 block(s) - map @ pfn 266``.
_RFC_MAP = re.compile(r"^bootmem: (\d+) pages on \d+ block\(s\) - map @ pfn ([0-9a-f]+)")
#: arch/x86/mm/numa_64.c setup_node_bootmem(): ``Bootmem setup node 1 00000000800...-...``.
_NODE_SETUP = re.compile(r"^Bootmem setup node (\d+) ([0-9a-f]+)-([0-9a-f]+)")

# --------------------------------------------------------------------------------------------
# Reading the log


def extra_calls(text: str) -> tuple[list[TraceCall], dict[int, int], dict[int, tuple[int, int]]]:
    """What :func:`read_trace` leaves to the replay: memblock's ``reserved[...]`` dump lines
    (as reserve calls named ``memblock_dump``), the RFC's ``map @ pfn`` (pfn -> pages), and
    x86_64's ``Bootmem setup node`` lines (node -> byte span)."""
    dumps: list[TraceCall] = []
    rfc_maps: dict[int, int] = {}
    spans: dict[int, tuple[int, int]] = {}
    seen_version = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = strip_dmesg_prefix(raw).rstrip()
        if line.startswith("Linux version "):
            if seen_version:
                break
            seen_version = True
        elif m := _DUMP.match(line):
            lo, hi = int(m.group(1), 16), int(m.group(2), 16) + 1
            dumps.append(
                TraceCall(
                    line=lineno,
                    name="memblock_dump",
                    op="reserve",
                    addr=lo,
                    size=hi - lo,
                    text=line,
                )
            )
        elif m := _RFC_MAP.match(line):
            rfc_maps[int(m.group(2), 16)] = int(m.group(1))
        elif m := _NODE_SETUP.match(line):
            spans[int(m.group(1))] = (int(m.group(2), 16), int(m.group(3), 16))
    return dumps, rfc_maps, spans


def real_memory_line(text: str) -> str | None:
    for raw in text.splitlines():
        line = strip_dmesg_prefix(raw).strip()
        if line.startswith("Memory: ") and "available" in line:
            return line
    return None


def bitmap_bytes(pages: int) -> int:
    """mm/bootmem.c get_mapsize(): one bit per page, rounded up to whole longs (8 bytes
    covers both word sizes) - used only to compare a backend's bitmap with the real one."""
    return (pages + 63) // 64 * 8


# --------------------------------------------------------------------------------------------
# Calls -> requests


def request_for(call: TraceCall, node_starts: dict[int, int]) -> AllocRequest:
    """The AllocRequest a traced allocation is, whatever backend serves it (module doc)."""
    name, size, align, goal = call.name, call.size or 0, call.align or 0, call.goal or 0
    nid = call.nid if call.nid is not None and call.nid >= 0 else None
    if call.core_starts and nid is not None:  # x86_64 2.6.25: the first bitmap tried
        nid = node_starts.get(call.core_starts[0], nid)
    caller = call.caller or name
    max_addr: int | None = None
    if name.startswith("memblock_"):
        max_addr = call.limit or 0
        if name == "memblock_phys_alloc_range":  # an explicit [start, end), NULL on failure
            wrapper, node = "__alloc_bootmem_nopanic", None
        elif name == "memblock_alloc_exact_nid_raw" and nid is not None:  # no node fallback
            wrapper, node = "__alloc_bootmem_low_node", nid
        else:
            wrapper, node = ("__alloc_bootmem_node" if nid is not None else "__alloc_bootmem"), nid
    elif name in ("alloc_node", "alloc_low_node"):  # the RFC: bootmem_alloc_node(nid, ...)
        low = name == "alloc_low_node"
        wrapper = "__alloc_bootmem" + ("_low" if low else "") + ("_node" if nid is not None else "")
        node = nid
        max_addr = None if low else (call.limit or 0)
    else:  # 2.6.25: the entry point printed is the wrapper itself.
        wrapper = name
        node = (0 if nid is None else nid) if name.endswith("_node") else None
    return AllocRequest(
        size=size,
        align=align,
        goal=goal,
        wrapper=wrapper,
        node=node,
        caller=caller,
        max_addr=max_addr,
    )


def traced_backend(calls: list[TraceCall]) -> str | None:
    """The backend the traced kernel ran, from the entry points it printed: memblock (6.1),
    the RFC's bootmem2 (``bootmem2-rfc1``, the posted code) or classic 2.6.25 bootmem."""
    names = {c.name for c in calls}
    if any(n.startswith("memblock_") for n in names):
        return "memblock"
    if names & RFC_NAMES:
        return "bootmem2-rfc1"
    if names:
        return "bootmem"
    return None


@dataclass(frozen=True)
class TracedLog:
    """A log's traced calls with what the replay needs besides them.

    ``calls``: :func:`read_trace` plus memblock's dump lines, in log order; ``real_maps``:
    ``(node or None, first pfn, pages)`` of each bitmap the real kernel set up (2008
    ``init_bootmem*`` lines, the RFC's ``map @ pfn``); ``node_starts``: x86_64's bitmap start
    address -> node (``Bootmem setup node`` lines), to read ``core bdata_start``.
    """

    calls: list[TraceCall]
    real_maps: list[tuple[int | None, int, int]]
    node_starts: dict[int, int]


def read_calls(text: str) -> TracedLog:
    """The traced calls of a log and the real kernel's bitmaps (see :class:`TracedLog`)."""
    dumps, rfc_maps, spans = extra_calls(text)
    calls = sorted([*read_trace(text), *dumps], key=lambda c: c.line)
    real_maps: list[tuple[int | None, int, int]] = []
    inits = [c for c in calls if c.op == "init"]
    for i, c in enumerate(inits):
        if c.mapstart is None:
            continue
        pages = c.pages if c.pages is not None else (c.end or 0) - (c.start or 0)
        # x86_64 prints nid=0 for every node (pgdat->node_id is set later): the setup lines
        # name the nodes in the order their bitmaps are set up.
        if len(spans) == len(inits):
            node: int | None = sorted(spans)[i]
        else:
            node = i if c.name.endswith("_node") else 0
        real_maps.append((node, c.mapstart, pfn_up(bitmap_bytes(pages))))
    for pfn, pages in rfc_maps.items():
        real_maps.append((None, pfn, pfn_up(bitmap_bytes(pages))))
    node_starts = {start: node for node, (start, _end) in spans.items()}
    return TracedLog(calls, real_maps, node_starts)


def import_log(
    text: str,
    *,
    source: str,
    overrides: Sequence[str] = (),
    kconfig: Any = None,
    system_map: Any = None,
) -> Machine:
    """import-dmesg, with the kernel's parsed .config and System.map when given and when this
    import-dmesg reads them (a .config it cannot read is bad usage; a System.map is only
    extra: explain reads it itself for the image sections)."""
    import inspect

    params = inspect.signature(import_dmesg).parameters
    extra: dict[str, Any] = {}
    if kconfig is not None:
        if "kconfig" not in params:
            raise BootemuError("--kconfig: this import-dmesg does not read a kernel .config")
        extra["kconfig"] = kconfig
    if system_map is not None and "system_map" in params:
        extra["system_map"] = system_map
    machine, _notes = import_dmesg(
        text, source=source, arch=None, profile=None, overrides=overrides, **extra
    )
    return machine
