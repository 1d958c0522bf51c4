"""What the benchmark sections share: the table, the child processes, and the two runs they time.

Every section runs the project's own code (producer.produce, consumer.consume) or bare
pyzmq in real processes, and each side of a pipeline gets its own process, as in run.py.
The children are started and stopped the way run.py does it, on every platform:

- run.py's start method (a fork server where the platform has one, else spawn) and its
  fork-server preload. Never fork: a child would get a copy of our ZeroMQ context.
- Children start inside stopping.shielded_children(), so a Ctrl-C never reaches them,
  and call stopping.child_stop() on the reading end of a pipe whose writing end only
  this process holds. Closing that end stops them all, and so does this process dying.
  One still running after a deadline is killed (Process.kill()).
- Their stdout goes to os.devnull: the project's say() lines would land in our table.

The two runs: run_project() is produce() -> C x consume(), optionally with a results
sink as run.py has; run_bare() is a bare PUSH -> C x PULL of the same messages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import consumer  # noqa: E402  (needs the sys.path entry above)
import producer  # noqa: E402
import run  # noqa: E402  (safe to import: its signal set-up runs only as a script)
import stopping  # noqa: E402
from cli import bind  # noqa: E402
from monitoring import ConsumerWatch  # noqa: E402
from orders import make_orders, utc_now  # noqa: E402

START_METHOD = run.START_METHODS[0]  # as run.py: forkserver where the platform has it, else spawn
# Any: what typeshed says get_context(a str) returns, a BaseContext, has no Process.
MP: Any = multiprocessing.get_context(START_METHOD)
LOOPBACK = "tcp://127.0.0.1:0"
RIDERS = 10
UNIFORM = (0.1, 1.0)  # run.py's default delivery range
STARTED = time.monotonic()


class BenchError(Exception):
    """A case that could not run (a child did not start or bind in time)."""


# --- the table ---


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    checked: int = 0  # cases whose every order must arrive

    HEADER = ("section", "case", "C", "n", "result", "delivered", "target", "detail")

    def add(self, *cells: object) -> None:
        """section, case, C, n, result, then optionally delivered, target, detail."""
        self.rows.append(tuple(map(str, cells)) + ("-", "-", "")[len(cells) - 5 :])

    def delivered(self, label: str, delivered: int, expected: int) -> str:
        """The delivered cell of a case that must lose nothing; remembers any loss."""
        self.checked += 1
        if delivered != expected:
            self.lost.append(f"{label}: {delivered} of {expected}")
        return f"{delivered}/{expected}"

    def print(self, title: str) -> None:
        widths = [max(len(row[i]) for row in [self.HEADER, *self.rows]) for i in range(len(self.HEADER))]
        print(title)
        for row in [self.HEADER, tuple("-" * w for w in widths), *self.rows]:
            align = (str.ljust, str.ljust, str.rjust, str.rjust) + (str.ljust,) * 4
            print("  ".join(f(c, w) for f, c, w in zip(align, row, widths, strict=True)).rstrip())
        print()
        for note in self.notes:
            print(textwrap.fill(note, width=118, subsequent_indent="  "))
        if self.lost:
            print("ORDERS LOST: " + "; ".join(self.lost))
        elif self.checked:
            print(f"every order delivered in all {self.checked} throughput and round-robin cases")


Section = Callable[[argparse.Namespace, Table], None]  # what each section module provides


# --- small measuring helpers ---


def progress(label: str) -> None:
    sys.stderr.write(f"bench {time.monotonic() - STARTED:5.1f} s  {label}\n")


def cpu_s() -> float:
    """CPU seconds (user + system) of this whole process, ZeroMQ's I/O thread included."""
    times = os.times()
    return times.user + times.system


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(max(1, round(q / 100 * len(sorted_values))), len(sorted_values)) - 1]


def sample_order(seed: int) -> dict:
    return dict(next(make_orders("p1", seed, UNIFORM)), created_at=utc_now())


def typical_order_bytes(seed: int) -> int:
    orders = islice(make_orders("p1", seed, UNIFORM), 1000)
    return round(statistics.mean(len(json.dumps(dict(o, created_at=utc_now())).encode()) for o in orders))


def wait_handshakes(monitor: zmq.Socket, wanted: int, timeout: float) -> int:
    """Count EVENT_HANDSHAKE_SUCCEEDED on a socket monitor until `wanted` or timeout."""
    deadline, seen = time.monotonic() + timeout, 0
    while seen < wanted:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0 or not monitor.poll(left_ms):
            break
        seen += recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    return seen


