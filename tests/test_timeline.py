"""timeline.py: the SVG says what the completion records say, and parses as SVG.

Each test writes a real file and reads it back with ElementTree, as a browser would
see it: rows, bars, tooltips, the time axis and the ideal-finish line, checked against
the records' own times.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hardened.timeline import write_timeline

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 12, 2, 14, 20, 1, 123456, tzinfo=timezone.utc)
RIDERS = ["rider-1", "rider-2", "rider-3", "rider-4"]  # rider-3 delivers nothing
PRODUCERS = ["p1", "p2"]
IDEAL_S = 1.3


def record(order_id: str, rider: str, start_s: float, end_s: float, restaurant: str = "Taco Loco") -> dict:
    """A completion record as a rider sends it: the times are ISO-8601 UTC strings."""
    return {
        "order_id": order_id,
        "producer": order_id.split("-")[0],
        "consumer": rider,
        "restaurant": restaurant,
        "delivery_s": round(end_s - start_s, 3),
        "received_at": (T0 + timedelta(seconds=start_s)).isoformat(timespec="microseconds"),
        "done_at": (T0 + timedelta(seconds=end_s)).isoformat(timespec="microseconds"),
    }


# Times in seconds; the earliest receipt is 0.25 s after T0, so that is time 0.
RECORDS = [
    record("p1-000001", "rider-1", 0.25, 0.93, "Pho Real"),
    record("p2-000001", "rider-2", 0.26, 1.18, "Curry Up"),
    record("p1-000002", "rider-4", 0.27, 0.61),
    record("p2-000002", "rider-1", 0.93, 1.87, "Pho Real"),
    record("p1-000003", "rider-4", 0.61, 2.054321),
]


def write(tmp_path: Path, records: list[dict] = RECORDS, riders: list[str] = RIDERS, title: str = "") -> Path:
    path = tmp_path / "timeline.svg"
    write_timeline(path, records, riders, PRODUCERS, IDEAL_S, title)
    return path


def seconds_since_start(timestamp: str) -> float:
    return (datetime.fromisoformat(timestamp) - (T0 + timedelta(seconds=0.25))).total_seconds()


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall(f".//{SVG}rect[@class='delivery']")


def x_of(root: ET.Element) -> tuple[float, float]:
    """The axis's own scale, read off its ticks: x at time 0, and px per second."""
    ticks = root.findall(f".//{SVG}line[@class='tick']")
    first, last = ticks[0], ticks[-1]
    assert float(first.get("data-seconds", "")) == 0
    scale = (float(last.get("x1", "")) - float(first.get("x1", ""))) / float(last.get("data-seconds", ""))
    return float(first.get("x1", "")), scale


def test_an_svg_with_a_labelled_row_per_rider_idle_ones_included(tmp_path: Path) -> None:
    root = ET.parse(write(tmp_path)).getroot()
    assert root.tag == f"{SVG}svg"
    rows = root.findall(f".//{SVG}g[@class='rider']")
    assert [row.get("data-rider") for row in rows] == RIDERS
    for row, rider in zip(rows, RIDERS, strict=True):
        assert row.findtext(f"{SVG}text[@class='name']") == rider
    idle = rows[RIDERS.index("rider-3")]
    assert idle.findall(f"{SVG}rect[@class='delivery']") == []


def test_one_bar_per_record_in_its_riders_row_with_a_tooltip(tmp_path: Path) -> None:
    root = ET.parse(write(tmp_path)).getroot()
    assert sorted(bar.get("data-order", "") for bar in bars(root)) == sorted(r["order_id"] for r in RECORDS)
    for r in RECORDS:
        row = root.find(f".//{SVG}g[@data-rider='{r['consumer']}']")
        assert row is not None
        bar = row.find(f"{SVG}rect[@data-order='{r['order_id']}']")
        assert bar is not None, f"{r['order_id']} is not in {r['consumer']}'s row"
        took = seconds_since_start(r["done_at"]) - seconds_since_start(r["received_at"])
        assert bar.findtext(f"{SVG}title") == f"{r['order_id']} {r['restaurant']}, {took:.2f} s"


def test_bars_sit_where_the_records_times_say_on_the_axis_scale(tmp_path: Path) -> None:
    root = ET.parse(write(tmp_path)).getroot()
    x0, scale = x_of(root)
    assert scale > 0
    by_id = {r["order_id"]: r for r in RECORDS}
    for bar in bars(root):
        r = by_id[bar.get("data-order", "")]
        start, end = seconds_since_start(r["received_at"]), seconds_since_start(r["done_at"])
        assert float(bar.get("data-start", "")) == pytest.approx(start, abs=1e-6)
        assert float(bar.get("data-end", "")) == pytest.approx(end, abs=1e-6)
        assert float(bar.get("x", "")) == pytest.approx(x0 + start * scale, abs=0.01)
        assert float(bar.get("width", "")) == pytest.approx((end - start) * scale, abs=0.01)


