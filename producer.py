"""The producer: the platform's server, pushing confirmed delivery orders to riders.

It binds a ZeroMQ PUSH socket. Every rider's app (consumer.py) connects a PULL socket
to it, and PUSH hands each order to exactly one connected rider, round robin. Orders
are JSON objects, one frame each.

Run it (Ctrl-C stops it):

    python producer.py                          # an order every 0.5 s, until stopped
    python producer.py --orders 20 --wait-consumers 2 --name p1
    python producer.py --bind tcp://127.0.0.1:5558 --name p2
    python producer.py --curve-secret keys/platform.key_secret --curve-allow allowed  # README, Security

    $ python producer.py --orders 3 --wait-consumers 2
    p1: bound tcp://127.0.0.1:5557, waiting for 2 consumers to connect
    p1: consumer connected (1 so far)
    p1: consumer connected (2 so far)
    p1: sent p1-000001 Pizza Roma -> 12 Elm St (0.58 s)
    p1: sent p1-000002 Sushi Go -> 7 Oak Ave (0.21 s)
    p1: sent p1-000003 Taco Loco -> 31 Pine Rd (0.93 s)
    p1: sent 3 orders
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from itertools import islice

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from common import (
    MAX_DELIVERY_S,
    POLL_MS,
    SetupError,
    StopFlag,
    bind,
    error,
    handshake_failure,
    install_stop_handlers,
    load_keys,
    non_negative_float,
    non_negative_int,
    pending_events,
    say,
    utc_now,
)

# Loopback by default: orders carry customers' names and addresses, so the producer
# is reachable from other machines only when you say so (see README, "Across machines").
DEFAULT_BIND = "tcp://127.0.0.1:5557"

# How long close() may keep trying to hand queued orders to consumers. The default
# LINGER is -1 (forever): a producer whose consumer died would then hang on exit. 0
# would throw away orders that send() already accepted. A bound gets both right.
LINGER_MS = 5000
# After Ctrl-C the user wants out now; half a second still lets in-flight orders go.
STOPPED_LINGER_MS = 500

MENUS = {
    "Pizza Roma": [("Margherita", 8.50), ("Diavola", 10.00), ("Tiramisu", 5.50)],
    "Sushi Go": [("Salmon nigiri", 6.00), ("California roll", 7.50), ("Miso soup", 3.00)],
    "Taco Loco": [("Carnitas taco", 3.50), ("Burrito", 9.00), ("Horchata", 2.50)],
    "Curry House": [("Chicken korma", 11.00), ("Dal", 7.00), ("Naan", 2.00)],
    "Green Bowl": [("Falafel bowl", 9.50), ("Poke bowl", 12.00), ("Lemonade", 3.00)],
}
CUSTOMERS = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]
STREETS = ["Elm St", "Oak Ave", "Pine Rd", "Maple Ln", "Cedar Ct"]


def order_id(producer: str, seq: int) -> str:
    """Order ids are unique across producers as long as producers' names are."""
    return f"{producer}-{seq:06d}"


def make_orders(producer: str, seed: int | None, delivery: tuple[float, float]) -> Iterator[dict]:
    """Endless seeded orders. run.py replays the same stream to know, before anything is
    sent, which ids to expect and how much delivery work they add up to."""
    rng = random.Random(seed)
    restaurants = list(MENUS)
    for seq in range(1, sys.maxsize):
        restaurant = rng.choice(restaurants)
        items = [
            {"name": name, "qty": rng.randint(1, 2), "price": price}
            for name, price in rng.sample(MENUS[restaurant], rng.randint(1, 3))
        ]
        yield {
            "order_id": order_id(producer, seq),
            "producer": producer,
            "restaurant": restaurant,
            "items": items,
            "total": round(sum(item["qty"] * item["price"] for item in items), 2),
            "customer": rng.choice(CUSTOMERS),
            "address": f"{rng.randint(1, 99)} {rng.choice(STREETS)}",
            "delivery_s": round(rng.uniform(*delivery), 3),
        }


class ConsumerWatch:
    """Counts consumers through the socket monitor: the only way a PUSH socket tells
    you who is connected. A consumer counts once its ZMTP handshake has succeeded,
    which is when PUSH starts giving it orders."""

    EVENTS = (
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_DISCONNECTED
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )

    def __init__(self, push: zmq.Socket, name: str, quiet: bool = False, curve: bool = False) -> None:
        # Must exist before bind(), or the first handshakes happen unseen.
        self.monitor = push.get_monitor_socket(self.EVENTS)
        self.name = name
        self.quiet = quiet
        self.curve = curve
        self.handshakes = 0
        self.next_drain = 0.0

    def drain_if_due(self) -> None:
        """A producer that never waits still reports events, every POLL_MS (not at
        every order: that would cost a system call per order)."""
        if time.monotonic() >= self.next_drain:
            self.drain()

    def drain(self) -> None:
        """Read every pending monitor event (without blocking) and report it."""
        self.next_drain = time.monotonic() + POLL_MS / 1000
        for event, value, _ in pending_events(self.monitor):
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
                if not self.quiet:
                    say(f"{self.name}: consumer connected ({self.handshakes} so far)")
            elif event == zmq.EVENT_DISCONNECTED:
                if not self.quiet:
                    say(f"{self.name}: a connection closed")
            else:  # a failed handshake: that peer gets no orders
                error(f"{self.name}: refused a connection: {handshake_failure(event, value, self.curve)}")

    def close(self, push: zmq.Socket) -> None:
        push.disable_monitor()
        self.monitor.close(linger=0)


