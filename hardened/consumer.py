"""The consumer: a rider's app, pulling delivery orders and delivering them.

The first read's consumer.py, hardened. Same consume(), same steps; what it adds, and
why: Ctrl-C as a flag, so a stop mid-ride says which order was not delivered; a line
when a producer is lost, refuses us, or comes back (PULL says nothing of its peers);
heartbeats, so a producer gone silent is noticed and redialled in 1.5 s; CURVE; a
summary a second instead of a line per order in a flood; --orders to stop by itself.

It connects a ZeroMQ PULL socket to one or more producers. PULL fair-queues: while it is
connected to two producers that both have orders waiting, it takes them in turn, so a
busy producer can't starve another (README, "Two producers, one rider": when that holds).
A delivery is simulated by sleeping for the order's `delivery_s` times `--speed`.

Run it (Ctrl-C stops it, and says how many orders it delivered):

    python -m hardened.consumer --name rider-1
    python -m hardened.consumer --name rider-2 --connect tcp://127.0.0.1:5557 --connect tcp://127.0.0.1:5558
    python -m hardened.consumer --name rider-1 --curve-secret keys/rider-1.key_secret --curve-server keys/platform.key

    $ python -m hardened.consumer --name rider-1
    rider-1: connecting to tcp://127.0.0.1:5557
    rider-1 delivered p1-000001 from p1 (Pizza Roma -> 12 Elm St) in 0.58 s
    rider-1 delivered p1-000003 from p1 (Taco Loco -> 31 Pine Rd) in 0.93 s
    ^Crider-1: stopped, delivered 2 orders

An order that is not valid (see README, "Wire format") is rejected with one line on
stderr, and the rider carries on with the next one.
"""

from __future__ import annotations

from hardened import stopping

if __name__ == "__main__":
    stopping.catch_signals()  # first of all: from here on, Ctrl-C ends this script cleanly

import argparse
import contextlib
import json
import time

from hardened.cli import (
    Pacer,
    SetupError,
    connect,
    error,
    fail,
    non_negative_float,
    non_negative_int,
    plural,
    say,
    unresolved,
)

import zmq

from hardened.curve import ClientKeys, add_curve_options, curve_client, curve_option
from hardened.heartbeats import (
    DEFAULT_HEARTBEATS,
    Heartbeats,
    add_heartbeat_options,
    heartbeat_option,
    read_without_limit,
)
from hardened.monitoring import ProducerLinks
from hardened.orders import MAX_ORDER_BYTES, InvalidOrder, completion_record, delivered_line, parse_order, utc_now
from hardened.stopping import POLL_MS, StopFlag

DEFAULT_CONNECT = "tcp://127.0.0.1:5557"
SINK_PATIENCE_S = 2.0  # how long a completion record waits for a sink that takes none
IDLE_EVERY_S = 0.5  # how often a rider with nothing queued says so, under run.py (Progress)


