"""The consumer: a rider's app, pulling delivery orders and delivering them.

It connects a ZeroMQ PULL socket to one or more producers. PULL fair-queues: with two
producers it takes an order from each in turn, so a busy producer can't starve another.
A delivery is simulated by sleeping for the order's `delivery_s` times `--speed`.

Run it (Ctrl-C stops it, and says how many orders it delivered):

    python consumer.py --name rider-1
    python consumer.py --name rider-2 --connect tcp://127.0.0.1:5557 --connect tcp://127.0.0.1:5558

    $ python consumer.py --name rider-1
    rider-1: connected to tcp://127.0.0.1:5557
    rider-1 delivered p1-000001 from p1 (Pizza Roma -> 12 Elm St) in 0.58 s
    rider-1 delivered p1-000003 from p1 (Taco Loco -> 31 Pine Rd) in 0.93 s
    ^Crider-1: stopped, delivered 2 orders

An order that is not valid (see README, "Wire format") is rejected with one line on
stderr, and the rider carries on with the next one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from datetime import datetime

import zmq

from common import (
    MAX_DELIVERY_S,
    POLL_MS,
    EndpointError,
    connect,
    error,
    install_stop_handlers,
    non_negative_float,
    say,
    utc_now,
)

DEFAULT_CONNECT = "tcp://127.0.0.1:5557"

# The largest message the PULL socket accepts. A real order is ~300 bytes; without a
# limit a peer could make us allocate gigabytes for one message. ZeroMQ treats a
# larger message as a protocol error and drops that connection (see receive()).
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


def deliver(order: dict, speed: float, stop: threading.Event) -> bool:
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


def receive(pull: zmq.Socket, stop: threading.Event) -> list[bytes] | None:
    """The next message, or None once stopped. Never blocks for more than POLL_MS, so
    Ctrl-C is noticed even while no order comes (a plain recv() would hang there)."""
    while not stop.is_set():
        try:
            return pull.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            pull.poll(POLL_MS)
    return None


def consume(
    endpoints: list[str] | None = None,
    name: str = "rider",
    results: str | None = None,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    quiet: bool = False,
) -> int:
    """Pull and deliver orders until stopped; return how many were delivered."""
    stop = stop or threading.Event()
    endpoints = endpoints or [DEFAULT_CONNECT]
    # One context per process, made here, after any fork or spawn.
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.maxmsgsize = MAX_ORDER_BYTES
    sink = ctx.socket(zmq.PUSH) if results else None
    delivered = 0
    try:
        # One PULL socket, many connects: ZeroMQ fair-queues between the producers.
        for endpoint in endpoints:
            connect(pull, endpoint)
        if sink:
            connect(sink, results)
        say(f"{name}: connected to {', '.join(endpoints)}")
        while (frames := receive(pull, stop)) is not None:
            received_at = utc_now()
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
        say(f"{name}: stopped, delivered {delivered} orders")
        return delivered
    finally:
        # Orders still queued in this PULL socket are lost when we go: that is the
        # transient nature of the pipeline. Completion records get a bounded linger.
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
    parser.add_argument("--quiet", action="store_true", help="no line per delivered order")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = install_stop_handlers()
    try:
        consume(args.connect, args.name, args.results, args.speed, stop, args.quiet)
    except EndpointError as exc:
        error(f"{args.name}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
