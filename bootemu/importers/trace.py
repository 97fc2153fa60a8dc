"""The boot-allocator calls a real kernel printed: ``bootmem_trace:`` and ``memblock=debug``.

Two kinds of traced log carry one line per boot-allocator call:

- the 2008 kernels of ``real-boots-2008/`` (2.6.25 i386 and x86_64, v2.6.26-rc1 with the
  bootmem2 RFC), patched to print a ``bootmem_trace:`` line per public entry point
  (``tools/trace-2.6.25-bootmem.patch``, ``tools/trace-rfc-bootmem2.patch``);
- Linux 6.1 booted with ``memblock=debug``: ``memblock_reserve:``, ``memblock_add:``,
  ``memblock_phys_free:`` lines (mm/memblock.c, 6.1, each printed with ``%pS`` of its caller)
  and, for an allocation, a ``memblock_alloc_try_nid: N bytes align=... nid=... from=...
  max_addr=...`` line followed by the ``memblock_reserve:`` of the range it chose.

:func:`read_trace` turns either into a list of :class:`TraceCall`, in the kernel's order, one
per call, with integers (addresses and sizes in bytes). An allocation's ``result`` is the
physical address the kernel returned (0 = failed, as the 2008 trace prints it).

On x86_64 2.6.25 the trace also prints ``bootmem_trace:  core bdata_start=S size=N = A`` from
``__alloc_bootmem_core()`` *before* the wrapper's own line (the inner call returns first): it is
attached to the next allocation line as ``core_starts`` (the ``node_boot_start`` of each node
bitmap tried, in order; the last one served it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bootemu.importers.bootlog import strip_dmesg_prefix

__all__ = ["TraceCall", "read_trace"]

#: The ops of :class:`TraceCall`: what the call does to the allocator, whatever its name.
OPS = ("init", "register", "free", "reserve", "alloc", "free_all", "add")

_HEX_FIELDS = {
    "addr",
    "size",
    "align",
    "goal",
    "limit",
    "mapstart",
    "start",
    "end",
    "flags",
    "bdata_start",
}
_FIELD = re.compile(r"(\w+)=(-?[0-9a-fx]+)")
_B_LINE = re.compile(r"^bootmem_trace:\s+(\w+)\s*(.*)$")

#: 2008 trace entry points to their op.
_B_OPS = {
    "init_bootmem": "init",
    "init_bootmem_node": "init",
    "register_block": "register",
    "free_bootmem": "free",
    "free_bootmem_node": "free",
    "free": "free",
    "reserve_bootmem": "reserve",
    "reserve_bootmem_node": "reserve",
    "reserve": "reserve",
    "__alloc_bootmem": "alloc",
    "__alloc_bootmem_nopanic": "alloc",
    "__alloc_bootmem_node": "alloc",
    "__alloc_bootmem_low": "alloc",
    "__alloc_bootmem_low_node": "alloc",
    "alloc_node": "alloc",
    "alloc_low_node": "alloc",
    "free_all_bootmem": "free_all",
    "free_all_bootmem_node": "free_all",
}

_ADDR = r"0x([0-9a-f]+)"
_M_RANGE = re.compile(
    rf"^(memblock_reserve|memblock_add|memblock_phys_free|memblock_add_node|"
    rf"memblock_free): \[{_ADDR}-{_ADDR}\] (\S+)"
)
_M_ALLOC = re.compile(
    rf"^(memblock_\w+): (\d+) bytes align={_ADDR}(?: nid=(-?\d+))? "
    rf"from={_ADDR} max_addr={_ADDR} (\S+)"
)


@dataclass(frozen=True)
class TraceCall:
    """One boot-allocator call as the real kernel printed it.

    ``name`` is the entry point printed (``__alloc_bootmem_node``, ``reserve``,
    ``memblock_alloc_try_nid`` ...), ``op`` what it does (:data:`OPS`). ``mapstart``, ``start``
    and ``end`` are pfns (as printed); every other number is in bytes. Fields a line does not
    carry are None. ``line`` is the 1-based line number in the log.
    """

    line: int
    name: str
    op: str
    nid: int | None = None
    addr: int | None = None
    size: int | None = None
    align: int | None = None
    goal: int | None = None
    limit: int | None = None
    result: int | None = None
    caller: str | None = None
    pages: int | None = None
    mapstart: int | None = None
    start: int | None = None
    end: int | None = None
    flags: int | None = None
    core_starts: tuple[int, ...] = field(default=())
    text: str = ""


def read_trace(text: str) -> list[TraceCall]:
    """Every traced boot-allocator call of a log, in order (only the first boot of a capture).

    A log with neither kind of line gives an empty list.
    """
    calls: list[TraceCall] = []
    core: list[int] = []
    pending: TraceCall | None = None  # a memblock allocation waiting for its reserve line
    seen_version = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = strip_dmesg_prefix(raw).rstrip()
        if line.startswith("Linux version "):
            if seen_version:  # a second boot in the same capture
                break
            seen_version = True
            continue
        if line.startswith("bootmem_trace:"):
            call = _bootmem_line(lineno, line, core)
            if call is not None:
                calls.append(call)
            continue
        if m := _M_ALLOC.match(line):
            name, size, align, nid, lo, hi, caller = m.groups()
            pending = TraceCall(
                line=lineno,
                name=name,
                op="alloc",
                nid=int(nid) if nid is not None else None,
                size=int(size),
                align=int(align, 16),
                goal=int(lo, 16),
                limit=int(hi, 16),
                caller=caller,
                text=line,
            )
            continue
        if m := _M_RANGE.match(line):
            name, lo, hi, caller = m.groups()
            base, size = int(lo, 16), int(hi, 16) + 1 - int(lo, 16)
            if (
                pending is not None
                and name == "memblock_reserve"
                and caller.startswith("memblock_alloc_range_nid")
            ):
                calls.append(_with(pending, result=base))
                pending = None
                continue
            op = {
                "memblock_reserve": "reserve",
                "memblock_phys_free": "free",
                "memblock_free": "free",
            }.get(name, "add")
            calls.append(
                TraceCall(
                    line=lineno, name=name, op=op, addr=base, size=size, caller=caller, text=line
                )
            )
    if pending is not None:  # an allocation that failed prints no reserve line
        calls.append(_with(pending, result=0))
    return calls


def _bootmem_line(lineno: int, line: str, core: list[int]) -> TraceCall | None:
    m = _B_LINE.match(line)
    if not m:
        return None
    name, rest = m.groups()
    fields = dict(_FIELD.findall(rest.split(" = ")[0]))
    result = None
    if " = " in rest:
        result = int(rest.split(" = ", 1)[1].split()[0], 16)
    caller = None
    if (cm := re.search(r"caller=([0-9a-f]+)", rest)) is not None:
        caller = cm.group(1)
    if name == "core":  # __alloc_bootmem_core() of x86_64 2.6.25: belongs to the next line
        core.append(int(fields["bdata_start"], 16))
        return None
    op = _B_OPS.get(name)
    if op is None:
        return None

    def num(key: str) -> int | None:
        if key not in fields:
            return None
        # init_bootmem prints its page count with %lx, free_all_bootmem(_node) with %lu; nid,
        # bid, flags and exclusive are %d; everything else is %lx.
        hexa = key in _HEX_FIELDS or (key == "pages" and op == "init")
        return int(fields[key], 16) if hexa else int(fields[key], 10)

    call = TraceCall(
        line=lineno,
        name=name,
        op=op,
        nid=num("nid") if "nid" in fields else num("bid"),
        addr=num("addr"),
        size=num("size"),
        align=num("align"),
        goal=num("goal"),
        limit=num("limit"),
        result=result,
        caller=caller,
        pages=num("pages"),
        mapstart=num("mapstart"),
        start=num("start"),
        end=num("end"),
        flags=num("flags") if "flags" in fields else num("exclusive"),
        core_starts=tuple(core) if op == "alloc" else (),
        text=line,
    )
    if op == "alloc":
        core.clear()
    return call


def _with(call: TraceCall, **changes: int) -> TraceCall:
    from dataclasses import replace

    return replace(call, **changes)
