"""The machine-file tables numa64 reads, declared for the core (:mod:`bootemu.schema`).

``[kernel]``: ``profile`` (default ``"2.6.25"``), ``cmdline``, ``debug_bootmem`` and the keys
of :class:`arches.numa64.Config` (meaning in :mod:`arches.numa64`); ``[[firmware.e820]]``
the BIOS map; ``[[numa.memory]]`` the SRAT memory-affinity entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bootemu.schema import (
    E820_ENTRIES,
    NUMA_MEMORY,
    Bool,
    Custom,
    Enum,
    Field,
    Schema,
    Size,
    Str,
    Table,
)

DEFAULT_PROFILE = "2.6.25"


def _cpu_nodes(value: Any) -> str:
    """``"0,0,1,1"`` (a single node may be written as an integer)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a comma-separated list of nodes, got {value!r}")
    return str(value)


def machine_schema(
    profiles: Sequence[str],
    free_ram: Sequence[str],
    srat_check: Sequence[str],
    size_keys: Sequence[str],
) -> Schema:
    """The tables of a numa64 machine file."""
    kernel: dict[str, Field] = {
        "profile": Enum(*profiles, what="profile", default=DEFAULT_PROFILE),
        "cmdline": Str(default=""),
        "debug_bootmem": Bool(doc="CONFIG_DEBUG_BOOTMEM (bootmem prints every call)"),
        "free_ram": Enum(*free_ram, what="free_ram"),
        "srat_check": Enum(*srat_check, what="srat_check"),
        "cpu_nodes": Custom(_cpu_nodes),
    }
    kernel.update((key, Size()) for key in size_keys)
    return {
        "kernel": Table(**kernel),
        "firmware": Table(e820=E820_ENTRIES),
        "numa": Table(memory=NUMA_MEMORY),
    }
