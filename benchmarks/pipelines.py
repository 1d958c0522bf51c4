"""The two timed runs that the throughput, latency and round-robin sections share.

- run_project() is produce() -> C x consume(), the project's own code, optionally with a
  results sink as run.py has: each consumer PUSHes completion records to a PULL here.
- run_bare() is a bare PUSH -> C x PULL of the same messages: the ceiling the project's
  code runs under.

Each side gets its own process, as in run.py, started and stopped by harness.Children.
One producer process -> C consumer processes. They share an array: [0] perf_counter when the
producer starts sending (its C handshakes done), [1] its CPU seconds, then for consumer i at
2 + 3i: its count (-1 until set), end (perf_counter), CPU seconds. So the clock starts once
every consumer is connected, and stops when the last order is delivered (stamped by its
consumer), the last record reaches the sink, or the last message is received: start-up is
not in it. perf_counter is one clock for all the processes of a machine (CLOCK_MONOTONIC on
Linux, mach_absolute_time on macOS, QueryPerformanceCounter on Windows).

A run waits for all n to arrive, not for consume(orders=n/c) to return: a consumer that
stops at its share disconnects, and a PUSH that loses a peer while it still sends reorders
its peers, so the split is not exact (see run_project).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing.connection import Connection
from typing import Any

# harness first: it puts the repository on sys.path (for consumer, producer and orders, below)
from harness import LOOPBACK, MP, UNIFORM, BenchError, Children, child_setup, cpu_s, wait_handshakes

from hardened.cli import Pacer, bind

import zmq

from hardened import consumer, producer, stopping
from hardened.monitoring import ConsumerWatch
from hardened.orders import make_orders, utc_now

# --- the messages: an order as produce() sends it ---


def sample_order(seed: int) -> dict:
    return dict(next(make_orders("p1", seed, UNIFORM)), created_at=utc_now())


def typical_order_bytes(seed: int) -> int:
    orders = islice(make_orders("p1", seed, UNIFORM), 1000)
    return round(statistics.mean(len(json.dumps(dict(o, created_at=utc_now())).encode()) for o in orders))


# --- the runs ---


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

    def deliver(order: dict, name: str, speed: float, stop: stopping.StopFlag, lines: Pacer | None) -> bool:
        nonlocal count  # replaces consumer.deliver
        if not real_deliver(order, name, speed, stop, lines):
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
