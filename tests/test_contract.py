"""The typed contract (bootemu.contract), the schema helper (bootemu.schema), the public range
helpers (bootemu.models) and the test kit (bootemu.testing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootemu.contract import ArchInfo
from bootemu.models import BootemuError, find_free, intersect, merge_ranges, subtract
from bootemu.schema import REQUIRED, Bool, Enum, Int, Size, Str, Table, Tables, validate
from bootemu.testing import check_arch

ROOT = Path(__file__).parent.parent
BACKENDS = ("bootmem", "bootmem2", "bootmem2-perblock", "memblock")
INFO = dict(bits_per_long=64, phys_addr_bits=64, numa=True, memblks_per_node=1, smp_cache_bytes=64)


# --------------------------------------------------------------------------------------------
# ArchInfo and the import graph


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"bits_per_long": 16}, "bits_per_long 16"),
        ({"phys_addr_bits": 48}, "phys_addr_bits 48"),
        ({"bits_per_long": 64, "phys_addr_bits": 32}, "narrower"),
        ({"numa": 1}, "numa 1"),
        ({"memblks_per_node": 0}, "memblks_per_node 0"),
        ({"smp_cache_bytes": 48}, "smp_cache_bytes 48"),
    ],
)
def test_arch_info_rejects_impossible_builds(change, what):
    with pytest.raises(BootemuError, match=what):
        ArchInfo(**{**INFO, **change})


def test_arch_info_has_no_defaults():
    with pytest.raises(TypeError):
        ArchInfo(bits_per_long=64)  # type: ignore[call-arg]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_no_import_cycle_between_the_contract_and_the_core():
    """hookspecs names the contract's types; it imports neither plugins nor sequencer."""
    for module in ("hookspecs", "contract"):
        found = _imports(ROOT / "bootemu" / f"{module}.py")
        assert not found & {"bootemu.plugins", "bootemu.sequencer"}, (module, found)


# --------------------------------------------------------------------------------------------
# Schemas

SCHEMA = {
    "dt": Table(
        model=Str(default=""),
        cpus=Int(min=1, default=1),
        mode=Enum("a", "b", what="mode", default="a"),
        fast=Bool(),
        memory=Tables(min_items=1, reg=Size(default=REQUIRED), size=Size(default=REQUIRED)),
    )
}


def _ok(dt):
    return validate({"dt": dt}, SCHEMA, "m.toml", core=("machine",))["dt"]


def test_schema_converts_only_what_it_declares():
    dt = _ok({"model": "512M", "memory": [{"reg": "1G", "size": 4096}]})
    # A Str that reads as a size stays text; a Size string is parsed; defaults fill in; an
    # optional key without a default stays out.
    assert dt == {
        "model": "512M",
        "cpus": 1,
        "mode": "a",
        "memory": [{"reg": 1 << 30, "size": 4096}],
    }


@pytest.mark.parametrize(
    ("dt", "msg"),
    [
        ({"memory": []}, "m.toml: dt.memory: missing"),
        ({"memory": [{"reg": 0}]}, "m.toml: dt.memory[0].size: missing"),
        ({"memory": [{"reg": 0, "size": 1, "sise": 2}]}, "m.toml: dt.memory[0].sise: unknown key"),
        (
            {"cpus": 0, "memory": [{"reg": 0, "size": 1}]},
            "m.toml: dt.cpus: expected an integer >= 1",
        ),
        (
            {"mode": "c", "memory": [{"reg": 0, "size": 1}]},
            "m.toml: dt.mode: unknown mode 'c' (must be a, b)",
        ),
        ({"fast": "yes", "memory": [{"reg": 0, "size": 1}]}, "m.toml: dt.fast: expected true"),
        ({"model": 3, "memory": [{"reg": 0, "size": 1}]}, "m.toml: dt.model: expected a string"),
        ({"memory": {"reg": 0}}, "m.toml: dt.memory: expected an array of tables"),
    ],
)
def test_schema_errors_name_file_and_key(dt, msg):
    with pytest.raises(BootemuError) as err:
        _ok(dt)
    assert str(err.value).startswith(msg)


def test_unknown_table_lists_the_core_and_the_arch_tables():
    with pytest.raises(
        BootemuError, match=r"^m.toml: firmware: unknown table \(known: dt, machine"
    ):
        validate({"firmware": {}}, SCHEMA, "m.toml", core=("machine",))


