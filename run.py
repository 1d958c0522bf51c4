"""The whole pipeline on one machine: 1 producer, 10 riders, and a sink that counts.

    python run.py                         # 50 orders to 10 riders, about 4 s
    python run.py --consumers 3 --orders 12 --speed 0.5

run.py starts producer.py's produce() and consumer.py's consume() in processes of
their own. Every rider PUSHes a completion record per delivery to a PULL socket that
run.py binds (the fan-in half of the pipeline), so run.py can show how PUSH spread
the orders, measured:

    rider      orders  busy s
    rider-1         5    3.20  ########################
    ...
    delivered exactly once: yes

Next read: hardened/run.py, with several producers, a live view, a timeline and a
crash demo.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sys
import time
from collections import Counter
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import zmq

import consumer
import producer


def run(riders: int, orders: int, speed: float, seed: int | None, interval: float, records: list[dict]) -> None:
    """Start the producer and the riders; collect a completion record per delivered order."""
    ctx = zmq.Context()  # run.py's own; every child makes its own
    sink = ctx.socket(zmq.PULL)
    sink.bind("tcp://127.0.0.1:0")  # port 0: the OS picks a free one
    results = sink.getsockopt_string(zmq.LAST_ENDPOINT)
    # spawn everywhere: a fresh interpreter per child, as Windows has it, never a copy
    # of this process's ZeroMQ context (contexts do not survive fork).
    mp = multiprocessing.get_context("spawn")
    endpoint_out, endpoint_in = mp.Pipe(duplex=False)
    children = [mp.Process(target=run_producer, args=(endpoint_in, orders, riders, seed, interval), name="p1")]
    try:
        start(children[0])
        endpoint_in.close()  # the producer's copy is the one left: if it dies, recv() below ends
        endpoint = endpoint_out.recv()  # where the producer bound
        for n in range(1, riders + 1):
            children.append(mp.Process(target=run_rider, args=(endpoint, f"rider-{n}", speed, results)))
            start(children[-1])
        collect(sink, orders, children, records, patience=1.0 + 1.0 * speed)  # 1.0 s: the longest ride
    finally:
        for child in children:  # a rider waits for orders for ever: stop it (on Windows, TerminateProcess)
            if child.is_alive():
                child.terminate()
                child.join()
        sink.close(linger=0)
        ctx.term()


def start(child: BaseProcess) -> None:
    """Start a child with Ctrl-C ignored: on POSIX it inherits that. A terminal's Ctrl-C
    reaches every process, and would kill a child half-started (with a traceback) or leave
    one running that run.py does not know of. run.py ignores it too, for those moments."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child.start()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def collect(sink: zmq.Socket, expected: int, children: list, records: list[dict], patience: float) -> None:
    """Completion records until every order is in. A slow rider is still a rider, so
    run.py gives up only once a child has died (and with it the orders it held), and no
    record has come for longer than the longest ride."""
    last = time.monotonic()
    while len(records) < expected:
        if sink.poll(100):  # a timeout, so that Ctrl-C gets through on Windows too
            try:  # a record is network input too: check it
                record = json.loads(sink.recv())
                busy = datetime.fromisoformat(record["done_at"]) - datetime.fromisoformat(record["received_at"])
                records.append(
                    {
                        "rider": str(record["consumer"]),
                        "order_id": str(record["order_id"]),
                        "busy_s": busy.total_seconds(),
                    }
                )
                last = time.monotonic()
            except (ValueError, TypeError, KeyError, RecursionError):
                print("run.py: ignored a message that is not a completion record", file=sys.stderr)
        elif any(child.exitcode for child in children) and time.monotonic() - last > patience:
            print("run.py: a process died: the orders it held are lost", file=sys.stderr)
            return


def run_producer(endpoint_in: Connection, orders: int, riders: int, seed: int | None, interval: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is run.py's to handle (Windows: not inherited)
    # wait_consumers=riders: every rider connected before the first order (the slow-joiner fix)
    producer.produce("tcp://127.0.0.1:0", "p1", orders, interval, riders, seed, on_bound=endpoint_in.send)


def run_rider(endpoint: str, name: str, speed: float, results: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    consumer.consume([endpoint], name, speed, results)


def report(records: list[dict], riders: int, orders: int) -> bool:
    """The spread per rider, and whether every order was delivered exactly once."""
    names = [f"rider-{n}" for n in range(1, riders + 1)]
    counts = Counter(record["rider"] for record in records)
    busy = {name: sum(r["busy_s"] for r in records if r["rider"] == name) for name in names}
    print(f"\n{'rider':<10} {'orders':>6}  {'busy s':>6}")
    scale = 30 / max(*busy.values(), 1e-9)  # the busiest rider's bar is 30 characters
    for name in names:
        print(f"{name:<10} {counts[name]:>6}  {busy[name]:>6.2f}  {'#' * round(busy[name] * scale)}")
    ids = Counter(record["order_id"] for record in records)
    missing = [f"p1-{seq:06d}" for seq in range(1, orders + 1) if f"p1-{seq:06d}" not in ids]
    twice = [order_id for order_id, count in ids.items() if count > 1]
    ok = not missing and not twice and len(ids) == orders
    print(f"\norders: {orders}, delivered: {len(records)}")
    print(f"delivered exactly once: {'yes' if ok else 'no'}")
    for label, which in (("missing", missing), ("delivered twice", twice)):
        if which:
            print(f"{label} ({len(which)}): {' '.join(which[:10])}{' ...' if len(which) > 10 else ''}")
    print(f"spread: max - min orders per rider = {max(counts[n] for n in names) - min(counts[n] for n in names)}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description="Run 1 producer and 10 riders and show how PUSH spreads orders.")
    parser.add_argument("--consumers", type=int, default=10, help="riders (%(default)s)")
    parser.add_argument("--orders", type=int, default=50, help="orders (%(default)s)")
    parser.add_argument("--speed", type=float, default=1.0, help="multiplies delivery times; 0 = no sleep")
    parser.add_argument("--seed", type=int, default=1, help="the same seed makes the same orders (%(default)s)")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between orders (%(default)s)")
    args = parser.parse_args()
    if not (args.consumers >= 1 and args.orders >= 1 and 0 <= args.speed < 1e9 and 0 <= args.interval < 1e9):
        parser.error("--consumers and --orders take a whole number >= 1, --speed and --interval a number >= 0")
    if sys.platform != "win32":  # output closed (| head): end quietly (the riders stopped first)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    started = time.monotonic()
    records: list[dict] = []
    try:
        run(args.consumers, args.orders, args.speed, args.seed, args.interval, records)
    except KeyboardInterrupt:
        print(f"run.py: interrupted, {len(records)} of {args.orders} orders delivered", file=sys.stderr)
        return 130
    except EOFError:
        sys.exit("run.py: the producer exited before it could bind")
    ok = report(records, args.consumers, args.orders)
    print(f"wall time: {time.monotonic() - started:.2f} s, starting {args.consumers + 1} processes included")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
