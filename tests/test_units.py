"""bootemu.units against lib/cmdline.c memparse() and lib/vsprintf.c simple_strtoull()."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootemu.models import BootemuError
from bootemu.units import format_size, memparse, memparse_prefix, parse_size, strtoull_prefix


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512M", 512 * 1024 * 1024),
        ("0x1000", 4096),
        ("1g", 1 << 30),
        ("64K", 64 * 1024),
        ("010", 8),  # leading 0: octal
        ("0", 0),
        ("4096", 4096),
        ("0X1F", 31),
        ("1T", 1 << 40),
        ("2p", 2 << 50),
        ("1E", 1 << 60),
        ("0x10M", 16 << 20),  # the suffix applies to hex numbers too
        ("017k", 15 << 10),
    ],
)
def test_memparse_kernel_examples(text, expected):
    assert memparse(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1", " 1M", "1MB", "1.5G", "08", "0x", "abc", "1 M"])
def test_memparse_rejects_garbage(text):
    with pytest.raises(ValueError):
        memparse(text)


def test_memparse_wraps_like_unsigned_long_long():
    # 16E = 2**64: the shift overflows u64 and leaves 0.
    assert memparse("16E") == 0
    assert memparse("0x1ffffffffffffffff") == (1 << 64) - 1


def test_prefix_parsers_stop_like_the_kernel():
    # "0x" without a hex digit after it is an octal 0 followed by "x" (fixup_radix()).
    assert strtoull_prefix("0xg") == (0, 1)
    assert strtoull_prefix("08") == (0, 1)
    assert strtoull_prefix("12abc") == (12, 2)
    # memparse() eats one suffix letter, even with no digit before it.
    assert memparse_prefix("64M$0x10000000") == (64 << 20, 3)
    assert memparse_prefix("K") == (0, 1)
    assert memparse_prefix("xyz") == (0, 0)
    assert memparse_prefix("1M@2M", 3) == (2 << 20, 5)


def test_parse_size():
    assert parse_size(4096, "m.toml: x") == 4096
    assert parse_size("2G", "m.toml: x") == 2 << 30
    assert parse_size(" 0x9fc00 ", "m.toml: x") == 0x9FC00
    for bad, part in [(-1, "negative"), ("12Q", "not a size"), (True, "boolean"),
                      (1.5, "float"), ("16E", "64 bits")]:
        with pytest.raises(BootemuError) as err:
            parse_size(bad, "m.toml: firmware.e820[0].end")
        assert str(err.value).startswith("m.toml: firmware.e820[0].end: ")
        assert part in str(err.value)


def test_format_size_examples():
    assert format_size(1073741824) == "1G"
    assert format_size(0x9FC00) == "639K"  # 654336 = 639 * 1024
    assert format_size(0) == "0"
    assert format_size(4095) == "4095"
    assert format_size(3 << 40) == "3T"
    assert format_size(1536 << 20) == "1536M"  # 1.5G: not a whole number of G


@given(st.integers(0, (1 << 64) - 1))
def test_format_size_reads_back(n):
    assert memparse(format_size(n)) == n
