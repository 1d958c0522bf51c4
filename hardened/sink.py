"""run.py's results sink: the fan-in end of the pipeline, read until the run is over.

Every rider PUSHes a completion record per delivered order to one PULL socket that
run.py binds (the ZeroMQ guide's "sink"). collect() reads them into a report.Ledger
and shows them (liveview.py) until every expected order is accounted for, or until it
is clear that the orders still missing can no longer come: PUSH/PULL has no
acknowledgements, so the riders say more on the same socket (consumer.Progress): which
order each takes, and when its queue runs dry. From that and from who is still alive
run.py knows where every missing order is (Whereabouts), and never takes a quiet rider
for a dead one (nothing_more_to_come).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import weakref
from datetime import datetime, timedelta, timezone
from multiprocessing.process import BaseProcess

from hardened.cli import Pacer, error, plural

import zmq

from hardened.liveview import View
from hardened.orders import aware_time
from hardened.report import Ledger, Results, record_or_reason
from hardened.stopping import POLL_MS, StopFlag

RECORDS_PER_BATCH = 1000  # completion records taken between two looks at the children
# Once the last producer has exited, how long the orders it sent may take to reach a
# rider's queue (on one machine: milliseconds, unless it is very busy). An 'idle' said
# later than that means the rider has none left.
SETTLE_S = 1.0
STUCK_S = 2.0  # a rider died, and no order came for this long (plus --interval): see nothing_more_to_come


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
    it is clear that the orders still missing can no longer come (nothing_more_to_come)."""
    results = Results(ledger)
    where = Whereabouts([rider.name for rider in riders], view)
    ended: dict[str, datetime] = {}  # producer -> when run.py saw it exit
    died_at: datetime | None = None  # when run.py saw the latest rider die
    while not ledger.complete() and not stop.is_set():
        taken = sink.poll(POLL_MS) and take_records(sink, ledger, view, args.speed, where)
        if taken and args.crash_consumer and not results.killed and ledger.delivered >= ledger.expected // 4:
            results.killed, results.killed_at = crash_rider(riders[0], view), datetime.now(timezone.utc)
        if view:
            view.draw()
            if view.output_closed:
                stop.output_closed = True  # the terminal is gone
                stop.set()
        now = datetime.now(timezone.utc)
        for process in producers:
            if process.exitcode is not None and process.name not in ended:
                ended[process.name] = now
                results.fates[process.name] = fate(process.exitcode)
                if process.exitcode:  # what it had sent still comes: only its unsent orders are lost
                    complain(view, f"run.py: {process.name} {fate(process.exitcode)}; collecting what it sent")
                elif view:  # PUSH queued its orders at the riders: they deliver on without it
                    view.note(f"run.py: {process.name} sent its {args.orders} orders and exited")
        for rider in riders:
            if rider.exitcode is not None and rider.name not in results.dead:
                results.dead.append(rider.name)
                died_at = now
                if view:  # its line in the live view says so, as the report will
                    view.rider_ended(rider.name, "killed" if rider.name == results.killed else "died")
                if rider.name != results.killed:
                    complain(view, f"run.py: {rider.name} {fate(rider.exitcode)}")
        why = nothing_more_to_come(results, where, riders, producers, ended, died_at, args)
        if why:
            complain(view, why)
            break
    results.holding = dict(where.holding)
    for process in producers:
        results.fates.setdefault(process.name, "running")
    return results


def fate(exitcode: int) -> str:
    """How a child ended, for a line: 'died of SIGKILL', 'failed (exit 1)'."""
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"died of {signal.Signals(-exitcode).name}"
        return f"died of signal {-exitcode}"
    return f"failed (exit {exitcode})" if exitcode else ""


class Whereabouts:
    """Who holds which order, from what the riders tell the sink besides their records
    (consumer.Progress): 'taken' as a rider takes an order, 'idle' while its queue is
    empty. They come on the records' socket, so in order: a rider's 'idle' comes after
    the record of the last order it took (if it could send it)."""

    def __init__(self, riders: list[str], view: View | None) -> None:
        self.riders = set(riders)
        self.view = view
        self.holding: dict[str, str] = {}  # rider -> the order it took last, until it says idle
        self.idle_at: dict[str, datetime] = {}  # rider -> when it said idle, if that is its latest word
        self.taken_at: datetime | None = None  # when run.py heard of the latest order taken
        self.ignored = 0

    def take(self, data: bytes) -> bool:
        """Take in a rider's message if it is one of these (True); a completion record is not."""
        if b'"event"' not in data:
            return False
        try:
            message = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):
            return False  # for record_or_reason() to say what is wrong with it
        if not isinstance(message, dict) or "event" not in message:
            return False
        rider, event = message.get("consumer"), message.get("event")
        at = aware_time(message.get("at"))
        if rider not in self.riders:
            self.ignore("no rider of this run")
        elif event == "taken" and isinstance(order_id := message.get("order_id"), str) and order_id.isprintable():
            self.holding[rider] = order_id
            self.idle_at.pop(rider, None)
            self.taken_at = datetime.now(timezone.utc)
            self.heard_from(rider)
        elif event == "idle" and at is not None:
            self.holding.pop(rider, None)
            self.idle_at[rider] = at
            self.heard_from(rider)
        else:
            self.ignore(f"event {event!r}" if isinstance(event, str) and event.isprintable() else "an event")
        return True

    def heard_from(self, rider: str) -> None:
        """The live view marks a rider it has not heard from for a while: this is word from it."""
        if self.view:
            self.view.heard_from(rider)

    def ignore(self, why: str) -> None:
        self.ignored += 1
        if self.ignored <= 3:  # whoever sends junk gets no flood of lines for it
            complain(self.view, f"run.py: ignored a malformed rider message ({why})")

    def ran_dry(self, rider: str, since: datetime) -> bool:
        """Whether the rider holds nothing and found its queue empty at `since` or later."""
        at = self.idle_at.get(rider)
        return at is not None and at >= since


