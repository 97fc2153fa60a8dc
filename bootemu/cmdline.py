"""The kernel command line: splitting it into parameters, and the ``memmap=`` syntax.

Splitting follows ``next_arg()`` (kernel/params.c in 2.6.25, lib/cmdline.c in 6.1) and
``parse_args()``; ``memmap=`` follows ``parse_memmap()`` of arch/x86/kernel/e820_32.c (2.6.25)
and ``parse_memmap_opt()`` / ``parse_memmap_one()`` of arch/x86/kernel/e820.c (modern).
What a parameter *does* is the arch's business; this module only reads the syntax.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootemu.units import memparse_prefix, strtoull_prefix

#: ``memmap=`` kinds (:attr:`MemmapArg.kind`).
MEMMAP_EXACTMAP = "exactmap"  # memmap=exactmap: empty the table, the user supplies it
MEMMAP_ADD = "add"  # memmap=nn@ss / nn#ss / nn$ss / nn!ss: add a region of ``type``
MEMMAP_LIMIT = "limit"  # memmap=nn: the same as mem=nn
MEMMAP_RETYPE = "retype"  # memmap=nn%ss-old+new (modern): update / add / remove a range

#: e820 types named by the memmap= separators (values as in bootemu.e820).
_SEPARATOR_TYPE = {"@": 1, "#": 3, "$": 2, "!": 12}

_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale


def split_cmdline(cmdline: str, *, profile: str = "2.6.25") -> list[tuple[str, str | None]]:
    """Split a kernel command line into ``(param, value)`` pairs, in order.

    kernel/params.c parse_args() + next_arg(): ``mem=512M`` gives ``("mem", "512M")``,
    ``nokaslr`` gives ``("nokaslr", None)``, ``foo=`` gives ``("foo", "")``. Double quotes
    group blanks (``dyndbg="file x +p"``) and are dropped around a value or a whole word;
    there is no escape for a quote. Only the first ``=`` splits; repeated parameters keep
    every occurrence. Differences by ``profile``:

    - ``"2.6.25"`` (and ``"2.6.26-rc1"``): only the space character separates words; the
      quote closing a fully quoted word (``"foo bar"``) is removed only when the word has an ``=``.
    - ``"6.1"``: any C ``isspace()`` character separates; the closing quote of a quoted word is
      always removed; a bare ``--`` ends the kernel's parameters (the rest is for init), so
      nothing after it is returned.

    Kernel quirk kept on purpose: an ``=`` at the very start of a word does not count (the
    kernel's "no equals yet" marker is index 0), so ``=a=b`` splits as ``("=a", "b")``.
    """
    modern = profile not in ("2.6.25", "2.6.26-rc1")  # kernel/params.c: same in both
    spaces = _C_SPACE if modern else " "
    out: list[tuple[str, str | None]] = []
    pos = 0
    n = len(cmdline)
    while pos < n and cmdline[pos] in spaces:  # parse_args(): chew leading spaces
        pos += 1
    while pos < n:
        param, value, pos = _next_arg(cmdline, pos, spaces, modern)
        if modern and value is None and param == "--":
            break
        out.append((param, value))
    return out


def _next_arg(text: str, pos: int, spaces: str, modern: bool) -> tuple[str, str | None, int]:
    """next_arg(): one word starting at ``pos``; returns (param, value, next position).

    The kernel edits the buffer in place, writing NULs over the ``=`` and over closing quotes;
    a C string then ends at the first NUL. The same effect is reproduced on a list of chars.
    """
    quoted = False
    if text[pos] == '"':
        pos += 1
        quoted = True
    in_quote = quoted
    equals = 0
    i = pos
    while i < len(text):
        ch = text[i]
        if ch in spaces and not in_quote:
            break
        if equals == 0 and ch == "=":
            equals = i - pos  # an '=' at offset 0 leaves the marker at 0: kernel quirk
        if ch == '"':
            in_quote = not in_quote
        i += 1
    word = list(text[pos:i])
    length = i - pos
    value: str | None = None
    if equals:
        word[equals] = "\0"
        if word[equals + 1 : equals + 2] == ['"'] and word[length - 1] == '"':
            word[length - 1] = "\0"  # a quoted value loses its closing quote (and, below,
            # its opening one)
    if quoted and length > 0 and word[length - 1] == '"' and (modern or equals):
        word[length - 1] = "\0"
    joined = "".join(word)
    param = joined.split("\0", 1)[0]
    if equals:
        start = equals + 1
        if text[pos + start : pos + start + 1] == '"':
            start += 1
        value = joined[start:].split("\0", 1)[0]
    nxt = i + 1 if i < len(text) else i
    while nxt < len(text) and text[nxt] in spaces:  # chew up trailing spaces
        nxt += 1
    return param, value, nxt


@dataclass(frozen=True)
class MemmapArg:
    """One ``memmap=`` range, parsed.

    ``kind`` is one of :data:`MEMMAP_EXACTMAP` (size 0, no start, no type),
    :data:`MEMMAP_ADD` (``nn@ss`` RAM 1, ``nn#ss`` ACPI 3, ``nn$ss`` reserved 2, ``nn!ss``
    PRAM 12: ``size`` bytes at ``start`` of ``type``), :data:`MEMMAP_LIMIT` (plain ``nn``:
    the same as ``mem=nn``; ``size`` only) or :data:`MEMMAP_RETYPE` (modern
    ``nn%ss-old+new``: ``type`` is the new type or None, ``old_type`` the old one or None).
    """

    kind: str
    size: int
    start: int | None
    type: int | None
    old_type: int | None = None


def parse_memmap_arg(value: str) -> MemmapArg:
    """One ``memmap=`` range (no commas): parse_memmap() 2.6.25 / parse_memmap_one() modern.

    Raises ValueError where the kernel returns -EINVAL (no number; characters left after the
    range) and for the form the emulator does not know. ``exactmap`` is matched on its
    first eight characters, as the modern kernel's strncmp() does.
    """
    if value.startswith("exactmap"):
        return MemmapArg(MEMMAP_EXACTMAP, 0, None, None)
    size, pos = memparse_prefix(value)
    if pos == 0:
        raise ValueError(f"memmap={value}: expected a size")
    sep = value[pos : pos + 1]
    if sep in _SEPARATOR_TYPE:
        start, end = memparse_prefix(value, pos + 1)
        if end == pos + 1:
            raise ValueError(f"memmap={value}: expected a start address after {sep!r}")
        if end != len(value):
            raise ValueError(f"memmap={value}: unexpected {value[end:]!r}")
        return MemmapArg(MEMMAP_ADD, size, start, _SEPARATOR_TYPE[sep])
    if sep == "%":
        # Modern kernels: nn%ss[-old][+new]: convert old→new, add new, or remove old/any.
        start, end = memparse_prefix(value, pos + 1)
        old_type: int | None = None
        new_type: int | None = None
        if value[end : end + 1] == "-":
            old_type, end = strtoull_prefix(value, end + 1)
        if value[end : end + 1] == "+":
            new_type, end = strtoull_prefix(value, end + 1)
        if end != len(value):
            raise ValueError(f"memmap={value}: unexpected {value[end:]!r}")
        return MemmapArg(MEMMAP_RETYPE, size, start, new_type or None, old_type or None)
    if sep:
        raise ValueError(f"memmap={value}: unexpected {value[pos:]!r}")
    return MemmapArg(MEMMAP_LIMIT, size, None, None)


def parse_memmap_args(value: str) -> list[MemmapArg]:
    """A whole ``memmap=`` value: comma-separated ranges, as modern parse_memmap_opt() splits.

    (2.6.25 took one range per ``memmap=``; a value without commas gives one item either way.)
    """
    return [parse_memmap_arg(part) for part in value.split(",")]
