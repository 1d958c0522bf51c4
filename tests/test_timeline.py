"""timeline.py: the SVG says what the completion records say, and parses as SVG.

Each test draws a run made of hand-written records and reads the SVG back with
ElementTree, as a browser would see it: rows, bars, the waits before them, tooltips,
labels, each row's totals, the crash, the time axis and the ideal finish, checked
against the records' own times. tests/test_pictures.py looks at the rendered pictures.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hardened.moments import the_run
from hardened.timeline import MAX_BARS, PALETTE, timeline_svg, write_timeline

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 12, 2, 14, 20, 1, 123456, tzinfo=timezone.utc)
RIDERS = ["rider-1", "rider-2", "rider-3", "rider-4"]  # rider-3 delivers nothing
PRODUCERS = ["p1", "p2"]


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def record(
    order_id: str, rider: str, start_s: float, end_s: float, restaurant: str = "Taco Loco", sent_s: float | None = None
) -> dict:
    """A completion record as a rider sends it: the times are ISO-8601 UTC strings."""
    return {
        "order_id": order_id,
        "producer": order_id.split("-")[0],
        "consumer": rider,
        "restaurant": restaurant,
        "delivery_s": round(end_s - start_s, 3),
        "created_at": at(0.1 if sent_s is None else sent_s),
        "received_at": at(start_s),
        "done_at": at(end_s),
    }


# Times in seconds since T0; every order was sent at 0.1 s, the earliest moment: time 0.
RECORDS = [
    record("p1-000001", "rider-1", 0.25, 0.93, "Pho Real"),
    record("p2-000001", "rider-2", 0.26, 1.18, "Curry Up"),
    record("p1-000002", "rider-4", 0.27, 0.61),
    record("p2-000002", "rider-1", 0.93, 1.87, "Pho Real"),
    record("p1-000003", "rider-4", 0.61, 2.054321),
]
ZERO = 0.1


def draw(
    tmp_path: Path,
    records: Sequence[dict] = RECORDS,
    riders: Sequence[str] = RIDERS,
    producers: Sequence[str] = PRODUCERS,
    title: str = "",
    dead: Sequence[str] = (),
    crash: tuple | None = None,
) -> ET.Element:
    path = tmp_path / "timeline.svg"
    write_timeline(path, the_run(records, riders, producers, dead, crash), title, "subtitle")
    return ET.parse(path).getroot()


def since(timestamp: str) -> float:
    return (datetime.fromisoformat(timestamp) - (T0 + timedelta(seconds=ZERO))).total_seconds()


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall(f".//{SVG}rect[@class='delivery']")


def row(root: ET.Element, rider: str) -> ET.Element:
    found = root.find(f".//{SVG}g[@data-rider='{rider}']")
    assert found is not None, rider
    return found


def x_of(root: ET.Element) -> tuple[float, float]:
    """The axis's own scale, read off its ticks: x at time 0, and px per second."""
    ticks = root.findall(f".//{SVG}line[@class='tick']")
    first, last = ticks[0], ticks[-1]
    assert float(first.get("data-seconds", "")) == 0
    scale = (float(last.get("x1", "")) - float(first.get("x1", ""))) / float(last.get("data-seconds", ""))
    return float(first.get("x1", "")), scale


def test_an_svg_with_a_labelled_row_per_rider_idle_ones_included(tmp_path: Path) -> None:
    root = draw(tmp_path)
    assert root.tag == f"{SVG}svg"
    rows = root.findall(f".//{SVG}g[@class='rider']")
    assert [r.get("data-rider") for r in rows] == RIDERS
    for r, rider in zip(rows, RIDERS, strict=True):
        assert r.findtext(f"{SVG}text[@class='name']") == rider
    assert row(root, "rider-3").findall(f"{SVG}rect[@class='delivery']") == []


def test_one_bar_per_record_in_its_riders_row_with_the_whole_story_in_its_tooltip(tmp_path: Path) -> None:
    root = draw(tmp_path)
    assert sorted(bar.get("data-order", "") for bar in bars(root)) == sorted(r["order_id"] for r in RECORDS)
    for r in RECORDS:
        bar = row(root, r["consumer"]).find(f"{SVG}rect[@class='delivery'][@data-order='{r['order_id']}']")
        assert bar is not None, f"{r['order_id']} is not in {r['consumer']}'s row"
        sent, taken, done = since(r["created_at"]), since(r["received_at"]), since(r["done_at"])
        assert bar.findtext(f"{SVG}title") == (
            f"{r['consumer']}: {r['order_id']} from {r['restaurant']}; sent {sent:.2f} s, taken {taken:.2f} s, "
            f"done {done:.2f} s; waited {taken - sent:.2f} s, rode {done - taken:.2f} s"
        )


