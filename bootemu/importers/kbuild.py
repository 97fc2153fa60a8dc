"""A kernel's build artifacts: its ``.config`` and its ``System.map``.

A kernel developer who boots a kernel they built has both files next to the image. They say
what a boot log cannot: the Kconfig choices that change early memory (highmem model, SMP and
NR_CPUS, the cache line, pageblock order, NUMA, SPARSEMEM ...) and the exact image layout
(``_text`` .. ``_end``), which sizes the kernel's first reservation.

- :func:`read_kconfig` reads a ``.config`` (``scripts/kconfig`` output: ``CONFIG_X=value`` and
  ``# CONFIG_X is not set`` lines) into a :class:`Kconfig`.
- :func:`read_system_map` reads a ``System.map`` (``nm -n`` output of ``vmlinux``: ``ADDRESS
  TYPE NAME`` lines) into a :class:`SystemMap`, which also resolves a ``caller=`` return address
  to ``symbol+0xoffset`` as ``tools/resolve.py`` of the 2008 boots does.

Both raise :class:`~bootemu.models.BootemuError` naming the file and the line for anything
that is not what ``scripts/kconfig`` or ``nm`` writes.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

from bootemu.models import BootemuError

__all__ = ["IMAGE_SYMBOLS", "Kconfig", "SystemMap", "read_kconfig", "read_system_map"]

#: The linker symbols that delimit the kernel image's sections (arch/x86/kernel/vmlinux_*.lds.S
#: of 2.6.25): what setup_bootmem_allocator() reserves and what mem_init() prints as code,
#: data and init sizes. ``pg0`` (i386 only) is where head_32.S builds the boot page tables.
IMAGE_SYMBOLS = ("_text", "_etext", "_edata", "__init_begin", "__init_end", "__bss_start", "_end")

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
_SYMBOL = re.compile(r"^([0-9a-fA-F]{8,16}) ([A-Za-z?-]) (\S+)$")


@dataclass(frozen=True)
class Kconfig:
    """The options of one ``.config``: ``CONFIG_``-less names to their values.

    A bool/tristate option set to ``y``/``m`` maps to that letter, an unset one (``# ... is not
    set``) to ``"n"``, strings lose their quotes, numbers stay text (``value_int`` parses them).
    An option the file does not mention at all is absent: Kconfig did not offer it.
    """

    path: str
    options: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def enabled(self, name: str) -> bool:
        """True when ``CONFIG_<name>`` is ``y`` (or ``m``)."""
        return self.options.get(name, "n") in ("y", "m")

    def has(self, name: str) -> bool:
        """True when the file mentions ``CONFIG_<name>`` at all (set or not set)."""
        return name in self.options

    def value_int(self, name: str, default: int | None = None) -> int | None:
        """The integer value of ``CONFIG_<name>`` (decimal or ``0x`` hex), else ``default``.

        A value that is not a number is bad input: ``<file>:<line>: CONFIG_<name>=...``.
        """
        text = self.options.get(name)
        if text is None or text == "n":
            return default
        try:
            return int(text, 0)
        except ValueError:
            raise BootemuError(
                f"{self.path}:{self.lines[name]}: CONFIG_{name}={text}: not a number"
            ) from None

    def where(self, name: str) -> str:
        """``file:line`` of the option, for notes that say where a setting came from."""
        return f"{self.path}:{self.lines[name]}" if name in self.lines else self.path


@dataclass(frozen=True)
class SystemMap:
    """The symbols of one ``System.map``: name to address, and text symbols for callers."""

    path: str
    symbols: dict[str, int] = field(default_factory=dict)
    _text_addrs: tuple[int, ...] = ()
    _text_names: tuple[str, ...] = ()

    def address(self, name: str) -> int | None:
        """The address of ``name``, or None if the map has no such symbol."""
        return self.symbols.get(name)

    def image(self) -> dict[str, int]:
        """The image-layout symbols of :data:`IMAGE_SYMBOLS` (plus ``pg0`` when present).

        A map without one of them is not a kernel's System.map: bad input naming the symbol.
        """
        missing = [name for name in IMAGE_SYMBOLS if name not in self.symbols]
        if missing:
            raise BootemuError(f"{self.path}: no symbol {missing[0]} (not a kernel System.map?)")
        out = {name: self.symbols[name] for name in IMAGE_SYMBOLS}
        if "pg0" in self.symbols:
            out["pg0"] = self.symbols["pg0"]
        return out

    def resolve(self, addr: int) -> str:
        """``symbol+0xoff`` of a return address: the largest text symbol not above ``addr``."""
        i = bisect.bisect_right(self._text_addrs, addr) - 1
        if i < 0:
            return f"{addr:x}"
        return f"{self._text_names[i]}+0x{addr - self._text_addrs[i]:x}"


def read_kconfig(path: str | Path) -> Kconfig:
    """Read a kernel ``.config``; bad input names the file and line."""
    name = str(path)
    text = _read_text(path)
    options: dict[str, str] = {}
    lines: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if m := _UNSET.match(line):
            options[m.group(1)[7:]], lines[m.group(1)[7:]] = "n", lineno
            continue
        if line.startswith("#"):
            continue
        m = _SET.match(line)
        if not m:
            raise BootemuError(f"{name}:{lineno}: not a Kconfig line: {raw.strip()[:60]!r}")
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        options[m.group(1)[7:]], lines[m.group(1)[7:]] = value, lineno
    if not options:
        raise BootemuError(f"{name}: no CONFIG_ options (not a kernel .config?)")
    return Kconfig(path=name, options=options, lines=lines)


def read_system_map(path: str | Path) -> SystemMap:
    """Read a ``System.map``; bad input names the file and line."""
    name = str(path)
    text = _read_text(path)
    symbols: dict[str, int] = {}
    texts: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _SYMBOL.match(raw.strip())
        if not m:
            raise BootemuError(f"{name}:{lineno}: not a System.map line: {raw.strip()[:60]!r}")
        addr, kind, sym = int(m.group(1), 16), m.group(2), m.group(3)
        symbols.setdefault(sym, addr)
        if kind in "tTwW":
            texts.append((addr, sym))
    if not symbols:
        raise BootemuError(f"{name}: empty System.map")
    texts.sort()
    return SystemMap(
        path=name,
        symbols=symbols,
        _text_addrs=tuple(a for a, _ in texts),
        _text_names=tuple(n for _, n in texts),
    )


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BootemuError(f"{path}: {exc.strerror or exc}") from None
