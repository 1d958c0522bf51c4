"""The whole pipeline on one machine: producers, riders, and a results sink.

run.py starts P producers and C consumers (riders) as processes, using the code of
producer.py and consumer.py, and binds a results sink (PULL) that every rider PUSHes a
completion record to: the fan-in half of the pipeline. When every order is accounted
for it stops the riders (with SIGINT, as you would) and prints who delivered what.

    python run.py                                # 1 producer, 10 riders, 50 orders
    python run.py --producers 2 --orders 30      # fair queueing across producers
    python run.py --speed 0 --orders 10000       # no simulated delivery time

Sample report (README has a whole run):

    rider     orders  busy s
    rider-1        5    2.71  #####
    ...
    delivered exactly once: yes
"""

from __future__ import annotations

import signal

# First thing, before the imports below: hold SIGINT and SIGTERM back. A Ctrl-C that
# came while Python is still importing would otherwise raise KeyboardInterrupt in the
# middle of an import and print a traceback. main() installs real handlers as soon as
# it can, and a signal that came before then is delivered to them.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing import forkserver, resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import zmq
import zmq.auth

import consumer
import producer
from common import (
    POLL_MS,
    STOP_SIGNALS,
    SetupError,
    StopFlag,
    bind,
    error,
    install_stop_handlers,
    non_negative_float,
    positive_int,
    say,
)

LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"  # port 0: the OS picks a free one
JOIN_TIMEOUT_S = 1.5  # how long a stopped child may take before it is killed
BAR_WIDTH = 30  # characters in the busiest rider's bar in the report

# forkserver, deliberately: "fork" would copy this process's ZeroMQ context and its
# I/O threads into every child (contexts are not fork-safe), and "spawn" starts a
# fresh interpreter per child: about 0.6 s until 10 riders are connected, against
# about 0.3 s for a fork server that has imported zmq once (benchmarks/bench.py).
START_METHOD = "forkserver"
# What the fork server imports once, so that children start with it done. On Python
# 3.12 and older "__main__" in this list is silently ignored (CPython gh-126631): each
# child re-runs this file's imports, so the heavy library modules are named as well.
FORKSERVER_PRELOAD = ["__main__", "zmq", "zmq.auth.thread", "zmq.utils.monitor"]


# --- the children: thin wrappers that run producer.py's and consumer.py's code ---


def producer_process(endpoint_pipe: Connection, options: dict) -> None:
    stop = install_stop_handlers()

    def report_endpoint(endpoint: str) -> None:
        try:
            endpoint_pipe.send(endpoint)
        except BrokenPipeError:  # run.py was interrupted before it could read it
            stop.set()

    try:
        producer.produce(LOOPBACK_ANY_PORT, stop=stop, quiet=True, on_bound=report_endpoint, **options)
    except SetupError as exc:
        error(f"{options['name']}: {exc}")
        sys.exit(1)


def consumer_process(options: dict) -> None:
    consumer.consume(stop=install_stop_handlers(), **options)


def stop_all(processes: list[BaseProcess]) -> None:
    """Stop children the way a person would, with SIGINT; kill any that won't go."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while (alive := [p for p in processes if p.is_alive()]) and time.monotonic() < deadline:
        for process in alive:
            # A fork server's child is the server's to reap: it may be gone already.
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
        # Ask again every POLL_MS: a child that is still starting up can lose a signal
        # that comes before its handlers are in place (measured: 1 run in 3 when
        # Ctrl-C came 0.1 s after start). The handler only sets a flag, so twice is fine.
        multiprocessing.connection.wait([p.sentinel for p in alive], POLL_MS / 1000)
    for process in alive:
        error(f"run.py: {process.name} did not stop in {JOIN_TIMEOUT_S} s, killing it")
        process.kill()
        process.join()


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while run.py was waiting."""


def start_fork_server() -> None:
    """Start the fork server with SIGINT and SIGTERM ignored, which it passes on to
    every child it forks.

    A Ctrl-C in a terminal reaches every process in the group, and so does a
    `kill -- -PGID`. A child ignores them until it has installed its own handlers, so
    none can die half-started with a traceback (and the fork server not at all);
    stop_all() then asks each child again until it has gone. Without this, a Ctrl-C
    0.1 s after start killed the starting fork server, and run.py with it.
    """
    # The resource tracker goes first because starting it unblocks these signals,
    # which would throw away one that came while they are ignored below. Blocked, a
    # signal waits, and reaches our handler once it is back.
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        forkserver.ensure_running()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start(process: BaseProcess, stop: StopFlag) -> None:
    try:
        process.start()
    except (EOFError, OSError) as exc:  # the fork server went away: a signal, mostly
        if stop.is_set():
            raise Interrupted from None
        raise SetupError(f"cannot start {process.name}: {exc!r}") from None