def test_bars_and_the_waits_before_them_sit_where_the_records_times_say(tmp_path: Path) -> None:
    root = draw(tmp_path)
    x0, scale = x_of(root)
    assert scale > 0
    by_id = {r["order_id"]: r for r in RECORDS}
    for bar in bars(root):
        r = by_id[bar.get("data-order", "")]
        sent, start, end = since(r["created_at"]), since(r["received_at"]), since(r["done_at"])
        assert float(bar.get("data-start", "")) == pytest.approx(start, abs=1e-6)
        assert float(bar.get("data-end", "")) == pytest.approx(end, abs=1e-6)
        assert float(bar.get("x", "")) == pytest.approx(x0 + start * scale, abs=0.01)
        assert float(bar.get("width", "")) == pytest.approx((end - start) * scale, abs=0.01)
        wait = row(root, r["consumer"]).find(f"{SVG}rect[@class='wait'][@data-order='{r['order_id']}']")
        assert wait is not None
        assert float(wait.get("x", "")) == pytest.approx(x0 + sent * scale, abs=0.01)
        assert float(wait.get("width", "")) == pytest.approx((start - sent) * scale, abs=0.01)
        assert float(wait.get("y", "")) > float(bar.get("y", "")) + float(bar.get("height", ""))  # its own lane
        assert float(wait.get("fill-opacity", "")) < 1  # overlapping waits: darker


def test_bars_carry_their_order_number_where_it_fits(tmp_path: Path) -> None:
    tiny = record("p1-000004", "rider-2", 1.5, 1.5001)  # 0.1 ms: no room for "4"
    root = draw(tmp_path, [*RECORDS, tiny])
    numbers = sorted(text.text or "" for text in root.findall(f".//{SVG}text[@class='number']"))
    assert numbers == ["1", "1", "2", "2", "3"]  # p1-000001, p2-000001, ...; not 4


def test_each_row_ends_with_its_count_and_busy_time(tmp_path: Path) -> None:
    root = draw(tmp_path)
    totals = {rider: row(root, rider).findtext(f"{SVG}text[@class='totals']") for rider in RIDERS}
    assert totals == {
        "rider-1": "2 orders, 1.62 s",  # 0.68 + 0.94
        "rider-2": "1 order, 0.92 s",
        "rider-3": "0 orders, 0.00 s",
        "rider-4": "2 orders, 1.78 s",  # 0.34 + 1.444321
    }


def test_the_axis_has_round_ticks_and_covers_the_run_and_the_ideal(tmp_path: Path) -> None:
    root = draw(tmp_path)
    ticks = [float(t.get("data-seconds", "")) for t in root.findall(f".//{SVG}line[@class='tick']")]
    step = ticks[1] - ticks[0]
    assert any(step == pytest.approx(m * 10.0**p) for m in (1, 2, 5) for p in range(-3, 3))
    assert ticks == pytest.approx([i * step for i in range(len(ticks))])
    assert 4 <= len(ticks) <= 12
    assert ticks[-1] >= 2.054321 - ZERO


def test_colours_differ_by_producer_and_the_legend_names_them(tmp_path: Path) -> None:
    root = draw(tmp_path)
    fills = {p: {bar.get("fill") for bar in bars(root) if bar.get("data-producer") == p} for p in PRODUCERS}
    assert all(len(colours) == 1 for colours in fills.values())  # one colour per producer
    colour = {p: fills[p].pop() for p in PRODUCERS}
    assert colour["p1"] != colour["p2"]
    legend = root.find(f".//{SVG}g[@class='legend']")
    assert legend is not None
    assert [text.text for text in legend.findall(f"{SVG}text")][:2] == PRODUCERS
    assert [rect.get("fill") for rect in legend.findall(f"{SVG}rect")][:2] == [colour["p1"], colour["p2"]]


def test_twelve_producers_have_twelve_colours_and_a_thirteenth_is_said_to_share(tmp_path: Path) -> None:
    producers = [f"p{n}" for n in range(1, 15)]
    records = [
        record(f"{p}-000001", f"rider-{n % 4 + 1}", 0.2 + n * 0.1, 0.25 + n * 0.1) for n, p in enumerate(producers)
    ]
    root = draw(tmp_path, records, producers=producers)
    colour = {bar.get("data-producer"): bar.get("fill") for bar in bars(root)}
    assert len({colour[p] for p in producers[:12]}) == 12 == len(PALETTE)
    assert colour["p13"] == colour["p1"] and colour["p14"] == colour["p2"]
    assert root.findtext(f".//{SVG}text[@class='shared']") == "(colours repeat: p13 as p1, p14 as p2)"


def ideal(root: ET.Element) -> tuple[float, str, str]:
    line = root.find(f".//{SVG}line[@class='ideal']")
    assert line is not None and line.get("stroke-dasharray")
    label = root.findtext(f".//{SVG}text[@class='ideal-label']") or ""
    return float(line.get("data-seconds", "")), label, root.findtext(f".//{SVG}text[@class='bounds']") or ""