def run_command(command: list[str], timeout: float) -> tuple[int | None, str, str]:
    """(exit status, or None on timeout, out, err) of a Python script of this project. It is
    killed on timeout; its own children stop by themselves then (they watch a pipe it holds)."""
    proc = subprocess.Popen(command, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:  # the timeout, or Ctrl-C / SIGTERM while we wait
        proc.kill()
        out, err = proc.communicate()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        return None, out, err
    return proc.returncode, out, err


# --- child processes ---


def child_setup(stop_pipe: Connection) -> stopping.StopFlag:
    """First thing in every child: fd 1 to os.devnull (its say() lines would land in our
    table), then the project's stop: set when the parent closes its end of `stop_pipe`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return stopping.child_stop(stop_pipe)


def join_or_kill(processes: Sequence[BaseProcess], timeout: float) -> None:
    """Wait for stopped children to exit; kill any still there after `timeout`."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if p.is_alive()]) and (left := deadline - time.monotonic()) > 0:
        wait([p.sentinel for p in alive], left)
    if alive:
        sys.stderr.write(f"\nbench: killing {len(alive)} child process(es) that did not stop\n")
    for process in alive:
        process.kill()
        process.join(5)


class Children:
    """Child processes that stop together. Each target gets the reading end of one pipe as
    its first argument and calls child_setup() on it; leaving the `with` block closes the
    writing end, which stops them all, and waits (killing any left after `timeout`)."""

    def __init__(self, timeout: float = 3.0) -> None:
        self.stop_pipe, self.stop_children = MP.Pipe(duplex=False)
        self.processes: list[BaseProcess] = []
        self.timeout = timeout

    def start(self, target: Callable[..., None], *args: Any) -> BaseProcess:
        """Start target(stop_pipe, *args), out of reach of a Ctrl-C."""
        process = MP.Process(target=target, args=(self.stop_pipe, *args), name=target.__name__)
        with stopping.shielded_children():
            process.start()
        self.processes.append(process)
        return process

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_children.close()
        self.stop_pipe.close()
        join_or_kill(self.processes, self.timeout)


# --- the two runs: produce() -> consume(), and bare pyzmq ---
#
# One producer process -> C consumer processes. They share an array: [0] perf_counter when the producer
# starts sending (its C handshakes done), [1] its CPU seconds, then for consumer i at 2 + 3i: its count
# (-1 until set), end (perf_counter), CPU seconds. perf_counter is one clock for all the processes of a
# machine (CLOCK_MONOTONIC on Linux, mach_absolute_time on macOS, QueryPerformanceCounter on Windows).


@dataclass
class Run:
    delivered: int  # orders (or messages) that arrived
    span_s: float  # the producer starts sending -> the last one is done
    cpu_s: tuple[float, float, float]  # producer, consumers together, sink (0 without one)
    records: list[dict] = field(default_factory=list)  # completion records, with a sink


def run_children(source: tuple, sinks: tuple, consumers: int, done: Callable[[Any], bool], timeout: float) -> Any:
    """source[0](stop, pipe, shared, *source[1:]), which sends its endpoint down the pipe, then `consumers` x
    sinks[0](stop, endpoint, shared, i, *sinks[1:]); done(shared) (waits a little) until true, timeout or failure."""
    shared = MP.Array("d", [math.nan, 0.0] + [-1.0, math.nan, 0.0] * consumers, lock=False)
    receiver, sender = MP.Pipe(duplex=False)
    with Children() as children:
        source_process = children.start(source[0], sender, shared, *source[1:])
        sender.close()  # the producer's copy is the one left: EOF if it dies before binding
        try:
            endpoint = receiver.recv() if receiver.poll(15) else None
        except EOFError:
            endpoint = None
        finally:
            receiver.close()
        if endpoint is None:
            raise BenchError(f"{source[0].__name__} did not bind in 15 s")
        for i in range(consumers):
            children.start(sinks[0], endpoint, shared, i, *sinks[1:])
        deadline = time.monotonic() + timeout
        while not done(shared) and time.monotonic() < deadline and source_process.exitcode in (None, 0):
            pass
    return shared


def summary(shared: Any, end: float | None = None, sink_cpu: float = 0.0) -> Run:
    ends = [e for e in shared[3::3] if not math.isnan(e)]
    end = max(ends, default=math.nan) if end is None else end
    delivered = int(sum(max(0.0, c) for c in shared[2::3]))
    return Run(delivered, end - shared[0], (shared[1], sum(shared[4::3]), sink_cpu))


def project_producer(
    stop_pipe: Connection, pipe: Connection, shared: Any, options: dict, delivery_times: list[float] | None
) -> None:
    """producer.produce() as run.py runs it, optionally with given delivery times."""
    stop = child_setup(stop_pipe)
    real_make_orders, wait_for_consumers = producer.make_orders, producer.wait_for_consumers

    # These two replace the functions of the same names (and parameters) in producer.py.
    def orders_with_times(producer: str, seed: int | None, delivery: tuple[float, float]) -> Iterator[dict]:
        # Only the number changes: produce() still makes, stamps, encodes and sends each order.
        for order, delivery_s in zip(real_make_orders(producer, seed, delivery), delivery_times or [], strict=False):
            yield dict(order, delivery_s=delivery_s)

    def wait_then_start_clock(watch: ConsumerWatch, wanted: int, stop: stopping.StopFlag) -> bool:
        ready = wait_for_consumers(watch, wanted, stop)
        shared[0] = time.perf_counter()  # produce() makes and sends its first order next
        return ready

    producer.wait_for_consumers = wait_then_start_clock
    if delivery_times is not None:
        producer.make_orders = orders_with_times
    began = cpu_s()
    producer.produce(LOOPBACK, stop=stop, quiet=True, on_bound=pipe.send, **options)
    shared[1] = cpu_s() - began


def project_consumer(
    stop_pipe: Connection, endpoint: str, shared: Any, index: int, options: dict, tap_created_at: bool
) -> None:
    """consume() as run.py runs it, until stopped. Each delivery is counted and stamped in `shared`
    as it happens (about 0.4 us an order); tap_created_at adds the order's created_at to its records."""
    stop = child_setup(stop_pipe)
    slot, count = 2 + 3 * index, 0
    record, real_deliver = consumer.completion_record, consumer.deliver
    if tap_created_at:
        consumer.completion_record = lambda order, *args: dict(record(order, *args), created_at=order["created_at"])

    def deliver(order: dict, speed: float, stop: stopping.StopFlag) -> bool:  # replaces consumer.deliver
        nonlocal count
        if not real_deliver(order, speed, stop):
            return False
        count += 1
        shared[slot : slot + 2] = [count, time.perf_counter()]
        return True

    consumer.deliver = deliver
    began = cpu_s()
    delivered = consumer.consume([endpoint], f"rider-{index + 1}", stop=stop, **options)
    shared[slot], shared[slot + 2] = delivered, cpu_s() - began  # its own count, the same as ours


def run_project(
    n: int,
    c: int,
    seed: int,
    sink: bool,
    timeout: float,
    speed: float = 0.0,
    interval: float = 0.0,
    times: list[float] | None = None,
    tap: bool = False,
) -> Run:
    """produce() of n orders -> c processes running consume() at `speed`, until all n are
    delivered. No sink: counted by the consumers as they deliver (see project_consumer), and
    by what consume() returns. With a sink, as run.py: each consumer PUSHes completion
    records to a PULL here, counted by their order ids.

    Not consume(orders=n/c): a consumer that stops at its share disconnects, and a PUSH that
    loses a peer while it still sends reorders its peers, so the split is not exact: now and
    then one consumer would wait forever for its last order while another has one too many."""
    options = {"name": "p1", "orders": n, "interval": interval, "wait_consumers": c, "seed": seed, "delivery": UNIFORM}
    rider: dict[str, Any] = {"speed": speed, "quiet": True}
    raw: list[bytes] = []
    last = [math.nan, 0.0]  # the last record's arrival (perf_counter), the sink's CPU seconds
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)

    def collect(shared: Any) -> bool:
        began = cpu_s()
        if pull.poll(100):
            with contextlib.suppress(zmq.Again):
                while True:
                    raw.append(pull.recv(zmq.NOBLOCK))
            last[0] = time.perf_counter()
        last[1] += cpu_s() - began
        return len(raw) >= n

    def all_delivered(shared: Any) -> bool:
        time.sleep(0.005)
        return sum(max(0.0, c) for c in shared[2::3]) >= n

    try:
        if sink:
            rider["results"] = bind(pull, LOOPBACK)
        source, sinks = (project_producer, options, times), (project_consumer, rider, tap)
        shared = run_children(source, sinks, c, collect if sink else all_delivered, timeout)
    finally:
        pull.close(linger=0)
        ctx.term()
    if not sink:
        return summary(shared)
    result = summary(shared, end=last[0], sink_cpu=last[1])
    result.records = [json.loads(r) for r in raw]
    planned = {o["order_id"] for o in islice(make_orders("p1", seed, UNIFORM), n)}
    result.delivered = len({r["order_id"] for r in result.records} & planned)
    return result