def consume(
    endpoints: list[str] | None = None,
    name: str = "rider",
    results: str | None = None,
    speed: float = 1.0,
    stop: StopFlag | None = None,
    quiet: bool = False,
    curve: ClientKeys | None = None,
    orders: int = 0,
    heartbeats: Heartbeats = DEFAULT_HEARTBEATS,
    progress: bool = False,
) -> int:
    """Pull and deliver orders until stopped, or until `orders` are delivered (0: no
    limit); return how many were delivered. results: where to PUSH a completion record
    per delivery. curve: our key pair and the producer's public key, from files
    (ClientKeys.from_files) or made in memory (run.py --curve). progress: also say on
    `results` when an order is taken and when the queue runs dry (see Progress; run.py)."""
    stop = stop or StopFlag()
    endpoints = endpoints or [DEFAULT_CONNECT]  # host names stay names: see ProducerLinks
    # One context per process, made here, after any fork or spawn.
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.maxmsgsize = MAX_ORDER_BYTES  # a bigger message is a protocol error: see ProducerLinks
    read_without_limit(pull)  # with heartbeats, a full queue crashes libzmq 4.3: see heartbeats.py
    sink = ctx.socket(zmq.PUSH) if results else None
    # Heartbeats: notice a producer (or a network) that went silent, and reconnect.
    heartbeats.apply(pull, connecting=True)
    if sink:
        heartbeats.apply(sink, connecting=True)
    # Before connect(), to see every event.
    links = ProducerLinks(pull, name, endpoints, curve=bool(curve), quiet=quiet, gone_why=heartbeats.says())
    delivered = 0
    sink_ok = True  # the sink took the last record: a slow one is waited for (see report())
    lines = None if quiet else Pacer(name, "delivered")  # a line per order, or a summary a second
    rejects = Pacer(name, "rejected", "messages", out=error)  # a flood of junk: a summary a second too
    told = Progress(sink, name) if sink and progress else None
    try:
        if curve:
            curve_client(pull, curve)
        # One PULL socket, many connects: ZeroMQ fair-queues between the producers.
        for endpoint in endpoints:
            connect(pull, endpoint)
        if sink and results:
            connect(sink, results)
        # connect() returns at once; ZeroMQ connects (and reconnects) in the background.
        say(f"{name}: connecting to {', '.join(endpoints)}")
        for endpoint in endpoints:
            if why := unresolved(endpoint):
                # Not an error: libzmq looks the name up again at every attempt.
                links.unheard.discard(endpoint)  # this line says why no producer is heard
                error(f"{name}: cannot look up {endpoint} (yet): {why}; ZeroMQ keeps trying, and connects once it can")
        while (not orders or delivered < orders) and (
            frames := receive(pull, links, stop, lines, rejects, told)
        ) is not None:
            received_at = utc_now() if sink else ""
            if (order := accept(frames, name, rejects)) is None:
                continue  # not an order: said why, and on to the next message
            if told:
                told.taken(order)
            if not deliver(order, name, speed, stop, lines):
                break
            delivered += 1
            if sink:
                sink_ok = report(sink, completion_record(order, name, received_at), name, stop, sink_ok)
        rejects.flush()
        if lines:
            lines.flush()
        say(f"{name}: {'stopped' if stop.is_set() else 'done'}, delivered {plural(delivered, 'order')}")
        return delivered
    finally:
        # Orders still queued in this PULL socket are lost when we go: that is the
        # transient nature of the pipeline. Completion records get a bounded linger.
        links.close()
        pull.close(linger=0)
        if sink:
            sink.close(linger=1000)
        ctx.term()


def receive(
    pull: zmq.Socket,
    links: ProducerLinks,
    stop: StopFlag,
    lines: Pacer | None,
    rejects: Pacer | None = None,
    told: Progress | None = None,
) -> list[bytes] | None:
    """The next message, or None once stopped. Never blocks for more than POLL_MS, so
    Ctrl-C is noticed even while no order comes (a plain recv() would hang there).

    poll() before every recv(), not recv(NOBLOCK) first: polling is when a PULL socket
    looks at all its connections again. A backlogged rider that only polls when recv()
    finds nothing reads one producer's queue dry while the other's waits."""
    while not stop.is_set():
        if links.wait(POLL_MS):
            return pull.recv_multipart(zmq.NOBLOCK)
        for pacer in (lines, rejects):
            if pacer:
                pacer.tick()  # no message for a while: a flood's last summary comes now
        if told:
            told.idle()  # nothing queued here right now
    return None


class Progress:
    """What a rider of run.py tells the results sink besides its completion records,
    on the same socket and so in order: {"event": "taken", "consumer", "order_id"} as it
    takes an order, and {"event": "idle", "consumer", "at"} when its queue is empty,
    again every IDLE_EVERY_S while it stays so. PUSH/PULL has no acknowledgements: this
    is how run.py knows who holds an order, and when a rider has nothing more to
    deliver (sink.Whereabouts). Never a blocking send: a message the sink does not take
    at once is dropped (an idle comes again; a taken order still gets its record)."""

    def __init__(self, sink: zmq.Socket, name: str) -> None:
        self.sink, self.name = sink, name
        self.idle_since_s = -IDLE_EVERY_S  # monotonic: when the last idle was said

    def taken(self, order: dict) -> None:
        self.send({"event": "taken", "consumer": self.name, "order_id": order["order_id"]})
        self.idle_since_s = -IDLE_EVERY_S  # the next empty queue is said at once

    def idle(self) -> None:
        if time.monotonic() - self.idle_since_s >= IDLE_EVERY_S:
            self.idle_since_s = time.monotonic()
            self.send({"event": "idle", "consumer": self.name, "at": utc_now()})

    def send(self, message: dict) -> None:
        with contextlib.suppress(zmq.Again):
            self.sink.send(json.dumps(message).encode(), zmq.NOBLOCK)


