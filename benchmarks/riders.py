"""Riders as they grow: what run.py adds to its riders' work, for 10 to 200 riders.

Why: run.py starts a process per rider, waits for every one to connect before the first
order, collects their records, and stops them. How that cost grows with the riders, and
with the start method, says how far one machine's run.py goes:

    python -m hardened.run --consumers R --orders 20R --speed 0 --delivery 0 --start-method M

for R = 10, 50, 100 and 200, and each start method run.py offers here (forkserver and
spawn; on Windows only spawn). --quick: 10 riders, run.py's default method only.
With no delivery time at all, run.py's own "run.py overhead" (its wall time minus its
busiest rider's work) is the whole run: starting R + 1 processes, waiting for R
handshakes, 20 orders a rider, the accounting, stopping them all.

    python benchmarks/riders.py [--quick]
"""

from __future__ import annotations

import argparse
import sys

import harness  # first: it puts the repository on sys.path (for run, below)
from harness import Table, progress

import startup

from hardened.run import START_METHODS

ORDERS_EACH = 20


def bench_riders(cfg: argparse.Namespace, table: Table) -> None:
    counts, methods = ((10,), START_METHODS[:1]) if cfg.quick else ((10, 50, 100, 200), START_METHODS)
    for method in methods:
        label = method + (" (run.py's default)" if method == START_METHODS[0] else "")
        for riders in counts:
            orders = ORDERS_EACH * riders
            progress(f"riders: run.py --consumers {riders} --orders {orders}, {method}")
            options = ["--consumers", str(riders), "--delivery", "0", "--start-method", method]
            result = startup.run_runpy(orders, 0, *options, timeout=60 + riders)
            case = f"run.py, {ORDERS_EACH} orders a rider, --speed 0 --delivery 0, {label}: 'run.py overhead'"
            delivered = table.delivered(f"riders {riders} {method}", result.get("delivered", 0), orders)
            if "error" in result:
                table.add("riders", case, riders, orders, f"failed: {result['error']}", delivered)
                continue
            per_rider = result["overhead"] / riders * 1000
            detail = f"{per_rider:.0f} ms a rider; exactly once: {'yes' if result['exactly_once'] else 'NO'}"
            if not result["exactly_once"]:
                table.lost.append(f"riders {riders} {method}: not delivered exactly once")
            table.add("riders", case, riders, orders, f"{result['overhead']:.2f} s", delivered, "-", detail)
    table.notes.append(
        "riders: run.py's 'run.py overhead' line (its wall time - its busiest rider's work, here none: all of it), "
        f"C riders with {ORDERS_EACH} orders each."
    )


if __name__ == "__main__":
    sys.exit(harness.main({"riders": bench_riders}))