def curve_server(ctx: zmq.Context, push: zmq.Socket, secret_file: str, allow_dir: str) -> ThreadAuthenticator:
    """Ironhouse: encrypt every connection, and accept only consumers whose public key
    file (NAME.key) is in allow_dir. Must run before bind()."""
    public, secret = load_keys(secret_file, need_secret=True)
    # pyzmq's authenticator only logs a key file it cannot read, and then refuses
    # everyone: read them here first, to say so and stop.
    try:
        allowed = zmq.auth.load_certificates(allow_dir)
    except (OSError, ValueError) as exc:
        raise SetupError(f"--curve-allow {allow_dir}: {exc}") from None
    if not allowed:
        raise SetupError(f"--curve-allow {allow_dir} holds no public key (NAME.key): no rider could connect")
    try:
        push.curve_secretkey = secret
        push.curve_publickey = public
        push.curve_server = True
    except zmq.ZMQError as exc:
        raise SetupError(f"{secret_file}: not a usable CURVE key ({exc.strerror})") from None
    # The authenticator answers libzmq's ZAP requests from a thread of this process.
    # It reads allow_dir now: restart the producer after adding a rider's key.
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=allow_dir)
    return auth


def wait_for_consumers(watch: ConsumerWatch, wanted: int, stop: StopFlag) -> bool:
    """The slow-joiner fix. Without it the first consumer to finish its handshake gets
    the whole first burst, because PUSH only round-robins across peers it already has."""
    while watch.handshakes < wanted and not stop.is_set():
        watch.monitor.poll(POLL_MS)
        watch.drain()
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
            return True
        except zmq.Again:
            # Wake up for the socket becoming writable or for a monitor event.
            zmq.select([watch.monitor], [push], [], POLL_MS / 1000)
            watch.drain()
    return False


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
    curve: tuple[str, str] | None = None,
) -> int:
    """Bind, send `orders` orders (0: until stopped) and return how many were sent.
    curve: (secret key file, directory of allowed consumers' public keys)."""
    stop = stop or StopFlag()
    # One context per process, made here, after any fork or spawn: contexts and
    # sockets must never cross a process boundary.
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    watch = ConsumerWatch(push, name, quiet, curve=bool(curve))
    auth = None
    sent = 0
    try:
        if curve:
            auth = curve_server(ctx, push, *curve)
        bound = bind(push, endpoint)
        if on_bound:
            on_bound(bound)
        say(f"{name}: bound {bound}" + (f", waiting for {wait_consumers} consumers" if wait_consumers else ""))
        if not wait_for_consumers(watch, wait_consumers, stop):
            return sent
        for order in islice(make_orders(name, seed, delivery), orders or None):
            order["created_at"] = utc_now()
            if not send_when_ready(push, watch, json.dumps(order).encode(), stop):
                break
            sent += 1
            if not quiet:
                route = f"{order['restaurant']} -> {order['address']}"
                say(f"{name}: sent {order['order_id']} {route} ({order['delivery_s']:.2f} s)")
            watch.drain_if_due()
            if interval and stop.wait(interval):
                break
        say(f"{name}: {'stopped, ' if stop.is_set() else ''}sent {sent} orders")
        return sent
    finally:
        watch.close(push)
        push.close(linger=STOPPED_LINGER_MS if stop.is_set() else LINGER_MS)
        if auth:
            auth.stop()  # before term(): a running authenticator makes term() hang
        ctx.term()


def delivery_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        span = (non_negative_float(low), non_negative_float(high or low))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in seconds, got {text}") from None
    if not span[0] <= span[1] <= MAX_DELIVERY_S:
        raise argparse.ArgumentTypeError(f"need MIN <= MAX <= {MAX_DELIVERY_S:g}, got {text}")
    return span


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Push delivery orders to riders (ZeroMQ PUSH).")
    parser.add_argument("--bind", default=DEFAULT_BIND, help="endpoint to bind (default %(default)s)")
    parser.add_argument("--name", default="p1", help="producer name, prefix of order ids (default %(default)s)")
    parser.add_argument("--orders", type=non_negative_int, default=0, help="orders to send, 0 = until stopped")
    parser.add_argument(
        "--interval", type=non_negative_float, default=0.5, help="seconds between orders (default %(default)s)"
    )
    parser.add_argument(
        "--wait-consumers",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="wait for K consumers before the first order",
    )
    parser.add_argument("--seed", type=int, help="seed for the orders and their delivery times")
    parser.add_argument(
        "--delivery",
        type=delivery_range,
        default=(0.2, 1.0),
        metavar="MIN-MAX",
        help="range of simulated delivery seconds (default 0.2-1.0)",
    )
    parser.add_argument("--quiet", action="store_true", help="no line per order")
    parser.add_argument("--curve-secret", metavar="FILE", help="CURVE: this producer's NAME.key_secret file")
    parser.add_argument("--curve-allow", metavar="DIR", help="CURVE: accept only consumers whose NAME.key is in DIR")
    args = parser.parse_args(argv)
    if bool(args.curve_secret) != bool(args.curve_allow):
        parser.error("--curve-secret and --curve-allow go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The stop signals, Ctrl-C (SIGINT) and SIGTERM, set `stop`; every wait in produce() looks at it.
    stop = install_stop_handlers()
    try:
        produce(
            args.bind,
            args.name,
            args.orders,
            args.interval,
            args.wait_consumers,
            args.seed,
            args.delivery,
            stop,
            args.quiet,
            curve=(args.curve_secret, args.curve_allow) if args.curve_secret else None,
        )
    except SetupError as exc:
        error(f"{args.name}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
