"""Benchmark of the PUSH/PULL pipeline: throughput, latency, round robin, start-up, and scale.

Runs the project's own code (producer.produce, consumer.consume, run.py) in real
processes, next to bare pyzmq ceilings, and prints one table. Each section is a module
of its own, named for what it measures, and runs alone too (python benchmarks/latency.py):

1. throughput.py: orders/s, C = 1 and 10: full = produce() -> C x consume(speed=0);
   full + sink = the same with completion records to a results sink, as run.py; bare bytes
   and bare json ceilings; the ratios; under the table, what each step of an order costs.
2. latency.py: p50/p99 at a fixed rate (--rate): bare pyzmq, and produce -> consume.
3. round_robin.py: round robin versus a load-aware ROUTER/REQ dispatcher, 100 orders on 10 riders.
4. startup.py: run.py's "run.py overhead" line; 10 ZeroMQ processes per start method.
5. same_work.py: three sides doing the same job, started the same way (1 producer, 10 riders,
   output to files), in interleaved rounds: the first read's producer.py and consumer.py, the
   hardened scripts, and bare pyzmq; orders/s, CPU per order, hardened / first read (>= 0.90)
   and first read / bare (>= 0.95).
6. growth.py: run.py's peak memory at 10,000, 100,000 and 1,000,000 orders.
7. riders.py: run.py's "run.py overhead" for 10 to 200 riders, per start method.

harness.py holds what they share: the table, the child processes, the command line;
pipelines.py the two runs (produce -> consume, bare PUSH -> PULL) that the first three
sections time; timed.py and bare_pipeline.py are same_work.py's helper scripts.

    python benchmarks/bench.py            # several minutes (growth's 1,000,000 orders alone: a minute or more)
    python benchmarks/bench.py --quick    # about 14 s on 2 cores
    python benchmarks/bench.py --only throughput --only latency

Progress goes to stderr, the table to stdout. Exit status 1 if any order was lost.
"""

from __future__ import annotations

import sys

import harness  # first: it puts the repository on sys.path

import growth
import latency
import riders
import round_robin
import same_work
import startup
import throughput

SECTIONS: dict[str, harness.Section] = {
    "throughput": throughput.bench_throughput,
    "latency": latency.bench_latency,
    "roundrobin": round_robin.bench_round_robin,
    "startup": startup.bench_startup,
    "samework": same_work.bench_same_work,
    "growth": growth.bench_growth,
    "riders": riders.bench_riders,
}

if __name__ == "__main__":
    sys.exit(harness.main(SECTIONS))
