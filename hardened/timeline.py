"""A picture of a run: an SVG timeline, a row per rider, a bar per delivery and the
wait before it.

    python -m hardened.run --timeline run.svg

run.py's report counts what each rider delivered; this shows *when*, and why equal
counts can still be unequal work: PUSH hands out orders by count, not by load, so
orders queue at a rider that drew long deliveries while another rider is idle.

- A bar per delivery, from taken to done, coloured by producer, with its order number
  where it fits. Its tooltip: rider, order, restaurant, sent, taken and done, the wait
  and the ride.
- Under the bars, each order's wait, from sent to taken: a translucent band, so that
  where several orders wait at once the band is darker.
- At the end of each row, the rider's orders and busy seconds. A killed rider's row
  shows the moment, the word, and the orders lost with it.
- "ideal finish": the largest of what bounds any spread of this work (work over the
  riders that lived, the longest single ride, the last send plus its ride), so that
  the line is a finish the run could have reached.
- Past about one bar per two pixels (--speed 0, thousands of orders), bars would be
  slivers: each row then shows the share of time its rider was busy (taking, checking,
  riding, reporting), slice by slice along the axis. The file stays small.

The SVG is self-contained (no scripts, external CSS or fonts): a browser opens it
directly, and GitHub shows it inline in a README, where an element's <title> is its
tooltip. The same run always gives the same bytes, so a committed picture changes only
when the run does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from html import escape  # quote=True by default: safe in text and in attributes alike
from pathlib import Path

from hardened.moments import Delivery, Run

WIDTH = 900  # px, fixed: the height grows with the riders
LEFT, RIGHT = 90, 140  # margins around the plot: rider names on the left, each row's totals on the right
PLOT_W = WIDTH - LEFT - RIGHT
ROW_H = 24
BAR_Y, BAR_H = 2, 14  # within a row: the bar, then the wait lane below it
WAIT_Y, WAIT_H = 18, 5
WAIT_OPACITY = 0.3  # one order waiting; two overlapping: 0.51, three: 0.66
TICKS = 8  # about this many intervals on the time axis
MIN_BAR_PX = 1.0  # an instant delivery (--speed 0) still shows
DENSE_PX = 2.0  # narrower bars on average than this in some row: draw busy shares instead
MAX_BARS = 1800  # or more bars than this in all (about 550 bytes each): the file stays under about 1 MB
SLICE_PX = 2  # the width of a slice in that view
# Okabe and Ito's palette (distinct with the common kinds of colour blindness), then
# Paul Tol's darker tones: 12 producers, each its own colour; the legend says which share past that.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
    "#F0E442", "#332288", "#882255", "#999933", "#44AA99", "#000000",
)  # fmt: skip
LIGHT = {"#E69F00", "#56B4E9", "#F0E442", "#999933", "#44AA99"}  # dark text on these
CRASH = "#C00000"


def write_timeline(path: str | os.PathLike[str], run: Run, title: str = "", subtitle: str = "") -> None:
    """Write the timeline to `path`. The SVG is composed in full before the file is
    opened, so a failure leaves no half-written file. A missing folder is not created:
    it raises OSError (FileNotFoundError), as does any other write failure."""
    svg = timeline_svg(run, title, subtitle)
    Path(path).write_text(svg, encoding="utf-8", newline="\n")  # "\n" on Windows too: same bytes


def timeline_svg(run: Run, title: str = "", subtitle: str = "") -> str:
    """The SVG text: a row per rider of run.riders, in that order, idle ones included."""
    colours = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(run.producers)}
    bounds = ideal_bounds(run)
    ideal_s = max(bounds.values())
    crash_s = run.crash.at_s if run.crash else 0.0
    step, axis_end = time_axis(max(run.finish_s, ideal_s, crash_s))
    scale = PLOT_W / axis_end  # px per second
    by_rider = run.by_rider()
    dense = len(run.deliveries) > MAX_BARS or any(
        len(mine) * DENSE_PX > PLOT_W * (mine[-1].end_s / axis_end) for mine in by_rider.values() if mine
    )
    top = 10 + 18 * bool(title) + 16 * bool(subtitle)  # the titles, then the legend, then the markers' labels
    plot_top = top + 102
    plot_bottom = plot_top + ROW_H * len(run.riders)
    height = plot_bottom + 46
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        # Opaque: a transparent picture would show black text on a dark-mode page.
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        out.append(f'<text class="title" x="{LEFT}" y="24" font-size="16" font-weight="bold">{escape(title)}</text>')
    if subtitle:
        out.append(f'<text class="subtitle" x="{LEFT}" y="{top - 2}">{escape(subtitle)}</text>')
    out += legend(run.producers, colours, top + 6, dense)
    out.append(f'<text class="bounds" x="{LEFT}" y="{top + 54}">{escape(bounds_line(bounds))}</text>')
    out += axis(step, axis_end, scale, plot_top, plot_bottom)
    for index, rider in enumerate(run.riders):
        y = plot_top + index * ROW_H
        out += rider_row(run, rider, by_rider[rider], index, y, scale, colours, axis_end if dense else 0.0)
    which = max(bounds, key=lambda name: bounds[name])
    out += marker("ideal", ideal_s, f"ideal finish: {ideal_s:.2f} s ({which})", scale, top + 76, plot_bottom, True)
    if run.deliveries:
        done = f"last delivery done: {run.finish_s:.2f} s"
        out += marker("finish", run.finish_s, done, scale, top + 94, plot_bottom, False)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def ideal_bounds(run: Run) -> dict[str, float]:
    """What no spread of this run's work could beat, by name: the work shared by the
    riders that lived to the end, the longest single ride, and the order sent last plus
    its ride. The ideal finish is the largest of them."""
    living = max(len(run.riders) - len(run.dead), 1)
    work = sum(d.ride_s for d in run.deliveries)
    return {
        f"work / {living} riders": work / living,
        "longest ride": max((d.ride_s for d in run.deliveries), default=0.0),
        "last send + its ride": max((d.sent_s + d.ride_s for d in run.deliveries), default=0.0),
    }


def bounds_line(bounds: Mapping[str, float]) -> str:
    said = ", ".join(f"{name} = {seconds:.2f} s" for name, seconds in bounds.items())
    return f"ideal finish: the largest of {said}"


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


def legend(producers: Sequence[str], colours: Mapping[str, str], y: int, dense: bool) -> list[str]:
    """The producers' colours, then how to read a row."""
    out, left = ['<g class="legend">'], LEFT
    for name in producers[: len(PALETTE)]:
        out.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{colours[name]}"/>')
        out.append(f'<text x="{left + 16}" y="{y + 10}">{escape(name)}</text>')
        left += 26 + 7 * len(name)  # about a character's width in 12 px sans-serif
    if len(producers) > len(PALETTE):
        pairs = [f"{name} as {producers[index % len(PALETTE)]}" for index, name in enumerate(producers)]
        more = ", ..." if len(producers) > len(PALETTE) + 3 else ""
        shared = f"(colours repeat: {', '.join(pairs[len(PALETTE) : len(PALETTE) + 3])}{more})"
        out.append(f'<text class="shared" x="{left}" y="{y + 10}">{escape(shared)}</text>')
    y += 20
    if dense:
        key = (
            f'<rect x="{LEFT}" y="{y}" width="12" height="12" fill="#555555"/>'
            f'<text x="{LEFT + 16}" y="{y + 10}">the share of each slice ({SLICE_PX} px) that the rider was busy: '
            "taking, checking, riding, reporting (too many orders for a bar each)</text>"
        )
    else:
        key = (
            f'<rect x="{LEFT}" y="{y}" width="24" height="{BAR_H}" fill="#777777"/>'
            f'<text x="{LEFT + 30}" y="{y + 11}">a ride: taken to done</text>'
            f'<rect x="{LEFT + 170}" y="{y + 5}" width="24" height="{WAIT_H}" fill="#777777" '
            f'fill-opacity="{WAIT_OPACITY}"/>'
            f'<text x="{LEFT + 200}" y="{y + 11}">the wait before it: sent to taken '
            "(darker where several orders wait at that rider)</text>"
        )
    return [*out, key, "</g>"]


