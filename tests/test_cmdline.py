"""bootemu.cmdline against next_arg()/parse_args() (kernel/params.c 2.6.25, lib/cmdline.c 6.1)
and the memmap= syntax of parse_memmap() / parse_memmap_one()."""

from __future__ import annotations

import pytest

from bootemu.cmdline import (
    MEMMAP_ADD,
    MEMMAP_EXACTMAP,
    MEMMAP_LIMIT,
    MEMMAP_RETYPE,
    MemmapArg,
    parse_memmap_arg,
    parse_memmap_args,
    split_cmdline,
)

M = 1 << 20

#: The -append line of every real boot in tests/data/real-boots, plus the memmap= case's
#: argument.
REAL = (
    "console=ttyS0 earlyprintk=serial panic=-1 oops=panic nokaslr memblock=debug loglevel=8 "
    "ignore_loglevel memmap=64M$0x10000000"
)


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_real_boot_command_line(profile):
    assert split_cmdline(REAL, profile=profile) == [
        ("console", "ttyS0"),
        ("earlyprintk", "serial"),
        ("panic", "-1"),
        ("oops", "panic"),
        ("nokaslr", None),
        ("memblock", "debug"),
        ("loglevel", "8"),
        ("ignore_loglevel", None),
        ("memmap", "64M$0x10000000"),
    ]


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_repeats_empty_values_and_extra_equals(profile):
    assert split_cmdline("  mem=1G  foo= mem=512M a=b=c ", profile=profile) == [
        ("mem", "1G"),
        ("foo", ""),
        ("mem", "512M"),
        ("a", "b=c"),  # only the first '=' splits
    ]


@pytest.mark.parametrize("profile", ["2.6.25", "6.1"])
def test_quotes(profile):
    # "You can use \" around spaces, but can't escape \"."
    assert split_cmdline('dyndbg="file x +p" "init=/bin/sh -x" k="v"', profile=profile) == [
        ("dyndbg", "file x +p"),
        ("init", "/bin/sh -x"),  # quoted word with '=': both quotes go
        ("k", "v"),
    ]


def test_quoted_word_without_equals_differs_by_generation():
    # 2.6.25 strips the closing quote only inside the "has '='" branch; lib/cmdline.c always.
    assert split_cmdline('"a b"', profile="2.6.25") == [('a b"', None)]
    assert split_cmdline('"a b"', profile="6.1") == [("a b", None)]


def test_leading_equals_quirk():
    # `equals` is 0 while no '=' has been seen, so an '=' at offset 0 is not remembered.
    assert split_cmdline("=a=b") == [("=a", "b")]
    assert split_cmdline("=x") == [("=x", None)]


def test_separators_and_double_dash_by_generation():
    # 2.6.25 splits on ' ' only; lib/cmdline.c on isspace().
    assert split_cmdline("a\tb", profile="2.6.25") == [("a\tb", None)]
    assert split_cmdline("a\tb\nc", profile="6.1") == [("a", None), ("b", None), ("c", None)]
    # Modern parse_args() hands everything after a bare "--" to init.
    assert split_cmdline("mem=1G -- mem=2G", profile="6.1") == [("mem", "1G")]
    assert split_cmdline("mem=1G -- mem=2G", profile="2.6.25") == [
        ("mem", "1G"), ("--", None), ("mem", "2G"),
    ]


def test_empty_command_line():
    assert split_cmdline("") == []
    assert split_cmdline("   ") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("exactmap", MemmapArg(MEMMAP_EXACTMAP, 0, None, None)),
        ("64M$0x10000000", MemmapArg(MEMMAP_ADD, 64 * M, 0x10000000, 2)),  # reserved
        ("100M@1M", MemmapArg(MEMMAP_ADD, 100 * M, M, 1)),  # RAM
        ("1M#0x7ff00000", MemmapArg(MEMMAP_ADD, M, 0x7FF00000, 3)),  # ACPI
        ("4G!12G", MemmapArg(MEMMAP_ADD, 4 << 30, 12 << 30, 12)),  # PRAM
        ("512M", MemmapArg(MEMMAP_LIMIT, 512 * M, None, None)),  # like mem=512M
        ("1M%0x100000-1+2", MemmapArg(MEMMAP_RETYPE, M, 0x100000, 2, 1)),
        ("1M%0x100000+12", MemmapArg(MEMMAP_RETYPE, M, 0x100000, 12, None)),
        ("1M%0x100000-1", MemmapArg(MEMMAP_RETYPE, M, 0x100000, None, 1)),
    ],
)
def test_memmap_forms(value, expected):
    assert parse_memmap_arg(value) == expected


@pytest.mark.parametrize("value", ["", "foo", "$0x1000", "64M^0x1000", "64M$0x1000zz", "1M@"])
def test_memmap_garbage(value):
    with pytest.raises(ValueError):
        parse_memmap_arg(value)


def test_memmap_comma_list():
    assert parse_memmap_args("exactmap,640K@0,511M@1M") == [
        MemmapArg(MEMMAP_EXACTMAP, 0, None, None),
        MemmapArg(MEMMAP_ADD, 640 << 10, 0, 1),
        MemmapArg(MEMMAP_ADD, 511 * M, M, 1),
    ]
    assert parse_memmap_args("64M$0x10000000") == [parse_memmap_arg("64M$0x10000000")]
