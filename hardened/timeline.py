"""A picture of a run: an SVG timeline with one row per rider and one bar per delivery.

run.py's report counts what each rider delivered; this shows *when*. Round robin hands
out orders by count, not by load, so a rider that drew long deliveries is still busy
while the others idle. The bars show those gaps, and a dashed line shows where the run
could have finished had the work been spread evenly (the ideal: work / riders).

The SVG is self-contained (no scripts, external CSS or fonts): a browser opens it
directly, and GitHub shows it inline in a README, where a bar's <title> is its
tooltip. The same records always give the same bytes, so a committed picture changes
only when the run does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape  # quote=True by default: safe in text and in attributes alike
from pathlib import Path
from typing import Any

WIDTH = 900  # px, fixed: the height grows with the riders
LEFT, RIGHT = 90, 30  # margins around the plot; the rider names go on the left
PLOT_W = WIDTH - LEFT - RIGHT
ROW_H, BAR_H = 24, 16
TICKS = 8  # about this many intervals on the time axis
MIN_BAR_PX = 1.0  # an instant delivery (--speed 0) still shows
# Okabe and Ito's palette: distinct with the common kinds of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass(frozen=True)
class Delivery:
    """A completion record placed on the timeline: seconds since the run's time 0."""

    order_id: str
    producer: str
    rider: str
    restaurant: str
    start_s: float  # received_at
    end_s: float  # done_at


def deliveries(records: Sequence[Mapping[str, Any]]) -> list[Delivery]:
    """The records as Deliveries, time 0 being the earliest received_at. Sorted by start
    time, then order id: the output does not depend on the order records arrived in.
    Raises ValueError for a record without valid ISO-8601 times (KeyError if missing)."""
    if not records:
        return []
    times = [(datetime.fromisoformat(r["received_at"]), datetime.fromisoformat(r["done_at"])) for r in records]
    zero = min(received for received, _ in times)
    found = [
        Delivery(
            str(r["order_id"]),
            str(r["producer"]),
            str(r["consumer"]),
            str(r.get("restaurant", "?")),  # records from before restaurants were reported
            (received - zero).total_seconds(),
            (done - zero).total_seconds(),
        )
        for r, (received, done) in zip(records, times, strict=True)
    ]
    return sorted(found, key=lambda d: (d.start_s, d.order_id))


def write_timeline(
    path: str | os.PathLike[str],
    records: Sequence[Mapping[str, Any]],
    riders: Sequence[str],
    producers: Sequence[str],
    ideal_s: float,
    title: str = "",
) -> None:
    """Write the timeline to `path`. The SVG is composed in full before the file is
    opened, so a bad record leaves no half-written file. A missing folder is not
    created: it raises OSError (FileNotFoundError), as does any other write failure."""
    svg = timeline_svg(records, riders, producers, ideal_s, title)
    Path(path).write_text(svg, encoding="utf-8", newline="\n")  # "\n" on Windows too: same bytes


def timeline_svg(
    records: Sequence[Mapping[str, Any]],
    riders: Sequence[str],
    producers: Sequence[str],
    ideal_s: float,
    title: str = "",
) -> str:
    """The SVG text: one row per rider (in the order given, idle ones included), bars
    coloured by producer. A rider or producer in the records but not in the lists gets
    a row or a colour after the others, so that every record has its bar."""
    found = deliveries(records)
    riders = [*riders, *sorted({d.rider for d in found} - set(riders))]
    producers = [*producers, *sorted({d.producer for d in found} - set(producers))]
    colours = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(producers)}
    finish_s = max((d.end_s for d in found), default=0.0)
    step, axis_end = time_axis(max(finish_s, ideal_s))
    scale = PLOT_W / axis_end  # px per second
    top = 34 if title else 10  # below the title: the legend, then the two markers' labels
    plot_top = top + 58
    plot_bottom = plot_top + ROW_H * len(riders)
    height = plot_bottom + 46
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        # Opaque: a transparent picture would show black text on a dark-mode page.
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        out.append(f'<text class="title" x="{LEFT}" y="22" font-size="16" font-weight="bold">{escape(title)}</text>')
    out += legend(producers, colours, top)
    out += axis(step, axis_end, scale, plot_top, plot_bottom)
    for index, rider in enumerate(riders):
        mine = [d for d in found if d.rider == rider]
        out += rider_row(rider, mine, index, plot_top + index * ROW_H, scale, colours)
    ideal = f"ideal finish: work / riders = {ideal_s:.2f} s"
    out += marker("ideal", ideal_s, ideal, scale, top + 30, plot_bottom, ' stroke-dasharray="6 4"')
    if found:
        out += marker("finish", finish_s, f"last delivery done: {finish_s:.2f} s", scale, top + 48, plot_bottom, "")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def time_axis(span_s: float) -> tuple[float, float]:
    """A round tick interval (1, 2 or 5 times a power of ten) giving about TICKS
    intervals over span_s, and the axis end: the first tick at or after span_s."""
    span_s = span_s if span_s > 0 else 1.0
    raw = span_s / TICKS
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if raw <= m * power * (1 + 1e-9))
    return step, step * math.ceil(span_s / step - 1e-9)


