"""Benchmark of the PUSH/PULL pipeline: throughput, latency, round robin and start-up.

Runs the project's own code (producer.produce, consumer.consume, run.py) in real
processes, next to bare pyzmq ceilings, and prints one table:

1. Throughput, orders/s, C = 1 and 10: full = produce() -> C x consume(speed=0, orders=N/C);
   full + sink = the same with completion records to a results sink, as run.py; bare bytes
   and bare json ceilings; the ratios; under the table, what each step of an order costs.
2. Latency p50/p99 at a fixed rate (--rate): bare pyzmq, and produce -> consume.
3. Round robin versus a load-aware ROUTER/REQ dispatcher: 100 orders on 10 riders.
4. Start-up: run.py's "run.py overhead" line; 10 ZeroMQ processes per start method.

    python benchmarks/bench.py            # about a minute
    python benchmarks/bench.py --quick    # under 20 s on 2 cores
    python benchmarks/bench.py --only throughput --only latency

Progress goes to stderr, the table to stdout. Exit status 1 if any order was lost.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import timeit
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from multiprocessing import forkserver
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
from common import MAX_DELIVERY_S, utc_now  # noqa: E402


def runpy_constant(name: str) -> Any:
    """A constant of run.py, read from its source (importing run.py would block SIGINT here)."""
    for node in ast.parse((REPO / "run.py").read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise SystemExit(f"bench: run.py has no {name}")


# As run.py does it, so that no child ever gets a copy of this process's ZeroMQ context.
START_METHOD: str = runpy_constant("START_METHOD")
FORKSERVER_PRELOAD: list[str] = runpy_constant("FORKSERVER_PRELOAD")
MP = multiprocessing.get_context(START_METHOD)
LOOPBACK = "tcp://127.0.0.1:0"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
RIDERS = 10
ROUND_ROBIN_ORDERS = 100
UNIFORM = (0.1, 1.0)  # run.py's default delivery range
EXPONENTIAL_MEAN_S = 25.0  # clipped to MAX_DELIVERY_S: a long tail, but valid orders
MODEL_SEEDS = 200
STARTED = time.monotonic()


class BenchError(Exception):
    """A case that could not run (a child did not start or bind in time)."""


def child_setup() -> threading.Event:
    """First thing in every child: fd 1 to /dev/null (its say() lines would land in our table),
    and an Event that SIGINT or SIGTERM sets. Set by a thread in sigwait(), not by a handler:
    a handler's Event.set() deadlocks if the main thread holds the Event's lock (in wait())."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    stop = threading.Event()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=lambda: (signal.sigwait(STOP_SIGNALS), stop.set()), daemon=True).start()
    return stop


