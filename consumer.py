"""The consumer: a rider's app, pulling delivery orders and delivering them.

It connects a ZeroMQ PULL socket to one or more producers. PULL fair-queues: with two
producers it takes an order from each in turn, so a busy producer can't starve another.
A delivery is simulated by sleeping for the order's `delivery_s` times `--speed`.

Run it (Ctrl-C stops it, and says how many orders it delivered):

    python consumer.py --name rider-1
    python consumer.py --name rider-2 --connect tcp://127.0.0.1:5557 --connect tcp://127.0.0.1:5558
    python consumer.py --name rider-1 --curve-secret keys/rider-1.key_secret --curve-server keys/platform.key

    $ python consumer.py --name rider-1
    rider-1: connecting to tcp://127.0.0.1:5557
    rider-1 delivered p1-000001 from p1 (Pizza Roma -> 12 Elm St) in 0.58 s
    rider-1 delivered p1-000003 from p1 (Taco Loco -> 31 Pine Rd) in 0.93 s
    ^Crider-1: stopped, delivered 2 orders

An order that is not valid (see README, "Wire format") is rejected with one line on
stderr, and the rider carries on with the next one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import socket
import sys
import time
from datetime import datetime

import zmq

from common import (
    MAX_DELIVERY_S,
    POLL_MS,
    SetupError,
    StopFlag,
    connect,
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

DEFAULT_CONNECT = "tcp://127.0.0.1:5557"

# The largest message the PULL socket accepts. A real order is ~300 bytes; without a
# limit a peer could make us allocate gigabytes for one message. ZeroMQ treats a
# larger message as a protocol error and drops that connection (see Links).
MAX_ORDER_BYTES = 64 * 1024

STRING_FIELDS = ("order_id", "producer", "restaurant", "customer", "address", "created_at")


class InvalidOrder(ValueError):
    """A message that is not a valid order; str() says why."""


def is_number(value: object) -> bool:
    # bool is an int in Python, but `"total": true` is not a price.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def reject_constant(name: str) -> None:
    raise InvalidOrder(f"{name} is not a number")


def parse_order(data: bytes) -> dict:
    """Decode and validate one order. Raises InvalidOrder, and nothing else, on bad input."""
    try:
        # parse_constant rejects NaN and Infinity, which Python's json accepts by default.
        order = json.loads(data.decode("utf-8"), parse_constant=reject_constant)
    except UnicodeDecodeError:
        raise InvalidOrder("not UTF-8") from None
    except RecursionError:
        raise InvalidOrder("JSON nested too deeply") from None
    except InvalidOrder:
        raise
    except ValueError as exc:
        raise InvalidOrder(f"not JSON ({exc})") from None
    if not isinstance(order, dict):
        raise InvalidOrder(f"not a JSON object but {type(order).__name__}")
    for field in STRING_FIELDS:
        if not isinstance(order.get(field), str):
            raise InvalidOrder(f"{field!r} missing or not a string")
    try:
        datetime.fromisoformat(order["created_at"])
    except ValueError:
        raise InvalidOrder("'created_at' is not an ISO-8601 time") from None
    items = order.get("items")
    if not isinstance(items, list) or not all(is_item(item) for item in items):
        raise InvalidOrder("'items' missing or not a list of {name, qty, price}")
    if not is_number(order.get("total")):
        raise InvalidOrder("'total' missing or not a number")
    delivery_s = order.get("delivery_s")
    if not is_number(delivery_s) or delivery_s < 0:
        raise InvalidOrder("'delivery_s' missing or not a number >= 0")
    if delivery_s > MAX_DELIVERY_S:
        raise InvalidOrder(f"'delivery_s' {delivery_s:g} over the {MAX_DELIVERY_S:g} s cap")
    return order


def is_item(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(qty := item.get("qty"), int)
        and not isinstance(qty, bool)
        and qty >= 1
        and is_number(price := item.get("price"))
        and price >= 0
    )


def deliver(order: dict, speed: float, stop: StopFlag) -> bool:
    """Simulate the ride. False if Ctrl-C came first (that order is not delivered)."""
    # stop.wait() rather than time.sleep(): a signal handler can cut it short.
    return not stop.wait(order["delivery_s"] * speed) if speed else not stop.is_set()


def completion_record(order: dict, name: str, received_at: str) -> dict:
    return {
        "order_id": order["order_id"],
        "producer": order["producer"],
        "consumer": name,
        "delivery_s": order["delivery_s"],
        "received_at": received_at,
        "done_at": utc_now(),
    }


def report(sink: zmq.Socket, record: dict, name: str) -> None:
    # NOBLOCK: a sink that is gone must not freeze the rider. Its connect-side queue
    # holds 1000 records (the high-water mark) before this fails, and then we say so.
    try:
        sink.send_json(record, zmq.NOBLOCK)
    except zmq.Again:
        error(f"{name}: results sink not taking records: dropped the one for {record['order_id']}")


class Links:
    """Watches this rider's connections to its producers through the socket monitor.

    ZeroMQ reconnects by itself after a network error (a producer restarting, say),
    but not after a protocol error: a message over MAX_ORDER_BYTES, a refused CURVE
    key, CURVE on one side only. Then it gives up on that producer for good and tells
    the application nothing. The monitor tells us; we say why, and dial again.
    """

    EVENTS = (
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_DISCONNECTED
        | zmq.EVENT_CONNECT_RETRIED
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )
    GIVE_UP_S = 0.5  # after a disconnect, ZeroMQ's own retry shows up well within this
    REDIAL_S = 2.0  # how often to try again a producer that refused our handshake

    def __init__(self, pull: zmq.Socket, name: str, curve: bool = False) -> None:
        self.pull = pull
        self.name = name
        self.curve = curve
        self.monitor = pull.get_monitor_socket(self.EVENTS)  # before connect(): see every event
        self.poller = zmq.Poller()
        self.poller.register(pull, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.redial: dict[str, tuple[float, str]] = {}  # endpoint -> (when, why)
        self.troubled: set[str] = set()  # endpoints whose handshake failure we reported
        self.next_service = 0.0

    def wait(self, timeout_ms: int) -> None:
        """Wait for a message or a connection event, then deal with the events."""
        self.poller.poll(timeout_ms)
        self.service()

    def service_if_due(self) -> None:
        """For a busy rider, which never waits: look at the events every POLL_MS."""
        if time.monotonic() >= self.next_service:
            self.service()

    def service(self) -> None:
        self.next_service = time.monotonic() + POLL_MS / 1000
        for event, value, endpoint in pending_events(self.monitor):
            self.on_event(event, value, endpoint)
        for endpoint, (when, why) in list(self.redial.items()):
            if time.monotonic() >= when:
                del self.redial[endpoint]
                if why:
                    error(f"{self.name}: {why}")
                with contextlib.suppress(zmq.ZMQError):  # ENOENT: nothing left to disconnect
                    self.pull.disconnect(endpoint)
                self.pull.connect(endpoint)

    def on_event(self, event: int, value: int, endpoint: str) -> None:
        now = time.monotonic()
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.redial.pop(endpoint, None)
            if endpoint in self.troubled:
                self.troubled.discard(endpoint)
                say(f"{self.name}: connected to {endpoint}")
        elif event == zmq.EVENT_CONNECT_RETRIED:
            self.redial.pop(endpoint, None)  # ZeroMQ is retrying: a network error
        elif event == zmq.EVENT_DISCONNECTED:
            # Unless a CONNECT_RETRIED follows, ZeroMQ has given up: a protocol error.
            # After a good handshake that means a message it refused to take.
            why = (
                f"rejected message: over the {MAX_ORDER_BYTES}-byte limit (or malformed), so ZeroMQ "
                f"dropped the connection to {endpoint}; reconnecting"
            )
            self.redial.setdefault(endpoint, (now + self.GIVE_UP_S, why))
        else:
            if endpoint not in self.troubled:  # one line per producer, not one per retry
                self.troubled.add(endpoint)
                error(f"{self.name}: {endpoint} refused us: {handshake_failure(event, value, self.curve)}")
            if event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # ZeroMQ retries that one itself
                self.redial[endpoint] = (now + self.REDIAL_S, "")

    def close(self) -> None:
        self.pull.disable_monitor()
        self.monitor.close(linger=0)


def numeric(endpoint: str) -> str:
    """tcp://HOST:PORT with the host name looked up once, here. libzmq reports the first
    connection's monitor events under the name as given but, after a reconnect, under
    the address it resolved to; Links must see one producer as one endpoint."""
    match = re.fullmatch(r"tcp://([^:\[\]]+):(\d+)", endpoint)
    if not match or re.fullmatch(r"[\d.]+|\*", match.group(1)):
        return endpoint  # already numeric, or not TCP: leave it to libzmq
    try:
        # IPv4: a ZeroMQ socket does not use IPv6 unless told to (zmq.IPV6).
        address = socket.getaddrinfo(match.group(1), int(match.group(2)), socket.AF_INET)[0][4][0]
    except (OSError, UnicodeError) as exc:
        raise SetupError(f"cannot connect to {endpoint}: {exc}") from None
    return f"tcp://{address}:{match.group(2)}"


def curve_client(pull: zmq.Socket, secret_file: str, server_public_file: str) -> None:
    """Encrypt and authenticate with CURVE: our own key pair, and the producer's public
    key, which proves we talk to the real producer. Must run before connect()."""
    public, secret = load_keys(secret_file, need_secret=True)
    server_public = load_keys(server_public_file)[0]
    try:
        pull.curve_publickey = public
        pull.curve_secretkey = secret
        pull.curve_serverkey = server_public
    except zmq.ZMQError as exc:
        raise SetupError(f"not a usable CURVE key in {secret_file} or {server_public_file} ({exc.strerror})") from None


def receive(pull: zmq.Socket, links: Links, stop: StopFlag) -> list[bytes] | None:
    """The next message, or None once stopped. Never blocks for more than POLL_MS, so
    Ctrl-C is noticed even while no order comes (a plain recv() would hang there)."""
    while not stop.is_set():
        try:
            frames = pull.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            links.wait(POLL_MS)
            continue
        links.service_if_due()
        return frames
    return None


def consume(
    endpoints: list[str] | None = None,
    name: str = "rider",
    results: str | None = None,
    speed: float = 1.0,
    stop: StopFlag | None = None,
    quiet: bool = False,
    curve: tuple[str, str] | None = None,
    orders: int = 0,
) -> int:
    """Pull and deliver orders until stopped, or until `orders` are delivered (0: no
    limit); return how many were delivered.
    curve: (our NAME.key_secret file, the producer's public NAME.key file)."""
    stop = stop or StopFlag()
    endpoints = endpoints or [DEFAULT_CONNECT]
    # One context per process, made here, after any fork or spawn.
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.maxmsgsize = MAX_ORDER_BYTES
    sink = ctx.socket(zmq.PUSH) if results else None
    links = Links(pull, name, curve=bool(curve))
    delivered = 0
    try:
        if curve:
            curve_client(pull, *curve)
        # One PULL socket, many connects: ZeroMQ fair-queues between the producers.
        endpoints = [numeric(endpoint) for endpoint in endpoints]
        for endpoint in endpoints:
            connect(pull, endpoint)
        if sink:
            connect(sink, results)
        # connect() returns at once; ZeroMQ connects (and reconnects) in the background.
        say(f"{name}: connecting to {', '.join(endpoints)}")
        while (not orders or delivered < orders) and (frames := receive(pull, links, stop)) is not None:
            received_at = utc_now() if sink else ""
            try:
                if len(frames) != 1:
                    raise InvalidOrder(f"{len(frames)} frames, expected 1")
                order = parse_order(frames[0])
            except InvalidOrder as exc:
                error(f"{name}: rejected message: {exc}")
                continue
            started = time.monotonic()
            if not deliver(order, speed, stop):
                error(f"{name}: stopped while delivering {order['order_id']}: not delivered")
                break
            delivered += 1
            if not quiet:
                say(
                    f"{name} delivered {order['order_id']} from {order['producer']} "
                    f"({order['restaurant']} -> {order['address']}) in {time.monotonic() - started:.2f} s"
                )
            if sink:
                report(sink, completion_record(order, name, received_at), name)
        say(f"{name}: {'stopped' if stop.is_set() else 'done'}, delivered {delivered} orders")
        return delivered
    finally:
        # Orders still queued in this PULL socket are lost when we go: that is the
        # transient nature of the pipeline. Completion records get a bounded linger.
        links.close()
        pull.close(linger=0)
        if sink:
            sink.close(linger=1000)
        ctx.term()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pull delivery orders and deliver them (ZeroMQ PULL).")
    parser.add_argument(
        "--connect",
        action="append",
        metavar="ENDPOINT",
        help=f"producer endpoint, repeatable (default {DEFAULT_CONNECT})",
    )
    parser.add_argument("--name", default="rider", help="rider name (default %(default)s)")
    parser.add_argument("--results", metavar="ENDPOINT", help="PUSH a completion record per delivered order here")
    parser.add_argument(
        "--speed",
        type=non_negative_float,
        default=1.0,
        help="multiplies delivery_s; 0 = no sleep (default %(default)s)",
    )
    parser.add_argument("--orders", type=non_negative_int, default=0, help="stop after N orders (default 0: no limit)")
    parser.add_argument("--quiet", action="store_true", help="no line per delivered order")
    parser.add_argument("--curve-secret", metavar="FILE", help="CURVE: this rider's NAME.key_secret file")
    parser.add_argument("--curve-server", metavar="FILE", help="CURVE: the producer's public NAME.key file")
    args = parser.parse_args(argv)
    if bool(args.curve_secret) != bool(args.curve_server):
        parser.error("--curve-secret and --curve-server go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = install_stop_handlers()
    try:
        curve = (args.curve_secret, args.curve_server) if args.curve_secret else None
        consume(args.connect, args.name, args.results, args.speed, stop, args.quiet, curve, args.orders)
    except SetupError as exc:
        error(f"{args.name}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
