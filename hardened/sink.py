"""run.py's results sink: the fan-in end of the pipeline, read until the run is over.

Every rider PUSHes a completion record per delivered order to one PULL socket that
run.py binds (the ZeroMQ guide's "sink"). collect() reads them into a report.Ledger
and shows them (liveview.py) until every expected order is accounted for, or until it
is clear that the orders still missing can no longer come: PUSH/PULL has no
acknowledgements, so nothing tells run.py that an order died with a rider. It has to
infer that from who is still alive and how long the riders have been quiet.
"""

from __future__ import annotations

import argparse
import time
from multiprocessing.process import BaseProcess

from hardened.cli import error

import zmq

from hardened.liveview import View
from hardened.report import Ledger, Results, parse_record
from hardened.stopping import POLL_MS, StopFlag

RECORDS_PER_BATCH = 1000  # completion records taken between two looks at the children
STARTING_S = 3.0  # how long riders may take to start, connect and deliver a first order


def collect(
    sink: zmq.Socket,
    ledger: Ledger,
    view: View | None,
    producers: list[BaseProcess],
    riders: list[BaseProcess],
    stop: StopFlag,
    args: argparse.Namespace,
) -> Results:
    """Read completion records until every expected order is accounted for, or until
    it is clear that the orders still missing can no longer come."""
    results = Results(ledger)
    finished: set[str] = set()  # producers that sent all their orders
    last_record = time.monotonic()
    while not ledger.complete() and not stop.is_set():
        if sink.poll(POLL_MS) and take_records(sink, ledger, view, args.speed):
            last_record = time.monotonic()
            if args.crash_consumer and not results.killed and ledger.delivered >= ledger.expected // 4:
                results.killed = crash_rider(riders[0], view)
        if view:
            view.draw()
            if view.output_closed:
                stop.output_closed = True  # the terminal is gone
                stop.set()
        if any(p.exitcode not in (None, 0) for p in producers):
            complain(view, "run.py: a producer failed; stopping")
            break
        for process in producers:
            if process.exitcode == 0 and process.name not in finished:
                finished.add(process.name)
                if view:  # PUSH queued its orders at the riders: they deliver on without it
                    view.note(f"run.py: {process.name} sent its {args.orders} orders and exited")
        results.dead = [r.name for r in riders if r.exitcode is not None]
        if nothing_more_to_come(results, riders, len(finished) == len(producers), last_record, args):
            break
    return results


def take_records(sink: zmq.Socket, ledger: Ledger, view: View | None, speed: float) -> int:
    """Take the records waiting in the sink (up to a batch): one poll per batch, not one
    per record, so that the sink keeps up with ten riders at --speed 0."""
    taken = 0
    for _ in range(RECORDS_PER_BATCH):
        try:
            record = parse_record(sink.recv(zmq.NOBLOCK))
        except zmq.Again:
            break
        if record is None:
            complain(view, "run.py: ignored a malformed completion record")
            continue
        ledger.add(record, speed)
        taken += 1
        if view:
            view.delivered(record)
    return taken


def nothing_more_to_come(
    results: Results, riders: list[BaseProcess], producers_done: bool, last_record: float, args: argparse.Namespace
) -> bool:
    """A rider with work queued finishes an order at least every longest ride. Once the
    producers are done and the riders have been quiet for longer, every queue is empty:
    what is still missing was lost with a dead rider, or is a record that a rider could
    not send (it said so). With no rider left at all there is nothing to wait for (and
    a producer may be blocked in send, with nobody to send to)."""
    if results.dead and len(results.dead) == len(riders):
        return True
    if results.dead and not results.ledger.delivered and time.monotonic() - last_record > STARTING_S:
        # A rider died before the first delivery: the producers, waiting for every
        # rider before their first order, would wait for ever.
        return True
    # More grace when nobody died: a slow rider on a busy machine is no lost record.
    grace_s = 0.5 if results.dead else 2.0
    return producers_done and time.monotonic() - last_record > args.delivery[1] * args.speed + grace_s


def complain(view: View | None, line: str) -> None:
    """A problem, on stderr: above the live view, if it is up."""
    if view:
        view.note(line, problem=True)
    else:
        error(line)


def crash_rider(rider: BaseProcess, view: View | None) -> str:
    """The --crash-consumer demo: killed outright (SIGKILL; on Windows TerminateProcess),
    so the rider gets no chance to clean up."""
    if view:
        view.note(f"run.py: killing {rider.name} outright")
    rider.kill()
    rider.join()
    return rider.name