# --------------------------------------------------------------------------------------------
# Range helpers, against a set-of-integers model

ranges = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=5).map(
    lambda rs: list(merge_ranges((min(a, b), max(a, b)) for a, b in rs))
)


def _set(rs):
    return {x for s, e in rs for x in range(s, e)}


@given(ranges, ranges)
def test_subtract_and_intersect_are_set_operations(a, b):
    assert _set(subtract(a, b)) == _set(a) - _set(b)
    assert _set(intersect(a, b)) == _set(a) & _set(b)


@given(ranges, ranges, st.integers(1, 8), st.sampled_from([1, 2, 4]))
def test_find_free_is_the_lowest_aligned_fit(space, busy, size, align):
    free = _set(space) - _set(busy)
    fits = [p for p in range(0, 61, align) if all(p + i in free for i in range(size))]
    assert find_free(space, busy, size, align) == (fits[0] if fits else None)


# --------------------------------------------------------------------------------------------
# check_arch


def test_check_arch_passes_a_correct_arch_and_names_what_is_wrong():
    from test_checks import ImageArch
    from test_sequencer import ToyArch, _machine

    results = check_arch(ToyArch, _machine(), backends=BACKENDS)
    assert sorted(results) == sorted(BACKENDS)
    with pytest.raises(AssertionError, match=r"bootmem: unreserved \[0x11, 0x13\): "):
        check_arch(lambda: ImageArch(False), _machine(), backends=BACKENDS)
    with pytest.raises(AssertionError, match=r"memblock: panic: Toy panic"):
        check_arch(lambda: ToyArch(panic_in="allocate"), _machine(), backends=["memblock"])


@pytest.mark.parametrize(
    "preset", ["qemu-pc-1g-i386", "seed-numa-8g", "qemu-numa-interleave-amd64"]
)
def test_the_built_in_arches_declare_and_reserve_their_kernel_image(preset):
    """Layout.owned holds the image (the [kernel] image keys); no boot leaves it unreserved."""
    from bootemu.machine import load_machine
    from bootemu.sequencer import boot_machine

    machine = load_machine(preset)
    result = boot_machine(machine)
    (image,) = result.boot.layout.owned
    start = machine.kernel.get("image_start")
    assert image.label == "kernel image"
    assert start is None or image.start == start
    assert not [v for v in result.violations if v.kind == "unreserved"]


def test_every_arch_info_fact_is_documented_and_no_backend_reads_boot_facts():
    import dataclasses

    from bootemu.contract import ArchInfo as Info

    doc = (ROOT / "docs" / "plugins.md").read_text()
    for f in dataclasses.fields(Info):
        assert f"`{f.name}`" in doc, f.name
    for path in (ROOT / "plugins").glob("*.py"):
        assert ".facts" not in path.read_text(), f"{path.name} reads boot.facts"


def test_tables_are_validated_by_the_arch_that_boots_the_machine(tmp_path):
    """--arch (or an injected arch plugin) re-validates the arch tables with its own schema."""
    from bootemu.machine import load_machine
    from bootemu.sequencer import boot_machine

    x86 = load_machine("qemu-pc-1g-i386")  # [kernel] highmem: an x86_32 key
    with pytest.raises(BootemuError, match=r"qemu-pc-1g-i386.toml: kernel.highmem: unknown key"):
        boot_machine(x86, arch="numa64")
    # A machine whose arch is not installed keeps its tables until the plugin boots it.
    path = tmp_path / "dt.toml"
    text = (ROOT / "examples" / "dt-arch" / "machines" / "board-4g.toml").read_text()
    path.write_text(text.replace('arch = "dt64"', 'arch = "dt-not-installed"'))
    machine = load_machine(str(path))
    assert machine.validated_for is None and "dt" in machine.raw

    result = boot_machine(machine, allocator="memblock", arch_plugin=_toy_with_dt_tables())
    assert result.boot.machine.tables["dt"]["memory"][0]["reg"] == 0x40000000


def _toy_with_dt_tables():
    """The toy arch of test_sequencer declaring the dt example's tables."""
    import sys

    from test_sequencer import ToyArch

    sys.path.insert(0, str(ROOT / "examples" / "dt-arch"))
    try:
        from bootemu_dt import Dt64
    finally:
        sys.path.pop(0)

    class Arch(ToyArch):
        MACHINE_SCHEMA = Dt64.MACHINE_SCHEMA

    return Arch()
