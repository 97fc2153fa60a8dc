"""Reading ``/sys/firmware/memmap``: the firmware map the running kernel was given."""

from __future__ import annotations

import re
from pathlib import Path

from bootemu import e820
from bootemu.models import BootemuError, E820Entry

#: arch/x86/kernel/e820.c e820_type_to_string() (6.1), the ``type`` file of each entry, matched
#: case-insensitively: 2.6.2x-3.x kernels print ``reserved`` in lower case for every type
#: they have no name for. ``System RAM (kernel)`` is E820_TYPE_RESERVED_KERN in kernels that
#: name it apart (a later patch); it is RAM. For ``Unknown E820 type`` the kernel hides the
#: number, and treats such memory as it treats reserved memory (not RAM): imported as reserved.
MEMMAP_TYPES: dict[str, int] = {
    "System RAM": e820.E820_RAM,
    "System RAM (kernel)": e820.E820_RAM,
    "Reserved": e820.E820_RESERVED,
    "ACPI Tables": e820.E820_ACPI,
    "ACPI Non-volatile Storage": e820.E820_NVS,
    "Unusable memory": e820.E820_UNUSABLE,
    "Persistent Memory (legacy)": e820.E820_PRAM,
    "Persistent Memory": e820.E820_PMEM,
    "Soft Reserved": e820.E820_SOFT_RESERVED,
    "Unknown E820 type": e820.E820_RESERVED,
}
_MEMMAP_TYPES_LOWER = {k.lower(): v for k, v in MEMMAP_TYPES.items()}


def _read_sysfs(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise BootemuError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise BootemuError(f"{path}: cannot read: {reason}") from None


def _read_hex(path: Path) -> int:
    """drivers/firmware/memmap.c start_show() / end_show(): ``0x%llx``."""
    text = _read_sysfs(path)
    if not re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        raise BootemuError(f"{path}: expected a hex address like 0x9fbff, got {text!r}")
    return int(text, 16)


def read_memmap(directory: Path) -> list[E820Entry]:
    """The firmware map in ``directory`` (``N/start``, ``N/end``, ``N/type``), in N order.

    drivers/firmware/memmap.c: one directory per entry, numbered from 0 in the order
    firmware_map_add_early() was called (the e820 table's order); ``end`` is inclusive.
    Entries are sorted numerically (``10`` after ``9``). Missing files, bad numbers and unknown
    type strings raise BootemuError naming the file.
    """
    if not directory.exists():
        raise BootemuError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise BootemuError(f"{directory}: not a directory")
    numbered = sorted(
        (int(p.name), p) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()
    )
    if not numbered:
        raise BootemuError(f"{directory}: no entries (expected N/start, N/end, N/type)")
    entries: list[E820Entry] = []
    for _, entry_dir in numbered:
        start = _read_hex(entry_dir / "start")
        last = _read_hex(entry_dir / "end")
        if last < start:
            raise BootemuError(f"{entry_dir / 'end'}: {last:#x} is below start {start:#x}")
        type_text = _read_sysfs(entry_dir / "type")
        etype = _MEMMAP_TYPES_LOWER.get(type_text.lower())
        if etype is None:
            known = ", ".join(repr(k) for k in MEMMAP_TYPES)
            raise BootemuError(f"{entry_dir / 'type'}: unknown type {type_text!r} (known: {known})")
        entries.append(E820Entry(start, last + 1, etype))
    return entries
