"""trace.py and run.py --trace: the trace says what the completion records say, by the
trace-event format's own rules, so that Perfetto and chrome://tracing draw it as meant.

The rules checked: every event's phase is one trace.py means to use; times are whole
microseconds since time 0, never negative; every process and thread has a name; the
complete events ("X") of one thread nest or follow each other, never half-overlap; each
flow start ("s") has one end ("f") with its id, category and name, bound to the delivery
on the rider's thread; each wait's begin ("b") has its end ("e"). Then run.py writes one
for real, with the scripts fixture: real processes, real sockets.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Scripts
from test_timeline import T0, record  # the same completion records as the timeline's tests

from hardened.moments import Run, the_run
from hardened.trace import trace_events, trace_json, write_trace

RIDERS = ["rider-1", "rider-2", "rider-3", "rider-4"]  # rider-4 delivers nothing
PRODUCERS = ["p1", "p2"]
PHASES = {"M", "X", "s", "f", "b", "e", "i"}
REPORT_ROW = re.compile(r"(rider-\d+) +(\d+) +\d+\.\d\d")


# The first send is at T0: time 0. Seconds after T0: taken, done, and sent_s.
RECORDS = [
    record("p1-000001", "rider-1", 0.0, 0.68, "Pho Real", sent_s=0.0),  # taken at once: no wait
    record("p2-000001", "rider-2", 0.25, 1.18, "Curry Up", sent_s=0.01),  # taken 0.25 s after time 0: ts 250000
    record("p1-000002", "rider-3", 0.05, 0.36, sent_s=0.01),
    record("p1-000003", "rider-1", 0.68, 1.62, "Pho Real", sent_s=0.02),  # waits while rider-1 rides...
    record("p2-000002", "rider-1", 1.62, 1.804321, sent_s=0.02),  # ...and so does this one, at the same time
    record("p1-000004", "rider-3", 0.36, 0.36, sent_s=0.03),  # an instant delivery (--speed 0)
    record("p2-000003", "rider-3", 0.37, 0.5, sent_s=0.03),
]
KILLED = ("rider-3", T0 + timedelta(seconds=0.9), ["p1-000005", "p2-000004"], 2)


def a_run(records: list[dict] = RECORDS) -> Run:
    return the_run(records, RIDERS, PRODUCERS, dead=["rider-3"], crash=KILLED)


def events(run: Run | None = None) -> list[dict[str, Any]]:
    return trace_events(run or a_run())["traceEvents"]


def of(phase: str, trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in trace if event["ph"] == phase]


def us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def thread_names(trace: list[dict[str, Any]]) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in of("M", trace) if e["name"] == "thread_name"}


def process_names(trace: list[dict[str, Any]]) -> dict[int, str]:
    return {e["pid"]: e["args"]["name"] for e in of("M", trace) if e["name"] == "process_name"}


def deliveries(trace: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in of("X", trace) if e["cat"] == "delivery"}


# --- the format's rules ---


def test_every_event_has_a_known_phase_and_whole_microseconds_from_time_0() -> None:
    trace = trace_events(a_run())
    assert trace["displayTimeUnit"] == "ms"
    assert trace["otherData"]["time_zero"] == T0.isoformat()
    for event in trace["traceEvents"]:
        assert event["ph"] in PHASES, event
        assert isinstance(event["pid"], int), event
        if event["ph"] == "M":
            continue
        assert type(event["ts"]) is int and event["ts"] >= 0, event  # a number, not a string
        if event["ph"] == "X":
            assert type(event["dur"]) is int and event["dur"] >= 0, event
    timed = [event["ts"] for event in trace["traceEvents"] if event["ph"] != "M"]
    assert timed == sorted(timed)
    assert all(event["ph"] == "M" for event in trace["traceEvents"][: -len(timed)])  # the names first


def test_every_process_and_thread_has_a_name_idle_riders_included() -> None:
    trace = events()
    processes, threads = process_names(trace), thread_names(trace)
    assert sorted(processes.values()) == ["p1", "p2", "riders"]
    for event in trace:
        assert event["pid"] in processes, event
        if "tid" in event:
            assert (event["pid"], event["tid"]) in threads, event
    riders_pid = next(pid for pid, name in processes.items() if name == "riders")
    mine = {tid: name for (pid, tid), name in threads.items() if pid == riders_pid}
    order = {e["tid"]: e["args"]["sort_index"] for e in of("M", trace) if e["name"] == "thread_sort_index"}
    assert [mine[tid] for tid in sorted(mine, key=order.__getitem__)] == RIDERS  # rider-4 too, in run.riders order
    tids = [tid for _, tid in threads]
    assert len(tids) == len(set(tids))  # no tid in two processes: Perfetto would take them for one thread
    sort_index = {e["pid"]: e["args"]["sort_index"] for e in of("M", trace) if e["name"] == "process_sort_index"}
    assert [processes[pid] for pid in sorted(processes, key=sort_index.__getitem__)] == ["p1", "p2", "riders"]


def test_a_slice_per_delivery_at_the_records_own_times() -> None:
    trace = events()
    threads = thread_names(trace)
    found = deliveries(trace)
    assert sorted(found) == sorted(r["order_id"] for r in RECORDS)
    assert found["p2-000001"]["ts"] == 250_000  # taken 0.25 s after time 0
    assert found["p2-000002"]["dur"] == 184_321  # 1.62 -> 1.804321
    assert found["p1-000004"]["dur"] == 0
    for r in RECORDS:
        sent, taken, done = (datetime.fromisoformat(r[key]) - T0 for key in ("created_at", "received_at", "done_at"))
        slice_ = found[r["order_id"]]
        assert (slice_["ts"], slice_["dur"]) == (us(taken.total_seconds()), us((done - taken).total_seconds()))
        assert threads[slice_["pid"], slice_["tid"]] == r["consumer"]
        details = slice_["args"]
        assert {key: details[key] for key in ("order_id", "producer", "rider", "restaurant")} == {
            "order_id": r["order_id"],
            "producer": r["producer"],
            "rider": r["consumer"],
            "restaurant": r["restaurant"],
        }
        assert details["sent_s"] == sent.total_seconds() and details["taken_s"] == taken.total_seconds()
        assert details["done_s"] == done.total_seconds()
        assert details["wait_s"] == round((taken - sent).total_seconds(), 6)
        assert details["ride_s"] == round((done - taken).total_seconds(), 6)


def test_the_slices_of_a_thread_nest_or_follow_never_half_overlap() -> None:
    by_thread: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for event in of("X", events()):
        by_thread.setdefault((event["pid"], event["tid"]), []).append((event["ts"], event["ts"] + event["dur"]))
    assert len(by_thread) == 5  # two producers' sends, three riders' deliveries
    for thread, slices in by_thread.items():
        for index, (start, end) in enumerate(slices):
            for other_start, other_end in slices[index + 1 :]:
                apart = end <= other_start or other_end <= start
                nested = start <= other_start <= other_end <= end or other_start <= start <= end <= other_end
                assert apart or nested, (thread, (start, end), (other_start, other_end))


def test_an_arrow_per_order_from_its_send_to_its_delivery() -> None:
    trace = events()
    processes, found = process_names(trace), deliveries(trace)
    sends = {e["name"]: e for e in of("X", trace) if e["cat"] == "send"}
    starts, ends = of("s", trace), of("f", trace)
    assert len(starts) == len(ends) == len(RECORDS)
    assert len({(e["id"], e["cat"], e["name"]) for e in starts}) == len(starts)  # one flow per id
    for start in starts:
        matching = [e for e in ends if (e["id"], e["cat"], e["name"]) == (start["id"], start["cat"], start["name"])]
        assert len(matching) == 1, start
        end = matching[0]
        send, delivery = sends[start["name"]], found[start["name"]]
        # The start on its producer's thread, at the send; the end bound (bp "e") to the
        # delivery that encloses it on the rider's thread.
        assert processes[start["pid"]] == start["name"].split("-")[0]
        assert (start["pid"], start["tid"], start["ts"]) == (send["pid"], send["tid"], send["ts"])
        assert end["bp"] == "e"
        assert (end["pid"], end["tid"]) == (delivery["pid"], delivery["tid"])
        assert delivery["ts"] <= end["ts"] <= delivery["ts"] + delivery["dur"]
        assert start["ts"] <= end["ts"]
        # Each flow event comes after its slice in the file: Perfetto binds it to the
        # slice on top of its thread when it reads it, and keeps the file's order at one moment.
        assert trace.index(send) < trace.index(start) and trace.index(delivery) < trace.index(end)


def test_the_waits_are_async_slices_that_pair_up_and_may_overlap() -> None:
    trace = events()
    threads = thread_names(trace)
    begins, ends = of("b", trace), of("e", trace)
    assert {e["cat"] for e in begins + ends} == {"wait"}
    key = {id(e): (e["cat"], e["id"], e["name"], e["pid"]) for e in begins + ends}
    assert Counter(key[id(e)] for e in begins) == Counter(key[id(e)] for e in ends)
    assert len(begins) == len({key[id(e)] for e in begins})
    waits = {}
    for begin in begins:
        end = next(e for e in ends if key[id(e)] == key[id(begin)])
        assert begin["ts"] < end["ts"]
        assert begin["name"] == f"{threads[begin['pid'], begin['tid']]} queue"
        waits[begin["args"]["order_id"]] = (begin["ts"], end["ts"])
    # Every order that waited, from its send to its take; p1-000001 was taken at once.
    assert sorted(waits) == sorted(r["order_id"] for r in RECORDS if r["order_id"] != "p1-000001")
    assert waits["p2-000001"] == (10_000, 250_000)
    (first_start, first_end), (second_start, second_end) = waits["p1-000003"], waits["p2-000002"]
    assert first_start == second_start < first_end < second_end  # overlapping: not X events on one thread


def test_the_crash_is_an_instant_on_the_killed_riders_thread() -> None:
    trace = events()
    threads = thread_names(trace)
    (killed,) = of("i", trace)
    assert (killed["name"], killed["s"], killed["ts"]) == ("killed", "t", 900_000)
    assert threads[killed["pid"], killed["tid"]] == "rider-3"
    assert killed["args"] == {"rider": "rider-3", "lost_count": 2, "lost_ids": ["p1-000005", "p2-000004"]}


def test_the_same_run_gives_the_same_bytes(tmp_path: Path) -> None:
    shuffled = RECORDS.copy()
    random.Random(7).shuffle(shuffled)  # the order records arrive in changes nothing
    assert shuffled != RECORDS
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    write_trace(first, a_run())
    write_trace(second, a_run(shuffled))
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text(encoding="utf-8") == trace_json(trace_events(a_run()))
    assert json.loads(first.read_bytes()) == trace_events(a_run())
    assert b"\r" not in first.read_bytes()


def test_a_run_without_deliveries_is_names_alone(tmp_path: Path) -> None:
    trace = events(the_run([], RIDERS, PRODUCERS))
    assert {e["ph"] for e in trace} == {"M"}
    assert sorted(thread_names(trace).values()) == ["rider-1", "rider-2", "rider-3", "rider-4", "sends", "sends"]


def test_a_missing_folder_is_an_oserror_and_no_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_trace(tmp_path / "nowhere" / "t.json", a_run())
    assert not (tmp_path / "nowhere").exists()


# --- run.py --trace, for real ---


def test_run_py_trace_has_a_slice_per_delivered_order_on_its_riders_thread(scripts: Scripts, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    run = scripts(
        "-m", "hardened.run", "--orders", "5", "--consumers", "3", "--speed", "0", "--quiet", "--trace", str(path)
    )
    assert run.wait(timeout=30) == 0, run.output
    assert run.stdout[-1] == f"trace: {path}"
    assert "Traceback" not in run.output
    table = {m[1]: int(m[2]) for line in run.stdout if (m := REPORT_ROW.match(line))}
    assert list(table) == ["rider-1", "rider-2", "rider-3"], run.stdout

    trace = json.loads(path.read_text(encoding="utf-8"))["traceEvents"]
    threads = thread_names(trace)
    assert [name for name in threads.values() if name != "sends"] == list(table)
    found = deliveries(trace)
    assert sorted(found) == [f"p1-{n:06}" for n in range(1, 6)]  # one slice per order, once each
    per_rider = Counter(threads[e["pid"], e["tid"]] for e in found.values())
    assert {rider: per_rider[rider] for rider in table} == table  # as the report counts them
    assert all(e["args"]["rider"] == threads[e["pid"], e["tid"]] for e in found.values())
    assert len(of("s", trace)) == len(of("f", trace)) == 5


def test_run_py_trace_in_a_missing_folder_is_a_usage_error(scripts: Scripts, tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "t.json"
    run = scripts("-m", "hardened.run", "--trace", str(path), "--consumers", "2", "--orders", "4")
    assert run.wait(timeout=15) == 2, run.output
    assert run.stdout == []  # nothing started: it failed before the run
    errors = [line for line in run.stderr if "error" in line]
    assert errors == [f"run.py: error: argument --trace: no such directory for {path}"], run.stderr
    assert run.stderr[-1] == errors[0]
    assert "Traceback" not in run.output
    assert not path.parent.exists()


def test_run_py_says_in_one_line_when_it_cannot_write_the_trace(scripts: Scripts, tmp_path: Path) -> None:
    # A folder where the file should be: its parent is there, so the run goes ahead,
    # and the write fails at the end (IsADirectoryError; PermissionError on Windows).
    run = scripts("-m", "hardened.run", "--trace", str(tmp_path), "--consumers", "2", "--orders", "4", "--speed", "0")
    assert run.wait(timeout=30) == 1, run.output
    assert run.stderr[-1].startswith("run.py: cannot write the trace: "), run.stderr
    assert "Traceback" not in run.output
    assert not any(line.startswith("trace: ") for line in run.stdout)
