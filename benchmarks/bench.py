"""Benchmark of the PUSH/PULL pipeline: throughput, latency, round robin and start-up.

Runs the project's own code (producer.produce, consumer.consume, run.py) in real
processes, next to bare pyzmq ceilings, and prints one table. Each section is a module
of its own, named for what it measures, and runs alone too (python benchmarks/latency.py):

1. throughput.py: orders/s, C = 1 and 10: full = produce() -> C x consume(speed=0);
   full + sink = the same with completion records to a results sink, as run.py; bare bytes
   and bare json ceilings; the ratios; under the table, what each step of an order costs.
2. latency.py: p50/p99 at a fixed rate (--rate): bare pyzmq, and produce -> consume.
3. round_robin.py: round robin versus a load-aware ROUTER/REQ dispatcher, 100 orders on 10 riders.
4. startup.py: run.py's "run.py overhead" line; 10 ZeroMQ processes per start method.

harness.py holds what they share: the table, the child processes, the command line;
pipelines.py the two runs (produce -> consume, bare PUSH -> PULL) that the first three
sections time.

    python benchmarks/bench.py            # about a minute
    python benchmarks/bench.py --quick    # about 10 s on 2 cores
    python benchmarks/bench.py --only throughput --only latency

Progress goes to stderr, the table to stdout. Exit status 1 if any order was lost.
"""

from __future__ import annotations

import sys

import harness  # first: it puts the repository on sys.path

import latency
import round_robin
import startup
import throughput

SECTIONS: dict[str, harness.Section] = {
    "throughput": throughput.bench_throughput,
    "latency": latency.bench_latency,
    "roundrobin": round_robin.bench_round_robin,
    "startup": startup.bench_startup,
}

if __name__ == "__main__":
    sys.exit(harness.main(SECTIONS))