SPREAD = [  # all sent at 0.1 s; 3.5 s of work, rides of 0.5 s at most
    record(f"p1-{n:06d}", rider, 0.1 + start, 0.1 + start + ride)
    for n, (rider, start, ride) in enumerate(
        [("rider-1", 0, 0.5), ("rider-1", 0.5, 0.5), ("rider-2", 0, 0.5), ("rider-2", 0.5, 0.5)]
        + [("rider-3", 0, 0.5), ("rider-3", 0.5, 0.25), ("rider-4", 0, 0.5), ("rider-4", 0.5, 0.25)],
        start=1,
    )
]


def test_the_ideal_finish_is_work_over_the_riders_when_that_bounds_it(tmp_path: Path) -> None:
    seconds, label, bounds = ideal(draw(tmp_path, SPREAD, producers=["p1"]))
    assert seconds == pytest.approx(3.5 / 4, abs=1e-6)
    assert label == "ideal finish: 0.88 s (work / 4 riders)"
    assert bounds == (
        "ideal finish: the largest of work / 4 riders = 0.88 s, longest ride = 0.50 s, last send + its ride = 0.50 s"
    )


def test_the_ideal_finish_is_never_below_the_longest_ride(tmp_path: Path) -> None:
    riders = [f"rider-{n}" for n in range(1, 51)]  # 50 riders, one long ride
    records = [record("p1-000001", "rider-1", 0.1, 1.09), record("p1-000002", "rider-2", 0.1, 0.2)]
    seconds, label, _ = ideal(draw(tmp_path, records, riders, ["p1"]))
    assert seconds == pytest.approx(0.99, abs=1e-6)
    assert label == "ideal finish: 0.99 s (longest ride)"


def test_the_ideal_finish_is_never_before_the_last_send_plus_its_ride(tmp_path: Path) -> None:
    # --interval: the producer sends one order a second; rides are short.
    records = [record(f"p1-{n:06d}", f"rider-{n % 4 + 1}", n + 0.01, n + 0.21, sent_s=n) for n in range(1, 5)]
    seconds, label, _ = ideal(draw(tmp_path, records, producers=["p1"]))
    assert seconds == pytest.approx(4.2 - 1, abs=1e-6)  # time 0 is the first send, at 1 s
    assert label == "ideal finish: 3.20 s (last send + its ride)"


def test_a_killed_rider_is_drawn_where_it_died_with_the_orders_lost_with_it(tmp_path: Path) -> None:
    lost = ["p1-000005", "p1-000009", "p1-000013"]
    crash = ("rider-2", T0 + timedelta(seconds=1.5), lost, 4)
    root = draw(tmp_path, dead=["rider-2"], crash=crash)
    x0, scale = x_of(root)
    mark = row(root, "rider-2").find(f"{SVG}line[@class='crash']")
    assert mark is not None
    assert float(mark.get("data-seconds", "")) == pytest.approx(1.5 - ZERO, abs=1e-6)
    assert float(mark.get("x1", "")) == pytest.approx(x0 + (1.5 - ZERO) * scale, abs=0.01)
    words = row(root, "rider-2").findtext(f"{SVG}text[@class='crash-label']")
    assert words == "killed at 1.40 s: lost 4 orders (p1-000005 p1-000009 p1-000013 and 1 more)"
    assert row(root, "rider-2").findtext(f"{SVG}text[@class='totals']") == "1 order, 0.92 s killed"
    assert row(root, "rider-1").find(f"{SVG}line[@class='crash']") is None
    _, _, bounds = ideal(root)
    assert "work / 3 riders = " in bounds  # the riders that lived


def test_past_about_a_bar_per_two_pixels_rows_show_busy_shares_and_the_file_stays_small(tmp_path: Path) -> None:
    """100,000 orders for 200 riders: a path per row, not a bar per order. A rider's
    busy share is from when it could start an order (sent, or its last one done) to done."""
    riders = [f"rider-{n}" for n in range(1, 201)]
    records = []
    for n in range(100_000):
        start = n // 200 * 0.001  # each rider takes an order every ms, busy 0.8 ms of it
        records.append(record(f"p1-{n + 1:06d}", riders[n % 200], start + 0.1, start + 0.1008, sent_s=start + 0.1))
    svg = timeline_svg(the_run(records, riders, ["p1"]))
    assert len(svg.encode()) < 1_000_000
    root = ET.fromstring(svg)
    assert bars(root) == [] and root.findall(f".//{SVG}rect[@class='wait']") == []
    paths = root.findall(f".//{SVG}path[@class='busy']")
    assert len(paths) == 200
    assert paths[0].findtext(f"{SVG}title") == "500 orders; rides 0.40 s; busy 0.40 s of 0.50 s"