def px(seconds: float, scale: float) -> str:
    """The x coordinate of a time, as the SVG says it."""
    return f"{LEFT + seconds * scale:.2f}"


def legend(producers: Sequence[str], colours: Mapping[str, str], y: int) -> list[str]:
    out, left = ['<g class="legend">'], LEFT
    for name in producers:
        out.append(f'<rect x="{left}" y="{y + 2}" width="12" height="12" fill="{colours[name]}"/>')
        out.append(f'<text x="{left + 18}" y="{y + 12}">{escape(name)}</text>')
        left += 40 + 7 * len(name)  # about a character's width in 12 px sans-serif
    return [*out, "</g>"]


def axis(step: float, end: float, scale: float, top: int, bottom: int) -> list[str]:
    """The time axis along the bottom, with faint grid lines up through the rows."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))  # enough for the step: 0.5 -> 1, 2 -> 0
    out = ['<g class="axis" stroke="#000000">', f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>']
    for seconds in (index * step for index in range(round(end / step) + 1)):
        x = px(seconds, scale)
        out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{top}" y2="{bottom}" stroke="#dddddd"/>')
        tick = f'x1="{x}" x2="{x}" y1="{bottom}" y2="{bottom + 5}"'
        out.append(f'<line class="tick" data-seconds="{seconds:.6f}" {tick}/>')
        out.append(f'<text x="{x}" y="{bottom + 18}" text-anchor="middle" stroke="none">{seconds:.{decimals}f}</text>')
    caption = "seconds since the first order was picked up"
    out.append(f'<text x="{LEFT + PLOT_W // 2}" y="{bottom + 36}" text-anchor="middle" stroke="none">{caption}</text>')
    return [*out, "</g>"]


def rider_row(
    rider: str, mine: list[Delivery], index: int, y: int, scale: float, colours: Mapping[str, str]
) -> list[str]:
    """A rider's row: its name, then a bar per delivery, each with its tooltip."""
    out = [f'<g class="rider" data-rider="{escape(rider)}">']
    if index % 2:  # every other row shaded, so that the eye can follow a row; translucent, over the grid
        shade = 'fill="#000000" fill-opacity="0.05"'
        out.append(f'<rect class="row" x="{LEFT}" y="{y}" width="{PLOT_W}" height="{ROW_H}" {shade}/>')
    out.append(f'<text class="name" x="{LEFT - 8}" y="{y + ROW_H // 2 + 4}" text-anchor="end">{escape(rider)}</text>')
    for d in mine:
        width = max((d.end_s - d.start_s) * scale, MIN_BAR_PX)
        tooltip = f"{d.order_id} {d.restaurant}, {d.end_s - d.start_s:.2f} s"
        out.append(
            f'<rect class="delivery" data-order="{escape(d.order_id)}" data-producer="{escape(d.producer)}" '
            f'data-start="{d.start_s:.6f}" data-end="{d.end_s:.6f}" x="{px(d.start_s, scale)}" '
            f'y="{y + (ROW_H - BAR_H) // 2}" width="{width:.2f}" height="{BAR_H}" fill="{colours[d.producer]}" '
            # A white edge: back-to-back deliveries for one producer stay two bars.
            f'stroke="#ffffff" stroke-width="0.5"><title>{escape(tooltip)}</title></rect>'
        )
    return [*out, "</g>"]


def marker(name: str, seconds: float, label: str, scale: float, label_y: int, bottom: int, style: str) -> list[str]:
    """A vertical line at `seconds` down to the axis, labelled above the rows; the
    label hangs off to whichever side has more room."""
    x = px(seconds, scale)
    anchor = "end" if seconds * scale > PLOT_W / 2 else "start"
    return [
        f'<line class="{name}" data-seconds="{seconds:.6f}" x1="{x}" x2="{x}" y1="{label_y + 4}" y2="{bottom}" '
        f'stroke="#333333" stroke-width="1.5"{style}/>',
        f'<text class="{name}-label" x="{x}" y="{label_y}" text-anchor="{anchor}">{escape(label)}</text>',
    ]
