"""Throughput: how many orders a second the project moves from produce() to consume().

Why: to know what limits the pipeline. Each row runs in real processes, one per side,
for C = 1 and 10 consumers:

- full: produce() -> C x consume(speed=0), no results sink, until all N are delivered;
- full + sink: the same with a completion record per order to a results sink, as run.py;
- bare bytes and bare json: bare pyzmq moving a message of an order's size, and
  send_json -> recv_json of an order: the ceilings that the project's code runs under;
- the ratios full / bare, against targets, with the CPU time per order they allow.

Under the table, what each step of an order costs (timeit, in one process): that is
where the gap to the ceilings goes.

    python benchmarks/throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import timeit
from collections.abc import Callable

import harness  # first: it puts the repository on sys.path (for orders, below)
from harness import RIDERS, UNIFORM, Table, progress

import pipelines
from pipelines import Run, run_bare, run_project

from hardened.orders import make_orders, parse_order, utc_now


def step_costs(seed: int, quick: bool) -> str:
    """What each step of an order costs, timed with timeit in this process (~0.4 s, --quick ~0.1 s)."""
    number, repeat = (500, 3) if quick else (2000, 5)
    orders, order = make_orders("p1", seed, UNIFORM), pipelines.sample_order(seed)
    data = json.dumps(order).encode()
    steps: dict[str, Callable[[], object]] = {
        "make_orders next()": lambda: next(orders),
        "utc_now()": utc_now,
        "json.dumps(order).encode()": lambda: json.dumps(order).encode(),
        "parse_order(bytes)": lambda: parse_order(data),
        "json.loads(bytes)": lambda: json.loads(data),
    }
    us = {name: min(timeit.repeat(step, number=number, repeat=repeat)) / number * 1e6 for name, step in steps.items()}
    made, parse = sum(list(us.values())[:3]), us["parse_order(bytes)"]
    costs = ", ".join(f"{name} {value:.1f}" for name, value in us.items())
    return (
        f"per-step cost, us per call in one process (timeit, best of {repeat}): {costs}. So produce() spends "
        f"{made:.1f} us per order before send() (one core: <= {1e6 / made:,.0f}/s), consume() {parse:.1f} in "
        "parse_order()."
    )


def bench_throughput(cfg: argparse.Namespace, table: Table) -> None:
    sizes = (1, 4_000, 50_000, 10_000) if cfg.quick else (3, 20_000, 400_000, 100_000)
    repeats, full_orders, bare_orders, json_orders = sizes
    progress("throughput: per-step cost (timeit)")
    table.notes.append(step_costs(cfg.seed, cfg.quick))
    size = pipelines.typical_order_bytes(cfg.seed)
    cases = {  # kind: (case, messages, what bare pyzmq sends; None: the project's code)
        "full": ("full: produce -> consume(), no sink", full_orders, None),
        "sink": ("full + completion records to a sink, as run.py", full_orders, None),
        "bytes": (f"bare bytes: PUSH -> PULL of {size} B", bare_orders, b"x" * size),
        "json": ("bare json: send_json -> recv_json of an order", json_orders, pipelines.sample_order(cfg.seed)),
    }
    rates: dict[tuple[str, int], float] = {}
    full_cpu_us: dict[int, float] = {}
    for c in (1, RIDERS):
        for kind, (case, count, message) in cases.items():
            runs: list[Run] = []
            for repeat in range(repeats):
                progress(f"throughput: {kind}, C={c}, {count} messages, run {repeat + 1}/{repeats}")
                if message is None:
                    runs.append(run_project(count, c, cfg.seed, kind == "sink", 30))
                else:
                    runs.append(run_bare(count, c, message, 30))
            each = [count / r.span_s if r.delivered == count else math.nan for r in runs]
            rate = rates[kind, c] = statistics.median(each)
            cpu = [statistics.median(r.cpu_s[i] for r in runs) / count * 1e6 for i in range(3)]
            full_cpu_us.setdefault(c, sum(cpu))
            detail = f"CPU us/msg {' + '.join(f'{p:.1f}' for p in cpu if p)} = {sum(cpu):.1f}"
            if repeats > 1:
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
        "its process) -> the last order is delivered (full, stamped by its consumer), the last record reaches the sink "
        "(full + sink), the last message is received (bare). Counted: the sum of consume()'s returns (full), the "
        "records' order ids (+ sink). "
        "CPU us/msg: producer + consumers (+ sink), I/O threads included. The ratios use the full row."
    )


if __name__ == "__main__":
    sys.exit(harness.main({"throughput": bench_throughput}))
