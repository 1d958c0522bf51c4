"""The run as a trace: Chrome's trace-event format (JSON), for Perfetto or chrome://tracing.

    python -m hardened.run --trace run.json

Open the file at https://ui.perfetto.dev ("Open trace file", or drop it on the page):
nothing is uploaded, the page reads it in the browser. chrome://tracing ("Load") reads
it too. Where the timeline (timeline.py) is one picture, this is one you can zoom into,
click and search: WASD or Ctrl-scroll to zoom, a click on a slice for its details.

- A process per producer, with a slice on its thread at each order's send: the moment
  it went into ZeroMQ's queues.
- A process "riders", with a thread per rider (idle ones included): a slice per
  delivery, from the moment the rider took the order to the moment it was done, named
  by its order id. Its details: producer, restaurant, sent, taken and done (seconds
  since time 0), the wait and the ride.
- An arrow per order from its send to its delivery ("Flow events" in the details):
  which rider PUSH handed it to, and how long it waited on the way.
- The waits, as async slices on tracks "rider-3 queue" in the riders process: one
  lane per order waiting at once, so the height of a rider's waits is the length of
  its queue. Round robin is by count, not by load: the stacks differ.
- A rider killed with --crash-consumer: an instant "killed" on its thread, with the
  orders lost with it.

Search (Ctrl-F in Perfetto) by order id: p1-000042 finds its send and its delivery.
Times are microseconds since time 0, the run's first moment (moments.py). The same run
always gives the same bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hardened.moments import Delivery, Run

US_PER_S = 1_000_000
COMPACT = json.JSONEncoder(separators=(",", ":"))  # one, not one per event: a fifth faster at 10,000 orders


def write_trace(path: str | os.PathLike[str], run: Run) -> None:
    """Write the trace to `path`. The JSON is composed in full before the file is
    opened, so a failure leaves no half-written file. A missing folder is not created:
    it raises OSError (FileNotFoundError), as does any other write failure."""
    text = trace_json(trace_events(run))
    Path(path).write_text(text, encoding="utf-8", newline="\n")  # "\n" on Windows too: same bytes


def trace_json(trace: dict[str, Any]) -> str:
    """The trace as text: an event per line, so that grep and diff work on it. ASCII
    only (anything else escaped), so that no text a record carries can make it
    unwritable."""
    events = ",\n".join(COMPACT.encode(event) for event in trace["traceEvents"])
    rest = "".join(f',\n"{key}":{COMPACT.encode(value)}' for key, value in trace.items() if key != "traceEvents")
    return f'{{"traceEvents":[\n{events}\n]{rest}\n}}\n'


def trace_events(run: Run) -> dict[str, Any]:
    """The trace as a JSON object: {"traceEvents": [...], "displayTimeUnit": "ms",
    "otherData": {...}}. The names first (metadata events), then every other event by
    time; events at the same moment stay in the order made, which is the order
    Perfetto binds them in (a flow to the slice just before it on its thread)."""
    producers, riders = run.producers, run.riders  # every one a delivery or the crash names (moments.the_run)
    # Ids: a pid per producer (its one thread has tid = pid), then the riders' pid; a
    # rider's tid after every pid, so that no tid appears in two processes.
    pids = {name: index for index, name in enumerate(producers, start=1)}
    riders_pid = len(producers) + 1
    tids = {name: riders_pid + index for index, name in enumerate(riders, start=1)}

    names: list[dict[str, Any]] = []
    for index, name in enumerate(producers):
        pid = pids[name]
        names += [meta("process_name", pid, None, name=name), meta("process_sort_index", pid, None, sort_index=index)]
        names.append(meta("thread_name", pid, pid, name="sends"))
    names.append(meta("process_name", riders_pid, None, name="riders"))
    names.append(meta("process_sort_index", riders_pid, None, sort_index=len(producers)))
    for index, name in enumerate(riders):
        tid = tids[name]
        names += [
            meta("thread_name", riders_pid, tid, name=name),
            meta("thread_sort_index", riders_pid, tid, sort_index=index),
        ]

    timed: list[dict[str, Any]] = []
    for number, d in enumerate(run.deliveries, start=1):
        timed += delivery_events(d, number, pids[d.producer], riders_pid, tids[d.rider])
    if run.crash:
        killed = {"rider": run.crash.rider, "lost_count": run.crash.lost_count, "lost_ids": list(run.crash.lost)}
        where = (riders_pid, tids[run.crash.rider])
        timed.append(event("i", "killed", "crash", where, microseconds(run.crash.at_s), s="t", args=killed))
    timed.sort(key=lambda event: event["ts"])  # stable: what happens at one moment keeps its order

    other = {
        "source": "python -m hardened.run --trace",
        "time_zero": run.zero.isoformat() if run.zero else "",
        "ts": "microseconds since time_zero",
        "deliveries": len(run.deliveries),
        "riders": riders,
        "producers": producers,
        "dead": list(run.dead),
    }
    return {"traceEvents": names + timed, "displayTimeUnit": "ms", "otherData": other}


def delivery_events(d: Delivery, number: int, producer_pid: int, riders_pid: int, tid: int) -> list[dict[str, Any]]:
    """One order's events, `number` its ids (flow and wait): the send on its producer's
    thread and a flow from it; the wait, if any; the delivery on the rider's thread and
    the flow's end, bound to the delivery (bp "e": the enclosing slice). Each flow event
    follows its slice, at the same moment."""
    taken, done = microseconds(d.start_s), microseconds(d.end_s)
    sent = min(microseconds(d.sent_s), taken)  # never after the take, whatever a record says
    sender = (producer_pid, producer_pid)
    rider = (riders_pid, tid)
    events = [
        event("X", d.order_id, "send", sender, sent, dur=0, args={"order_id": d.order_id, "rider": d.rider}),
        event("s", d.order_id, "order", sender, sent, id=number),
    ]
    if sent < taken:
        waiting = {"order_id": d.order_id, "producer": d.producer, "wait_s": seconds(d.wait_s)}
        events.append(event("b", f"{d.rider} queue", "wait", rider, sent, id=number, args=waiting))
        events.append(event("e", f"{d.rider} queue", "wait", rider, taken, id=number))
    details = {
        "order_id": d.order_id,
        "producer": d.producer,
        "rider": d.rider,
        "restaurant": d.restaurant,
        "sent_s": seconds(d.sent_s),
        "taken_s": seconds(d.start_s),
        "done_s": seconds(d.end_s),
        "wait_s": seconds(d.wait_s),
        "ride_s": seconds(d.ride_s),
    }
    events.append(event("X", d.order_id, "delivery", rider, taken, dur=max(done - taken, 0), args=details))
    events.append(event("f", d.order_id, "order", rider, taken, id=number, bp="e"))
    return events


def meta(kind: str, pid: int, tid: int | None, **args: Any) -> dict[str, Any]:
    """A metadata event: a process's (tid None) or a thread's name or place."""
    return {"ph": "M", "name": kind, "pid": pid, **({} if tid is None else {"tid": tid}), "args": args}


def event(ph: str, name: str, cat: str, where: tuple[int, int], ts: int, **more: Any) -> dict[str, Any]:
    """A timed event on thread `where` (pid, tid), its keys always in this order."""
    pid, tid = where
    return {"ph": ph, "name": name, "cat": cat, "pid": pid, "tid": tid, "ts": ts, **more}


def microseconds(seconds_since_zero: float) -> int:
    """A trace's ts: whole microseconds (the records' own precision), never before time 0."""
    return max(round(seconds_since_zero * US_PER_S), 0)


def seconds(value: float) -> float:
    """Seconds for a slice's details, to the microsecond: 0.68, not 0.6799999999999999."""
    return round(value, 6)
