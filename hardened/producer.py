"""The producer: the platform's server, pushing confirmed delivery orders to riders.

The first read's producer.py, hardened. Same produce(), same steps; what it adds, and
why: Ctrl-C as a flag that every wait checks, from the first line to the last (a
KeyboardInterrupt lands wherever the code is: during start-up or close it prints a
traceback, and ends close() before its linger is out); a line for every
consumer that connects, leaves or is refused, and a hint when none comes (PUSH says
nothing of its peers); heartbeats (a rider that lost signal is dropped in 1.5 s, not
TCP's minutes); CURVE; a summary a second instead of a line per order in a flood.

It binds a ZeroMQ PUSH socket. Every rider's app (consumer.py) connects a PULL socket
to it, and PUSH hands each order to exactly one connected rider, round robin. Orders
are JSON objects, one frame each.

Run it (Ctrl-C stops it):

    python -m hardened.producer  # an order every 0.5 s, until stopped
    python -m hardened.producer --orders 20 --wait-consumers 2 --name p1
    python -m hardened.producer --bind tcp://127.0.0.1:5558 --name p2
    python -m hardened.producer --curve-secret keys/platform.key_secret --curve-allow allowed  # README, Security

    $ python -m hardened.producer --orders 3 --wait-consumers 2
    p1: bound tcp://127.0.0.1:5557, waiting for 2 consumers
    p1: consumer connected (1 so far)
    p1: consumer connected (2 so far)
    p1: sent p1-000001 Pizza Roma -> 12 Elm St (0.58 s)
    p1: sent p1-000002 Sushi Go -> 7 Oak Ave (0.21 s)
    p1: sent p1-000003 Taco Loco -> 31 Pine Rd (0.93 s)
    p1: sent 3 orders
"""

from __future__ import annotations

from hardened import stopping

if __name__ == "__main__":
    stopping.catch_signals()  # first of all: from here on, Ctrl-C ends this script cleanly

import argparse
import json
from collections.abc import Callable
from itertools import islice

from hardened.cli import Pacer, SetupError, bind, fail, non_negative_float, non_negative_int, plural, say

import zmq

from hardened.curve import ServerKeys, add_curve_options, curve_option, curve_server, warn_if_exposed
from hardened.heartbeats import DEFAULT_HEARTBEATS, Heartbeats, add_heartbeat_options, heartbeat_option
from hardened.monitoring import ConsumerWatch
from hardened.orders import add_delivery_option, make_orders, sent_line, utc_now
from hardened.stopping import POLL_MS, StopFlag

# Loopback by default: orders carry customers' names and addresses, so the producer
# is reachable from other machines only when you say so (see README, "Across machines").
DEFAULT_BIND = "tcp://127.0.0.1:5557"

# How long close() may keep trying to hand queued orders to consumers. The default
# LINGER is -1 (forever): a producer whose consumer died would then hang on exit. 0
# would throw away orders that send() already accepted. A bound gets both right.
LINGER_MS = 5000
STOPPED_LINGER_MS = 500  # after Ctrl-C the user wants out now; in-flight orders still go


