"""What the benchmark sections share: the table, the child processes, the command line.

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

The two runs that several sections time (produce() -> consume(), bare PUSH -> PULL) are
in pipelines.py.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hardened import cli  # noqa: E402, F401, I001  (first: without pyzmq, one line that says what to do)

import zmq  # noqa: E402
from zmq.utils.monitor import recv_monitor_message  # noqa: E402

from hardened import run  # noqa: E402  (needs the sys.path entry above; safe to import: its signal set-up runs only as a script)
from hardened import stopping  # noqa: E402

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
            print(f"every order delivered in all {self.checked} cases that count them")


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
        stopping.join_or_kill(self.processes, self.timeout, "bench")


# --- the command line: bench.py runs every section, each section's module runs its own ---


def parse_args(argv: list[str] | None, sections: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the ZeroMQ PUSH/PULL pipeline (see benchmarks/bench.py).")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs: all of it in about 14 s")
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
        f"CPUs, Python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
        f"start method {START_METHOD} (as run.py)"
    )
    return 1 if table.lost else 0