# --- the run ---


@dataclass
class Plan:
    """What the producers will send, known before they start: their orders are seeded."""

    expected: dict[str, float] = field(default_factory=dict)  # order id -> delivery_s

    def add(self, name: str, seed: int, orders: int, delivery: tuple[float, float]) -> None:
        for order in islice(producer.make_orders(name, seed, delivery), orders):
            self.expected[order["order_id"]] = order["delivery_s"]


def make_keys(directory: str, riders: list[str]) -> dict[str, tuple[str, str]]:
    """--curve: fresh certificates, as a person would make them with
    zmq.auth.create_certificates. Returns each process's `curve` argument: for the
    producers (which share the platform's key pair) the secret file and the directory
    of authorised riders' public keys; for each rider its secret file and the
    platform's public key."""
    allowed = os.path.join(directory, "allowed")
    os.mkdir(allowed)
    platform_public, platform_secret = zmq.auth.create_certificates(directory, "platform")
    keys = {"producer": (platform_secret, allowed)}
    for name in riders:
        public, secret = zmq.auth.create_certificates(directory, name)
        os.replace(public, os.path.join(allowed, os.path.basename(public)))
        keys[name] = (secret, platform_public)
    return keys


def start_producers(
    args: argparse.Namespace,
    plan: Plan,
    processes: list[BaseProcess],
    stop: StopFlag,
    keys: dict[str, tuple[str, str]],
) -> list[str]:
    """Start the producers and return the endpoints they bound (ports picked by the OS)."""
    mp = multiprocessing.get_context(START_METHOD)
    pipes, senders, endpoints = [], [], []
    for index in range(1, args.producers + 1):
        options = {
            "name": f"p{index}",
            "orders": args.orders,
            "interval": args.interval,
            "wait_consumers": args.consumers,  # the synchronised start: no slow joiners
            "seed": args.seed + index,
            "delivery": args.delivery,
            "curve": keys.get("producer"),
        }
        plan.add(options["name"], options["seed"], args.orders, args.delivery)
        receiver, sender = mp.Pipe(duplex=False)
        processes.append(mp.Process(target=producer_process, args=(sender, options), name=options["name"]))
        pipes.append(receiver)
        senders.append(sender)
    for process in processes:
        start(process, stop)
    for receiver, sender, process in zip(pipes, senders, processes, strict=True):
        sender.close()  # our copy: the pipe reads EOF once the producer's copy is closed too
        endpoints.append(wait_for_endpoint(receiver, process, stop))
    return endpoints


def wait_for_endpoint(receiver: Connection, process: BaseProcess, stop: StopFlag) -> str:
    """The endpoint a producer bound. One that fails to bind exits: its pipe reads EOF."""
    while not receiver.poll(POLL_MS / 1000):
        if stop.is_set():
            raise Interrupted
    try:
        return receiver.recv()
    except EOFError:
        if stop.is_set():
            raise Interrupted from None
        raise SetupError(f"{process.name} did not bind") from None


def start_consumers(
    names: list[str], endpoints: list[str], sink: str, speed: float, keys: dict[str, tuple[str, str]], stop: StopFlag
) -> list[BaseProcess]:
    mp = multiprocessing.get_context(START_METHOD)
    riders = [
        mp.Process(
            target=consumer_process,
            args=({"endpoints": endpoints, "name": name, "results": sink, "speed": speed, "curve": keys.get(name)},),
            name=name,
        )
        for name in names
    ]
    for rider in riders:
        start(rider, stop)
    return riders


@dataclass
class Results:
    records: list[dict] = field(default_factory=list)  # completion records, as they came
    dead: list[str] = field(default_factory=list)  # riders that died before we stopped them
    killed: str = ""  # the rider --crash-consumer killed


