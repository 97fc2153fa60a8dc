"""Machine files: TOML → validated, frozen :class:`~bootemu.models.Machine`, and back.

The format is docs/ARCHITECTURE.md "The machine file". A machine is named by a path or by the
name of a built-in preset (``bootemu/presets/<name>.toml``, read through importlib.resources so
presets work from an installed package). ``--set KEY=VALUE`` overrides edit the parsed document
before validation. Every problem is a :class:`~bootemu.models.BootemuError` of one line that
names the file and the key (``firmware.e820[3].type``) or the line, and says what is wrong.

The core reads ``[machine]`` and ``[[workload]]`` only. Every other table belongs to the arch
the machine names: its plugin class declares them in ``MACHINE_SCHEMA``
(:mod:`bootemu.schema`), and :func:`apply_schema` validates them against it. The ``[kernel]``,
``[[firmware.e820]]`` and ``[[numa.memory]]`` tables of the x86 arches land in
``Machine.kernel`` / ``e820`` / ``numa``; any other arch table in ``Machine.tables``. When the
arch is not installed the tables wait, unvalidated, until a boot brings the arch plugin.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from bootemu import e820
from bootemu.models import (
    ALLOC_WRAPPERS,
    BootemuError,
    E820Entry,
    KernelSpec,
    Machine,
    NumaMemory,
    WorkloadOp,
)
from bootemu.schema import Schema, validate
from bootemu.units import parse_size

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11 (pyproject pulls in tomli there)
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_ALLOCATOR = "bootmem2"
WORKLOAD_OPS = ("alloc", "reserve", "free")

#: The tables the core reads; every other one is the arch's.
CORE_TABLES = ("machine", "workload")
_MACHINE_KEYS = ("allocator", "arch", "description", "name")
_WORKLOAD_KEYS = ("addr", "align", "exclusive", "goal", "label", "node", "op", "size", "wrapper")

_PRESET_DIR = "presets"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


# --------------------------------------------------------------------------------------------
# Finding and reading a machine file


def _preset_root() -> Any:
    return resources.files("bootemu").joinpath(_PRESET_DIR)


def _preset_names() -> list[str]:
    root = _preset_root()
    if not root.is_dir():
        return []
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def _read(ref: str) -> tuple[str, str, str]:
    """Resolve ``ref`` to ``(source, text, default name)``: a file path first, then a preset."""
    path = Path(ref)
    if path.is_file():
        try:
            return str(path), path.read_text(encoding="utf-8"), path.stem
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise BootemuError(f"{ref}: cannot read: {why}") from None
    if path.exists():
        raise BootemuError(f"{ref}: not a machine file (it is a directory)")
    if "/" not in ref and "\\" not in ref and ref in _preset_names():
        preset = _preset_root().joinpath(f"{ref}.toml")
        return f"bootemu/{_PRESET_DIR}/{ref}.toml", preset.read_text(encoding="utf-8"), ref
    presets = ", ".join(_preset_names()) or "none"
    raise BootemuError(f"{ref}: no such machine file or preset (presets: {presets})")


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib.loads() with its error turned into ``"<file>: line N: <message>"``."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        # tomllib parses nested arrays / inline tables recursively; a few hundred levels
        # exhaust Python's stack. No machine-file key nests more than two deep.
        line = _deepest_line(text)
        raise BootemuError(f"{source}: line {line}: arrays or inline tables nested too deeply "
                           "to read") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POSITION.match(msg)
        if m:
            raise BootemuError(f"{source}: line {m['line']}: {m['msg']}") from None
        if msg.endswith(" (at end of document)"):
            last = text.count("\n") + (0 if text.endswith("\n") else 1)
            raise BootemuError(f"{source}: line {max(last, 1)}: {msg[: -21]}") from None
        raise BootemuError(f"{source}: {msg}") from None


def _deepest_line(text: str) -> int:
    """The line where ``[`` / ``{`` nesting is deepest (strings and comments skipped roughly):
    where a too-deeply nested value is, for the error message."""
    depth = best = 0
    best_line = line = 1
    quote = ""
    for i, ch in enumerate(text):
        if ch == "\n":
            line += 1
            if quote in ("#",):
                quote = ""
        elif quote:
            if ch == quote and (quote == "'" or text[i - 1] != "\\"):
                quote = ""
        elif ch in "\"'#":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > best:
                best, best_line = depth, line
        elif ch in "]}":
            depth -= 1
    return best_line


# --------------------------------------------------------------------------------------------
# --set overrides


def _override_value(text: str) -> Any:
    """A ``--set`` value: TOML if it parses (``4096``, ``true``, ``"x"``, ``[1, 2]``), else the
    text itself. Floats are kept as text: no machine-file key takes one, and ``6.1`` is a
    profile, not a number."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text
    return text if isinstance(value, float) else value


def _apply_override(doc: dict[str, Any], item: str, source: str) -> None:
    """Set one dotted key (``kernel.highmem=64G``, ``firmware.e820.3.type=reserved``)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    where = f"{source}: --set {key or item}"
    if not sep or not key:
        raise BootemuError(f"{where}: expected KEY=VALUE")
    parts = key.split(".")
    if any(not p for p in parts):
        raise BootemuError(f"{where}: empty part in the dotted key")
    node: Any = doc
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise BootemuError(
                    f"{where}: {'.'.join(parts[:depth]) or key} has {len(node)} entries; "
                    f"{part!r} is not an index into it"
                )
            if last:
                node[int(part)] = _override_value(text)
                return
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = _override_value(text)
                return
            node = node.setdefault(part, {})
        else:
            raise BootemuError(f"{where}: {'.'.join(parts[:depth])} is not a table")


# --------------------------------------------------------------------------------------------
# Validation helpers


class _Checker:
    """Builds ``"<file>: <key>: <problem>"`` errors for one machine file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, what: str) -> BootemuError:
        return BootemuError(f"{self.source}: {key}: {what}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {_kind(value)}")
        return value

    def array_of_tables(self, value: Any, key: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, f"expected an array of tables ([[{key}]]), got {_kind(value)}")
        return value

    def known_keys(self, tbl: dict[str, Any], key: str, known: Sequence[str]) -> None:
        for k in tbl:
            if k not in known:
                where = f"{key}.{k}" if key else k
                raise self.fail(where, f"unknown key (known: {', '.join(known)})")

    def string(self, tbl: dict[str, Any], k: str, key: str, default: str | None = None) -> str:
        if k not in tbl:
            if default is None:
                raise self.fail(f"{key}.{k}", "missing")
            return default
        value = tbl[k]
        if not isinstance(value, str):
            raise self.fail(f"{key}.{k}", f"expected a string, got {_kind(value)}")
        return value

    def size(self, tbl: dict[str, Any], k: str, key: str, default: int | None = None) -> int:
        if k not in tbl:
            if default is None:
                raise self.fail(f"{key}.{k}", "missing")
            return default
        return parse_size(tbl[k], f"{self.source}: {key}.{k}")

    def node(self, tbl: dict[str, Any], key: str, *, required: bool) -> int | None:
        if "node" not in tbl:
            if required:
                raise self.fail(f"{key}.node", "missing")
            return None
        value = tbl["node"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"{key}.node", f"expected a node number >= 0, got {value!r}")
        return value


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# The tables


def _workload(doc: dict[str, Any], chk: _Checker) -> tuple[WorkloadOp, ...]:
    items = chk.array_of_tables(doc.get("workload", []), "workload")
    out = []
    for i, item in enumerate(items):
        key = f"workload[{i}]"
        chk.known_keys(item, key, _WORKLOAD_KEYS)
        op = chk.string(item, "op", key)
        if op not in WORKLOAD_OPS:
            raise chk.fail(f"{key}.op", f"unknown op {op!r} (must be {', '.join(WORKLOAD_OPS)})")
        only: dict[str, tuple[str, ...]] = {
            "addr": ("reserve", "free"), "align": ("alloc",), "goal": ("alloc",),
            "wrapper": ("alloc",), "exclusive": ("reserve",),
        }
        for k, ops in only.items():
            if k in item and op not in ops:
                raise chk.fail(f"{key}.{k}", f"only {' and '.join(ops)} take {k}, not {op}")
        size = chk.size(item, "size", key)
        node = chk.node(item, key, required=False)
        addr = chk.size(item, "addr", key) if op != "alloc" else None
        wrapper = chk.string(item, "wrapper", key) if "wrapper" in item else None
        if wrapper is not None:
            if wrapper not in ALLOC_WRAPPERS:
                raise chk.fail(f"{key}.wrapper", f"unknown wrapper {wrapper!r} "
                               f"(known: {', '.join(ALLOC_WRAPPERS)})")
            if wrapper.endswith("_node") and node is None:
                raise chk.fail(f"{key}.node", f"missing ({wrapper} needs a node)")
            if not wrapper.endswith("_node") and node is not None:
                raise chk.fail(f"{key}.node", f"{wrapper} takes no node")
        exclusive = item.get("exclusive", False)
        if not isinstance(exclusive, bool):
            raise chk.fail(f"{key}.exclusive", f"expected a boolean, got {_kind(exclusive)}")
        out.append(
            WorkloadOp(
                op=op,
                size=size,
                align=chk.size(item, "align", key, 0),
                goal=chk.size(item, "goal", key, 0),
                node=node,
                addr=addr,
                wrapper=wrapper,
                exclusive=exclusive,
                label=chk.string(item, "label", key, ""),
            )
        )
    return tuple(out)


def _machine(doc: dict[str, Any], source: str, default_name: str) -> Machine:
    """The core's tables validated; the arch's validated by its schema when it is installed."""
    chk = _Checker(source)
    if "machine" not in doc:
        raise chk.fail("machine", "missing (a machine file needs [machine] with arch = ...)")
    tbl = chk.table(doc["machine"], "machine")
    chk.known_keys(tbl, "machine", _MACHINE_KEYS)
    arch = chk.string(tbl, "arch", "machine")
    if not arch:
        raise chk.fail("machine.arch", "empty")
    machine = Machine(
        name=chk.string(tbl, "name", "machine", default_name),
        arch=arch,
        allocator=chk.string(tbl, "allocator", "machine", DEFAULT_ALLOCATOR),
        kernel=KernelSpec(profile=""),
        e820=(),
        workload=_workload(doc, chk),
        source=source,
        description=chk.string(tbl, "description", "machine", ""),
        raw={k: v for k, v in doc.items() if k not in CORE_TABLES},
    )
    schema = arch_schema(arch)
    return machine if schema is None else apply_schema(machine, schema, arch)


def arch_schema(arch: str) -> Schema | None:
    """The ``MACHINE_SCHEMA`` of the installed arch plugin ``arch``; None if not installed."""
    from bootemu.plugins import ARCH_GROUP, discover

    info = discover(ARCH_GROUP).get(arch)
    return None if info is None else schema_of(info.load())


def schema_of(arch_plugin: object) -> Schema:
    """An arch plugin's (class or instance) declared tables; none declared means none."""
    return getattr(arch_plugin, "MACHINE_SCHEMA", {})


def apply_schema(machine: Machine, schema: Schema, arch: str) -> Machine:
    """``machine`` with its arch tables (``machine.raw``) validated against ``schema``.

    ``[kernel]`` becomes ``machine.kernel`` (``profile``, ``cmdline``, ``highmem`` and the other
    keys in ``config``), ``firmware.e820`` ``machine.e820``, ``numa.memory`` ``machine.numa``;
    every other table and key is kept, converted, in ``machine.tables``. A machine built in
    code (``raw`` None) is returned as it is.
    """
    if machine.raw is None:
        return machine
    values = validate(machine.raw, schema, machine.source, core=CORE_TABLES)
    kernel = values.pop("kernel", {})
    spec = KernelSpec(
        profile=kernel.pop("profile", ""),
        cmdline=kernel.pop("cmdline", ""),
        highmem=kernel.pop("highmem", None),
        config=tuple(sorted(kernel.items())),
    )
    firmware = values.get("firmware", {})
    entries = firmware.pop("e820", [])
    numa = values.get("numa", {})
    memory = numa.pop("memory", [])
    for name in ("firmware", "numa"):
        if not values.get(name, True):
            del values[name]
    return dataclasses.replace(
        machine,
        kernel=spec,
        e820=tuple(E820Entry(e["start"], e["end"], e["type"]) for e in entries),
        numa=tuple(NumaMemory(m["node"], m["start"], m["end"]) for m in memory),
        tables=values,
        validated_for=arch,
    )


# --------------------------------------------------------------------------------------------
# Public API


def load_machine(ref: str, *, overrides: Sequence[str] = ()) -> Machine:
    """Load and validate the machine file or built-in preset ``ref``.

    ``overrides`` are ``KEY=VALUE`` strings (``--set``): dotted keys into the TOML document
    (``kernel.highmem=64G``, ``kernel.cmdline=mem=512M``, ``firmware.e820.3.type=reserved``),
    the value read as TOML when it parses and as a plain string otherwise; they are applied in
    order, before validation.
    """
    source, text, default_name = _read(ref)
    return machine_from_toml(text, source=source, default_name=default_name, overrides=overrides)


def machine_from_toml(
    text: str, *, source: str, default_name: str | None = None, overrides: Sequence[str] = ()
) -> Machine:
    """:func:`load_machine` of TOML text already in memory; ``source`` names it in errors."""
    doc = _parse_toml(text, source)
    for item in overrides:
        _apply_override(doc, item, source)
    return _machine(doc, source, default_name or Path(source).stem)


def list_presets() -> list[tuple[str, str]]:
    """The built-in presets as ``(name, description)``, sorted by name."""
    out = []
    for name in _preset_names():
        source, text, _ = _read_preset(name)
        doc = _parse_toml(text, source)
        machine = doc.get("machine", {})
        description = machine.get("description", "") if isinstance(machine, dict) else ""
        out.append((name, description if isinstance(description, str) else ""))
    return out


def _read_preset(name: str) -> tuple[str, str, str]:
    text = _preset_root().joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return f"bootemu/{_PRESET_DIR}/{name}.toml", text, name


def dump_machine(machine: Machine) -> str:
    """``machine`` as machine-file TOML; :func:`load_machine` of the text gives back an equal
    Machine (except ``source``, which names where it was loaded from).

    Addresses and sizes are written in hex; values of 2**63 and above, which TOML integers
    cannot hold, as hex strings. A string in ``kernel.config`` that reads as a size comes back
    as its integer value, as any ``[kernel]`` value would.
    """
    out: list[str] = []
    w = out.append
    w("[machine]")
    w(f"name = {_str(machine.name)}")
    w(f"arch = {_str(machine.arch)}")
    w(f"allocator = {_str(machine.allocator)}")
    if machine.description:
        w(f"description = {_str(machine.description)}")
    k = machine.kernel
    if k.profile or k.cmdline or k.highmem is not None or k.config:
        w("")
        w("[kernel]")
        if k.profile:
            w(f"profile = {_str(k.profile)}")
        w(f"cmdline = {_str(k.cmdline)}")
        if k.highmem is not None:
            w(f"highmem = {_str(k.highmem)}")
        for key, value in k.config:
            w(f"{_key(key)} = {_value(value)}")
    for e in machine.e820:
        w("")
        w("[[firmware.e820]]")
        w(f"start = {_hex(e.start)}")
        w(_end_or_size(e.start, e.end))
        name = e820.type_name(e.type)
        w(f"type = {_str(name) if name in e820.TYPE_BY_NAME else e.type}")
    for m in machine.numa:
        w("")
        w("[[numa.memory]]")
        w(f"node = {m.node}")
        w(f"start = {_hex(m.start)}")
        w(_end_or_size(m.start, m.end))
    for name, table in machine.tables.items():
        _dump_table(w, _key(name), table)
    for op in machine.workload:
        w("")
        w("[[workload]]")
        w(f"op = {_str(op.op)}")
        w(f"size = {_hex(op.size)}")
        fields: list[tuple[str, Any, Callable[[Any], str]]] = [
            ("align", op.align, _hex), ("goal", op.goal, _hex), ("node", op.node, str),
            ("addr", op.addr, _hex), ("wrapper", op.wrapper, _str),
            ("exclusive", op.exclusive, _value), ("label", op.label, _str),
        ]
        defaults = {"align": 0, "goal": 0, "node": None, "addr": None, "wrapper": None,
                    "exclusive": False, "label": ""}
        for name, value, fmt in fields:
            if value != defaults[name]:
                w(f"{name} = {fmt(value)}")
    return "\n".join(out) + "\n"


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _dump_table(w: Callable[[str], None], path: str, table: dict[str, Any]) -> None:
    """An arch table of ``machine.tables``: its plain keys under ``[path]``, then its
    sub-tables and arrays of tables (``[[dt.memory]]``)."""
    plain = [(k, v) for k, v in table.items() if not isinstance(v, dict) and not _is_tables(v)]
    if plain:
        w("")
        w(f"[{path}]")
        for k, v in plain:
            w(f"{_key(k)} = {_any(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            _dump_table(w, f"{path}.{_key(k)}", v)
        elif _is_tables(v):
            for item in v:
                w("")
                w(f"[[{path}.{_key(k)}]]")
                for ik, iv in item.items():
                    w(f"{_key(ik)} = {_any(iv)}")


def _any(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_any(x) for x in v) + "]"
    return _value(v)


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def _end_or_size(start: int, end: int) -> str:
    """``end = ...``, or ``size = ...`` for a range reaching 2**64, which no end can name."""
    if end > (1 << 64) - 1:
        return f"size = {_hex(end - start)}"
    return f"end = {_hex(end)}"


def _str(s: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character (DEL included,
    which TOML forbids raw) escaped."""
    out = []
    for ch in s:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _str(k)


def _hex(n: int) -> str:
    return f"{n:#x}" if n < 1 << 63 else _str(f"{n:#x}")


def _value(v: int | str | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return _hex(v) if v >= 0 else str(v)
    return _str(v)
