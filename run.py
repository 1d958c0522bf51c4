"""The whole pipeline on one machine: producers, riders, and a results sink.

run.py starts P producers and C consumers (riders) as processes, running the code of
producer.py and consumer.py, and binds a results sink (PULL) that every rider PUSHes a
completion record to: the fan-in half of the pipeline. When every order is accounted
for it stops the riders and prints who delivered what.

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

import stopping

# First of all, here and in every child (a spawned child runs this file as
# __mp_main__): from now on a Ctrl-C sets a flag, never raises KeyboardInterrupt.
if __name__ in ("__main__", "__mp_main__"):
    stopping.catch_signals()

import argparse
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from cli import SetupError, bind, error, fail, non_negative_float, positive_int, say

import zmq

import consumer
import producer
from curve import make_keys
from orders import add_delivery_option
from report import Plan, Results, parse_record, report
from stopping import EXIT_OUTPUT_CLOSED, POLL_MS, StopFlag, child_stop, join_or_kill, shielded_children

LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"  # port 0: the OS picks a free one
JOIN_TIMEOUT_S = 1.5  # how long a stopped child may take before it is killed

# How children start: a fork server where the platform has one (Linux, macOS), else
# spawn (Windows). Not fork: it would copy this process's ZeroMQ context and its I/O
# threads into every child, and contexts are not fork-safe. spawn starts a fresh
# interpreter per child: 0.66 s here until 10 children are connected, and run.py's
# overhead 0.8 s. The fork server imports zmq and our modules once, then forks each
# child: 0.26 s, and run.py's overhead 0.25-0.3 s (benchmarks/startup.py).
START_METHODS = [method for method in ("forkserver", "spawn") if method in multiprocessing.get_all_start_methods()]
FORKSERVER_PRELOAD = ["__main__", "producer", "consumer"]


def run(args: argparse.Namespace, plan: Plan, stop: StopFlag) -> Results:
    """Start the producers, then the riders, and collect a completion record per order."""
    mp = multiprocessing.get_context(args.start_method)
    ctx = zmq.Context()
    # The sink: riders connect a PUSH to it, so it binds. Port 0: any free port.
    sink = ctx.socket(zmq.PULL)
    # run.py stops its children by closing this pipe's writing end (see stopping.py).
    children_stop, stop_children = mp.Pipe(duplex=False)
    producers: list[BaseProcess] = []
    riders: list[BaseProcess] = []
    keydir = tempfile.TemporaryDirectory(prefix="pipeline-keys-")  # --curve's certificates, removed at exit
    try:
        keys = make_keys(keydir.name, rider_names(args)) if args.curve else {}
        if keys:
            say(f"run.py: CURVE on, fresh keys in {keydir.name} (removed at exit)")
        results_endpoint = bind(sink, LOOPBACK_ANY_PORT)
        pipes = [mp.Pipe(duplex=False) for _ in range(args.producers)]  # each producer reports its endpoint
        for index, (_, endpoint_sender) in enumerate(pipes, start=1):
            options = producer_options(args, index, keys.get("producer"), plan)
            process = mp.Process(
                target=producer_process, args=(children_stop, endpoint_sender, options), name=f"p{index}"
            )
            producers.append(process)
        with shielded_children():
            for process in producers:
                process.start()
        for _, endpoint_sender in pipes:
            endpoint_sender.close()  # the producer's copy is the one left: EOF if it dies before binding
        endpoints = [
            bound_endpoint(receiver, process, stop) for (receiver, _), process in zip(pipes, producers, strict=True)
        ]
        if stop.is_set():
            return Results()
        for name in rider_names(args):
            options = {"endpoints": endpoints, "name": name, "results": results_endpoint, "speed": args.speed}
            options["curve"] = keys.get(name)
            riders.append(mp.Process(target=consumer_process, args=(children_stop, options), name=name))
        with shielded_children():
            for process in riders:
                process.start()
        return collect(sink, plan, producers, riders, stop, args)
    finally:
        stop_children.close()  # every child stops: see child_stop()
        join_or_kill(producers + riders, JOIN_TIMEOUT_S, "run.py")
        sink.close(linger=0)
        ctx.term()
        keydir.cleanup()


# --- the children: thin wrappers that run producer.py's and consumer.py's code ---


def producer_process(stop_pipe: Connection, endpoint_pipe: Connection, options: dict) -> None:
    stop = child_stop(stop_pipe)

    def report_endpoint(endpoint: str) -> None:
        try:
            endpoint_pipe.send(endpoint)
        except OSError:  # run.py is gone
            stop.set()

    try:
        producer.produce(LOOPBACK_ANY_PORT, stop=stop, quiet=True, on_bound=report_endpoint, **options)
    except SetupError as exc:
        error(f"{options['name']}: {exc}")
        sys.exit(1)
    stopping.exit(0)  # EXIT_OUTPUT_CLOSED if nobody reads our output any more


def consumer_process(stop_pipe: Connection, options: dict) -> None:
    consumer.consume(stop=child_stop(stop_pipe), **options)
    stopping.exit(0)


def rider_names(args: argparse.Namespace) -> list[str]:
    return [f"rider-{index}" for index in range(1, args.consumers + 1)]


def producer_options(args: argparse.Namespace, index: int, curve: tuple[str, str] | None, plan: Plan) -> dict:
    """Producer number `index`'s arguments to produce(); its orders go into the plan."""
    name, seed = f"p{index}", args.seed + index
    plan.add(name, seed, args.orders, args.delivery)
    # wait_consumers: every rider connected before the first order, so no slow joiners.
    options = {"orders": args.orders, "interval": args.interval, "delivery": args.delivery, "curve": curve}
    return options | {"name": name, "seed": seed, "wait_consumers": args.consumers}