def take_records(
    sink: zmq.Socket, ledger: Ledger, view: View | None, speed: float, where: Whereabouts | None = None
) -> int:
    """Take the records waiting in the sink (up to a batch): one poll per batch, not one
    per record, so that the sink keeps up with ten riders at --speed 0. A record it
    cannot use (any local process can connect: report.record_or_reason) is counted,
    and said as a rider says a bad order: past 20 a second, a summary a second."""
    malformed = MALFORMED.setdefault(ledger, Pacer("run.py", "ignored", "malformed completion records"))
    malformed.out = lambda line: complain(view, line)
    malformed.tick()
    taken = 0
    for _ in range(RECORDS_PER_BATCH):
        try:
            data = sink.recv(zmq.NOBLOCK)
        except zmq.Again:
            break
        if where and where.take(data):
            continue  # a rider's 'taken' or 'idle': see Whereabouts
        record = record_or_reason(data)
        if isinstance(record, str):
            malformed.event(malformed_line, record, reason=record)
            continue
        ledger.add(record, speed)
        taken += 1
        if view:
            view.delivered(record)
    if ledger.complete():
        malformed.flush()  # the last second's count, before the report
    return taken


# Per run (its Ledger): the malformed completion records of the last second.
MALFORMED: weakref.WeakKeyDictionary[Ledger, Pacer] = weakref.WeakKeyDictionary()


def malformed_line(why: str) -> str:
    return f"run.py: ignored a malformed completion record ({why})"


def nothing_more_to_come(
    results: Results,
    where: Whereabouts,
    riders: list[BaseProcess],
    producers: list[BaseProcess],
    ended: dict[str, datetime],
    died_at: datetime | None,
    args: argparse.Namespace,
) -> str:
    """Why the orders still missing can no longer come, or "" while they still can.

    Never a silence alone: a rider that is quiet may be slow to start, on a long ride,
    or paused (a laptop swapping), and still deliver. An order is given up on only when
    nobody alive can have it: once every producer has exited (what it sent is queued at
    the riders by then), and every living rider has said 'idle' from SETTLE_S after
    that on, the living riders hold nothing and have nothing queued; what is missing was
    lost with a dead rider, never sent by a producer that failed, or lost on the way."""
    if results.ledger.complete():  # the last record came in this very round: nothing to give up
        return ""
    missing = plural(results.ledger.expected - results.ledger.accounted, "order")
    living = [rider.name for rider in riders if rider.exitcode is None]
    if not living:
        results.gave_up = True
        return f"run.py: every rider died ({', '.join(results.dead)}): the {missing} still missing can no longer come"
    causes = [f"{rider} died" for rider in results.dead] + [f"{p} {why}" for p, why in results.fates.items() if why]
    if len(ended) == len(producers):
        settled = max(ended.values()) + timedelta(seconds=SETTLE_S)
        if all(where.ran_dry(rider, settled) for rider in living):
            results.gave_up = True
            because = ", ".join(causes) or "no rider died and no producer failed"
            return f"run.py: gave up on {missing}: {because}; the producers are done, and every living rider ran dry"
        return ""
    # A producer still running, a rider dead, and nothing taken for a while: the producer
    # waits for every rider before its first order (wait_consumers), and one never comes.
    if died_at is not None:
        quiet = timedelta(seconds=args.interval + STUCK_S)
        since = max(died_at, where.taken_at or died_at) + quiet
        if all(where.ran_dry(rider, since) for rider in living):
            running = ", ".join(p.name for p in producers if p.name not in ended)
            return (
                f"run.py: gave up on {running}: {', '.join(causes)}, and no order came for {quiet.total_seconds():g} s "
                f"(a producer waits for all {args.consumers} riders before its first order)"
            )
    return ""


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
