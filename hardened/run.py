"""The whole pipeline on one machine: producers, riders, and a results sink.

The first read's run.py, hardened. What it adds, and why: several producers (fair
queueing on each rider); a live view; --timeline; --crash-consumer (what a crash
loses); the fork server where there is one (a third of spawn's start-up); children
that stop when run.py closes a pipe, not by a signal, so that each rider reports its
last delivery and none outlives run.py, on every platform.

run.py starts P producers and C consumers (riders) as processes, running the code of
producer.py and consumer.py, and binds a results sink (PULL) that every rider PUSHes a
completion record to: the fan-in half of the pipeline. When every order is accounted
for it stops the riders and prints who delivered what.

    python -m hardened.run                            # 1 producer, 10 riders, 50 orders
    python -m hardened.run --producers 2 --orders 30  # fair queueing across producers
    python -m hardened.run --speed 0 --orders 10000   # no simulated delivery time
    python -m hardened.run --timeline run.svg         # and a picture of who delivered what, when
    python -m hardened.run --trace run.json           # the same run to zoom into: https://ui.perfetto.dev

On a terminal a live view shows a bar per rider while it runs; elsewhere (a pipe, a
file) a line per delivery, or a summary a second in a flood.

Sample report (README has a whole run):

    rider     orders  busy s
    rider-1        5    2.71  #####
    ...
    delivered exactly once: yes
"""

from __future__ import annotations

from hardened import stopping

# First of all, here and in every child (a spawned child runs this file as
# __mp_main__): from now on a Ctrl-C sets a flag, never raises KeyboardInterrupt.
if __name__ in ("__main__", "__mp_main__"):
    stopping.catch_signals()

import argparse
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from hardened.cli import SetupError, bind, error, fail, non_negative_float, plural, positive_int, say

import zmq

from hardened import cli, consumer, producer
from hardened.curve import ServerKeys, make_keys
from hardened.heartbeats import read_without_limit
from hardened.liveview import PlainView, TerminalView, View, ansi_terminal
from hardened.moments import Run, the_run
from hardened.orders import add_delivery_option
from hardened.report import MAX_RECORD_BYTES, Ledger, Results, report, whereabouts
from hardened.sink import collect
from hardened.stopping import POLL_MS, StopFlag, child_stop, join_or_kill, shielded_children
from hardened.timeline import write_timeline
from hardened.trace import write_trace

LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"  # port 0: the OS picks a free one
JOIN_TIMEOUT_S = 1.5  # how long a stopped child may take before it is killed

# How children start: a fork server where the platform has one (Linux, macOS), else
# spawn (Windows). Not fork: it would copy this process's ZeroMQ context and its I/O
# threads into every child, and contexts are not fork-safe. spawn starts a fresh
# interpreter per child: 0.48-0.66 s here until 10 children are connected, and
# run.py's overhead 0.68-0.85 s. The fork server imports zmq and our modules once, then
# forks each child: 0.22-0.26 s, and run.py's overhead 0.21-0.23 s (benchmarks/startup.py).
# The preload: our modules that this one imports (these four import the rest). Not "__main__": run with
# python -m, the fork server preloads nothing by that name (only a script's path), and each
# child runs this module again by name as __mp_main__ (its catch_signals), which costs
# nothing once what it imports is there. Nor "hardened.run": runpy then warns, in every
# child, that the module it is to run was imported already.
START_METHODS = [method for method in ("forkserver", "spawn") if method in multiprocessing.get_all_start_methods()]
FORKSERVER_PRELOAD = ["hardened.producer", "hardened.consumer", "hardened.sink", "hardened.timeline"]


