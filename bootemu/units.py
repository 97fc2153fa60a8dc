"""Sizes as the kernel parses them: ``memparse()`` and friends.

The kernel reads every size on its command line (``mem=512M``, ``memmap=64M$0x10000000``,
``highmem=``, ``vmalloc=``) with ``memparse()`` from ``lib/cmdline.c``; machine files use the
same syntax so that a size means the same thing in both places.
"""

from __future__ import annotations

from bootemu.models import BootemuError

#: memparse() suffixes and their shift; lib/cmdline.c falls through E → P → T → G → M → K,
#: each step multiplying by 1024. (2.6.25 knew only K, M and G; T, P, E came later and are
#: accepted here for every profile, since machine files share this parser.)
_SUFFIX_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}

#: unsigned long long is 64 bits: simple_strtoull() and the suffix shift wrap modulo 2**64.
U64_MASK = (1 << 64) - 1

_DIGITS = "0123456789abcdef"


def _is_hex(ch: str) -> bool:
    return len(ch) == 1 and ch.lower() in _DIGITS


def _strtoull(text: str, pos: int) -> tuple[int, int]:
    """lib/vsprintf.c simple_strtoull(cp, &endp, 0): parse one C integer starting at ``pos``.

    Base 0 means: ``0x``/``0X`` followed by a hex digit selects base 16, another leading ``0``
    selects octal, anything else decimal (_parse_integer_fixup_radix()). No sign and no
    leading blanks are accepted. Returns ``(value, end)`` with the value *not* yet wrapped to
    64 bits (callers decide) and ``end == pos`` when no digit was read.
    """
    base = 10
    i = pos
    if text[i : i + 1] == "0":
        base = 8
        if text[i + 1 : i + 2] in ("x", "X") and _is_hex(text[i + 2 : i + 3]):
            base = 16
            i += 2
    value = 0
    while i < len(text):
        digit = _DIGITS.find(text[i].lower())
        if digit < 0 or digit >= base:
            break
        value = value * base + digit
        i += 1
    return value, i


def strtoull_prefix(text: str, pos: int = 0) -> tuple[int, int]:
    """simple_strtoull(cp, &endp, 0) at ``text[pos:]``: ``(value wrapped to 64 bits, end)``."""
    value, end = _strtoull(text, pos)
    return value & U64_MASK, end


def memparse_prefix(text: str, pos: int = 0) -> tuple[int, int]:
    """lib/cmdline.c memparse(ptr, &retptr): parse a size at ``text[pos:]``, stop at garbage.

    Returns ``(value, end)``: the value wrapped to 64 bits as in C, and the index just past
    what was consumed (the kernel's ``retptr``). Like the kernel, a suffix letter is consumed
    even when no digit preceded it (``"K"`` parses as 0 and consumes one character) and
    ``end == pos`` means nothing at all was read; callers that need a number check that.
    """
    value, end = _strtoull(text, pos)
    if end < len(text):
        shift = _SUFFIX_SHIFT.get(text[end].lower())
        if shift is not None:
            value <<= shift
            end += 1
    return value & U64_MASK, end


def _memparse_exact(text: str) -> int:
    """memparse() of the whole string, unwrapped; ValueError unless it is one clean size."""
    value, end = _strtoull(text, 0)
    if end == 0:
        raise ValueError(f"not a size: {text!r} (expected a number with optional K/M/G/T/P/E)")
    if end < len(text):
        shift = _SUFFIX_SHIFT.get(text[end].lower())
        if shift is not None:
            value <<= shift
            end += 1
    if end != len(text):
        raise ValueError(
            f"not a size: {text!r} (unexpected {text[end:]!r} after the number)"
        )
    return value


def memparse(text: str) -> int:
    """The kernel's ``memparse()`` (lib/cmdline.c) of a complete string.

    A C integer (decimal, ``0x`` hex, leading-``0`` octal) with an optional suffix K, M, G, T,
    P or E in either case, each a factor of 1024: ``memparse("512M") == 512 << 20``,
    ``memparse("010") == 8``. Values wrap modulo 2**64 as ``unsigned long long`` does.
    Unlike the kernel, which stops silently at the first unexpected character, anything
    left over (or no digits at all) raises ValueError: the emulator wants to know.
    """
    return _memparse_exact(text) & U64_MASK


def parse_size(value: int | str, where: str) -> int:
    """A size or address from a machine file: an integer, or a string ``memparse()`` accepts.

    ``where`` names the file and key for the error message; negative numbers, booleans,
    garbage and values that do not fit in 64 bits raise
    :class:`~bootemu.models.BootemuError` ``"<where>: ..."``.
    """
    if isinstance(value, bool):
        raise BootemuError(f"{where}: expected a size, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise BootemuError(f"{where}: negative size {value}")
        return value
    if isinstance(value, str):
        try:
            n = _memparse_exact(value.strip())
        except ValueError as exc:
            raise BootemuError(f"{where}: {exc}") from None
        if n > U64_MASK:
            raise BootemuError(f"{where}: {value!r} does not fit in 64 bits")
        return n
    raise BootemuError(f"{where}: expected a size (integer or string like \"512M\"), "
                       f"got {type(value).__name__}")


def format_size(n: int) -> str:
    """A size for messages, in the largest unit that divides it: ``1G``, ``639K``, ``4095``.

    The result is something :func:`memparse` reads back to ``n``.
    """
    if n < 0:
        raise ValueError(f"negative size {n}")
    if n == 0:
        return "0"
    for suffix, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)