def bare_producer(
    stop_pipe: Connection, pipe: Connection, shared: Any, consumers: int, n: int, message: bytes | dict, rate: float
) -> None:
    """PUSH n x message (bytes: send, dict: send_json); with a rate, paced and stamped in its first 8 bytes."""
    child_setup(stop_pipe)  # stopped while blocked in send() (the consumers gone), it is killed
    began = cpu_s()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    monitor = push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        pipe.send(bind(push, LOOPBACK))
        if wait_handshakes(monitor, consumers, 15) < consumers:
            return
        shared[0] = first = time.perf_counter()
        if isinstance(message, dict):
            for _ in range(n):
                push.send_json(message)
        elif not rate:
            for _ in range(n):
                push.send(message)
        else:
            for i in range(n):
                if (delay := first + i / rate - time.perf_counter()) > 0:
                    time.sleep(delay)
                push.send(time.perf_counter_ns().to_bytes(8, "little") + message[8:])
    finally:
        push.disable_monitor()
        monitor.close(linger=0)
        push.close(linger=10_000)
        ctx.term()
        shared[1] = cpu_s() - began


def bare_consumer(stop_pipe: Connection, endpoint: str, shared: Any, index: int, use_json: bool, samples: Any) -> None:
    """PULL until stopped; end = the last receive. samples: latencies (us) from the 8-byte stamps."""
    stop = child_setup(stop_pipe)
    began = cpu_s()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.rcvtimeo = 20
    slot, n, last, stamped = 2 + 3 * index, 0, math.nan, samples is not None
    try:
        pull.connect(endpoint)
        recv: Callable[[], Any] = pull.recv_json if use_json else pull.recv
        while True:
            try:
                data = recv()
            except zmq.Again:  # idle for 20 ms: publish the count, look at `stop`
                shared[slot] = n
                if stop.is_set():
                    break
                continue
            last = time.perf_counter()
            if stamped:
                samples[n] = (time.perf_counter_ns() - int.from_bytes(data[:8], "little")) / 1000
            n += 1
            if not n & 1023:
                shared[slot] = n
    finally:
        pull.close(linger=0)
        ctx.term()
        shared[slot : slot + 3] = [n, last, cpu_s() - began]