def run(args: argparse.Namespace, ledger: Ledger, view: View | None, stop: StopFlag) -> Results:
    """Start the producers, then the riders, and collect a completion record per order."""
    mp = multiprocessing.get_context(args.start_method)
    ctx = zmq.Context()
    # The sink: riders connect a PUSH to it, so it binds. Port 0: any free port.
    sink = ctx.socket(zmq.PULL)
    read_without_limit(sink)  # riders send heartbeats: see heartbeats.py
    sink.maxmsgsize = MAX_RECORD_BYTES  # any local process can connect: a record is ~250 bytes
    # run.py stops its children by closing this pipe's writing end (see stopping.py).
    children_stop, stop_children = mp.Pipe(duplex=False)
    producers: list[BaseProcess] = []
    riders: list[BaseProcess] = []
    try:
        # --curve: fresh keys in memory, passed to the children as process arguments
        # (pickled down a pipe, even by spawn): no file to leave behind if run.py is killed.
        server_keys, rider_keys = make_keys(rider_names(args)) if args.curve else (None, {})
        if server_keys and view:
            view.note("run.py: CURVE on, fresh keys in memory (never on disk)")
        results_endpoint = bind(sink, LOOPBACK_ANY_PORT)
        # Producers first: each binds a free port, and the riders need to know which.
        endpoints = start_producers(mp, children_stop, args, server_keys, producers, stop)
        if stop.is_set():
            return Results(ledger)
        if view:
            bound = ", ".join(f"{p.name} bound {endpoint}" for p, endpoint in zip(producers, endpoints, strict=True))
            view.note(f"run.py: {bound}; starting {plural(args.consumers, 'rider')}")
        for name in rider_names(args):
            options = {"endpoints": endpoints, "name": name, "results": results_endpoint, "speed": args.speed}
            options["progress"] = True  # 'taken' and 'idle' too: how collect() knows who holds what
            options["curve"] = rider_keys.get(name)
            riders.append(mp.Process(target=consumer_process, args=(children_stop, options), name=name))
        with shielded_children():
            for process in riders:
                process.start()
        return collect(sink, ledger, view, producers, riders, stop, args)
    finally:
        if view:
            view.close()  # before anything else is said
        stop_children.close()  # every child stops: see child_stop()
        join_or_kill(producers + riders, JOIN_TIMEOUT_S, "run.py")
        sink.close(linger=0)
        ctx.term()


# --- the children: thin wrappers that run producer.py's and consumer.py's code ---


def producer_process(stop_pipe: Connection, endpoint_pipe: Connection, options: dict) -> None:
    stop = child_stop(stop_pipe)
    cli.mute()  # run.py shows the run

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
    stopping.exit(0)


def consumer_process(stop_pipe: Connection, options: dict) -> None:
    cli.mute()  # run.py shows the run
    consumer.consume(stop=child_stop(stop_pipe), quiet=True, **options)
    stopping.exit(0)


def start_producers(
    mp: Any,  # multiprocessing.get_context(...): typeshed's BaseContext has no Process
    children_stop: Connection,
    args: argparse.Namespace,
    curve: ServerKeys | None,
    producers: list[BaseProcess],
    stop: StopFlag,
) -> list[str]:
    """Start the producers and return the endpoints they bound. Each goes into
    `producers` as it is made, so that run() stops and joins it whatever fails next."""
    pipes = [mp.Pipe(duplex=False) for _ in range(args.producers)]  # each producer reports its endpoint
    for index, (_, endpoint_sender) in enumerate(pipes, start=1):
        options = producer_options(args, index, curve)
        process = mp.Process(target=producer_process, args=(children_stop, endpoint_sender, options), name=f"p{index}")
        producers.append(process)
    with shielded_children():
        for process in producers:
            process.start()
    for _, endpoint_sender in pipes:
        endpoint_sender.close()  # the producer's copy is the one left: EOF if it dies before binding
    return [bound_endpoint(receiver, process, stop) for (receiver, _), process in zip(pipes, producers, strict=True)]


def rider_names(args: argparse.Namespace) -> list[str]:
    return [f"rider-{index}" for index in range(1, args.consumers + 1)]


def producer_options(args: argparse.Namespace, index: int, curve: ServerKeys | None) -> dict:
    """Producer number `index`'s arguments to produce()."""
    name, seed = f"p{index}", args.seed + index - 1  # p1 makes the orders producer.py makes with --seed
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run 1 producer and 10 riders and show how ZeroMQ spreads the orders.")
    parser.add_argument("--consumers", type=positive_int, default=10, help="riders (default %(default)s)")
    parser.add_argument("--producers", type=positive_int, default=1, help="producers (default %(default)s)")
    parser.add_argument("--orders", type=positive_int, default=50, help="orders per producer (default %(default)s)")
    parser.add_argument("--speed", type=non_negative_float, default=1.0, help="multiplies delivery times; 0 = no sleep")
    parser.add_argument("--seed", type=int, default=1, help="seed for the orders (default %(default)s)")
    add_delivery_option(parser, default=(0.2, 1.0))  # as producer.py's, so that a seed means the same orders
    parser.add_argument("--interval", type=non_negative_float, default=0.0, help="seconds between orders (default 0)")
    crash = "kill rider-1 outright a quarter of the way through, to show what a crash loses"
    parser.add_argument("--crash-consumer", action="store_true", help=crash)
    parser.add_argument("--curve", action="store_true", help="encrypt and authenticate with CURVE (fresh keys)")
    start = "how children start (default %(default)s)"
    parser.add_argument("--start-method", choices=START_METHODS, default=START_METHODS[0], help=start)
    parser.add_argument("--quiet", action="store_true", help="no live view or line per delivery: the report alone")
    timeline = "write a timeline of the run (an SVG: who delivered what, when) to FILE"
    parser.add_argument("--timeline", type=file_in_existing_dir, metavar="FILE.svg", help=timeline)
    trace = "write the run as a Chrome trace (JSON, for https://ui.perfetto.dev or chrome://tracing) to FILE"
    parser.add_argument("--trace", type=file_in_existing_dir, metavar="FILE.json", help=trace)
    return parser.parse_args(argv)


