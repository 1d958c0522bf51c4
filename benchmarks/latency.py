"""Latency: how long an order takes from the producer to a rider, at a steady rate.

Why: throughput says how many orders a second fit through; this says how long each
one waits on the way when the pipeline is far from full, as a delivery platform runs.
p50 and p99 at a fixed rate (--rate, default 1000 orders/s):

- bare pyzmq: a PUSH -> PULL of an order's size, stamped with perf_counter_ns;
- produce() -> consume() with C = 1 and 10 riders: created_at (stamped by produce()
  before encoding) -> received_at (stamped by consume() after the receive).

The second is wall-clock time, read in two processes. Its resolution is the system
clock's: fine on Linux and macOS; on Windows before Python 3.13 it is about 16 ms.

    python benchmarks/latency.py [--quick] [--rate 500]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import harness
from harness import MP, RIDERS, Table, epoch, percentile, progress

import pipelines
from pipelines import run_bare, run_project


def p50_p99(us: Sequence[float]) -> str:
    return f"{percentile(us, 50):.0f} / {percentile(us, 99):.0f} us"


def bench_latency(cfg: argparse.Namespace, table: Table) -> None:
    seconds = 0.3 if cfg.quick else 3.0  # how long each run sends at the rate
    count, timeout = max(100, int(cfg.rate * seconds)), seconds * 2 + 30
    progress(f"latency: bare pyzmq, {count} messages at {cfg.rate:g}/s")
    samples = MP.Array("d", count, lock=False)
    bare = run_bare(count, 1, b"x" * pipelines.typical_order_bytes(cfg.seed), timeout, rate=cfg.rate, samples=samples)
    us = sorted(samples[: bare.delivered])
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


if __name__ == "__main__":
    sys.exit(harness.main({"latency": bench_latency}))