def run_bare(
    n: int, consumers: int, message: bytes | dict, timeout: float, rate: float = 0.0, samples: Any = None
) -> Run:
    """A bare PUSH -> `consumers` x PULL of n x message; with a rate, each receive's latency goes into samples."""

    def all_received(shared: Any) -> bool:
        time.sleep(0.005)
        return sum(max(0.0, c) for c in shared[2::3]) >= n

    source, sinks = (bare_producer, consumers, n, message, rate), (bare_consumer, isinstance(message, dict), samples)
    return summary(run_children(source, sinks, consumers, all_received, timeout))


# --- the command line: bench.py runs every section, each section's module runs its own ---


def parse_args(argv: list[str] | None, sections: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the ZeroMQ PUSH/PULL pipeline (see benchmarks/bench.py).")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs: all of it in about 10 s")
    parser.add_argument("--only", choices=list(sections), action="append", help="run only this section (repeatable)")
    parser.add_argument("--scale", type=float, help="round robin: ideal run, s (default 2, --quick 0.3)")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: orders per second (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the orders (default %(default)s)")
    args = parser.parse_args(argv)
    if not (0 < args.rate < math.inf and 0 < (args.scale or 1) < math.inf):
        parser.error("--rate and --scale must be numbers > 0")
    return args


def main(sections: dict[str, Section], argv: list[str] | None = None) -> int:
    """Run the sections (all, or those named by --only) and print one table."""
    cfg = parse_args(argv, list(sections))
    if START_METHOD == "forkserver":
        multiprocessing.set_forkserver_preload(run.FORKSERVER_PRELOAD)
    # A stop signal unwinds through the `with Children()` blocks, which stop the children.
    # SIGINT explicitly: a shell that starts us in the background would have it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in set(stopping.STOP_SIGNALS) - {signal.SIGINT}:
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    chosen = [name for name in sections if not cfg.only or name in cfg.only]
    load = f", load average {os.getloadavg()[0]:.2f} before it" if hasattr(os, "getloadavg") else ""
    table = Table()
    try:
        for name in chosen:
            sections[name](cfg, table)
    except BenchError as exc:
        sys.stderr.write(f"bench: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("bench: interrupted\n")
        return 130
    took = time.monotonic() - STARTED
    sys.stderr.write(f"bench: finished in {took:.1f} s\n")
    table.print(
        f"PUSH/PULL pipeline benchmark: {'--quick' if cfg.quick else 'normal'} run, {took:.1f} s, {os.cpu_count()} "
        f"CPUs{load}, Python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
        f"start method {START_METHOD} (as run.py)"
    )
    return 1 if table.lost else 0
