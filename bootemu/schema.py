"""Declarative schemas for the arch-owned tables of a machine file (public; docs/plugins.md).

The core reads ``[machine]`` and ``[[workload]]``; every other table belongs to the selected
arch, which declares it in its plugin class as ``MACHINE_SCHEMA``: a mapping from top-level
table name to a :class:`Table` or :class:`Tables` (array of tables) of fields::

    MACHINE_SCHEMA = {
        "kernel": Table(profile=Enum("6.1", default="6.1"), cmdline=Str(default="")),
        "dt": Table(memory=Tables(reg=Size(), size=Size(), min_items=1)),
    }

:func:`validate` checks a parsed TOML document against it: unknown tables and keys, missing
required keys, wrong types are :class:`~bootemu.models.BootemuError` naming the file and the
key (``m.toml: dt.memory[1].size: not a size``). A value is converted only as its field says
(:class:`Size` parses ``"512M"``; a :class:`Str` stays the text it is). Optional fields
without a default are left out of the result when absent.

Ready-made fields for the x86 family: :data:`E820_ENTRIES` (``[[firmware.e820]]``) and
:data:`NUMA_MEMORY` (``[[numa.memory]]``, SRAT-style affinity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bootemu import e820
from bootemu.models import BootemuError
from bootemu.units import parse_size

#: Marks a field without a default: it must be given.
REQUIRED: Any = object()


def kind_of(value: Any) -> str:
    """``"an integer"``, ``"a table"`` ...: the TOML kind of ``value``, for messages."""
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


class Field:
    """One key of a table. ``default``: :data:`REQUIRED`, None (optional, left out when
    absent) or a value; ``doc`` says what it means (listed by docs and ``--help`` tools)."""

    def __init__(self, *, default: Any = None, doc: str = "", missing: str = "missing") -> None:
        self.default = default
        self.doc = doc
        self.missing = missing

    def fail(self, source: str, key: str, what: str) -> BootemuError:
        return BootemuError(f"{source}: {key}: {what}")

    def parse(self, value: Any, source: str, key: str) -> Any:
        """The validated, converted value; raise :meth:`fail` for bad input."""
        raise NotImplementedError


class Size(Field):
    """A size or address: an integer or a ``memparse()`` string (``"512M"``, ``"0x1000"``)."""

    def parse(self, value: Any, source: str, key: str) -> int:
        return parse_size(value, f"{source}: {key}")


class Int(Field):
    """An integer (not a boolean), at least ``min`` when given; ``what`` names it in errors."""

    def __init__(self, *, min: int | None = None, what: str = "an integer", **kw: Any) -> None:
        super().__init__(**kw)
        self.min, self.what = min, what

    def parse(self, value: Any, source: str, key: str) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or (self.min is not None and value < self.min):
            bound = f" >= {self.min}" if self.min is not None else ""
            raise self.fail(source, key, f"expected {self.what}{bound}, got {value!r}")
        return value


class Str(Field):
    """A string, kept as written."""

    def parse(self, value: Any, source: str, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(source, key, f"expected a string, got {kind_of(value)}")
        return value


class Bool(Field):
    """``true`` or ``false``."""

    def parse(self, value: Any, source: str, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(source, key, f"expected true or false, got {value!r}")
        return value


class Enum(Str):
    """One string of ``choices``; ``what`` names the kind in errors (``"highmem model"``)."""

    def __init__(self, *choices: str, what: str = "value", **kw: Any) -> None:
        super().__init__(**kw)
        self.choices, self.what = choices, what

    def parse(self, value: Any, source: str, key: str) -> str:
        text = super().parse(value, source, key)
        if text not in self.choices:
            must = ", ".join(self.choices)
            raise self.fail(source, key, f"unknown {self.what} {text!r} (must be {must})")
        return text


class Custom(Field):
    """A value checked by ``parse(value) -> converted``, which raises ValueError(reason)."""

    def __init__(self, parse: Callable[[Any], Any], **kw: Any) -> None:
        super().__init__(**kw)
        self._parse = parse

    def parse(self, value: Any, source: str, key: str) -> Any:
        try:
            return self._parse(value)
        except ValueError as exc:
            raise self.fail(source, key, str(exc)) from None


Check = Callable[[dict[str, Any], str, str], dict[str, Any]]


class Table(Field):
    """A table of ``fields``; ``check(values, source, key)`` may add cross-key rules and
    return the values to keep (it runs after every field parsed)."""

    def __init__(self, *, check: Check | None = None, doc: str = "", **fields: Field) -> None:
        super().__init__(default=None, doc=doc)
        self.fields, self.check = fields, check

    def parse(self, value: Any, source: str, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(source, key, f"expected a table, got {kind_of(value)}")
        for k in value:
            if k not in self.fields:
                raise self.fail(
                    source, f"{key}.{k}", f"unknown key (known: {', '.join(self.fields)})"
                )
        out: dict[str, Any] = {}
        for name, f in self.fields.items():
            where = f"{key}.{name}"
            if name in value:
                out[name] = f.parse(value[name], source, where)
            elif isinstance(f, (Table, Tables)):
                out[name] = f.parse({} if isinstance(f, Table) else [], source, where)
            elif f.default is REQUIRED:
                raise self.fail(source, where, f.missing)
            elif f.default is not None:
                out[name] = f.default
        return self.check(out, source, key) if self.check else out


class Tables(Field):
    """An array of tables (``[[dt.memory]]``), each holding ``fields``; ``min_items`` of them
    at least (``missing`` says why when there are fewer)."""

    def __init__(
        self,
        *,
        check: Check | None = None,
        min_items: int = 0,
        missing: str = "missing",
        doc: str = "",
        **fields: Field,
    ) -> None:
        super().__init__(default=None, doc=doc, missing=missing)
        self.item = Table(check=check, **fields)
        self.min_items = min_items

    def parse(self, value: Any, source: str, key: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(
                source, key, f"expected an array of tables ([[{key}]]), got {kind_of(value)}"
            )
        if len(value) < self.min_items:
            raise self.fail(source, key, self.missing)
        return [self.item.parse(v, source, f"{key}[{i}]") for i, v in enumerate(value)]


Schema = Mapping[str, Table | Tables]


def validate(
    doc: Mapping[str, Any], schema: Schema, source: str, *, core: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Validate the arch's tables of ``doc`` against ``schema``; the converted values by table.

    ``core`` names the tables the core reads (they are skipped here, and listed as known in
    the unknown-table error). A table of the schema that the file leaves out is validated as
    empty, so its defaults and its required keys apply.
    """
    known = sorted({*core, *schema})
    for k in doc:
        if k not in known:
            raise BootemuError(f"{source}: {k}: unknown table (known: {', '.join(known)})")
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        empty: Any = {} if isinstance(spec, Table) else []
        out[name] = spec.parse(doc.get(name, empty), source, name)
    return out


