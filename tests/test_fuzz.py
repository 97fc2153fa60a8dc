"""Fuzzing the command line: nothing breaks the README's promise (tests/fuzz_strategies.py).

Each property runs twice: a fast, derandomized profile in the normal suite (a few dozen fixed
cases, seconds), and a campaign under ``pytest -m fuzz`` (``BOOTEMU_FUZZ_EXAMPLES`` cases per
property, 1500 by default, random each run). The campaign lets a numa64 2.6.25 machine reach
the 64 TiB its kernel addresses; the fast profile keeps it below 1 TiB.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from fuzz_strategies import (
    ALLOCATORS,
    LOGS,
    boot_and_check,
    compare_and_check,
    machine_files,
    run_cli,
    text_mutations,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootemu.machine import list_presets

CAMPAIGN = int(os.environ.get("BOOTEMU_FUZZ_EXAMPLES", "1500"))
_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
FAST = settings(max_examples=40, derandomize=True, **_COMMON)
SLOW = settings(max_examples=CAMPAIGN, **_COMMON)

#: The presets small enough to boot in well under a second (not the 4 TiB numa-4t).
PRESETS = [name for name, _ in list_presets() if name != "numa-4t"]


def _machine_case(text: str, allocator: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.toml"
        path.write_text(text, encoding="utf-8")
        extra = ("--allocator", allocator) if allocator else ()
        boot_and_check(path, Path(tmp), extra)


def _preset_case(name: str, data: st.DataObject) -> None:
    from importlib import resources

    text = data.draw(
        text_mutations(resources.files("bootemu").joinpath(f"presets/{name}.toml").read_text())
    )
    if data.draw(st.integers(0, 4)) == 0:  # now and then all backends side by side
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.toml"
            path.write_text(text, encoding="utf-8")
            compare_and_check(path, Path(tmp), ",".join(ALLOCATORS))
        return
    _machine_case(text, data.draw(st.sampled_from(ALLOCATORS)))


def _dmesg_case(log: Path, data: st.DataObject) -> None:
    text = data.draw(text_mutations(log.read_text(errors="replace")))
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "boot.log", Path(tmp) / "m.toml"
        src.write_text(text, encoding="utf-8", errors="replace")
        code, _, err, _ = run_cli(["import-dmesg", str(src), "-o", str(out)])
        assert code in (0, 2), code
        lines = err.splitlines()
        assert all(line.startswith("bootemu: ") for line in lines), err
        if code == 2:
            assert len(lines) == 1, err
            return
        boot_and_check(out, Path(tmp))


# -- fast profile (normal suite) -------------------------------------------------------------


@FAST
@given(text=machine_files(fast=True), allocator=st.one_of(st.none(), st.sampled_from(ALLOCATORS)))
def test_generated_machine_files_keep_the_promise(text, allocator):
    _machine_case(text, allocator)


@FAST
@given(name=st.sampled_from(PRESETS), data=st.data())
def test_mutated_presets_keep_the_promise(name, data):
    _preset_case(name, data)


@settings(max_examples=12, derandomize=True, **_COMMON)
@given(log=st.sampled_from(LOGS), data=st.data())
def test_mutated_real_logs_keep_the_promise(log, data):
    _dmesg_case(log, data)


# -- campaign (pytest -m fuzz) ---------------------------------------------------------------


@pytest.mark.fuzz
@SLOW
@given(text=machine_files(fast=False), allocator=st.one_of(st.none(), st.sampled_from(ALLOCATORS)))
def test_campaign_generated_machine_files(text, allocator):
    _machine_case(text, allocator)


@pytest.mark.fuzz
@SLOW
@given(name=st.sampled_from(PRESETS), data=st.data())
def test_campaign_mutated_presets(name, data):
    _preset_case(name, data)


@pytest.mark.fuzz
@SLOW
@given(log=st.sampled_from(LOGS), data=st.data())
def test_campaign_mutated_real_logs(log, data):
    _dmesg_case(log, data)
