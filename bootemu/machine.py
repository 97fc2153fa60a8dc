"""Machine files: TOML → validated, frozen :class:`~bootemu.models.Machine`, and back.

The format is DESIGN.md "The machine file". A machine is named by a path or by the name of a
built-in preset (``bootemu/presets/<name>.toml``, read through importlib.resources so presets
work from an installed package). ``--set KEY=VALUE`` overrides edit the parsed document before
validation. Every problem is a :class:`~bootemu.models.BootemuError` of one line that names
the file and the key (``firmware.e820[3].type``) or the line, and says what is wrong.
"""

from __future__ import annotations

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
from bootemu.units import memparse, parse_size

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11 (pyproject pulls in tomli there)
    import tomli as tomllib  # type: ignore[no-redef]

#: Highmem models an x86_32 kernel can be built with (CONFIG_NOHIGHMEM / HIGHMEM4G / HIGHMEM64G).
HIGHMEM_MODELS = ("off", "4G", "64G")
DEFAULT_ALLOCATOR = "bootmem2"
WORKLOAD_OPS = ("alloc", "reserve", "free")

_TOP_KEYS = ("firmware", "kernel", "machine", "numa", "workload")
_MACHINE_KEYS = ("allocator", "arch", "description", "name")
_KERNEL_KEYS = ("cmdline", "highmem", "profile")  # everything else goes to KernelSpec.config
_RANGE_KEYS = ("end", "size", "start")
_E820_KEYS = (*_RANGE_KEYS, "type")
_NUMA_KEYS = (*_RANGE_KEYS, "node")
_WORKLOAD_KEYS = ("addr", "align", "exclusive", "goal", "label", "node", "op", "size", "wrapper")
#: [kernel] keys whose values are sizes or addresses whatever they look like.
_SIZE_KEY_SUFFIXES = ("_start", "_end", "_size", "_addr")

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

    def byte_range(self, tbl: dict[str, Any], key: str) -> tuple[int, int]:
        """``start`` plus exclusive ``end`` or ``size``; end must be above start."""
        start = self.size(tbl, "start", key)
        if "end" in tbl and "size" in tbl:
            raise self.fail(key, "give end or size, not both")
        if "size" in tbl:
            size = self.size(tbl, "size", key)
            if size == 0:
                raise self.fail(f"{key}.size", "zero size")
            end = start + size
        elif "end" in tbl:
            end = self.size(tbl, "end", key)
            if end <= start:
                raise self.fail(f"{key}.end", f"end {end:#x} <= start {start:#x}")
        else:
            raise self.fail(f"{key}.end", "missing (give end, exclusive, or size)")
        if end > 1 << 64:
            raise self.fail(key, f"range ends at {end:#x}, beyond the 64-bit address space")
        return start, end


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _e820_type(value: Any, key: str, chk: _Checker) -> int:
    if isinstance(value, str):
        if value in e820.TYPE_BY_NAME:
            return e820.TYPE_BY_NAME[value]
        known = ", ".join(e820.TYPE_BY_NAME)
        raise chk.fail(key, f"unknown e820 type {value!r} (known: {known}, or 1..{e820.MAX_TYPE})")
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= e820.MAX_TYPE:
            return value
        raise chk.fail(key, f"e820 type {value} out of range 1..{e820.MAX_TYPE}")
    raise chk.fail(key, f"expected an e820 type name or number, got {_kind(value)}")


# --------------------------------------------------------------------------------------------
# The tables