def axis(step: float, end: float, scale: float, top: int, bottom: int) -> list[str]:
    """The time axis along the bottom, with faint grid lines up through the rows."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))  # enough for the step: 0.5 -> 1, 2 -> 0
    out = ['<g class="axis" stroke="#000000">', f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{bottom}" y2="{bottom}"/>']
    for seconds in (index * step for index in range(round(end / step) + 1)):
        x = px(seconds, scale)
        out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{top}" y2="{bottom}" stroke="#dddddd"/>')
        tick = f'x1="{x}" x2="{x}" y1="{bottom}" y2="{bottom + 5}"'
        out.append(f'<line class="tick" data-seconds="{seconds:.6f}" {tick}/>')
        out.append(f'<text x="{x}" y="{bottom + 18}" text-anchor="middle" stroke="none">{seconds:.{decimals}f}</text>')
    caption = "seconds since the first order was sent"
    out.append(f'<text x="{LEFT + PLOT_W // 2}" y="{bottom + 36}" text-anchor="middle" stroke="none">{caption}</text>')
    return [*out, "</g>"]


def rider_row(
    run: Run,
    rider: str,
    mine: list[Delivery],
    index: int,
    y: int,
    scale: float,
    colours: Mapping[str, str],
    dense_end: float,
) -> list[str]:
    """A rider's row: its name; its bars and waits (or, dense, its busy shares); its
    totals at the end; the crash, if it was killed."""
    out = [f'<g class="rider" data-rider="{escape(rider)}">']
    if index % 2:  # every other row shaded, so that the eye can follow a row; translucent, over the grid
        shade = 'fill="#000000" fill-opacity="0.05"'
        out.append(f'<rect class="row" x="{LEFT}" y="{y}" width="{PLOT_W}" height="{ROW_H}" {shade}/>')
    out.append(f'<text class="name" x="{LEFT - 8}" y="{y + ROW_H // 2 + 4}" text-anchor="end">{escape(rider)}</text>')
    if dense_end:
        out += busy_shares(mine, y, scale, dense_end)
    else:
        out += [wait_band(d, y, scale, colours[d.producer]) for d in mine if d.wait_s * scale >= 0.5]
        out += [bar(d, y, scale, colours[d.producer]) for d in mine]
    crash = run.crash if run.crash and run.crash.rider == rider else None
    fate = " killed" if crash else " died" if rider in run.dead else ""
    busy = sum(d.ride_s for d in mine)
    totals = f"{len(mine)} {'order' if len(mine) == 1 else 'orders'}, {busy:.2f} s{fate}"
    out.append(f'<text class="totals" x="{LEFT + PLOT_W + 8}" y="{y + ROW_H // 2 + 4}">{escape(totals)}</text>')
    if crash:
        out += crash_mark(crash.at_s, crash.lost, crash.lost_count, y, scale)
    return [*out, "</g>"]


def bar(d: Delivery, y: int, scale: float, colour: str) -> str:
    width = max(d.ride_s * scale, MIN_BAR_PX)
    tooltip = (
        f"{d.rider}: {d.order_id} from {d.restaurant}; sent {d.sent_s:.2f} s, taken {d.start_s:.2f} s, "
        f"done {d.end_s:.2f} s; waited {d.wait_s:.2f} s, rode {d.ride_s:.2f} s"
    )
    x = px(d.start_s, scale)
    out = (
        f'<rect class="delivery" data-order="{escape(d.order_id)}" data-producer="{escape(d.producer)}" '
        f'data-sent="{d.sent_s:.6f}" data-start="{d.start_s:.6f}" data-end="{d.end_s:.6f}" x="{x}" '
        f'y="{y + BAR_Y}" width="{width:.2f}" height="{BAR_H}" fill="{colour}" '
        # A white edge: back-to-back deliveries for one producer stay two bars.
        f'stroke="#ffffff" stroke-width="0.5"><title>{escape(tooltip)}</title></rect>'
    )
    label = d.number
    if width >= 6 * len(label) + 4:  # room for it, at about 6 px a digit in 10 px type
        ink = "#000000" if colour in LIGHT else "#ffffff"
        middle = f"{LEFT + (d.start_s + d.ride_s / 2) * scale:.2f}"
        out += (
            f'<text class="number" x="{middle}" y="{y + BAR_Y + 11}" font-size="10" text-anchor="middle" '
            f'fill="{ink}">{escape(label)}</text>'
        )
    return out


def wait_band(d: Delivery, y: int, scale: float, colour: str) -> str:
    tooltip = f"{d.order_id} waited {d.wait_s:.2f} s for {d.rider}: sent {d.sent_s:.2f} s, taken {d.start_s:.2f} s"
    return (
        f'<rect class="wait" data-order="{escape(d.order_id)}" x="{px(d.sent_s, scale)}" y="{y + WAIT_Y}" '
        f'width="{d.wait_s * scale:.2f}" height="{WAIT_H}" fill="{colour}" fill-opacity="{WAIT_OPACITY}">'
        f"<title>{escape(tooltip)}</title></rect>"
    )


def busy_shares(mine: list[Delivery], y: int, scale: float, end_s: float) -> list[str]:
    """The share of each slice of the axis that the rider was busy, as a filled step
    line: one path per row, however many orders. Busy is from the moment it could
    start on an order (sent, or its previous order done, whichever is later) to done:
    between two orders queued at it, a rider is taking, checking and reporting."""
    slices = max(round(PLOT_W / SLICE_PX), 1)
    slice_s = end_s / slices
    busy = [0.0] * slices
    free_from = 0.0
    for d in mine:
        start, end = max(d.sent_s, free_from), d.end_s
        free_from = max(free_from, end)
        first, last = min(int(start / slice_s), slices - 1), min(int(end / slice_s), slices - 1)
        for n in range(first, last + 1):
            busy[n] += max(min(end, (n + 1) * slice_s) - max(start, n * slice_s), 0.0)
    base = y + ROW_H - 2
    height = ROW_H - 4
    step = f"h{PLOT_W / slices:g}"
    path = [f"M{LEFT},{base}"]
    for share in busy:
        path.append(f"V{base - min(share / slice_s, 1.0) * height:.1f}{step}")
    path.append(f"V{base}Z")
    total = sum(d.ride_s for d in mine)
    tooltip = f"{len(mine)} orders; rides {total:.2f} s; busy {sum(busy):.2f} s of {end_s:.2f} s"
    return [f'<path class="busy" d="{"".join(path)}" fill="#555555"><title>{escape(tooltip)}</title></path>']


def crash_mark(at_s: float, lost: Sequence[str], lost_count: int, y: int, scale: float) -> list[str]:
    """Where the rider was killed: a red line across its row, the rest of the row
    struck through, and what died with it."""
    x = LEFT + at_s * scale
    shown = " ".join(lost[:3]) + (f" and {lost_count - 3} more" if lost_count > 3 else "")
    words = f"killed at {at_s:.2f} s: lost {lost_count} {'order' if lost_count == 1 else 'orders'}" + (
        f" ({shown})" if lost_count else ""
    )
    anchor, text_x = ("end", x - 4) if at_s * scale > PLOT_W / 2 else ("start", x + 4)
    return [
        f'<line class="crash-rest" x1="{x:.2f}" x2="{LEFT + PLOT_W}" y1="{y + ROW_H / 2}" y2="{y + ROW_H / 2}" '
        f'stroke="{CRASH}" stroke-width="1" stroke-dasharray="2 3"/>',
        f'<line class="crash" data-seconds="{at_s:.6f}" x1="{x:.2f}" x2="{x:.2f}" y1="{y}" y2="{y + ROW_H}" '
        f'stroke="{CRASH}" stroke-width="3"/>',
        f'<text class="crash-label" x="{text_x:.2f}" y="{y + 10}" font-size="11" fill="{CRASH}" '
        f'text-anchor="{anchor}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{escape(words)}</text>',
    ]


def marker(name: str, seconds: float, label: str, scale: float, label_y: int, bottom: int, dashed: bool) -> list[str]:
    """A vertical line at `seconds` down to the axis, labelled above the rows; the
    label hangs off to whichever side has more room."""
    x = px(seconds, scale)
    anchor = "end" if seconds * scale > PLOT_W / 2 else "start"
    style = ' stroke-dasharray="6 4"' if dashed else ""
    return [
        f'<line class="{name}" data-seconds="{seconds:.6f}" x1="{x}" x2="{x}" y1="{label_y + 4}" y2="{bottom}" '
        f'stroke="#333333" stroke-width="1.5"{style}/>',
        f'<text class="{name}-label" x="{x}" y="{label_y}" text-anchor="{anchor}">{escape(label)}</text>',
    ]
