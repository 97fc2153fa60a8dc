"""The example arch on every installed backend, with bootemu's own test kit."""

from __future__ import annotations

from pathlib import Path

import pytest
from bootemu_dt import Dt64

from bootemu.machine import load_machine
from bootemu.models import BootemuError
from bootemu.testing import check_arch

BOARD = str(Path(__file__).parent.parent / "machines" / "board-4g.toml")
G, M = 1 << 30, 1 << 20


def test_boots_on_every_backend_with_the_same_handoff():
    results = check_arch(Dt64, BOARD)
    report = next(iter(results.values())).report
    # RAM: 4 GiB of /memory minus the 2 MiB no-map firmware region.
    assert report["memory"]["ram_pages"] == (4 * G - 2 * M) // 4096
    # Zones (start, spanned, present): DMA from the first page of RAM (1 GiB + 2 MiB) to
    # dma_limit = 4 GiB, the hole above the first bank spanned but not present; Normal from
    # 4 GiB to the end of the second bank (34 GiB + 2 GiB), only that bank present.
    zones = {z["name"]: (z["start_pfn"], z["spanned"], z["present"]) for z in report["zones"]}
    assert zones["DMA"] == ((G + 2 * M) >> 12, (3 * G - 2 * M) >> 12, (2 * G - 2 * M) >> 12)
    assert zones["Normal"] == ((4 * G) >> 12, (32 * G) >> 12, (2 * G) >> 12)
    for r in results.values():
        labels = {a["label"] for a in r.report["allocations"] if a["op"] == "reserve"}
        assert {"kernel image", "linux,cma", "ramoops"} <= labels


def test_a_typo_names_the_file_and_key():
    with pytest.raises(BootemuError, match=r"board-4g.toml: dt.memory\[0\].sise: unknown key"):
        check_arch(Dt64, BOARD, overrides=["dt.memory.0.sise=1"])


def test_an_image_outside_memory_is_refused():
    machine = load_machine(BOARD, overrides=["dt.image_start=0x10000000"])
    with pytest.raises(BootemuError, match=r"dt.image_start: the kernel image"):
        check_arch(Dt64, machine)