def file_in_existing_dir(text: str) -> Path:
    """A file to write (--timeline, --trace) in a folder that is there: checked before the run, not after."""
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory for {text}")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = stopping.catch_signals()
    started = time.monotonic()
    producers = [f"p{index}" for index in range(1, args.producers + 1)]
    riders = rider_names(args)
    ledger = Ledger(dict.fromkeys(producers, args.orders), keep_records=bool(args.timeline or args.trace))
    view = None if args.quiet else TerminalView(riders, ledger.expected) if ansi_terminal(sys.stdout) else PlainView()
    if args.start_method == "forkserver":
        multiprocessing.set_forkserver_preload(FORKSERVER_PRELOAD)
    try:
        results = run(args, ledger, view, stop)
    except SetupError as exc:
        return fail(f"run.py: {exc}")
    if stop.output_closed:
        return 1  # quietly: stopping.exit() makes it EXIT_OUTPUT_CLOSED
    ok = report(results, riders, producers, time.monotonic() - started)  # interrupted: where each missing order is
    if stop.is_set():
        error(f"run.py: interrupted, {ledger.delivered} of {ledger.expected} orders delivered")
        return 130
    pictured = pictured_run(results, riders, producers) if args.timeline or args.trace else None
    if args.timeline and pictured:
        title, subtitle = timeline_titles(args, ledger, results)
        try:
            write_timeline(args.timeline, pictured, title, subtitle)
        except OSError as exc:
            return fail(f"run.py: cannot write the timeline: {exc}")
        say(f"timeline: {args.timeline}")
    if args.trace and pictured:
        try:
            write_trace(args.trace, pictured)
        except OSError as exc:
            return fail(f"run.py: cannot write the trace: {exc}")
        say(f"trace: {args.trace}")
    return 0 if ok else 1


def pictured_run(results: Results, riders: list[str], producers: list[str]) -> Run:
    """The run as the timeline and the trace draw it: every delivery's moments, and
    the crash (--crash-consumer) with the orders lost with it, as the report counts them."""
    crash = None
    if results.killed and results.killed_at:
        mine = f"lost with {results.killed} "
        lost = [group for label, group in whereabouts(results).items() if label.startswith(mine)]
        ids = [order_id for _, shown in lost for order_id in shown]
        crash = (results.killed, results.killed_at, ids, sum(count for count, _ in lost))
    return the_run(results.ledger.records or [], riders, producers, results.dead, crash)


def timeline_titles(args: argparse.Namespace, ledger: Ledger, results: Results) -> tuple[str, str]:
    """What happened, for the timeline's title: how many orders each producer sent and
    how many each rider delivered; then how the run was set up."""
    counts = [ledger.orders[name] for name in rider_names(args)]
    each = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)} to {max(counts)}"
    title = (
        f"{plural(args.producers, 'producer')} x {plural(args.orders, 'order')}, "
        f"{plural(args.consumers, 'rider')}: {each} {'order' if each == '1' else 'orders'} per rider"
    )
    low, high = args.delivery
    setup = [f"deliveries of {low:g}-{high:g} s x speed {args.speed:g}"]
    if args.interval:
        setup.append(f"an order every {args.interval:g} s")
    if results.killed:
        setup.append(f"{results.killed} killed on purpose (--crash-consumer)")
    return title, "; ".join(setup)


if __name__ == "__main__":
    stopping.exit(main())
