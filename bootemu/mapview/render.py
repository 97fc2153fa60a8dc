"""SVG and HTML text of a memory map (hand-written SVG: no dependency, byte-stable output).

Every region is a ``<rect>`` with ``data-kind``, ``data-band``, ``data-start`` and
``data-end`` (hex bytes, end exclusive) and more ``data-*`` attributes, and a ``<title>`` child
that browsers show on hover. Elements are written in a fixed order (bands in the order given,
regions sorted by address) and numbers with two decimals, so the same reports give the same
bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from bootemu.mapview.model import (
    OWNER_COLOURS,
    OWNERS,
    Axis,
    Band,
    Region,
    human,
)

TOP = 92.0
AXIS_W = 150.0
LANE_GAP = 4.0
MACHINE_LANE = 30.0
BAND_LANES = (
    ("reserve", "reserved", 44.0),
    ("alloc", "allocated", 64.0),
    ("free", "to buddy", 44.0),
)
BAND_W = sum(w for _, _, w in BAND_LANES) + LANE_GAP * (len(BAND_LANES) - 1)
BAND_GAP = 24.0
LEGEND_W = 250.0
TICK_SPACING = 11.0

E820_COLOURS = {
    "usable": "#e5f5e0",
    "reserved": "#bdbdbd",
    "acpi": "#fdd0a2",
    "nvs": "#fdae6b",
    "unusable": "#636363",
}
OTHER_E820 = "#9e9ac8"
NODE_COLOURS = (
    "#b3de69",
    "#8dd3c7",
    "#ffffb3",
    "#bebada",
    "#fdb462",
    "#fccde5",
    "#80b1d3",
    "#ccebc5",
)
VIOLATION = "#d00000"

STYLE = """
text { font-family: DejaVu Sans, Verdana, sans-serif; fill: #222; }
.tick { font-size: 10px; font-family: DejaVu Sans Mono, monospace; }
.size { font-size: 9px; fill: #777; }
.lane { font-size: 9px; fill: #555; }
.head { font-size: 13px; font-weight: bold; }
.status { font-size: 10px; }
.bad { fill: #d00000; }
.legend { font-size: 11px; }
.note { font-size: 10px; fill: #555; }
rect.region { stroke: #fff; stroke-width: 0.3; }
rect.freed { fill-opacity: 0.35; stroke: #333; stroke-dasharray: 2 1; }
rect.violation { fill: #ff0000; fill-opacity: 0.25; stroke: #d00000; stroke-width: 1.5; }
rect.hole { fill: url(#hatch); }
"""


def _f(v: float) -> str:
    return f"{v:.2f}"


def _node_colour(node: int) -> str:
    return NODE_COLOURS[node % len(NODE_COLOURS)]


def _colour(region: Region) -> str:
    if region.kind == "e820":
        return E820_COLOURS.get(region.owner, OTHER_E820)
    if region.kind in ("block", "free"):
        return _node_colour(int(dict(region.attrs)["node"]))
    if region.kind == "violation":
        return VIOLATION
    return OWNER_COLOURS.get(region.owner, OWNER_COLOURS["other"])


class _Svg:
    """A list of lines with helpers for the few elements the map uses."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def text(self, x: float, y: float, text: str, cls: str, anchor: str = "start") -> None:
        a = "" if anchor == "start" else f' text-anchor="{anchor}"'
        self.add(f'<text x="{_f(x)}" y="{_f(y)}" class="{cls}"{a}>{escape(text)}</text>')

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        fill: str,
        extra: str = "",
        title: str | None = None,
    ) -> None:
        head = f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" fill="{fill}"'
        if title is None:
            self.add(f"{head}{extra}/>")
        else:
            self.add(f"{head}{extra}><title>{escape(title)}</title></rect>")

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, width: float) -> None:
        self.add(
            f'<line x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" '
            f'stroke="{stroke}" stroke-width="{_f(width)}"/>'
        )


def _region(svg: _Svg, r: Region, band: str, axis: Axis, x: float, w: float) -> None:
    """One region: the y extent from the axis; at least one pixel, so a 24-byte allocation
    next to a 2 TiB run is still a visible line."""
    y0, y1 = TOP + axis.at(r.start), TOP + axis.at(r.end)
    h = max(y1 - y0, 1.0)
    classes = ["region", r.kind]
    if dict(r.attrs).get("freed"):
        classes.append("freed")
    attrs = [
        ("class", " ".join(classes)),
        ("data-kind", r.kind),
        ("data-band", band),
        ("data-start", f"{r.start:#x}"),
        ("data-end", f"{r.end:#x}"),
        *((f"data-{k}", v) for k, v in r.attrs),
    ]
    extra = "".join(f" {k}={quoteattr(v)}" for k, v in attrs)
    svg.rect(x, y0, w, h, _colour(r), extra, r.title)


def _ticks(axis: Axis) -> list[int]:
    """Addresses to label: the machine's structure first, then every other cut, each kept
    only if it is at least ``TICK_SPACING`` pixels from a label already kept."""
    kept: list[float] = []
    chosen: list[int] = []
    fine = sorted(axis.y)
    for addr in [*axis.coarse, *fine]:
        y = axis.at(addr)
        i = bisect.bisect_left(kept, y)
        near = [kept[j] for j in (i - 1, i) if 0 <= j < len(kept)]
        if all(abs(y - k) >= TICK_SPACING for k in near):
            kept.insert(i, y)
            chosen.append(addr)
    return sorted(set(chosen))


def _axis(svg: _Svg, axis: Axis, right: float) -> None:
    for s, e, y0, y1, kind in axis.segments:
        if kind == "hole":
            # Break marks: the axis stops, two slanted strokes, and the gap is hatched.
            svg.rect(
                AXIS_W - 6,
                TOP + y0,
                right - AXIS_W + 6,
                y1 - y0,
                "url(#hatch)",
                f' class="hole" data-kind="hole" data-start="{s:#x}" data-end="{e:#x}"',
                f"hole [{s:#x}-{e:#x}) {human(e - s)}: no e820 entry (collapsed)",
            )
            for yy in (y0 + 3, y1 - 3):
                svg.line(AXIS_W - 8, TOP + yy + 2, AXIS_W + 4, TOP + yy - 2, "#222", 1.2)
        else:
            svg.line(AXIS_W, TOP + y0, AXIS_W, TOP + y1, "#222", 1.0)
    for c0, c1 in zip(axis.coarse, axis.coarse[1:], strict=False):
        y0, y1 = axis.at(c0), axis.at(c1)
        if y1 - y0 >= 24 and any(k != "hole" for s, _, _, _, k in axis.segments if s == c0):
            svg.text(6, TOP + (y0 + y1) / 2 + 3, human(c1 - c0), "size")
    for addr in _ticks(axis):
        y = TOP + axis.at(addr)
        svg.line(AXIS_W - 5, y, right, y, "#e6e6e6", 0.5)
        svg.line(AXIS_W - 5, y, AXIS_W, y, "#222", 1.0)
        svg.text(AXIS_W - 8, y + 3.5, f"{addr:#x}", "tick", "end")


def _band_header(svg: _Svg, band: Band, x: float) -> None:
    svg.text(x, TOP - 44, band.name, "head")
    status = "booted" if band.outcome == "ok" else f"panic: {band.panic or ''}"
    if len(status) > 30:
        status = status[:29] + "…"
    cls = "status" if band.outcome == "ok" else "status bad"
    svg.add(
        f'<text x="{_f(x)}" y="{_f(TOP - 30)}" class="{cls}"'
        f"><title>{escape(band.panic or 'booted')}</title>{escape(status)}</text>"
    )
    kinds: dict[str, int] = {}
    for v in band.violation:
        kinds[v.owner] = kinds.get(v.owner, 0) + 1
    if kinds or band.findings:
        text = ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items())) or "findings"
        svg.add(
            f'<text x="{_f(x)}" y="{_f(TOP - 18)}" class="status bad"><title>'
            f"{escape(chr(10).join([v.title for v in band.violation] + band.findings))}</title>"
            f"{escape(text)}</text>"
        )
    else:
        svg.text(x, TOP - 18, "no violation", "status")
    if band.dense:
        svg.text(x + BAND_W, TOP - 44, "same-owner runs merged", "lane", "end")
    lx = x
    for _, name, w in BAND_LANES:
        svg.text(lx + w / 2, TOP - 5, name, "lane", "middle")
        lx += w + LANE_GAP


def _legend(
    svg: _Svg, x: float, bands: Sequence[Band], e820: Sequence[Region], blocks: Sequence[Region]
) -> float:
    y = TOP - 44
    svg.text(x, y, "Legend", "head")
    y += 18

    def swatch(fill: str, label: str, extra: str = "") -> None:
        nonlocal y
        outline = "" if "stroke=" in extra else ' stroke="#888" stroke-width="0.5"'
        svg.rect(x, y - 9, 14, 11, fill, extra + outline)
        svg.text(x + 20, y, label, "legend")
        y += 15

    used = {r.owner for b in bands for r in (*b.reserve, *b.alloc)}
    svg.text(x, y, "reserved / allocated, by owner", "note")
    y += 14
    for name, colour, _ in OWNERS:
        if name in used:
            swatch(colour, name)
    swatch("#ffffff", "freed again later", ' stroke="#333" stroke-dasharray="2 1"')
    y += 4
    svg.text(x, y, "to buddy: free lists of node N;", "note")
    y += 12
    svg.text(x, y, "node lane: node blocks", "note")
    y += 14
    nodes = sorted(
        {int(dict(r.attrs)["node"]) for r in (*blocks, *(f for b in bands for f in b.free))}
    )
    for n in nodes:
        swatch(_node_colour(n), f"node {n}")
    y += 4
    svg.text(x, y, "e820 lane: firmware map types", "note")
    y += 14
    for t in sorted({r.owner for r in e820}):
        swatch(E820_COLOURS.get(t, OTHER_E820), t)
    y += 4
    swatch("#ff0000", "violation (checks)", ' fill-opacity="0.25" stroke="#d00000"')
    swatch("url(#hatch)", "hole: no e820 entry (collapsed)")
    y += 6
    for line in (
        "Axis: physical address (hex), broken.",
        "Cut where anything begins or ends;",
        "each piece's height grows with log2",
        "of its size, holes collapsed, so a",
        "page and terabytes are both visible.",
        "Grey figures: size of each e820/node",
        "piece. Hover a region for details.",
    ):
        svg.text(x, y, line, "note")
        y += 13
    return y


def render_svg(
    title: str,
    subtitle: str,
    bands: Sequence[Band],
    e820: Sequence[Region],
    blocks: Sequence[Region],
    axis: Axis,
) -> str:
    """The whole picture as SVG text."""
    machine_x = AXIS_W + 8
    bands_x = machine_x + 2 * MACHINE_LANE + LANE_GAP + BAND_GAP
    right = bands_x + len(bands) * (BAND_W + BAND_GAP) - BAND_GAP
    legend_x = right + 28
    width = legend_x + LEGEND_W
    body = _Svg()
    _axis(body, axis, right)
    body.text(machine_x + MACHINE_LANE / 2, TOP - 5, "e820", "lane", "middle")
    body.text(machine_x + MACHINE_LANE * 1.5 + LANE_GAP, TOP - 5, "node", "lane", "middle")
    body.text(machine_x, TOP - 44, "machine", "head")
    body.add('<g data-band="machine">')
    for r in e820:
        _region(body, r, "machine", axis, machine_x, MACHINE_LANE)
    for r in blocks:
        _region(body, r, "machine", axis, machine_x + MACHINE_LANE + LANE_GAP, MACHINE_LANE)
    body.add("</g>")
    for i, band in enumerate(bands):
        x = bands_x + i * (BAND_W + BAND_GAP)
        body.add(
            f'<g class="band" data-band={quoteattr(band.name)} '
            f"data-outcome={quoteattr(band.outcome)}>"
        )
        _band_header(body, band, x)
        lx = x
        for kind, _, w in BAND_LANES:
            for r in getattr(band, kind):
                _region(body, r, band.name, axis, lx, w)
            lx += w + LANE_GAP
        for r in band.violation:
            _region(body, r, band.name, axis, x - 2, BAND_W + 4)
            # A bar beside the band, so that a one-page violation is seen at a glance.
            y0 = TOP + axis.at(r.start)
            body.rect(x + BAND_W + 3, y0, 4, max(TOP + axis.at(r.end) - y0, 3.0), VIOLATION)
        body.add("</g>")
    legend_end = _legend(body, legend_x, bands, e820, blocks)
    height = max(TOP + axis.height + 24, legend_end + 10)
    body.text(AXIS_W - 8, TOP + axis.height + 16, "physical address", "note", "end")
    head = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{_f(width)}" height="{_f(height)}" viewBox="0 0 {_f(width)} {_f(height)}">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "<defs>",
        '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4f4f4"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#aaa" stroke-width="2"/></pattern>',
        "</defs>",
        f'<rect width="{_f(width)}" height="{_f(height)}" fill="#fff"/>',
        f'<text x="8" y="20" class="head">{escape(title)}</text>',
        f'<text x="8" y="36" class="note">{escape(subtitle)}</text>',
    ]
    return "\n".join([*head, *body.lines, "</svg>"]) + "\n"


_SCRIPT = """//<![CDATA[
(function () {
  var info = document.getElementById("info");
  document.querySelectorAll("[data-start]").forEach(function (el) {
    el.addEventListener("mouseenter", function () {
      var t = el.querySelector("title");
      info.textContent = (el.getAttribute("data-band") || "") + ": " + (t ? t.textContent : "");
    });
  });
})();
//]]>"""


def render_html(title: str, svg: str) -> str:
    """The SVG inline in a small self-contained HTML page (no network resource), with a box
    that shows the details of the region under the mouse."""
    return (
        "<!DOCTYPE html>\n"
        '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">\n'
        '<head><meta charset="utf-8"/>'
        f"<title>{escape(title)}</title>\n"
        "<style>body { margin: 0; font-family: sans-serif; } "
        "#info { position: fixed; top: 0; right: 0; max-width: 40em; white-space: pre-wrap; "
        "background: #ffffe0; border: 1px solid #999; padding: 4px 8px; font-size: 12px; }"
        "</style></head>\n<body>\n"
        '<div id="info">hover a region</div>\n'
        f"{svg}"
        f"<script>{_SCRIPT}</script>\n"
        "</body>\n</html>\n"
    )
