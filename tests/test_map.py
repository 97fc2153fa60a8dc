"""``bootemu map``: the picture is parsed back (xml.etree) and checked against the boot reports.

Expected values come from the reports of separate boots of the same machine (the map must draw
what the boot produced, record by record), from the real boot log's ``BIOS-e820`` lines, and
from the README's arithmetic for the seed's buffer (3 GiB / 4 KiB = pfn 786432, 64 MiB = 16384
pages).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from bootemu.cli import main
from bootemu.compare import compare_machine
from bootemu.e820 import type_name
from bootemu.machine import list_presets, load_machine
from bootemu.mapview import default_allocators, draw, installed_allocators
from bootemu.mapview.model import DENSE_RECORDS, drawn_records, owner_of

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
PAE_1G = DATA / "real-boots" / "pae_1G.log"
GIB = 1 << 30


def _parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def _rects(root: ET.Element, band: str | None = None, kind: str | None = None) -> list[dict]:
    out = []
    for el in root.iter(f"{SVG}rect"):
        if "data-start" not in el.attrib:
            continue
        if band is not None and el.get("data-band") != band:
            continue
        if kind is not None and el.get("data-kind") != kind:
            continue
        out.append(
            el.attrib | {"start": int(el.get("data-start"), 16), "end": int(el.get("data-end"), 16)}
        )
    return out


def _bands(root: ET.Element) -> list[str]:
    return [g.get("data-band") for g in root.iter(f"{SVG}g") if g.get("class") == "band"]


def _check_against_reports(root: ET.Element, reports: list[dict]) -> None:
    """Every reserve/alloc record and every handed-off run and violation of each report is a
    region of its band with exactly its addresses; nothing else is drawn there."""
    assert _bands(root) == [r["allocator"] for r in reports]
    for rep in reports:
        band = rep["allocator"]
        records = drawn_records(rep)
        drawn = _rects(root, band)
        allocs = [d for d in drawn if d["data-kind"] == "alloc"]
        if len(records) - sum(r["op"] == "reserve" for _, r in records) <= DENSE_RECORDS:
            want = Counter((r["op"], r["addr"], r["addr"] + r["size"]) for _, r in records)
            got = Counter(
                (d["data-kind"], d["start"], d["end"])
                for d in drawn
                if d["data-kind"] in ("reserve", "alloc")
            )
            assert got == want
            for d in allocs:  # the owner drawn is the owner of that very record
                assert d["data-owner"] == owner_of(rep["allocations"][int(d["data-index"])])
        free = Counter(
            (d["start"], d["end"], int(d["data-node"])) for d in drawn if d["data-kind"] == "free"
        )
        assert free == Counter(
            (s * 4096, e * 4096, n) for s, e, n in rep["handoff"].get("free_ranges", [])
        )
        viol = Counter(
            (d["start"], d["end"], d["data-violation"])
            for d in drawn
            if d["data-kind"] == "violation"
        )
        assert viol == Counter(
            (v["start_pfn"] * 4096, v["end_pfn"] * 4096, v["kind"])
            for v in rep["violations"]
            if v["end_pfn"] > v["start_pfn"]
        )


def _map(tmp_path: Path, *args: str, name: str = "m.svg") -> tuple[int, str]:
    out = tmp_path / name
    rc = main(["map", *args, "-o", str(out)])
    return rc, out.read_text() if out.exists() else ""


def test_seed_regions_match_the_reports(tmp_path: Path) -> None:
    rc, text = _map(tmp_path, "seed-numa-8g", "--allocators", "bootmem,bootmem2")
    assert rc == 0
    reports = [
        r.report for r in compare_machine(load_machine("seed-numa-8g"), ["bootmem", "bootmem2"])
    ]
    _check_against_reports(_parse(text), reports)


def test_violations_highlighted_on_the_buffer_preset(tmp_path: Path) -> None:
    rc, text = _map(tmp_path, "seed-numa-8g-buffer", "--allocators", "bootmem,bootmem2")
    assert rc == 1  # bootmem's violations, as `bootemu compare` reports them
    root = _parse(text)
    # README: the 64 MiB buffer at 3 GiB freed with free_bootmem(): exactly [3G, 3G+64M)
    # double-handed and misplaced on classic bootmem, nothing on bootmem2.
    got = sorted(
        (d["data-violation"], d["start"], d["end"]) for d in _rects(root, "bootmem", "violation")
    )
    assert got == [
        ("double-handoff", 3 * GIB, 3 * GIB + (64 << 20)),
        ("misplaced", 3 * GIB, 3 * GIB + (64 << 20)),
    ]
    assert _rects(root, "bootmem2", "violation") == []
    # What the checks say is visible: [3G, 3G+64M) lies in node 1's block, yet its run is on
    # node 0's free lists ("pages given to node 0's free lists, then again by node 1").
    free = [d for d in _rects(root, "bootmem", "free") if d["start"] <= 3 * GIB < d["end"]]
    assert [d["data-node"] for d in free] == ["0"]
    block = [d for d in _rects(root, "machine", "block") if d["start"] <= 3 * GIB < d["end"]]
    assert [d["data-node"] for d in block] == ["1"]
    # The buffer itself: reserved by the workload, then freed, on both backends.
    for band in ("bootmem", "bootmem2"):
        buffer = [d for d in _rects(root, band, "reserve") if d.get("data-freed")]
        assert [(d["start"], d["end"]) for d in buffer] == [(3 * GIB, 3 * GIB + (64 << 20))]
    reports = [
        r.report
        for r in compare_machine(load_machine("seed-numa-8g-buffer"), ["bootmem", "bootmem2"])
    ]
    _check_against_reports(root, reports)


def test_e820_entries_drawn_with_their_type(tmp_path: Path) -> None:
    rc, text = _map(tmp_path, "qemu-pc-1g-i386", "--allocators", "bootmem")
    assert rc == 0
    root = _parse(text)
    # The SeaBIOS map of the real pae_1G boot (its BIOS-e820 lines; 2.6.25 keeps it as is).
    want = [
        (0x0, 0x9FC00, "usable"),
        (0x9FC00, 0xA0000, "reserved"),
        (0xF0000, 0x100000, "reserved"),
        (0x100000, 0x3FFE0000, "usable"),
        (0x3FFE0000, 0x40000000, "reserved"),
        (0xFFFC0000, 0x100000000, "reserved"),
    ]
    e820 = _rects(root, "machine", "e820")
    assert [(d["start"], d["end"], d["data-type"]) for d in e820] == want
    fills = {d["data-type"]: d["fill"] for d in e820}
    assert fills["usable"] != fills["reserved"]
    # 1G to 4G-256K has no entry and nothing in it: a collapsed hole with break marks.
    # 2.6.25's reserve_ebda_region() reserves the EBDA's page (SeaBIOS: EBDA at 0x9fc00, the
    # trace's "reserve_bootmem addr=9fc00 size=1000"; v2.6.26 reserves from there to 1 MiB).
    holes = [(d["start"], d["end"]) for d in _rects(root, None, "hole")]
    assert holes == [(0x40000000, 0xFFFC0000)]
    assert [
        (d["start"], d["end"])
        for d in _rects(root, "bootmem", "reserve")
        if d["start"] <= 0xA0000 < d["end"]
    ] == [(639 << 10, (639 << 10) + 4096)]
    heights = {(d["start"], d["end"]): float(d["height"]) for d in e820}
    hole_h = {float(d["height"]) for d in _rects(root, None, "hole")}
    # A 1 KiB entry and the 1 GiB of RAM are both visible; the 3 GiB hole is no taller than
    # the 1 KiB entry (collapsed), and the axis grows with size.
    assert heights[(0x9FC00, 0xA0000)] >= 3
    assert max(hole_h) <= heights[(0x9FC00, 0xA0000)] * 5
    assert heights[(0x100000, 0x3FFE0000)] > heights[(0x0, 0x9FC00)] > heights[(0x9FC00, 0xA0000)]


def test_axis_is_monotone_and_ticks_are_addresses(tmp_path: Path) -> None:
    rc, text = _map(tmp_path, "sgi-sparse", "--allocators", "bootmem2")
    root = _parse(text)
    ys: dict[int, float] = {}
    for d in _rects(root):
        if d["data-kind"] in ("e820", "block", "hole"):
            ys[d["start"]] = float(d["y"])
            ys.setdefault(d["end"], float(d["y"]) + float(d["height"]))
    order = [ys[a] for a in sorted(ys)]
    assert order == sorted(order)
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks and all(re.fullmatch(r"0x[0-9a-f]+", t) for t in ticks)
    # 4 nodes 256 GiB apart: the last block ends at 3 * 256 GiB + 16 * 3 GiB + 4 GiB = 820 GiB.
    assert f"{820 * GIB:#x}" in ticks


def test_bands_default_to_every_backend_machine_default_first(tmp_path: Path) -> None:
    rc, text = _map(tmp_path, "qemu-numa-interleave-amd64")
    machine = load_machine("qemu-numa-interleave-amd64")
    want = [machine.allocator, *sorted(set(installed_allocators()) - {machine.allocator})]
    assert default_allocators(machine) == want
    assert _bands(_parse(text)) == want
    assert {"bootmem", "bootmem2", "memblock"} <= set(want)


def test_deterministic_svg_and_html(tmp_path: Path) -> None:
    args = ("seed-numa-8g-generic-free", "--allocators", "bootmem,bootmem2")
    assert _map(tmp_path, *args, name="a.svg") == _map(tmp_path, *args, name="b.svg")
    assert _map(tmp_path, *args, name="a.html") == _map(tmp_path, *args, name="b.html")


def test_html_is_self_contained_and_has_the_same_regions(tmp_path: Path) -> None:
    args = ("qemu-pc-1g-i386", "--allocators", "bootmem,bootmem2")
    _, svg = _map(tmp_path, *args, name="m.svg")
    _, html = _map(tmp_path, *args, name="m.html")
    root = _parse(html)  # well-formed: xml.etree reads it
    assert svg in html
    for attr in ("src", "href"):
        assert not re.search(rf'\b{attr}="(https?:)?//', html)
    urls = set(re.findall(r"https?://[^\"' ]+", html))
    assert urls == {"http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg"}
    assert root.find(".//{http://www.w3.org/1999/xhtml}script") is not None
    regions = _rects(root)
    assert regions and all(el is not None for el in root.iter(f"{SVG}title"))
    assert len(regions) == len(_rects(_parse(svg)))


def test_hover_titles_name_the_owner(tmp_path: Path) -> None:
    _, text = _map(tmp_path, "qemu-pc-1g-i386", "--allocators", "bootmem")
    root = _parse(text)
    owners = {d["data-owner"] for d in _rects(root, "bootmem") if "data-owner" in d}
    # setup_bootmem_allocator() and start_kernel() of 2.6.25 on i386: the image with its
    # tables and bitmap, the BIOS areas, mem_map, the pagetable_init() tables, the hashes,
    # the per-cpu area.
    assert {
        "kernel image",
        "firmware / BIOS / low memory",
        "mem_map & usemaps",
        "page tables",
        "hashes",
        "per-cpu",
    } <= owners
    for el in root.iter(f"{SVG}rect"):
        if el.get("data-kind") in ("alloc", "reserve"):
            title = el.find(f"{SVG}title")
            assert title is not None and f"owner: {el.get('data-owner')}" in title.text


@pytest.mark.parametrize(
    ("record", "owner"),
    [
        ({"label": "mem_map", "caller": "alloc_node_mem_map"}, "mem_map & usemaps"),
        ({"label": "vmemmap PMD node 1", "caller": "vmemmap_alloc_block"}, "mem_map & usemaps"),
        ({"label": "vmemmap page table node 1"}, "page tables"),
        ({"label": "pmd for pgd 3", "caller": "pagetable_init"}, "page tables"),
        ({"label": "PGTABLE"}, "page tables"),
        ({"label": "Dentry cache hash", "caller": "alloc_large_system_hash"}, "hashes"),
        ({"label": "per-cpu area cpu 0", "caller": "setup_per_cpu_areas"}, "per-cpu"),
        ({"label": "unit_map", "caller": "pcpu_setup_first_chunk"}, "per-cpu"),
        ({"label": "TEXT DATA BSS"}, "kernel image"),
        ({"label": "bootmem bitmap node1"}, "bootmem bitmap"),
        ({"label": "NODE_DATA(1)"}, "node data"),
        ({"label": "numa_distance"}, "node data"),
        ({"label": "Normal wait table", "caller": "zone_wait_table_init"}, "wait tables"),
        ({"label": "EBDA and BIOS (to 1 MiB)"}, "firmware / BIOS / low memory"),
        ({"label": "", "caller": "", "wrapper": "__alloc_bootmem"}, "other"),
    ],
)
def test_owner_of(record: dict, owner: str) -> None:
    assert owner_of(record) == owner


def test_reservations_carry_labels_in_the_report() -> None:
    """New report content (backwards compatible: the key existed, empty for reserves)."""
    for name in ("qemu-pc-1g-i386", "seed-numa-8g"):
        for result in compare_machine(load_machine(name), ["bootmem", "memblock"]):
            reserves = [a for a in result.report["allocations"] if a["op"] == "reserve"]
            assert reserves and all(a["label"] for a in reserves)


def test_free_ranges_count_every_handed_page() -> None:
    """``handoff.free_ranges``: every page the page allocator accepted, once."""
    for name in ("seed-numa-8g-generic-free", "qemu-pc-1g-i386"):
        for result in compare_machine(load_machine(name), ["bootmem", "bootmem2"]):
            rep = result.report
            runs = rep["handoff"]["free_ranges"]
            assert runs == sorted(runs)
            assert sum(e - s for s, e, _ in runs) == rep["handoff"]["pages"]


def test_boot_log_is_imported_first(tmp_path: Path) -> None:
    from bootemu.importers import import_dmesg

    rc, text = _map(tmp_path, str(PAE_1G), "--allocators", "memblock")
    assert rc == 0
    root = _parse(text)
    assert _bands(root) == ["memblock"]
    log = PAE_1G.read_text()
    machine, _ = import_dmesg(log, source=str(PAE_1G), arch=None, profile=None, overrides=())
    _check_against_reports(root, [r.report for r in compare_machine(machine, ["memblock"])])
    # The real kernel's own map, after its "e820: update" of page 0 and "e820: remove" of
    # 640K-1M (lines 29-30 of the log).
    e820 = [(d["start"], d["end"], d["data-type"]) for d in _rects(root, "machine", "e820")]
    bios = [
        (int(a, 16), int(b, 16) + 1, t)
        for a, b, t in re.findall(r"BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (\w+)", log)
    ]
    assert bios[0] == (0, 0x9FC00, "usable")
    assert e820 == [(0, 0x1000, "reserved"), (0x1000, 0x9FC00, "usable"), *bios[1:]]
    # A .txt copy is a log too.
    copy = tmp_path / "boot.txt"
    copy.write_text(log)
    assert _map(tmp_path, str(copy), "--allocators", "memblock", name="c.svg")[1] == text.replace(
        "pae_1G", "boot"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["qemu-pc-1g-i386", "--allocators", "bootmem,slab", "-o", "m.svg"],
            "bootemu: unknown allocator 'slab' (known: ",
        ),
        (["qemu-pc-1g-i386", "-o", "m.png"], "m.png: unknown picture format '.png'"),
        (["qemu-pc-1g-i386", "--allocators", ",", "-o", "m.svg"], "--allocators: no backend"),
        (["no-such-machine", "-o", "m.svg"], "no-such-machine: no such machine file or preset"),
        (["qemu-pc-1g-i386"], "the following arguments are required: -o"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path: Path, monkeypatch, capsys, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["map", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "m.svg").exists() and not (tmp_path / "m.png").exists()


FAST_PRESETS = [name for name, _ in list_presets() if name != "numa-4t"]


@pytest.mark.parametrize("preset", FAST_PRESETS)
def test_every_preset_draws(preset: str) -> None:
    machine = load_machine(preset)
    reports = [r.report for r in compare_machine(machine, default_allocators(machine))]
    root = _parse(draw(reports))
    _check_against_reports(root, reports)
    assert [(d["start"], d["end"], d["data-type"]) for d in _rects(root, "machine", "e820")] == [
        (s, e, type_name(t)) for s, e, t in reports[0]["memory"]["e820"]
    ]
    blocks = Counter(
        (d["start"], d["end"], d["data-node"]) for d in _rects(root, "machine", "block")
    )
    assert blocks == Counter(
        (s * 4096, e * 4096, str(n["id"])) for n in reports[0]["nodes"] for s, e in n["blocks"]
    )


def test_numa_4t_draws_dense() -> None:
    """61 000 requests: same-owner neighbours merge, and every record is inside a region of its
    owner in its band, the counts adding up to the records."""
    reports = [r.report for r in compare_machine(load_machine("numa-4t"), ["bootmem2"])]
    root = _parse(draw(reports))
    regions = sorted(
        (d["start"], d["end"], d["data-owner"], int(d.get("data-count", 1)))
        for d in _rects(root, "bootmem2", "alloc")
    )
    records = [r for _, r in drawn_records(reports[0]) if r["op"] == "alloc"]
    assert len(records) > DENSE_RECORDS and 100 * len(regions) < len(records)
    assert sum(n for *_, n in regions) == len(records)
    starts = [s for s, *_ in regions]
    import bisect

    for r in records:
        s, e, owner, _ = regions[bisect.bisect_right(starts, r["addr"]) - 1]
        assert s <= r["addr"] and r["addr"] + r["size"] <= e and owner == owner_of(r)


def test_readme_picture_is_fresh(tmp_path: Path) -> None:
    """docs/map-seed-numa-8g.svg is `bootemu map seed-numa-8g --allocators bootmem,bootmem2`."""
    _, text = _map(tmp_path, "seed-numa-8g", "--allocators", "bootmem,bootmem2")
    assert (ROOT / "docs" / "map-seed-numa-8g.svg").read_text() == text


def test_set_edits_the_machine_before_the_boot(tmp_path: Path) -> None:
    rc, text = _map(
        tmp_path, "qemu-pc-1g-i386", "--allocators", "bootmem", "--set", "kernel.cmdline=mem=512M"
    )
    assert rc == 0
    # 2.6.25 e820_32.c limit_regions(): the RAM entry that reaches 512M is cut there and the
    # table ends with it.
    e820 = [(d["start"], d["end"], d["data-type"]) for d in _rects(_parse(text), "machine", "e820")]
    assert e820 == [
        (0x0, 0x9FC00, "usable"),
        (0x9FC00, 0xA0000, "reserved"),
        (0xF0000, 0x100000, "reserved"),
        (0x100000, 512 << 20, "usable"),
    ]


REAL_BOOTS = sorted(
    str(p.relative_to(DATA))
    for p in [*(DATA / "real-boots").glob("*.log"), *(DATA / "real-boots-2008").rglob("*.log")]
    if "zoneinfo" not in p.name
)


@pytest.mark.parametrize("log", REAL_BOOTS)
def test_every_real_boot_draws(log: str) -> None:
    """The fifteen 6.1 boots and the 2008 boots (2.6.25, bootmem2 RFC, x86_64 NUMA)."""
    from bootemu.importers import import_dmesg

    path = DATA / log
    machine, _ = import_dmesg(path.read_text(), source=log, arch=None, profile=None, overrides=())
    reports = [r.report for r in compare_machine(machine, default_allocators(machine))]
    _check_against_reports(_parse(draw(reports)), reports)


def test_log_without_version_needs_profile(tmp_path: Path, capsys) -> None:
    log = tmp_path / "bare.log"
    log.write_text(
        "".join(
            line
            for line in PAE_1G.read_text().splitlines(keepends=True)
            if "Linux version" not in line
        )
    )
    assert _map(tmp_path, str(log), "--allocators", "memblock")[0] == 2
    assert "pass --profile" in capsys.readouterr().err
    rc, text = _map(
        tmp_path, str(log), "--allocators", "memblock", "--profile", "6.1", "--arch", "x86_32"
    )
    assert rc == 0 and _bands(_parse(text)) == ["memblock"]
    assert main(["map", "qemu-pc-1g-i386", "--profile", "6.1", "-o", str(tmp_path / "x.svg")]) == 2