def accept(frames: list[bytes], name: str, rejects: Pacer | None = None) -> dict | None:
    """The order in a message, or None (and one line saying why) if it is not a valid one.
    rejects: paces those lines (past 20 a second, a summary a second, by reason)."""
    try:
        if len(frames) != 1:
            raise InvalidOrder(f"{len(frames)} frames, expected 1")
        return parse_order(frames[0])
    except InvalidOrder as exc:
        if rejects:
            rejects.event(rejected_line, name, exc, reason=reason(exc))
        else:
            error(rejected_line(name, exc))
        return None


def rejected_line(name: str, exc: InvalidOrder) -> str:
    return f"{name}: rejected message: {exc}"


def reason(exc: InvalidOrder) -> str:
    """The reason without its details (which JSON error, at which character), for a count."""
    return str(exc).partition(" (")[0]


def deliver(order: dict, name: str, speed: float, stop: StopFlag, lines: Pacer | None) -> bool:
    """Simulate the ride. False if Ctrl-C came first (that order is not delivered).
    lines: where to say it was delivered (None: quiet)."""
    started = time.monotonic()
    # stop.wait() rather than time.sleep(): a signal handler can cut it short.
    if stop.wait(order["delivery_s"] * speed) if speed else stop.is_set():
        say(f"{name}: stopped while delivering {order['order_id']}: not delivered")
        return False
    if lines:
        lines.event(delivered_line, name, order, time.monotonic() - started)
    return True


def report(sink: zmq.Socket, record: dict, name: str, stop: StopFlag, waiting: bool) -> bool:
    """Send a completion record; return whether the sink took it. A sink that takes
    none (gone, or with a capped queue that is full) holds the rider back for up to
    SINK_PATIENCE_S, if `waiting`: after a record it did not take, the next ones are
    dropped at once until it takes one again, so a sink that is gone costs records, not
    deliveries. Never a blocking send: Ctrl-C must still work."""
    data = json.dumps(record).encode()
    deadline = time.monotonic() + (SINK_PATIENCE_S if waiting else 0)
    while True:
        try:
            sink.send(data, zmq.NOBLOCK)
            return True
        except zmq.Again:  # its queue is full: the high-water mark, 1000 records
            if stop.is_set() or time.monotonic() >= deadline:
                error(f"{name}: results sink not taking records: dropped the one for {record['order_id']}")
                return False
            sink.poll(POLL_MS, zmq.POLLOUT)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pull delivery orders and deliver them (ZeroMQ PULL).")
    connect_help = f"producer endpoint, repeatable (default {DEFAULT_CONNECT})"
    parser.add_argument("--connect", action="append", metavar="ENDPOINT", help=connect_help)
    parser.add_argument("--name", default="rider", help="rider name (default %(default)s)")
    parser.add_argument("--results", metavar="ENDPOINT", help="PUSH a completion record per delivered order here")
    speed_help = "multiplies delivery_s; 0 = no sleep (default %(default)s)"
    parser.add_argument("--speed", type=non_negative_float, default=1.0, help=speed_help)
    parser.add_argument("--orders", type=non_negative_int, default=0, help="stop after N orders (default 0: no limit)")
    add_heartbeat_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no line per delivered order or reconnection")
    add_curve_options(
        parser, "this rider's NAME.key_secret file", "--curve-server", "FILE", "the producer's public NAME.key"
    )
    args = parser.parse_args(argv)
    args.curve = curve_option(parser, args, "--curve-server")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = stopping.catch_signals()  # set by Ctrl-C and SIGTERM; every wait in consume() looks at it
    beats = heartbeat_option(args)
    try:
        curve = ClientKeys.from_files(*args.curve) if args.curve else None
        consume(args.connect, args.name, args.results, args.speed, stop, args.quiet, curve, args.orders, beats)
    except SetupError as exc:
        return fail(f"{args.name}: {exc}")
    return 0


if __name__ == "__main__":
    stopping.exit(main())
