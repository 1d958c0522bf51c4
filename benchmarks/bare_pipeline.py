"""The reference of same_work.py: producer.py's and consumer.py's work, in bare pyzmq.

Why: to know what the project's scripts cost over the least code that does the same
job. Each role is a script of its own, started as the project's are (same_work.py runs
both through timed.py, output to files):

    python benchmarks/bare_pipeline.py producer --bind tcp://127.0.0.1:0 --orders N --wait-consumers 10 --seed S
    python benchmarks/bare_pipeline.py consumer --connect EP --results SINK --name rider-3

- producer: binds a PUSH, waits for K handshakes on a socket monitor, then per order
  makes a fresh one (orders.make_orders, the project's own generator: the same shape
  and size), stamps created_at, send_json()s it and prints a line, as producer.py does.
- consumer: recv_json(), prints a line per order like consumer.py's rider, and
  send_json()s a completion record (the same fields as the project's) to the sink.
  It runs until killed.

No validation, no monitoring, no flush per line (print() to a file is block-buffered):
that is what "bare" leaves out. With --paced, each prints as the project does at flood
rates (cli.Pacer): a line per order up to PACED_LINES a second, past that one summary
line a second ("rider-3: delivered 4,210 orders in 1.0 s, 4,210/s").
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from orders import make_orders  # noqa: E402  (the repository's; needs the sys.path entry above)

PACED_LINES = 20  # --paced: lines per second before a summary line takes over
DELIVERY = (0.2, 1.0)  # producer.py's default --delivery: the same numbers in the orders


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Lines:
    """Whether to print an order's line: always or, paced, by the rule of the project's
    cli.Pacer (written again here, bare): a line per order up to PACED_LINES in a
    one-second window; past that, none, and a summary line as each window ends, until a
    window with no more than PACED_LINES."""

    def __init__(self, name: str, verb: str, paced: bool) -> None:
        self.name, self.verb, self.paced = name, verb, paced
        self.since, self.events, self.flooding = 0.0, 0, False

    def show(self) -> bool:
        if not self.paced:
            return True
        now = time.monotonic()
        if self.events and now - self.since >= 1.0:
            self.summary(now)
        if not self.events:
            self.since = now
        self.events += 1
        if self.flooding:
            return False
        self.flooding = self.events > PACED_LINES
        return not self.flooding

    def summary(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.flooding:
            seconds = min(now - self.since, 1.0)
            rate = f", {self.events / seconds:,.0f}/s" if seconds > 0.05 else ""
            print(f"{self.name}: {self.verb} {self.events:,} orders in {seconds:.1f} s{rate}")
        self.flooding = self.events > PACED_LINES
        self.events = 0


def produce(endpoint: str, name: str, orders: int, wanted: int, seed: int, paced: bool) -> None:
    lines = Lines(name, "sent", paced)
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
            if lines.show():
                route = f"{order['restaurant']} -> {order['address']}"
                print(f"{name}: sent {order['order_id']} {route} ({order['delivery_s']:.2f} s)")
        lines.summary()
        print(f"{name}: sent {orders} orders")
    finally:
        push.disable_monitor()
        monitor.close(linger=0)
        push.close(linger=5000)  # as producer.py: time to hand the last orders over
        ctx.term()


def consume(endpoint: str, results: str, name: str, paced: bool) -> None:
    lines = Lines(name, "delivered", paced)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    sink = ctx.socket(zmq.PUSH)
    pull.connect(endpoint)
    sink.connect(results)
    print(f"{name}: connecting to {endpoint}", flush=True)
    while True:  # until killed
        order: Any = pull.recv_json()  # any JSON, as typed; an order here
        received_at = utc_now()
        started = time.monotonic()
        if lines.show():
            route, took = f"{order['restaurant']} -> {order['address']}", time.monotonic() - started
            print(f"{name} delivered {order['order_id']} from {order['producer']} ({route}) in {took:.2f} s")
        record = {"order_id": order["order_id"], "producer": order["producer"], "consumer": name}
        record |= {"delivery_s": order["delivery_s"], "received_at": received_at, "done_at": utc_now()}
        sink.send_json(record)


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
    parser.add_argument("--paced", action="store_true", help=f"at most {PACED_LINES} lines a second, then a summary")
    args = parser.parse_args(argv)
    if args.role == "producer":
        produce(args.bind, args.name or "p1", args.orders, args.wait_consumers, args.seed, args.paced)
    else:
        consume(args.connect, args.results, args.name or "rider", args.paced)


if __name__ == "__main__":
    main()