def produce(
    endpoint: str = DEFAULT_BIND,
    name: str = "p1",
    orders: int = 0,
    interval: float = 0.5,
    wait_consumers: int = 0,
    seed: int | None = None,
    delivery: tuple[float, float] = (0.2, 1.0),
    stop: StopFlag | None = None,
    quiet: bool = False,
    on_bound: Callable[[str], None] | None = None,
    curve: ServerKeys | None = None,
    heartbeats: Heartbeats = DEFAULT_HEARTBEATS,
) -> int:
    """Bind, send `orders` orders (0: until stopped) and return how many were sent.
    curve: our key pair and the consumers we accept, from files (ServerKeys.from_files) or
    made in memory (run.py --curve)."""
    stop = stop or StopFlag()
    # One context per process, made here, after any fork or spawn: contexts and
    # sockets must never cross a process boundary.
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    # Heartbeats: without them a rider who loses signal keeps getting orders for minutes.
    heartbeats.apply(push)
    # Before bind(), to see every consumer.
    watch = ConsumerWatch(push, name, quiet=quiet, curve=bool(curve), gone_why=heartbeats.says())
    auth = None
    sent = 0
    lines = Pacer(name, "sent")  # a line per order, or a summary a second in a flood
    try:
        auth = curve_server(ctx, push, curve) if curve else None
        bound = bind(push, endpoint)
        watch.bound(bound)
        if on_bound:
            on_bound(bound)
        warn_if_exposed(name, bound, encrypted=bool(curve))
        say(f"{name}: bound {bound}" + (f", waiting for {wait_consumers} consumers" if wait_consumers else ""))
        wait_for_consumers(watch, wait_consumers, stop)  # stopped meanwhile: nothing is sent
        for order in islice(make_orders(name, seed, delivery), orders or None):
            order["created_at"] = utc_now()
            if not send_when_ready(push, watch, json.dumps(order).encode(), stop):
                break
            sent += 1
            if not quiet:
                lines.event(sent_line, name, order)
            watch.drain_if_due()
            if interval and watch.pause(interval, stop):  # and hear about consumers meanwhile
                break
        lines.flush()
        say(f"{name}: {'stopped, ' if stop.is_set() else ''}sent {plural(sent, 'order')}")
        return sent
    finally:
        watch.close()
        # An explicit linger: the default (-1) would hang here while an order is queued
        # for a rider that died; 0 would drop orders that send() already accepted.
        push.close(linger=STOPPED_LINGER_MS if stop.is_set() else LINGER_MS)
        if auth:
            auth.stop()  # before term(): a running authenticator makes term() hang
        ctx.term()


def wait_for_consumers(watch: ConsumerWatch, wanted: int, stop: StopFlag) -> bool:
    """The slow-joiner fix. Without it the first consumer to finish its handshake gets
    the whole first burst, because PUSH only round-robins across peers it already has."""
    while watch.handshakes < wanted and not stop.is_set():
        watch.monitor.poll(POLL_MS)
        watch.drain()
        watch.nudge(wanted)
    return not stop.is_set()


def send_when_ready(push: zmq.Socket, watch: ConsumerWatch, data: bytes, stop: StopFlag) -> bool:
    """Send one order, waiting while no consumer can take it.

    A PUSH with no connected consumer (or with every consumer's queue at its high-water
    mark) blocks in send(): that is the pattern's back-pressure, "wait until a worker is
    available". We wait with poll() instead of a blocking send() so Ctrl-C still works.
    """
    while not stop.is_set():
        try:
            push.send(data, zmq.NOBLOCK)
            if not watch.handshakes:
                watch.catch_up()  # so that "consumer connected" comes before "sent"
            return True
        except zmq.Again:
            # Wake up for the socket becoming writable or for a monitor event.
            zmq.select([watch.monitor], [push], [], POLL_MS / 1000)
            watch.drain()
            watch.nudge(1)
    return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Push delivery orders to riders (ZeroMQ PUSH).")
    parser.add_argument("--bind", default=DEFAULT_BIND, help="endpoint to bind (default %(default)s)")
    parser.add_argument("--name", default="p1", help="producer name, prefix of order ids (default %(default)s)")
    parser.add_argument("--orders", type=non_negative_int, default=0, help="orders to send, 0 = until stopped")
    parser.add_argument(
        "--interval", type=non_negative_float, default=0.5, help="seconds between orders (default %(default)s)"
    )
    parser.add_argument(
        "--wait-consumers", type=non_negative_int, default=0, metavar="K", help="wait for K consumers before sending"
    )
    parser.add_argument("--seed", type=int, help="seed for the orders and their delivery times")
    add_delivery_option(parser, default=(0.2, 1.0))
    add_heartbeat_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no line per order or consumer")
    add_curve_options(
        parser,
        "this producer's NAME.key_secret file",
        "--curve-allow",
        "DIR",
        "accept only consumers whose NAME.key is in DIR",
    )
    args = parser.parse_args(argv)
    args.curve = curve_option(parser, args, "--curve-allow")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        produce(
            args.bind,
            args.name,
            args.orders,
            args.interval,
            args.wait_consumers,
            args.seed,
            args.delivery,
            stop=stopping.catch_signals(),  # set by Ctrl-C and SIGTERM; every wait in produce() looks at it
            quiet=args.quiet,
            curve=ServerKeys.from_files(*args.curve) if args.curve else None,
            heartbeats=heartbeat_option(args),
        )
    except SetupError as exc:
        return fail(f"{args.name}: {exc}")
    return 0


if __name__ == "__main__":
    stopping.exit(main())
