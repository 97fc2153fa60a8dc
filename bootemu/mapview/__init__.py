"""``bootemu map``: a picture of physical memory after one boot per backend, side by side.

Public API:

- :func:`draw` ``(reports, fmt)``: SVG or HTML text of boot reports (one band per report).
- :func:`machine_for` ``(arg, overrides)``: a machine from a machine file, a preset or a boot
  log (imported with :func:`bootemu.importers.import_dmesg`).
- :func:`default_allocators` ``(machine)``: the machine's backend first, then every other
  installed backend by name.
- :func:`map_machine` ``(arg, allocators, overrides, output)``: the whole command.

What is drawn and how the axis works: :mod:`bootemu.mapview.model`; the SVG:
:mod:`bootemu.mapview.render`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bootemu.mapview.model import band_of, build_axis, machine_regions
from bootemu.mapview.render import render_html, render_svg
from bootemu.models import BootemuError, Machine

FORMATS = {".svg": "svg", ".html": "html", ".htm": "html"}
LOG_SUFFIXES = (".log", ".txt")

__all__ = ["FORMATS", "default_allocators", "draw", "machine_for", "map_machine"]


def draw(reports: Sequence[dict[str, Any]], fmt: str = "svg") -> str:
    """The map of ``reports`` (boots of one machine) as ``"svg"`` or ``"html"`` text."""
    if not reports:
        raise BootemuError("map: no boot to draw")
    first = reports[0]
    bands = [band_of(r) for r in reports]
    e820, blocks = machine_regions(first)
    coarse: set[int] = set()
    for r in reports:
        more_e820, more_blocks = machine_regions(r)
        coarse |= {x for reg in (*more_e820, *more_blocks) for x in (reg.start, reg.end)}
    regions = [reg for b in bands for reg in b.regions()]
    fine = {x for reg in regions for x in (reg.start, reg.end)}
    axis = build_axis(coarse, fine, e820, regions)
    names = ", ".join(r["allocator"] for r in reports)
    title = f"bootemu map: {first['machine']} ({first['arch']}, kernel {first['profile']})"
    subtitle = (
        f"Physical memory at the handoff to the page allocator, one band per backend ({names})"
    )
    svg = render_svg(title, subtitle, bands, e820, blocks, axis)
    if fmt == "svg":
        return svg
    if fmt == "html":
        return render_html(title, svg)
    raise BootemuError(f"map: unknown format {fmt!r} (known: svg, html)")


def is_log(arg: str) -> bool:
    """A boot log: named ``.log`` / ``.txt``, or an existing file that is not a ``.toml``."""
    path = Path(arg)
    suffix = path.suffix.lower()
    return suffix in LOG_SUFFIXES or (path.is_file() and suffix != ".toml")


def machine_for(
    arg: str, overrides: Sequence[str], *, arch: str | None = None, profile: str | None = None
) -> Machine:
    """The machine ``arg`` names: a machine file or preset, or a boot log to import (``arch``
    and ``profile`` as ``import-dmesg`` takes them, for a log that does not say)."""
    from bootemu.machine import load_machine

    if not is_log(arg):
        return load_machine(arg, overrides=overrides)
    from bootemu.importers import import_dmesg

    try:
        text = Path(arg).read_text(errors="replace")
    except OSError as exc:
        raise BootemuError(f"{arg}: cannot read: {exc.strerror}") from exc
    machine, _notes = import_dmesg(
        text, source=arg, arch=arch, profile=profile, overrides=overrides
    )
    return machine


def installed_allocators() -> list[str]:
    from bootemu.plugins import ALLOCATOR_GROUP, discover

    return sorted(discover(ALLOCATOR_GROUP))


def default_allocators(machine: Machine) -> list[str]:
    """Every installed backend, the machine's own first: the map exists to compare them, and
    the band the machine would boot on reads first."""
    rest = [n for n in installed_allocators() if n != machine.allocator]
    return [machine.allocator, *rest]


def check_allocators(names: Sequence[str]) -> None:
    known = installed_allocators()
    for name in names:
        if name not in known:
            raise BootemuError(f"unknown allocator {name!r} (known: {', '.join(known)})")


def output_format(output: Path) -> str:
    fmt = FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise BootemuError(
            f"{output}: unknown picture format {output.suffix or '(no suffix)'!r} "
            "(known: .svg, .html)"
        )
    return fmt


def map_machine(
    arg: str,
    allocators: Sequence[str] | None,
    overrides: Sequence[str],
    output: Path,
    *,
    arch: str | None = None,
    profile: str | None = None,
) -> tuple[str, list[Any]]:
    """Boot ``arg`` once per backend and return ``(picture text, boot results)``.

    Bad input (unknown backend, unknown suffix, a bad machine or log) raises BootemuError
    before anything is booted.
    """
    from bootemu.compare import compare_machine

    fmt = output_format(output)
    if allocators is not None:
        if not allocators:
            raise BootemuError("--allocators: no backend named")
        check_allocators(allocators)
    if not is_log(arg) and (arch or profile):
        raise BootemuError(f"{arg}: --arch and --profile are for a boot log (use --set)")
    machine = machine_for(arg, overrides, arch=arch, profile=profile)
    names = list(allocators) if allocators is not None else default_allocators(machine)
    results = compare_machine(machine, names)
    return draw([r.report for r in results], fmt), results
