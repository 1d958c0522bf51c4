"""Round robin versus a load-aware dispatcher: how long 100 orders take on 10 riders.

Why: PUSH hands out orders by count, in turn, whatever each one costs. When delivery
times vary, a rider with long deliveries keeps getting orders while others sit idle.
The alternative is the ZeroMQ guide's load-balancing pattern: a ROUTER in front of REQ
riders, where a rider asks for an order only when it is free. The rows, for uniform
and for skewed (exponential) delivery times:

- PUSH/PULL: the project's produce() -> 10 x consume(), as run.py runs them;
- ROUTER/REQ ready dispatcher: the same orders, each to the first rider that asks;
- model: both assignments computed for this seed, with the spread over 200 seeds.

The result is the makespan (first order received -> last one done) over the ideal
time, max(work / 10, longest order), which --scale sets to a number of seconds.

    python benchmarks/round_robin.py [--quick] [--scale 1]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from itertools import islice
from multiprocessing.connection import Connection

import harness  # first: it puts the repository on sys.path (for consumer and orders, below)
from harness import LOOPBACK, RIDERS, UNIFORM, BenchError, Children, Table, epoch, percentile, progress

from hardened.cli import bind

import zmq
from pipelines import run_project

from hardened.consumer import deliver
from hardened.orders import MAX_DELIVERY_S, make_orders, parse_order, utc_now

ROUND_ROBIN_ORDERS = 100
EXPONENTIAL_MEAN_S = 25.0  # clipped to MAX_DELIVERY_S: a long tail, but valid orders
MODEL_SEEDS = 200


def delivery_times(distribution: str, seed: int) -> list[float]:
    """The round-robin orders' delivery_s, in order-seconds (before scaling)."""
    if distribution == "uniform":
        return [o["delivery_s"] for o in islice(make_orders("p1", seed, UNIFORM), ROUND_ROBIN_ORDERS)]
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


# --- the load-aware dispatcher: a ROUTER here, a REQ per rider ---


def ready_worker(stop_pipe: Connection, endpoint: str, index: int, speed: float) -> None:
    """Ask for an order, parse_order() and deliver() it, report it with the next request (b"": no more)."""
    stop = harness.child_setup(stop_pipe)
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
            order = parse_order(data)
            deliver(order, f"rider-{index + 1}", speed, stop, None)  # None: no line
            record = {k: order[k] for k in ("order_id", "delivery_s")} | {"consumer": f"rider-{index + 1}"}
            request = json.dumps(dict(record, received=received, done=time.time())).encode()
    finally:
        req.close(linger=0)
        ctx.term()


def run_dispatcher(orders: list[dict], workers: int, speed: float, timeout: float) -> list[dict]:
    """Once every worker has said ready, hand out an order per request; return their records."""
    records: list[dict] = []
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    queue = iter(orders)

    def hand_out(identity: bytes) -> bool:
        order = next(queue, None)
        body = b"" if order is None else json.dumps(dict(order, created_at=utc_now())).encode()
        router.send_multipart([identity, b"", body])
        return order is not None

    try:
        endpoint = bind(router, LOOPBACK)
        with Children() as children:
            for i in range(workers):
                children.start(ready_worker, endpoint, i, speed)
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
        router.close(linger=0)
        ctx.term()
    return records


def bench_round_robin(cfg: argparse.Namespace, table: Table) -> None:
    scale = cfg.scale or (0.3 if cfg.quick else 2.0)  # seconds: how long the ideal run takes
    n, timeout, seeds = ROUND_ROBIN_ORDERS, scale * 4 + 30, range(1, MODEL_SEEDS + 1)
    for distribution in ("uniform", "exponential"):
        times = delivery_times(distribution, cfg.seed)
        speed = scale / ideal_s(times)  # consume()'s --speed: the ideal run takes `scale` seconds
        orders = list(islice(make_orders("p1", cfg.seed, UNIFORM), n))
        orders = [dict(order, delivery_s=t) for order, t in zip(orders, times, strict=True)]
        progress(f"round robin: PUSH/PULL, {distribution}, ideal {scale:.2f} s")
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
            result, detail = makespan(records, scale, speed)
            case = f"{case}, {distribution}"
            table.add("round-robin", case, RIDERS, n, result, delivered, f"~{statistics.mean(ratios):.2f}", detail)
        result = " / ".join(f"{ratio:.2f}" for ratio in model(times))
        p10_p90 = " / ".join(f"{percentile(ratios, 10):.2f}-{percentile(ratios, 90):.2f}" for ratios in spread)
        case = f"model, {distribution}: rotation / first free rider"
        table.add("round-robin", case, RIDERS, n, result, "-", "-", f"{MODEL_SEEDS} seeds: p10-p90 {p10_p90}")
    table.notes.append(
        f"round-robin: makespan (first order received -> last done) / ideal (max(work / {RIDERS}, longest order) = "
        f"{scale:g} s, --scale). Orders: uniform {UNIFORM[0]:g}-{UNIFORM[1]:g} s, or exponential, mean "
        f"{EXPONENTIAL_MEAN_S:g} s, capped at {MAX_DELIVERY_S:g} s; seed {cfg.seed}. busiest rider's work: the "
        f"assignment alone. model: both assignments for this seed; targets: their means over {MODEL_SEEDS} seeds."
    )


if __name__ == "__main__":
    sys.exit(harness.main({"roundrobin": bench_round_robin}))
