"""The shipped example arch (examples/dt-arch) boots on all four backends, loaded from the
repository (no install needed: its folder goes on sys.path; .ci/run also installs it and runs
its own tests)."""

from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

import pytest

from bootemu.machine import load_machine
from bootemu.plugins import ARCH_GROUP, discover
from bootemu.sequencer import boot_machine
from bootemu.testing import check_arch

EXAMPLE = Path(__file__).parent.parent / "examples" / "dt-arch"
BOARD = str(EXAMPLE / "machines" / "board-4g.toml")
BACKENDS = ("bootmem", "bootmem2", "bootmem2-perblock", "memblock")


@pytest.fixture
def dt64(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "bootemu_dt", raising=False)
    from bootemu_dt import Dt64

    return Dt64


def test_the_example_boots_on_all_four_backends(dt64):
    results = check_arch(dt64, BOARD, backends=BACKENDS)
    assert sorted(results) == sorted(BACKENDS)
    for r in results.values():
        assert r.report["arch"] == "dt64" and r.report["profile"] == "6.1"


def test_the_example_through_its_entry_point(dt64):
    """What `pip install ./examples/dt-arch` declares, found by bootemu's discovery."""
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    value = meta["project"]["entry-points"][ARCH_GROUP]["dt64"]
    ep = md.EntryPoint(name="dt64", value=value, group=ARCH_GROUP)
    found = discover(ARCH_GROUP, entry_points=[ep])
    arch = found["dt64"].load()
    assert arch is dt64
    machine = load_machine(BOARD)
    result = boot_machine(machine, allocator="bootmem2-perblock", arch_plugin=arch())
    assert result.exit_code == 0


def test_the_example_is_small():
    """Issue 12: a device-tree arch needs under ~150 lines."""
    lines = (EXAMPLE / "bootemu_dt" / "__init__.py").read_text().splitlines()
    assert len(lines) < 150