def test_the_axis_has_round_ticks_and_covers_the_run_and_the_ideal(tmp_path: Path) -> None:
    root = ET.parse(write(tmp_path)).getroot()
    ticks = [float(t.get("data-seconds", "")) for t in root.findall(f".//{SVG}line[@class='tick']")]
    step = ticks[1] - ticks[0]
    assert any(step == pytest.approx(m * 10.0**p) for m in (1, 2, 5) for p in range(-3, 3))
    assert ticks == pytest.approx([i * step for i in range(len(ticks))])
    assert 4 <= len(ticks) <= 12
    assert ticks[-1] >= max(IDEAL_S, 2.054321 - 0.25)


def test_colours_differ_by_producer_and_the_legend_names_them(tmp_path: Path) -> None:
    root = ET.parse(write(tmp_path)).getroot()
    fills = {p: {bar.get("fill") for bar in bars(root) if bar.get("data-producer") == p} for p in PRODUCERS}
    assert all(len(colours) == 1 for colours in fills.values())  # one colour per producer
    colour = {p: fills[p].pop() for p in PRODUCERS}
    assert colour["p1"] != colour["p2"]
    legend = root.find(f".//{SVG}g[@class='legend']")
    assert legend is not None
    assert [text.text for text in legend.findall(f"{SVG}text")] == PRODUCERS
    assert [rect.get("fill") for rect in legend.findall(f"{SVG}rect")] == [colour["p1"], colour["p2"]]


def test_a_dashed_labelled_line_marks_the_ideal_finish(tmp_path: Path) -> None:
    root = ET.parse(write(tmp_path)).getroot()
    x0, scale = x_of(root)
    ideal = root.find(f".//{SVG}line[@class='ideal']")
    assert ideal is not None
    assert float(ideal.get("x1", "")) == pytest.approx(x0 + IDEAL_S * scale, abs=0.01)
    assert ideal.get("x1") == ideal.get("x2")
    assert ideal.get("stroke-dasharray")
    assert root.findtext(f".//{SVG}text[@class='ideal-label']") == "ideal finish: work / riders = 1.30 s"
    finish = root.find(f".//{SVG}line[@class='finish']")  # and the last delivery's end
    assert finish is not None
    assert float(finish.get("x1", "")) == pytest.approx(x0 + (2.054321 - 0.25) * scale, abs=0.01)


def test_text_is_escaped(tmp_path: Path) -> None:
    nasty = "<b>&\"'"
    records = [record("p1-000001", f"rider {nasty}", 0, 1, restaurant=f"Fish {nasty} Chips")]
    root = ET.parse(write(tmp_path, records, [f"rider {nasty}"], title=f"run {nasty}")).getroot()
    assert root.findtext(f".//{SVG}text[@class='title']") == f"run {nasty}"
    assert root.findtext(f".//{SVG}text[@class='name']") == f"rider {nasty}"
    assert bars(root)[0].findtext(f"{SVG}title") == f"p1-000001 Fish {nasty} Chips, 1.00 s"


def test_the_same_records_give_the_same_bytes_whatever_their_order(tmp_path: Path) -> None:
    first = write(tmp_path, title="run").read_bytes()
    shuffled = random.Random(4).sample(RECORDS, len(RECORDS))
    assert write(tmp_path, shuffled, title="run").read_bytes() == first
    assert b"\r" not in first  # "\n" line ends, on Windows too


def test_records_from_before_restaurants_and_strangers_still_get_their_bars(tmp_path: Path) -> None:
    old = {key: value for key, value in record("p1-000001", "rider-1", 0, 1).items() if key != "restaurant"}
    stranger = record("p3-000001", "rider-99", 0.5, 0.75)  # a rider and a producer nobody listed
    root = ET.parse(write(tmp_path, [old, stranger])).getroot()
    assert [row.get("data-rider") for row in root.findall(f".//{SVG}g[@class='rider']")] == [*RIDERS, "rider-99"]
    titles = sorted(bar.findtext(f"{SVG}title") or "" for bar in bars(root))
    assert titles == ["p1-000001 ?, 1.00 s", "p3-000001 Taco Loco, 0.25 s"]


def test_no_records_still_draws_the_riders_and_the_ideal(tmp_path: Path) -> None:
    root = ET.parse(write(tmp_path, [])).getroot()
    assert len(root.findall(f".//{SVG}g[@class='rider']")) == len(RIDERS)
    assert bars(root) == []
    assert root.find(f".//{SVG}line[@class='ideal']") is not None


def test_a_missing_folder_is_an_oserror_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_timeline(tmp_path / "nowhere" / "t.svg", RECORDS, RIDERS, PRODUCERS, IDEAL_S)
    assert not (tmp_path / "nowhere").exists()
