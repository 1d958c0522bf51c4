"""The bare side of same_work.py: the first read's producer and rider, in the least pyzmq.

Why: to know what the scripts of both reads cost over the least code that moves the
same orders, prints the same lines and sends the same records. Each role is a script of
its own, started as the scripts are (same_work.py runs all of them through timed.py,
output to files):

    python benchmarks/bare_pipeline.py producer --bind tcp://127.0.0.1:0 --orders N --wait-consumers 10 --seed S
    python benchmarks/bare_pipeline.py consumer --connect EP --results SINK --name rider-3

- producer: binds a PUSH, waits for K handshakes on a socket monitor, then per order
  makes a fresh one (orders.make_orders: the same orders as producer.py's for a seed),
  stamps created_at, send_json()s it and prints producer.py's line for it
  (orders.sent_line).
- consumer: recv_json(), prints consumer.py's line per order (orders.delivered_line),
  and send_json()s the completion record (orders.completion_record) to the sink. It
  runs until killed.

Not the same as the first read (producer.py, consumer.py), so kept: it does less. No
validation of what arrives (consumer.py checks every field), no flush per line (print()
to a file is block-buffered; the first read flushes each line so that it shows as it
happens), blocking send() and recv() (the first read polls with a timeout before each,
so that Ctrl-C works on Windows), no "consumer connected" watch while sending, and a
blocking send of each record (the first read's is NOBLOCK, dropping one rather than
hanging on a full sink). That is the whole of "bare": zmq, the standard library, and the
project's order generator and line formats, so that every side makes the same orders
and prints the same lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The repository's (needs the sys.path entry above): the orders and lines of every side.
from hardened.orders import completion_record, delivered_line, make_orders, sent_line, utc_now  # noqa: E402

DELIVERY = (0.2, 1.0)  # producer.py's default --delivery: the same numbers in the orders


def produce(endpoint: str, name: str, orders: int, wanted: int, seed: int) -> None:
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    monitor = push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        push.bind(endpoint)
        print(f"{name}: bound {push.getsockopt_string(zmq.LAST_ENDPOINT)}, waiting for {wanted} consumers", flush=True)
        seen = 0
        while seen < wanted:
            seen += recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
        for order in islice(make_orders(name, seed, DELIVERY), orders):
            order["created_at"] = utc_now()
            push.send_json(order)
            print(sent_line(name, order))
        print(f"{name}: sent {orders} orders")
    finally:
        push.disable_monitor()
        monitor.close(linger=0)
        push.close(linger=5000)  # as producer.py: time to hand the last orders over
        ctx.term()


def consume(endpoint: str, results: str, name: str) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    sink = ctx.socket(zmq.PUSH)
    pull.connect(endpoint)
    sink.connect(results)
    print(f"{name}: connecting to {endpoint}", flush=True)
    while True:  # until killed
        order: Any = pull.recv_json()  # any JSON, as typed; an order here
        received_at = utc_now()
        started = time.monotonic()  # --speed 0: no ride, but the line says how long it took
        print(delivered_line(name, order, time.monotonic() - started))
        sink.send_json(completion_record(order, name, received_at))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bare pyzmq producer or consumer (see benchmarks/same_work.py).")
    parser.add_argument("role", choices=["producer", "consumer"])
    parser.add_argument("--bind", default="tcp://127.0.0.1:0")
    parser.add_argument("--connect", default="")
    parser.add_argument("--results", default="")
    parser.add_argument("--name", default="")
    parser.add_argument("--orders", type=int, default=0)
    parser.add_argument("--wait-consumers", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.role == "producer":
        produce(args.bind, args.name or "p1", args.orders, args.wait_consumers, args.seed)
    else:
        consume(args.connect, args.results, args.name or "rider")


if __name__ == "__main__":
    main()