def _kernel(doc: dict[str, Any], chk: _Checker) -> KernelSpec:
    tbl = chk.table(doc.get("kernel", {}), "kernel")
    profile = chk.string(tbl, "profile", "kernel", "2.6.25")
    if profile not in e820.PROFILES:
        raise chk.fail(
            "kernel.profile",
            f"unknown profile {profile!r} (must be {' or '.join(map(repr, e820.PROFILES))})",
        )
    cmdline = chk.string(tbl, "cmdline", "kernel", "")
    highmem: str | None = None
    if "highmem" in tbl:
        highmem = chk.string(tbl, "highmem", "kernel")
        if highmem not in HIGHMEM_MODELS:
            raise chk.fail(
                "kernel.highmem",
                f"unknown highmem model {highmem!r} (must be {', '.join(HIGHMEM_MODELS)})",
            )
    config: list[tuple[str, int | str | bool]] = []
    for k in sorted(tbl):
        if k in _KERNEL_KEYS:
            continue
        config.append((k, _config_value(k, tbl[k], chk)))
    return KernelSpec(profile=profile, cmdline=cmdline, highmem=highmem, config=tuple(config))


def _config_value(k: str, value: Any, chk: _Checker) -> int | str | bool:
    """Arch-specific ``[kernel]`` keys: sizes parsed, booleans and other strings kept."""
    where = f"kernel.{k}"
    if k.endswith(_SIZE_KEY_SUFFIXES):
        return parse_size(value, f"{chk.source}: {where}")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return memparse(value)  # a size string ("256M") becomes its value
        except ValueError:
            return value
    raise chk.fail(where, f"expected a size, a string or a boolean, got {_kind(value)}")


def _entries(
    doc: dict[str, Any], outer: str, inner: str, chk: _Checker
) -> list[tuple[str, dict[str, Any]]]:
    """``[[outer.inner]]`` as ``(key, table)`` pairs (``("firmware.e820[3]", {...})``)."""
    tbl = chk.table(doc.get(outer, {}), outer)
    chk.known_keys(tbl, outer, (inner,))
    name = f"{outer}.{inner}"
    items = chk.array_of_tables(tbl.get(inner, []), name)
    return [(f"{name}[{i}]", item) for i, item in enumerate(items)]


def _firmware(doc: dict[str, Any], chk: _Checker) -> tuple[E820Entry, ...]:
    items = _entries(doc, "firmware", "e820", chk)
    if not items:
        raise chk.fail("firmware.e820", "missing (a machine needs its firmware memory map)")
    out = []
    for key, item in items:
        chk.known_keys(item, key, _E820_KEYS)
        start, end = chk.byte_range(item, key)
        if "type" not in item:
            raise chk.fail(f"{key}.type", "missing")
        out.append(E820Entry(start, end, _e820_type(item["type"], f"{key}.type", chk)))
    return tuple(out)


def _numa(doc: dict[str, Any], chk: _Checker) -> tuple[NumaMemory, ...]:
    out = []
    for key, item in _entries(doc, "numa", "memory", chk):
        chk.known_keys(item, key, _NUMA_KEYS)
        node = chk.node(item, key, required=True)
        assert node is not None
        start, end = chk.byte_range(item, key)
        out.append(NumaMemory(node, start, end))
    return tuple(out)


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
    chk = _Checker(source)
    for k in doc:
        if k not in _TOP_KEYS:
            raise chk.fail(k, f"unknown table (known: {', '.join(_TOP_KEYS)})")
    if "machine" not in doc:
        raise chk.fail("machine", "missing (a machine file needs [machine] with arch = ...)")
    tbl = chk.table(doc["machine"], "machine")
    chk.known_keys(tbl, "machine", _MACHINE_KEYS)
    arch = chk.string(tbl, "arch", "machine")
    if not arch:
        raise chk.fail("machine.arch", "empty")
    return Machine(
        name=chk.string(tbl, "name", "machine", default_name),
        arch=arch,
        allocator=chk.string(tbl, "allocator", "machine", DEFAULT_ALLOCATOR),
        kernel=_kernel(doc, chk),
        e820=_firmware(doc, chk),
        numa=_numa(doc, chk),
        workload=_workload(doc, chk),
        source=source,
        description=chk.string(tbl, "description", "machine", ""),
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
    w("")
    w("[kernel]")
    k = machine.kernel
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