def start(processes: Sequence[BaseProcess]) -> None:
    """Start children with SIGINT/SIGTERM held back, as run.py does."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for process in processes:
            process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def reap(processes: Sequence[BaseProcess], timeout: float = 3.0) -> None:
    """SIGINT the live children (the project's way to stop them) until they are gone, kill
    any left at the deadline. Asked again every 0.1 s, as run.py does: a fork server's child
    still starting up ignores SIGINT. Our own Ctrl-C or SIGTERM waits until this is done."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if p.pid is not None and p.is_alive()]) and time.monotonic() < deadline:
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
        wait([p.sentinel for p in alive], 0.1)
    if alive:
        sys.stderr.write(f"\nbench: killing {len(alive)} child process(es) that did not stop\n")
    for process in alive:
        process.kill()
        process.join(5)
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_command(command: list[str], timeout: float) -> tuple[int | None, str, str]:
    """(exit status, or None on timeout, out, err) of a command in its own process group,
    which is killed whole (fork server and children too) on timeout."""
    proc = subprocess.Popen(
        command, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:  # the timeout, or Ctrl-C / SIGTERM while we wait
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        return None, out, err
    return proc.returncode, out, err


def wait_handshakes(monitor: zmq.Socket, wanted: int, timeout: float) -> int:
    """Count EVENT_HANDSHAKE_SUCCEEDED on a socket monitor until `wanted` or timeout."""
    deadline, seen = time.monotonic() + timeout, 0
    while seen < wanted:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0 or not monitor.poll(left_ms):
            break
        seen += recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    return seen


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
    return dict(next(producer.make_orders("p1", seed, UNIFORM)), created_at=utc_now())


def typical_order_bytes(seed: int) -> int:
    orders = islice(producer.make_orders("p1", seed, UNIFORM), 1000)
    return round(statistics.mean(len(json.dumps(dict(o, created_at=utc_now())).encode()) for o in orders))


def progress(label: str) -> None:
    sys.stderr.write(f"bench {time.monotonic() - STARTED:5.1f} s  {label}\n")


# One producer process -> C consumer processes. They share an array: [0] perf_counter when the producer
# starts sending (its C handshakes done), [1] its CPU seconds, then for consumer i at 2 + 3i: its count
# (-1 until set), end (perf_counter), CPU seconds. perf_counter is CLOCK_MONOTONIC: one clock on Linux.


@dataclass
class Run:
    delivered: int  # orders (or messages) that arrived
    span_s: float  # the producer starts sending -> the last one is done
    cpu_s: tuple[float, float, float]  # producer, consumers together, sink (0 without one)
    records: list[dict] = field(default_factory=list)  # completion records, with a sink


def run_children(source: tuple, sinks: tuple, consumers: int, done: Callable[[Any], bool], timeout: float) -> Any:
    """source[0](pipe, shared, *source[1:]), which sends its endpoint down the pipe, then `consumers` x
    sinks[0](endpoint, shared, i, *sinks[1:]); done(shared) (waits a little) until true, timeout or failure."""
    shared = MP.Array("d", [math.nan, 0.0] + [-1.0, math.nan, 0.0] * consumers, lock=False)
    receiver, sender = MP.Pipe(duplex=False)
    processes = [MP.Process(target=source[0], args=(sender, shared, *source[1:]), name="producer")]
    try:
        start(processes)
        sender.close()
        try:
            endpoint = receiver.recv() if receiver.poll(15) else None
        except EOFError:
            endpoint = None
        if endpoint is None:
            raise BenchError(f"{source[0].__name__} did not bind in 15 s")
        processes += [MP.Process(target=sinks[0], args=(endpoint, shared, i, *sinks[1:])) for i in range(consumers)]
        start(processes[1:])
        deadline = time.monotonic() + timeout
        while not done(shared) and time.monotonic() < deadline and processes[0].exitcode in (None, 0):
            pass
    finally:
        reap(processes)
    return shared


def summary(shared: Any, end: float | None = None, sink_cpu: float = 0.0) -> Run:
    ends = [e for e in shared[3::3] if not math.isnan(e)]
    end = max(ends, default=math.nan) if end is None else end
    delivered = int(sum(max(0.0, c) for c in shared[2::3]))
    return Run(delivered, end - shared[0], (shared[1], sum(shared[4::3]), sink_cpu))


def project_producer(pipe: Connection, shared: Any, options: dict, delivery_times: list[float] | None) -> None:
    """producer.produce() as run.py runs it, optionally with given delivery times."""
    stop = child_setup()
    make_orders, wait_for_consumers = producer.make_orders, producer.wait_for_consumers

    def orders_with_times(name: str, seed: int | None, delivery: tuple[float, float]) -> Iterator[dict]:
        # Only the number changes: produce() still makes, stamps, encodes and sends each order.
        for order, delivery_s in zip(make_orders(name, seed, delivery), delivery_times or [], strict=False):
            yield dict(order, delivery_s=delivery_s)

    def wait_then_start_clock(*args: Any) -> bool:
        ready = wait_for_consumers(*args)
        shared[0] = time.perf_counter()  # produce() makes and sends its first order next
        return ready

    producer.wait_for_consumers = wait_then_start_clock
    if delivery_times is not None:
        producer.make_orders = orders_with_times
    began = cpu_s()
    producer.produce(LOOPBACK, stop=stop, quiet=True, on_bound=pipe.send, **options)
    shared[1] = cpu_s() - began


def project_consumer(endpoint: str, shared: Any, index: int, options: dict, tap_created_at: bool) -> None:
    """consume() as run.py runs it; tap_created_at adds the order's created_at to its records."""
    stop = child_setup()
    record = consumer.completion_record
    if tap_created_at:
        consumer.completion_record = lambda order, *args: dict(record(order, *args), created_at=order["created_at"])
    began = cpu_s()
    delivered = consumer.consume([endpoint], f"rider-{index + 1}", stop=stop, **options)
    shared[2 + 3 * index : 5 + 3 * index] = [delivered, time.perf_counter(), cpu_s() - began]


def run_project(
    n: int, c: int, seed: int, sink: bool, timeout: float, speed=0.0, interval=0.0, times=None, tap=False
) -> Run:
    """produce() of n orders -> c processes running consume() at `speed`. No sink: each
    consume() returns after n / c orders (wait_consumers=c makes round robin split them
    exactly: see parse_args), counted by what they return. With a sink, as run.py: each
    consumer PUSHes completion records to a PULL here, counted by their order ids."""
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

    def all_returned(shared: Any) -> bool:
        time.sleep(0.005)
        return min(shared[2::3]) >= 0

    try:
        if sink:
            pull.bind(LOOPBACK)
            rider["results"] = pull.last_endpoint.decode()
        else:
            rider["orders"] = n // c
        source, sinks = (project_producer, options, times), (project_consumer, rider, tap)
        shared = run_children(source, sinks, c, collect if sink else all_returned, timeout)
    finally:
        pull.close(linger=0)
        ctx.term()
    if not sink:
        return summary(shared)
    run = summary(shared, end=last[0], sink_cpu=last[1])
    run.records = [json.loads(r) for r in raw]
    planned = {o["order_id"] for o in islice(producer.make_orders("p1", seed, UNIFORM), n)}
    run.delivered = len({r["order_id"] for r in run.records} & planned)
    return run


def bare_producer(pipe: Connection, shared: Any, consumers: int, n: int, message: bytes | dict, rate: float) -> None:
    """PUSH n x message (bytes: send, dict: send_json); with a rate, paced and stamped in its first 8 bytes."""
    child_setup()  # a Ctrl-C leaves it blocked in send() once the consumers have gone: reap() kills it
    began = cpu_s()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    monitor = push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        push.bind(LOOPBACK)
        pipe.send(push.last_endpoint.decode())
        if wait_handshakes(monitor, consumers, 15) < consumers:
            return
        send = push.send_json if isinstance(message, dict) else push.send
        shared[0] = first = time.perf_counter()
        if not rate:
            for _ in range(n):
                send(message)
            return
        for i in range(n):
            if (delay := first + i / rate - time.perf_counter()) > 0:
                time.sleep(delay)
            send(time.perf_counter_ns().to_bytes(8, "little") + message[8:])
    finally:
        push.disable_monitor()
        monitor.close(linger=0)
        push.close(linger=10_000)
        ctx.term()
        shared[1] = cpu_s() - began


def bare_consumer(endpoint: str, shared: Any, index: int, use_json: bool, samples: Any) -> None:
    """PULL until SIGINT; end = the last receive. samples: latencies (us) from the 8-byte stamps."""
    stop = child_setup()
    began = cpu_s()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.rcvtimeo = 20
    slot, n, last, stamped = 2 + 3 * index, 0, math.nan, samples is not None
    try:
        pull.connect(endpoint)
        recv = pull.recv_json if use_json else pull.recv
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


def run_bare(n: int, consumers: int, message: bytes | dict, timeout: float, rate=0.0, samples=None) -> Run:
    def all_received(shared: Any) -> bool:
        time.sleep(0.005)
        return sum(max(0.0, c) for c in shared[2::3]) >= n

    source, sinks = (bare_producer, consumers, n, message, rate), (bare_consumer, isinstance(message, dict), samples)
    return summary(run_children(source, sinks, consumers, all_received, timeout))


def ready_worker(endpoint: str, index: int, speed: float) -> None:
    """Ask for an order, parse_order() and deliver() it, report it with the next request (b"": no more)."""
    stop = child_setup()
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    try:
        req.connect(endpoint)
        request = b"ready"
        while not stop.is_set():
            req.send(request)
            while not req.poll(100) and not stop.is_set():
                pass
            if stop.is_set() or not (data := req.recv()):
                break
            received = time.time()
            order = consumer.parse_order(data)
            consumer.deliver(order, speed, stop)
            record = {k: order[k] for k in ("order_id", "delivery_s")} | {"consumer": f"rider-{index + 1}"}
            request = json.dumps(dict(record, received=received, done=time.time())).encode()
    finally:
        req.close(linger=0)
        ctx.term()


def run_dispatcher(orders: list[dict], workers: int, speed: float, timeout: float) -> list[dict]:
    """Once every worker has said ready, hand out an order per request; return their records."""
    records: list[dict] = []
    processes: list[BaseProcess] = []
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    queue = iter(orders)

    def hand_out(identity: bytes) -> bool:
        order = next(queue, None)
        body = b"" if order is None else json.dumps(dict(order, created_at=utc_now())).encode()
        router.send_multipart([identity, b"", body])
        return order is not None

    try:
        router.bind(LOOPBACK)
        endpoint = router.last_endpoint.decode()
        processes += [MP.Process(target=ready_worker, args=(endpoint, i, speed)) for i in range(workers)]
        start(processes)
        deadline = time.monotonic() + timeout
        ready: list[bytes] = []
        while len(ready) < workers:
            if time.monotonic() > deadline:
                raise BenchError("dispatcher: the workers did not all report ready")
            if router.poll(100):
                ready.append(router.recv_multipart()[0])
        stopped = sum(not hand_out(identity) for identity in ready)
        while stopped < workers and time.monotonic() < deadline:
            if router.poll(100):
                identity, _, body = router.recv_multipart()
                records.append(json.loads(body))
                stopped += not hand_out(identity)
    finally:
        reap(processes)
        router.close(linger=0)
        ctx.term()
    return records


def probe_child(endpoint: str, stop: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    try:
        push.connect(endpoint)
        stop.wait(30)
    finally:
        push.close(linger=0)
        ctx.term()


def probe_start_method(method: str, children: int = RIDERS) -> dict:
    """Seconds from the first Process.start() to `children` handshakes, and from stop to all joined."""
    mp = multiprocessing.get_context(method)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    monitor = pull.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    stop = mp.Event()
    processes: list[BaseProcess] = []
    try:
        pull.bind(LOOPBACK)
        processes = [mp.Process(target=probe_child, args=(pull.last_endpoint.decode(), stop)) for _ in range(children)]
        began = time.perf_counter()
        for process in processes:
            process.start()
        connected = wait_handshakes(monitor, children, 60)
        started = time.perf_counter() - began if connected == children else math.nan
        stop.set()
        for process in processes:
            process.join(10)
        return {"start_s": started, "stop_s": time.perf_counter() - began - started}
    finally:
        stop.set()
        reap(processes)
        pull.disable_monitor()
        monitor.close(linger=0)
        pull.close(linger=0)
        ctx.term()


def run_probe(method: str, preload: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--probe-start", method, "--probe-preload"]
    status, out, err = run_command([*command, json.dumps(preload)], timeout=120)
    if status != 0 or not out.strip():
        return {"error": "timed out" if status is None else (err.strip().splitlines() or [f"exit {status}"])[-1]}
    return json.loads(out.strip().splitlines()[-1])


OVERHEAD_LINE = re.compile(r"busiest rider: ([\d.]+) s; run\.py overhead: (-?[\d.]+) s")


def run_runpy(orders: int, speed: float) -> dict:
    """python run.py --orders N --speed S: its own overhead line."""
    command = [sys.executable, str(REPO / "run.py"), "--orders", str(orders), "--speed", str(speed)]
    status, out, _ = run_command(command, timeout=60)
    if status != 0 or not (match := OVERHEAD_LINE.search(out)):
        return {"error": "timed out after 60 s" if status is None else f"exit status {status}, no overhead line"}
    busiest, overhead = map(float, match.groups())
    return {"busiest": busiest, "overhead": overhead, "exactly_once": "delivered exactly once: yes" in out}


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


def step_costs(seed: int) -> str:
    """What each step of an order costs, timed with timeit in this process (~0.3 s)."""
    orders, order = producer.make_orders("p1", seed, UNIFORM), sample_order(seed)
    data = json.dumps(order).encode()
    steps: dict[str, Callable[[], object]] = {
        "make_orders next()": lambda: next(orders),
        "utc_now()": utc_now,
        "json.dumps(order).encode()": lambda: json.dumps(order).encode(),
        "parse_order(bytes)": lambda: consumer.parse_order(data),
        "json.loads(bytes)": lambda: json.loads(data),
    }
    us = {name: min(timeit.repeat(step, number=2000, repeat=5)) / 2000 * 1e6 for name, step in steps.items()}
    made, parse = sum(list(us.values())[:3]), us["parse_order(bytes)"]
    costs = ", ".join(f"{name} {value:.1f}" for name, value in us.items())
    return (
        f"per-step cost, us per call in one process (timeit, best of 5): {costs}. So produce() spends {made:.1f} "
        f"us per order before send() (one core: <= {1e6 / made:,.0f}/s), consume() {parse:.1f} in parse_order()."
    )


def bench_throughput(cfg: argparse.Namespace, table: Table) -> None:
    progress("throughput: per-step cost (timeit)")
    table.notes.append(step_costs(cfg.seed))
    size = typical_order_bytes(cfg.seed)
    cases = {  # kind: (case, messages, what bare pyzmq sends; None: the project's code)
        "full": ("full: produce -> consume(orders=N/C), no sink", cfg.full_orders, None),
        "sink": ("full + completion records to a sink, as run.py", cfg.full_orders, None),
        "bytes": (f"bare bytes: PUSH -> PULL of {size} B", cfg.bare_orders, b"x" * size),
        "json": ("bare json: send_json -> recv_json of an order", cfg.json_orders, sample_order(cfg.seed)),
    }
    rates: dict[tuple[str, int], float] = {}
    full_cpu_us: dict[int, float] = {}
    for c in (1, RIDERS):
        for kind, (case, count, message) in cases.items():
            runs: list[Run] = []
            for repeat in range(cfg.repeats):
                progress(f"throughput: {kind}, C={c}, {count} messages, run {repeat + 1}/{cfg.repeats}")
                bare = message is not None
                runs.append(
                    run_bare(count, c, message, 30) if bare else run_project(count, c, cfg.seed, kind == "sink", 30)
                )
            each = [count / r.span_s if r.delivered == count else math.nan for r in runs]
            rate = rates[kind, c] = statistics.median(each)
            cpu = [statistics.median(r.cpu_s[i] for r in runs) / count * 1e6 for i in range(3)]
            full_cpu_us.setdefault(c, sum(cpu))
            detail = f"CPU us/msg {' + '.join(f'{p:.1f}' for p in cpu if p)} = {sum(cpu):.1f}"
            if cfg.repeats > 1:
                detail = f"median of {'/'.join(f'{r / 1000:.1f}k' for r in each)}; {detail}"
            if kind == "sink":
                detail += f"; {rate / rates['full', c]:.2f} x full"
            delivered = table.delivered(f"throughput {kind} C={c}", min(r.delivered for r in runs), count)
            table.add("throughput", case, c, count, f"{rate:,.0f} /s", delivered, "-", detail)
    for c in (1, RIDERS):
        for kind, goal in (("bytes", 0.10), ("json", 0.80)):
            ratio = rates["full", c] / rates[kind, c]
            target = f">= {goal:.2f} {'met' if ratio >= goal else 'NOT MET'}"
            # At the target rate, the machine's CPUs can spend this much per order, all processes together:
            budget = (os.cpu_count() or 1) * 1e6 / (goal * rates[kind, c])
            detail = f"at the target rate {os.cpu_count()} CPUs allow {budget:.0f} us/order; "
            detail += f"full uses {full_cpu_us[c]:.0f}"
            table.add("ratio", f"full / bare {kind}", c, "-", f"{ratio:.3f}", "-", target, detail)
    table.notes.append(
        "throughput: each side its own process. Clock: the producer starts sending (C handshakes done, stamped in "
        "its process) -> the last consume() returns (full), the last record reaches the sink (full + sink), the last "
        "message is received (bare). Counted: the sum of consume()'s returns (full), the records' order ids (+ sink). "
        "CPU us/msg: producer + consumers (+ sink), I/O threads included. The ratios use the full row."
    )


def p50_p99(us: Sequence[float]) -> str:
    return f"{percentile(us, 50):.0f} / {percentile(us, 99):.0f} us"


def bench_latency(cfg: argparse.Namespace, table: Table) -> None:
    count, timeout = max(100, int(cfg.rate * cfg.latency_s)), cfg.latency_s * 2 + 30
    progress(f"latency: bare pyzmq, {count} messages at {cfg.rate:g}/s")
    samples = MP.Array("d", count, lock=False)
    run = run_bare(count, 1, b"x" * typical_order_bytes(cfg.seed), timeout, rate=cfg.rate, samples=samples)
    us = sorted(samples[: run.delivered])
    table.add("latency", f"bare PUSH -> PULL at {cfg.rate:g}/s: p50 / p99", 1, len(us), p50_p99(us))
    for c in (1, RIDERS):
        progress(f"latency: produce -> consume, C={c}, {count} orders")
        run = run_project(count, c, cfg.seed, True, timeout, interval=1 / cfg.rate, tap=True)
        us = sorted((epoch(r["received_at"]) - epoch(r["created_at"])) * 1e6 for r in run.records)
        created = [epoch(r["created_at"]) for r in run.records]
        achieved = (len(created) - 1) / (max(created) - min(created)) if len(created) > 1 else math.nan
        detail = f"{achieved:,.0f} orders/s; max {max(us, default=math.nan):.0f} us"
        case = f"produce (interval {1000 / cfg.rate:g} ms) -> consume: p50 / p99"
        table.add("latency", case, c, len(us), p50_p99(us), f"{run.delivered}/{count}", "-", detail)
    table.notes.append(
        "latency: bare = perf_counter_ns carried in the message -> after recv(); produce -> consume = created_at "
        "(stamped by produce() before encoding) -> received_at (stamped by consume() after the receive), wall clock."
    )


def delivery_times(distribution: str, seed: int) -> list[float]:
    """The round-robin orders' delivery_s, in order-seconds (before scaling)."""
    if distribution == "uniform":
        return [o["delivery_s"] for o in islice(producer.make_orders("p1", seed, UNIFORM), ROUND_ROBIN_ORDERS)]
    rng = random.Random(seed)
    return [min(MAX_DELIVERY_S, round(rng.expovariate(1 / EXPONENTIAL_MEAN_S), 3)) for _ in range(ROUND_ROBIN_ORDERS)]


def ideal_s(times: Sequence[float]) -> float:
    return max(sum(times) / RIDERS, max(times))


def model(times: Sequence[float]) -> tuple[float, float]:
    """Makespan / ideal of rotation (order i to rider i mod 10: PUSH after a synchronised start)
    and of a load-aware assignment (each order to the first rider free)."""
    free_at = [0.0] * RIDERS
    for t in times:
        free_at[free_at.index(min(free_at))] += t
    return max(sum(times[i::RIDERS]) for i in range(RIDERS)) / ideal_s(times), max(free_at) / ideal_s(times)


def makespan(records: list[dict], ideal: float, speed: float) -> tuple[str, str]:
    """(makespan / ideal, detail), from records with 'received' and 'done' epoch seconds."""
    if not records:
        return "nan", ""
    span = max(r["done"] for r in records) - min(r["received"] for r in records)
    busy: dict[str, float] = defaultdict(float)
    for r in records:
        busy[r["consumer"]] += r["delivery_s"] * speed
    return f"{span / ideal:.2f}", f"busiest rider's work {max(busy.values()) / ideal:.2f}; makespan {span:.2f} s"


def bench_round_robin(cfg: argparse.Namespace, table: Table) -> None:
    n, timeout, seeds = ROUND_ROBIN_ORDERS, cfg.scale * 4 + 30, range(1, MODEL_SEEDS + 1)
    for distribution in ("uniform", "exponential"):
        times = delivery_times(distribution, cfg.seed)
        speed = cfg.scale / ideal_s(times)  # consume()'s --speed: the ideal run takes cfg.scale seconds
        orders = list(islice(producer.make_orders("p1", cfg.seed, UNIFORM), n))
        orders = [dict(order, delivery_s=t) for order, t in zip(orders, times, strict=True)]
        progress(f"round robin: PUSH/PULL, {distribution}, ideal {cfg.scale:.2f} s")
        run = run_project(n, RIDERS, cfg.seed, True, timeout, speed, times=None if distribution == "uniform" else times)
        push_pull = [dict(r, received=epoch(r["received_at"]), done=epoch(r["done_at"])) for r in run.records]
        progress(f"round robin: ready dispatcher, {distribution}")
        ready = run_dispatcher(orders, RIDERS, speed, timeout)
        models = [model(delivery_times(distribution, seed)) for seed in seeds]
        spread = [sorted(m[i] for m in models) for i in (0, 1)]  # rotation, load-aware
        cases = (("PUSH/PULL produce -> consume", push_pull), ("ROUTER/REQ ready dispatcher", ready))
        for (case, records), ratios in zip(cases, spread, strict=True):
            arrived = len({r["order_id"] for r in records} & {o["order_id"] for o in orders})
            delivered = table.delivered(f"round robin {case}, {distribution}", arrived, n)
            result, detail = makespan(records, cfg.scale, speed)
            case = f"{case}, {distribution}"
            table.add("round-robin", case, RIDERS, n, result, delivered, f"~{statistics.mean(ratios):.2f}", detail)
        result = " / ".join(f"{ratio:.2f}" for ratio in model(times))
        p10_p90 = " / ".join(f"{percentile(ratios, 10):.2f}-{percentile(ratios, 90):.2f}" for ratios in spread)
        case = f"model, {distribution}: rotation / first free rider"
        table.add("round-robin", case, RIDERS, n, result, "-", "-", f"{MODEL_SEEDS} seeds: p10-p90 {p10_p90}")
    table.notes.append(
        f"round-robin: makespan (first order received -> last done) / ideal (max(work / {RIDERS}, longest order) = "
        f"{cfg.scale:g} s, --scale). Orders: uniform {UNIFORM[0]:g}-{UNIFORM[1]:g} s, or exponential, mean "
        f"{EXPONENTIAL_MEAN_S:g} s, capped at {MAX_DELIVERY_S:g} s; seed {cfg.seed}. busiest rider's work: the "
        f"assignment alone. model: both assignments for this seed; targets: their means over {MODEL_SEEDS} seeds."
    )


PROBES = [("spawn", ["__main__"]), ("forkserver", ["__main__"]), ("forkserver", FORKSERVER_PRELOAD), ("fork", [])]


def bench_startup(cfg: argparse.Namespace, table: Table) -> None:
    orders, speed, runs = (20 if cfg.quick else 50), 0.1, []
    for i in range(cfg.runpy_runs):
        progress(f"start-up: run.py --orders {orders} --speed {speed:g} ({i + 1}/{cfg.runpy_runs})")
        runs.append(run_runpy(orders, speed))
    case = f"run.py --orders {orders} --speed {speed:g}: its 'run.py overhead'"
    if failed := [r["error"] for r in runs if "error" in r]:
        table.add("startup", case, RIDERS, orders, f"failed: {failed[0]}", "-", "< 1.00 NOT MET")
    else:
        worst = max(r["overhead"] for r in runs)
        detail = f"worst of {' / '.join(format(r['overhead'], '.2f') for r in runs)} s; exactly once: "
        detail += f"{'yes' if all(r['exactly_once'] for r in runs) else 'NO'}; busiest rider {runs[0]['busiest']:.2f} s"
        target = f"< 1.00 {'met' if worst < 1 else 'NOT MET'}"
        table.add("startup", case, RIDERS, orders, f"{worst:.2f} s", "-", target, detail)
    for method, preload in PROBES:
        label = method
        if method == "forkserver":
            label += f", preload {preload[0]}" + (f" + {len(preload) - 1} modules" if len(preload) > 1 else "")
        if method == START_METHOD and (method != "forkserver" or preload == FORKSERVER_PRELOAD):
            label += " (run.py)"
        progress(f"start-up: 10 x (context + connect), {label}")
        probe = run_probe(method, preload)
        result = f"failed: {probe['error']}" if "error" in probe else f"{probe['start_s']:.2f}, {probe['stop_s']:.2f} s"
        table.add("startup", f"{label}: start, stop", RIDERS, "-", result)
    table.notes.append(
        "startup: 'run.py overhead' = run.py's wall time - its busiest rider (its last line). Start methods, from a "
        "fresh interpreter: 10 processes making a context and connecting, Process.start() -> 10 handshakes, stop -> "
        f"joined. run.py preloads {FORKSERVER_PRELOAD}: on Python <= 3.12 '__main__' alone is ignored (gh-126631)."
    )


SECTIONS = dict(throughput=bench_throughput, latency=bench_latency, roundrobin=bench_round_robin, startup=bench_startup)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the ZeroMQ PUSH/PULL pipeline (see the module docstring).")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs: all of it in under 20 s")
    parser.add_argument("--only", choices=list(SECTIONS), action="append", help="run only this section (repeatable)")
    parser.add_argument("--scale", type=float, help="round robin: ideal run, s (default 2, --quick 0.7)")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: orders per second (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the orders (default %(default)s)")
    parser.add_argument("--probe-start", choices=("spawn", "forkserver", "fork"), help=argparse.SUPPRESS)
    parser.add_argument("--probe-preload", type=json.loads, default=FORKSERVER_PRELOAD, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (0 < args.rate < math.inf and 0 < (args.scale or 1) < math.inf):
        parser.error("--rate and --scale must be numbers > 0")
    # full_orders: divisible by 10, and at most 2000 per consumer at C = 10: PUSH skips a consumer only
    # while its queue is full (SNDHWM + RCVHWM = 2000, plus kernel buffers), so round robin splits exactly.
    sizes = (1, 6_000, 100_000, 25_000, 0.5, 1, 0.7) if args.quick else (3, 20_000, 400_000, 100_000, 3.0, 3, 2.0)
    args.repeats, args.full_orders, args.bare_orders, args.json_orders, args.latency_s, args.runpy_runs, scale = sizes
    args.scale = args.scale or scale
    return args


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    multiprocessing.set_forkserver_preload(cfg.probe_preload)
    # Ctrl-C and SIGTERM unwind through the finally blocks that reap the children. SIGINT
    # explicitly: a shell that starts us in the background would have it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if cfg.probe_start:
        print(json.dumps(probe_start_method(cfg.probe_start)))
        return 0
    if START_METHOD == "forkserver":  # as run.py: its children ignore SIGINT until child_setup()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        forkserver.ensure_running()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sections = [name for name in SECTIONS if not cfg.only or name in cfg.only]
    load, table = os.getloadavg()[0], Table()
    try:
        for name in sections:
            SECTIONS[name](cfg, table)
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
        f"CPUs, load average {load:.2f} before it, Python {sys.version.split()[0]}, pyzmq {zmq.__version__}, "
        f"libzmq {zmq.zmq_version()}, start method {START_METHOD} (as run.py)"
    )
    return 1 if table.lost else 0


if __name__ == "__main__":
    sys.exit(main())
