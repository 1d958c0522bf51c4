"""The consumer: a rider's app, pulling delivery orders and delivering them (ZeroMQ PULL).

    python consumer.py --name rider-1
    python consumer.py --name rider-2 --connect tcp://127.0.0.1:5557 --connect tcp://127.0.0.1:5558

It connects a PULL socket to one or more producers (producer.py) and "delivers" each
order by sleeping for its delivery_s. A message that is not a valid order gets one
line, and the rider goes on. Ctrl-C stops it:

    rider-1: connecting to tcp://127.0.0.1:5557
    rider-1 delivered p1-000001 from p1 (Sushi Go -> 27 Elm St) in 0.59 s
    ^Crider-1: stopped, delivered 1 order

Next read: hardened/consumer.py, the same rider ready for the real world.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import time
from datetime import datetime, timezone

import zmq


def consume(connect: list[str], name: str, speed: float = 1.0, results: str | None = None) -> int:
    """Deliver orders until Ctrl-C; PUSH a completion record per order to `results`."""
    ctx = zmq.Context()  # one per process, made in the process that uses it
    pull = ctx.socket(zmq.PULL)
    pull.maxmsgsize = 64 * 1024  # an order is ~300 bytes: a peer can't make us allocate gigabytes
    sink = ctx.socket(zmq.PUSH)
    if sys.platform != "win32":  # output closed (| head): end at once and quietly, as shell tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if isinstance(sys.stdout, io.TextIOWrapper):  # any text a producer sends prints on any console
        sys.stdout.reconfigure(errors="backslashreplace")
    delivered = 0
    stopped = ""
    riding = False  # an order in hand, not delivered yet
    try:
        for endpoint in connect:  # one socket, many producers: PULL takes from each in turn
            pull.connect(endpoint)  # returns at once; ZeroMQ connects, and reconnects, behind it
        if results:
            sink.connect(results)
        print(f"{name}: connecting to {', '.join(connect)}", flush=True)
        while True:
            # poll() with a timeout before every recv(): a blocking recv() never sees Ctrl-C
            # on Windows, and polling is when PULL notices that a producer's queue refilled.
            if not pull.poll(100):
                continue
            received_at = now()
            try:
                order = parse_order(pull.recv_multipart())
            except ValueError as exc:
                print(f"{name}: rejected message: {exc}", file=sys.stderr, flush=True)
                continue
            riding = True
            time.sleep(order["delivery_s"] * speed)  # the ride
            riding = False
            delivered += 1
            print(
                f"{name} delivered {order['order_id']} from {order['producer']} "
                f"({order['restaurant']} -> {order['address']}) in {order['delivery_s'] * speed:.2f} s",
                flush=True,
            )
            if results:
                report(sink, order, name, received_at)
    except KeyboardInterrupt:
        stopped = "stopped, "
    finally:
        # The order in hand and those ZeroMQ queued here die with this rider: PUSH gave
        # them to this connection alone, and nothing gives them to another. Count them.
        lost = int(riding)
        while pull.poll(0):
            pull.recv_multipart()
            lost += 1
        pull.close(linger=0)
        sink.close(linger=1000)  # give the last completion records a second to go
        ctx.term()
    print(f"{name}: {stopped}delivered {delivered} {'order' if delivered == 1 else 'orders'}", flush=True)
    if lost:
        print(
            f"{name}: lost {lost} {'order' if lost == 1 else 'orders'} it held (PUSH gave them to it alone)", flush=True
        )
    return delivered


def report(sink: zmq.Socket, order: dict, name: str, received_at: str) -> None:
    """PUSH a completion record to run.py's sink (the pipeline's fan-in half)."""
    record = {key: order[key] for key in ("order_id", "producer", "restaurant", "delivery_s")}
    try:  # NOBLOCK: a sink that is gone, its queue full, costs a record, never a stuck rider
        sink.send_json(record | {"consumer": name, "received_at": received_at, "done_at": now()}, zmq.NOBLOCK)
    except zmq.Again:
        print(f"{name}: results sink not taking records: dropped {order['order_id']}'s", file=sys.stderr, flush=True)


TEXT = ("order_id", "producer", "restaurant", "customer", "address", "created_at")


def parse_order(frames: list[bytes]) -> dict:
    """The order in a message, or ValueError saying why it is not one. Nothing from the
    network is trusted: any JSON can arrive, and text must not steer our terminal."""
    if len(frames) != 1:
        raise ValueError(f"{len(frames)} frames, expected 1")
    try:
        order = json.loads(frames[0].decode())  # UTF-8 only: bytes alone, json takes UTF-16 and 32 too
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep
        raise ValueError("not JSON") from None
    if not isinstance(order, dict):
        raise ValueError("not a JSON object")
    for field in TEXT:
        if not (isinstance(order.get(field), str) and order[field].isprintable()):
            raise ValueError(f"{field!r} missing, not a string, or holding control characters")
    items = order.get("items")
    if not (isinstance(items, list) and all(is_item(item) for item in items)):
        raise ValueError("'items' missing or not a list of {name, qty, price}")
    if not is_number(order.get("total")):
        raise ValueError("'total' missing or not a number")
    if not (is_number(order.get("delivery_s")) and 0 <= order["delivery_s"] <= 60):
        raise ValueError("'delivery_s' missing or not a number from 0 to 60")
    return order


def is_number(value: object) -> bool:
    # bool is an int; NaN, the infinities, 10**400 (no float holds it): none is an amount.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def is_item(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(qty := item.get("qty"), int)
        and not isinstance(qty, bool)
        and qty >= 1
        and is_number(item.get("price"))
        and item["price"] >= 0
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def main() -> int:
    parser = argparse.ArgumentParser(description="Pull delivery orders and deliver them (ZeroMQ PULL).")
    parser.add_argument(
        "--connect",
        action="append",
        metavar="ENDPOINT",
        help="a producer's endpoint, repeatable (default tcp://127.0.0.1:5557)",
    )
    parser.add_argument("--name", default="rider", help="rider name (%(default)s)")
    parser.add_argument("--speed", type=float, default=1.0, help="multiplies delivery times; 0 = no sleep")
    parser.add_argument("--results", metavar="ENDPOINT", help="PUSH a completion record per order here")
    args = parser.parse_args()
    if not 0 <= args.speed < float("inf"):
        parser.error("--speed takes a number >= 0")
    connect = args.connect or ["tcp://127.0.0.1:5557"]
    try:
        consume(connect, args.name, args.speed, args.results)
    except zmq.ZMQError as exc:
        endpoints = ", ".join(connect + ([args.results] if args.results else []))
        sys.exit(
            f"{args.name}: cannot connect to {endpoints}: {zmq.strerror(exc.errno or 0)} (expected tcp://HOST:PORT)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