def test_the_busy_view_draws_what_the_rider_did(tmp_path: Path) -> None:
    """One rider busy without a break for the first half of the run, one idle but for a
    last order: heights read off the path's vertical steps."""
    busy = [record(f"p1-{n:06d}", "rider-1", 0.1 + n * 0.0005, 0.1 + (n + 1) * 0.0005, sent_s=0.1) for n in range(1000)]
    late = record("p1-001001", "rider-2", 1.09, 1.1, sent_s=1.09)
    root = draw(tmp_path, [*busy, late], ["rider-1", "rider-2"], ["p1"])
    assert len(bars(root)) == 0 and root.find(f".//{SVG}g[@class='legend']") is not None
    for rider, busy_slices in (("rider-1", range(0, 300)), ("rider-2", range(325, 335))):
        path = row(root, rider).find(f"{SVG}path[@class='busy']")
        assert path is not None
        steps = [float(part.split("h")[0]) for part in (path.get("d") or "").split("V")[1:-1]]
        base = max(steps)
        full = [n for n, y in enumerate(steps) if y < base - 15]
        assert full and set(full) <= set(busy_slices), (rider, full)
    legend = root.findtext(f".//{SVG}g[@class='legend']/{SVG}text[last()]") or ""
    assert legend.startswith("the share of each slice")


def test_bars_up_to_max_bars_in_all(tmp_path: Path) -> None:
    riders = [f"rider-{n}" for n in range(1, 7)]  # 300 bars a row: over 2 px each
    records = [record(f"p1-{n:06d}", riders[n % 6], 0.1 + n * 0.01, 0.1 + n * 0.01 + 0.009) for n in range(MAX_BARS)]
    assert len(bars(draw(tmp_path, records, riders, ["p1"]))) == MAX_BARS
    more = [*records, record(f"p1-{MAX_BARS + 1:06d}", "rider-1", 0.1, 0.105)]
    assert bars(draw(tmp_path, more, riders, ["p1"])) == []


def test_text_is_escaped(tmp_path: Path) -> None:
    nasty = "<b>&\"'"
    records = [record("p1-000001", f"rider {nasty}", 0.1, 1.1, restaurant=f"Fish {nasty} Chips")]
    root = draw(tmp_path, records, [f"rider {nasty}"], title=f"run {nasty}")
    assert root.findtext(f".//{SVG}text[@class='title']") == f"run {nasty}"
    assert root.findtext(f".//{SVG}text[@class='name']") == f"rider {nasty}"
    assert (bars(root)[0].findtext(f"{SVG}title") or "").startswith(
        f"rider {nasty}: p1-000001 from Fish {nasty} Chips;"
    )


def test_the_same_records_give_the_same_bytes_whatever_their_order(tmp_path: Path) -> None:
    def svg(records: list[dict]) -> str:
        return timeline_svg(the_run(records, RIDERS, PRODUCERS), "run")

    first = svg(RECORDS)
    assert svg(random.Random(4).sample(RECORDS, len(RECORDS))) == first
    write_timeline(tmp_path / "t.svg", the_run(RECORDS, RIDERS, PRODUCERS), "run")
    assert b"\r" not in (tmp_path / "t.svg").read_bytes()  # "\n" line ends, on Windows too


def test_records_without_restaurant_or_sent_time_and_strangers_still_get_their_bars(tmp_path: Path) -> None:
    old = {k: v for k, v in record("p1-000001", "rider-1", 0.1, 1.1).items() if k not in ("restaurant", "created_at")}
    stranger = record("p3-000001", "rider-99", 0.6, 0.85)  # a rider and a producer nobody listed
    root = draw(tmp_path, [old, stranger])
    assert [r.get("data-rider") for r in root.findall(f".//{SVG}g[@class='rider']")] == [*RIDERS, "rider-99"]
    titles = sorted(bar.findtext(f"{SVG}title") or "" for bar in bars(root))
    assert titles[0].startswith("rider-1: p1-000001 from ?; sent 0.00 s, taken 0.00 s")  # no wait known
    assert titles[1].startswith("rider-99: p3-000001 from Taco Loco; sent 0.00 s, taken 0.50 s")


def test_no_records_still_draws_the_riders_and_the_ideal(tmp_path: Path) -> None:
    root = draw(tmp_path, [])
    assert len(root.findall(f".//{SVG}g[@class='rider']")) == len(RIDERS)
    assert bars(root) == []
    assert root.find(f".//{SVG}line[@class='ideal']") is not None


def test_a_missing_folder_is_an_oserror_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_timeline(tmp_path / "nowhere" / "t.svg", the_run(RECORDS, RIDERS, PRODUCERS))
    assert not (tmp_path / "nowhere").exists()