def parse_record(data: bytes) -> dict | None:
    """A completion record, or None: the sink's port is open to every local process,
    so what arrives there is checked too."""
    try:
        record = json.loads(data)
        names = (record["order_id"], record["consumer"], record["producer"])
        if all(isinstance(name, str) for name in names) and float(record["delivery_s"]) >= 0:
            return record
    except (ValueError, TypeError, KeyError):
        pass
    return None


def collect(
    sink: zmq.Socket,
    plan: Plan,
    producers: list[BaseProcess],
    riders: list[BaseProcess],
    stop: StopFlag,
    crash: bool,
    longest_ride_s: float,
) -> Results:
    """Read completion records until every planned order is accounted for, or until
    it is clear that the orders still missing died with a rider."""
    results = Results()
    outstanding = set(plan.expected)
    last_record = time.monotonic()
    while outstanding and not stop.is_set():
        if sink.poll(POLL_MS):
            record = parse_record(sink.recv())
            if record is None:
                error("run.py: ignored a malformed completion record")
                continue
            results.records.append(record)
            outstanding.discard(record["order_id"])
            last_record = time.monotonic()
            if crash and not results.killed and len(results.records) >= len(plan.expected) // 4:
                results.killed = crash_rider(riders[0])
        if any(p.exitcode not in (None, 0) for p in producers):
            error("run.py: a producer failed; stopping")
            break
        results.dead = [r.name for r in riders if r.exitcode is not None]
        # A rider with work queued finishes an order at least every longest_ride_s.
        # Once the producers are done and the survivors have been quiet for longer,
        # every survivor's queue is empty: what is still missing was lost with the dead.
        # With no rider left at all there is nothing to wait for (and a producer may
        # be blocked in send, with nobody to send to).
        quiet_s = time.monotonic() - last_record
        producers_done = all(p.exitcode == 0 for p in producers)
        if results.dead and (len(results.dead) == len(riders) or (producers_done and quiet_s > longest_ride_s + 0.5)):
            break
    return results


def crash_rider(rider: BaseProcess) -> str:
    """The --crash-consumer demo: SIGKILL, so the rider gets no chance to clean up."""
    say(f"run.py: killing {rider.name} with SIGKILL")
    rider.kill()
    rider.join()
    return rider.name


# --- the report ---