def bound_endpoint(receiver: Connection, process: BaseProcess, stop: StopFlag) -> str:
    """The endpoint a producer bound, or "" once stopped. A producer that cannot bind
    exits, and the pipe reads EOF once run.py's copy of the sending end is closed too."""
    while not receiver.poll(POLL_MS / 1000):
        if stop.is_set():
            return ""
    try:
        return receiver.recv()
    except EOFError:
        raise SetupError(f"{process.name} did not bind") from None


def collect(
    sink: zmq.Socket, plan: Plan, producers: list[BaseProcess], riders: list[BaseProcess], stop: StopFlag, args
) -> Results:
    """Read completion records until every planned order is accounted for, or until
    it is clear that the orders still missing died with a rider."""
    results = Results()
    outstanding = set(plan.expected)
    longest_ride_s = max(plan.expected.values(), default=0.0) * args.speed
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
            if args.crash_consumer and not results.killed and len(results.records) >= len(plan.expected) // 4:
                results.killed = crash_rider(riders[0])
        if any(p.exitcode == EXIT_OUTPUT_CLOSED for p in producers + riders):
            stop.output_closed = True  # nobody reads the output we share with the children
            stop.set()
            break
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
    """The --crash-consumer demo: killed outright (SIGKILL; on Windows TerminateProcess),
    so the rider gets no chance to clean up."""
    say(f"run.py: killing {rider.name} outright")
    rider.kill()
    rider.join()
    return rider.name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run 1 producer and 10 riders and show how ZeroMQ spreads the orders.")
    parser.add_argument("--consumers", type=positive_int, default=10, help="riders (default %(default)s)")
    parser.add_argument("--producers", type=positive_int, default=1, help="producers (default %(default)s)")
    parser.add_argument("--orders", type=positive_int, default=50, help="orders per producer (default %(default)s)")
    parser.add_argument("--speed", type=non_negative_float, default=1.0, help="multiplies delivery times; 0 = no sleep")
    parser.add_argument("--seed", type=int, default=1, help="seed for the orders (default %(default)s)")
    add_delivery_option(parser, default=(0.1, 1.0))
    parser.add_argument("--interval", type=non_negative_float, default=0.0, help="seconds between orders (default 0)")
    crash = "kill rider-1 outright a quarter of the way through, to show what a crash loses"
    parser.add_argument("--crash-consumer", action="store_true", help=crash)
    parser.add_argument("--curve", action="store_true", help="encrypt and authenticate with CURVE (fresh keys)")
    start = "how children start (default %(default)s)"
    parser.add_argument("--start-method", choices=START_METHODS, default=START_METHODS[0], help=start)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = stopping.catch_signals()
    started = time.monotonic()
    plan = Plan()
    if args.start_method == "forkserver":
        multiprocessing.set_forkserver_preload(FORKSERVER_PRELOAD)
    try:
        results = run(args, plan, stop)
    except SetupError as exc:
        return fail(f"run.py: {exc}")
    if stop.output_closed:
        return 1  # quietly: stopping.exit() makes it EXIT_OUTPUT_CLOSED
    if stop.is_set():
        error(f"run.py: interrupted, {len(results.records)} of {len(plan.expected)} orders delivered")
        return 130
    producers = [f"p{index}" for index in range(1, args.producers + 1)]
    ok = report(results, plan, rider_names(args), producers, args.speed, time.monotonic() - started)
    return 0 if ok else 1


if __name__ == "__main__":
    stopping.exit(main())
