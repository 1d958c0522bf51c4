"""The reference of same_work.py: producer.py's and consumer.py's work, in bare pyzmq.

Why: to know what the project's scripts cost over the least code that does the same
job. Each role is a script of its own, started as the project's are (same_work.py runs
both through timed.py, output to files):

    python benchmarks/bare_pipeline.py producer --bind tcp://127.0.0.1:0 --orders N --wait-consumers 10 --seed S
    python benchmarks/bare_pipeline.py consumer --connect EP --results SINK --name rider-3

- producer: binds a PUSH, waits for K handshakes on a socket monitor, then per order
  makes a fresh one (orders.make_orders, the project's own generator: the same shape
  and size), stamps created_at, send_json()s it and prints producer.py's line for it
  (orders.sent_line).
- consumer: recv_json(), prints consumer.py's line per order (orders.delivered_line),
  and send_json()s the project's completion record (orders.completion_record) to the
  sink. It runs until killed.

No validation, no monitoring, no flush per line (print() to a file is block-buffered):
that is what "bare" leaves out. With --paced, each prints through the project's own
cli.Pacer, as the scripts do: a line per order up to 20 a second, past that one summary
line a second ("rider-3: delivered 4,210 orders in 1.0 s, 4,210/s").
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hardened.cli import LINES_PER_S, Pacer  # noqa: E402  (the repository's; needs the sys.path entry above)

from hardened.orders import completion_record, delivered_line, make_orders, sent_line, utc_now  # noqa: E402

DELIVERY = (0.2, 1.0)  # producer.py's default --delivery: the same numbers in the orders


class EveryLine:
    """Without --paced: a line per order, as print() writes it (block-buffered to a file)."""

    def event(self, line: Callable[..., str], *args: object) -> None:
        print(line(*args))

    def flush(self) -> None:
        pass


def lines_for(name: str, verb: str, paced: bool) -> Pacer | EveryLine:
    """--paced: the project's own cli.Pacer, so that both sides print by one rule."""
    return Pacer(name, verb) if paced else EveryLine()


def produce(endpoint: str, name: str, orders: int, wanted: int, seed: int, paced: bool) -> None:
    lines = lines_for(name, "sent", paced)
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
            lines.event(sent_line, name, order)
        lines.flush()
        print(f"{name}: sent {orders} orders")
    finally:
        push.disable_monitor()
        monitor.close(linger=0)
        push.close(linger=5000)  # as producer.py: time to hand the last orders over
        ctx.term()


def consume(endpoint: str, results: str, name: str, paced: bool) -> None:
    lines = lines_for(name, "delivered", paced)
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
        lines.event(delivered_line, name, order, time.monotonic() - started)
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
    parser.add_argument("--paced", action="store_true", help=f"at most {LINES_PER_S} lines a second, then a summary")
    args = parser.parse_args(argv)
    if args.role == "producer":
        produce(args.bind, args.name or "p1", args.orders, args.wait_consumers, args.seed, args.paced)
    else:
        consume(args.connect, args.results, args.name or "rider", args.paced)


if __name__ == "__main__":
    main()
