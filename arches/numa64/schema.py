"""The machine-file tables numa64 reads, declared for the core (:mod:`bootemu.schema`).

``[kernel]``: ``profile`` (default ``"2.6.25"``), ``cmdline``, ``debug_bootmem`` and the keys
of :class:`bootemu_arches.numa64.Config` (meaning in :mod:`bootemu_arches.numa64`);
``[[firmware.e820]]`` the BIOS map; ``[[numa.memory]]`` the SRAT memory-affinity entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import Field as Field_
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
    profiles: Sequence[str], config_fields: Sequence[Field_], choices: Mapping[str, Sequence[str]]
) -> Schema:
    """The tables of a numa64 machine file: the ``[kernel]`` keys are the fields of the arch's
    Config, each declared by its type (``int``: a size, ``bool``: a boolean), ``choices``
    naming the enumerations; ``cpu_nodes`` is text."""
    kernel: dict[str, Field] = {
        "profile": Enum(*profiles, what="profile", default=DEFAULT_PROFILE),
        "cmdline": Str(default=""),
        "debug_bootmem": Bool(doc="CONFIG_DEBUG_BOOTMEM (bootmem prints every call)"),
    }
    for f in config_fields:
        if f.name in choices:
            kernel[f.name] = Enum(*choices[f.name], what=f.name)
        elif f.name == "cpu_nodes":
            kernel[f.name] = Custom(_cpu_nodes)
        elif str(f.type) in ("int", "bool"):
            kernel[f.name] = Size() if str(f.type) == "int" else Bool()
        else:  # a programming error in Config, caught by any test that imports the arch
            raise TypeError(f"numa64 Config.{f.name}: no machine-file field for {f.type!r}")
    return {
        "kernel": Table(**kernel),
        "firmware": Table(e820=E820_ENTRIES),
        "numa": Table(memory=NUMA_MEMORY),
    }