# --------------------------------------------------------------------------------------------
# Ready-made tables for arches that read a firmware e820 map or an SRAT-style affinity table


def byte_range(values: dict[str, Any], source: str, key: str) -> dict[str, Any]:
    """``start`` plus exclusive ``end`` or ``size`` -> ``start`` and ``end`` (end > start)."""
    start = values["start"]
    if "end" in values and "size" in values:
        raise BootemuError(f"{source}: {key}: give end or size, not both")
    if "size" in values:
        if values["size"] == 0:
            raise BootemuError(f"{source}: {key}.size: zero size")
        end = start + values.pop("size")
    elif "end" in values:
        end = values["end"]
        if end <= start:
            raise BootemuError(f"{source}: {key}.end: end {end:#x} <= start {start:#x}")
    else:
        raise BootemuError(f"{source}: {key}.end: missing (give end, exclusive, or size)")
    if end > 1 << 64:
        raise BootemuError(
            f"{source}: {key}: range ends at {end:#x}, beyond the 64-bit address space"
        )
    values["end"] = end
    return values


def _e820_type(value: Any) -> int:
    if isinstance(value, str):
        if value in e820.TYPE_BY_NAME:
            return e820.TYPE_BY_NAME[value]
        known = ", ".join(e820.TYPE_BY_NAME)
        raise ValueError(f"unknown e820 type {value!r} (known: {known}, or 1..{e820.MAX_TYPE})")
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= e820.MAX_TYPE:
            return value
        raise ValueError(f"e820 type {value} out of range 1..{e820.MAX_TYPE}")
    raise ValueError(f"expected an e820 type name or number, got {kind_of(value)}")


def range_fields() -> dict[str, Field]:
    """``start`` (required), ``end`` / ``size`` (one of them): use with ``check=byte_range``."""
    return {"start": Size(default=REQUIRED), "end": Size(), "size": Size()}


#: ``[[firmware.e820]]``: the BIOS memory map (start, end or size, type name or number).
E820_ENTRIES = Tables(
    check=byte_range,
    min_items=1,
    missing="missing (a machine needs its firmware memory map)",
    doc="the firmware memory map, one entry per BIOS-e820 line",
    **range_fields(),
    type=Custom(_e820_type, default=REQUIRED, doc="usable, reserved, ACPI data ... or 1..N"),
)

#: ``[[numa.memory]]``: SRAT-style memory affinity (node, start, end or size).
NUMA_MEMORY = Tables(
    check=byte_range,
    doc="memory affinity: bytes [start, end) reside on node",
    node=Int(min=0, what="a node number", default=REQUIRED),
    **range_fields(),
)

__all__ = [
    "E820_ENTRIES",
    "NUMA_MEMORY",
    "REQUIRED",
    "Bool",
    "Custom",
    "Enum",
    "Field",
    "Int",
    "Schema",
    "Size",
    "Str",
    "Table",
    "Tables",
    "byte_range",
    "kind_of",
    "range_fields",
    "validate",
]
