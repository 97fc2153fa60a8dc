"""The machine-file tables x86_32 reads, declared for the core (:mod:`bootemu.schema`).

``[kernel]``: ``profile`` (one of the arch's profiles, default ``"2.6.25"``), ``cmdline``,
``highmem`` and every key of :class:`bootemu_arches.x86_32.config.Config` (booleans for the
``_BOOL_KEYS``, a string or ``false`` for the SMBIOS ``_TEXT_KEYS``, sizes for the rest; their
meaning is in :mod:`bootemu_arches.x86_32.config`), plus
``debug_bootmem`` (CONFIG_DEBUG_BOOTMEM, read by the bootmem backend).
``[[firmware.e820]]``: the BIOS map. x86_32 has no SRAT: ``[[numa.memory]]`` is unknown here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from bootemu_arches.x86_32.config import _BOOL_KEYS, _TEXT_KEYS, HIGHMEM_CHOICES, Config

from bootemu.models import BootemuError
from bootemu.schema import E820_ENTRIES, Bool, Custom, Enum, Field, Schema, Size, Str, Table
from bootemu.units import parse_size


def _text_or_false(value: Any) -> str | bool:
    """An SMBIOS string, or ``false``: the structure is absent (kept as written)."""
    if value is False or isinstance(value, str):
        return value
    raise ValueError(f"expected a string or false, got {value!r}")


def _chassis_type(value: Any) -> int | bool:
    """A number, or ``false``: the SMBIOS field is absent (``dmi_chassis_type``)."""
    if value is False:
        return False
    try:
        return parse_size(value, "")
    except BootemuError as exc:
        raise ValueError(str(exc).removeprefix(": ")) from None


DEFAULT_PROFILE = "2.6.25"

#: A Config field's annotation -> its machine-file field (a new key declares itself by its type).
_BY_TYPE = {
    "int": Size,
    "bool": Bool,
    "str | bool": lambda: Custom(_text_or_false),
    "int | bool": lambda: Custom(_chassis_type),
}


def _field(name: str, annotation: str) -> Field:
    if name in _TEXT_KEYS:
        return Custom(_text_or_false)
    if name in _BOOL_KEYS:
        return Bool()
    try:
        return _BY_TYPE[annotation]()
    except KeyError:  # a programming error in Config, caught by any test that imports us
        raise TypeError(f"x86_32 Config.{name}: no machine-file field for {annotation!r}") from None


def machine_schema(profiles: Sequence[str]) -> Schema:
    """The tables of an x86_32 machine file, for the arch's ``profiles``."""
    kernel: dict[str, Field] = {
        "profile": Enum(*profiles, what="profile", default=DEFAULT_PROFILE),
        "cmdline": Str(default=""),
        "highmem": Enum(*HIGHMEM_CHOICES, what="highmem model", doc='default "64G"'),
        "debug_bootmem": Bool(doc="CONFIG_DEBUG_BOOTMEM (bootmem prints every call)"),
    }
    for f in fields(Config):
        if f.name not in kernel:
            kernel[f.name] = _field(f.name, str(f.type))
    return {"kernel": Table(**kernel), "firmware": Table(e820=E820_ENTRIES)}