def report(results: Results, plan: Plan, riders: list[str], producers: list[str], speed: float, wall_s: float) -> bool:
    """Print the table and the summary. True if every order arrived exactly once, or
    if the only orders missing can have died with a rider that was killed."""
    orders = Counter(r["consumer"] for r in results.records)
    busy: dict[str, float] = defaultdict(float)
    split: dict[str, Counter] = defaultdict(Counter)
    for r in results.records:
        busy[r["consumer"]] += r["delivery_s"] * speed
        split[r["consumer"]][r["producer"]] += 1
    by_producer = len(producers) > 1
    # The bar shows busy time, not orders: equal counts can still be unequal work.
    scale = BAR_WIDTH / max(max(busy.values(), default=0.0), 1e-9)
    header = f"{'rider':<10}{'orders':>7}{'busy s':>8}" + "".join(f"{p:>6}" for p in producers if by_producer)
    say(header)
    for name in riders:
        split_cols = "".join(f"{split[name][p]:>6}" for p in producers if by_producer)
        fate = "" if name not in results.dead else "  (killed)" if name == results.killed else "  (died)"
        say(f"{name:<10}{orders[name]:>7}{busy[name]:>8.2f}{split_cols}  {'#' * round(busy[name] * scale)}{fate}")

    delivered = Counter(r["order_id"] for r in results.records)
    missing = sorted(set(plan.expected) - set(delivered))
    duplicated = sorted(order_id for order_id, n in delivered.items() if n > 1)
    unexpected = sorted(set(delivered) - set(plan.expected))
    counts = [orders[name] for name in riders if name not in results.dead]
    work = sum(plan.expected.values()) * speed
    makespan = max(busy.values(), default=0.0)
    say("")
    say(f"total orders: {len(plan.expected)} ({', '.join(producers)}), delivered {len(results.records)}")
    if results.dead:
        say(f"lost with {', '.join(results.dead)} ({len(missing)}): {' '.join(missing) or 'none'}")
        say(f"every other order delivered exactly once: {yes_no(not duplicated and not unexpected)}")
    else:
        say(f"delivered exactly once: {yes_no(not missing and not duplicated and not unexpected)}")
        if missing:
            say(f"  missing ({len(missing)}): {' '.join(missing)}")
    if duplicated or unexpected:
        say(f"  duplicated or unexpected ({len(duplicated + unexpected)}): {' '.join(duplicated + unexpected)}")
    spread = max(counts, default=0) - min(counts, default=0)
    say(f"spread: max - min orders per {'surviving ' if results.dead else ''}rider = {spread}")
    if by_producer:
        per_producer = [max(split[n][p] for n in riders) - min(split[n][p] for n in riders) for p in producers]
        say(f"spread per producer: {', '.join(f'{p} {d}' for p, d in zip(producers, per_producer, strict=True))}")
    say(f"expected work: {work:.2f} s; ideal time (work / {len(riders)} riders): {work / len(riders):.2f} s")
    say(f"wall time: {wall_s:.2f} s; busiest rider: {makespan:.2f} s; run.py overhead: {wall_s - makespan:.2f} s")
    # Orders lost with the rider we killed on purpose are the demo; with any other
    # death, something went wrong.
    return not duplicated and not unexpected and (not missing or results.dead == [results.killed])


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run 1 producer and 10 riders and show how ZeroMQ spreads the orders.")
    parser.add_argument("--consumers", type=positive_int, default=10, help="riders (default %(default)s)")
    parser.add_argument("--producers", type=positive_int, default=1, help="producers (default %(default)s)")
    parser.add_argument("--orders", type=positive_int, default=50, help="orders per producer (default %(default)s)")
    parser.add_argument("--speed", type=non_negative_float, default=1.0, help="multiplies delivery times; 0 = no sleep")
    parser.add_argument("--seed", type=int, default=1, help="seed for the orders (default %(default)s)")
    parser.add_argument(
        "--delivery",
        type=producer.delivery_range,
        default=(0.1, 1.0),
        metavar="MIN-MAX",
        help="delivery seconds (default 0.1-1.0)",
    )
    parser.add_argument("--interval", type=non_negative_float, default=0.0, help="seconds between orders (default 0)")
    parser.add_argument(
        "--crash-consumer",
        action="store_true",
        help="kill rider-1 with SIGKILL a quarter of the way through, to show what a crash loses",
    )
    parser.add_argument("--curve", action="store_true", help="encrypt and authenticate with CURVE (fresh keys)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    stop = install_stop_handlers()
    start_fork_server()
    plan = Plan()
    producers: list[BaseProcess] = []
    riders: list[BaseProcess] = []
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    results = Results()
    names = [f"rider-{index}" for index in range(1, args.consumers + 1)]
    # The certificates live only as long as the run: removed on every way out.
    keydir = tempfile.TemporaryDirectory(prefix="pipeline-keys-")
    try:
        keys = make_keys(keydir.name, names) if args.curve else {}
        if keys:
            say(f"run.py: CURVE on, fresh keys in {keydir.name} (removed at exit)")
        sink_endpoint = bind(sink, LOOPBACK_ANY_PORT)
        endpoints = start_producers(args, plan, producers, stop, keys)
        riders.extend(start_consumers(names, endpoints, sink_endpoint, args.speed, keys, stop))
        longest_ride_s = max(plan.expected.values(), default=0.0) * args.speed
        results = collect(sink, plan, producers, riders, stop, args.crash_consumer, longest_ride_s)
    except SetupError as exc:
        error(f"run.py: {exc}")
        return 1
    except Interrupted:
        pass  # reported below, once every child is gone
    finally:
        # Riders and producers alike stop on SIGINT (the producers have usually finished).
        stop_all(riders + producers)
        sink.close(linger=0)
        ctx.term()
        keydir.cleanup()
    if stop.is_set():
        error(f"run.py: interrupted, {len(results.records)} of {len(plan.expected)} orders delivered")
        return 130
    ok = report(results, plan, names, [p.name for p in producers], args.speed, time.monotonic() - started)
    return 0 if ok else 1


if __name__ == "__main__":
    multiprocessing.set_forkserver_preload(FORKSERVER_PRELOAD)
    status = main()
    # Done: a signal from now on changes nothing. Hold them back, or one that comes
    # while Python shuts down (its handlers already reset) would end us with -SIGTERM.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    sys.exit(status)
