"""Start-up: what it costs run.py to start its processes, and what the start method changes.

Why: a run of run.py is mostly its riders' simulated deliveries; what it adds on top is
starting 11 processes and stopping them. The rows:

- run.py's own "run.py overhead" line (its wall time minus its busiest rider's work);
- 10 processes that make a ZeroMQ context and connect, per start method: spawn (a fresh
  interpreter per child), a fork server with and without run.py's preload, and fork
  (which run.py never uses: a child would get a copy of the parent's ZeroMQ context).
  Each probe runs in a fresh interpreter; a start method the platform lacks (fork and
  forkserver on Windows) gets a note instead of a row.

    python benchmarks/startup.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import re
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import harness  # first: it puts the repository on sys.path (for run and stopping, below)
from harness import LOOPBACK, RIDERS, Table, progress, run_command, wait_handshakes

from hardened.cli import bind

import zmq

from hardened import stopping
from hardened.run import FORKSERVER_PRELOAD

START_METHOD = harness.START_METHOD
PROBES = [("spawn", ["__main__"]), ("forkserver", ["__main__"]), ("forkserver", FORKSERVER_PRELOAD), ("fork", [])]
OVERHEAD_LINE = re.compile(r"wall time: ([\d.]+) s; busiest rider: ([\d.]+) s; run\.py overhead: (-?[\d.]+) s")
TOTAL_LINE = re.compile(r"total orders: (\d+) \(.*\), delivered (\d+)")


def run_runpy(orders: int, speed: float, *options: str, timeout: float = 60) -> dict:
    """python -m hardened.run --orders N --speed S [options]: its own overhead line, and how
    many orders it saw delivered."""
    command = [sys.executable, "-m", "hardened.run", "--orders", str(orders), "--speed", str(speed), *options]
    status, out, _ = run_command(command, timeout=timeout)
    if status is None:
        return {"error": f"timed out after {timeout:g} s"}
    if status != 0 or not (match := OVERHEAD_LINE.search(out)):
        return {"error": f"exit status {status}, no overhead line"}
    wall, busiest, overhead = map(float, match.groups())
    delivered = int(total.group(2)) if (total := TOTAL_LINE.search(out)) else 0
    once = "delivered exactly once: yes" in out
    return {"wall": wall, "busiest": busiest, "overhead": overhead, "delivered": delivered, "exactly_once": once}


# --- a start-method probe, run by run_probe() in a fresh interpreter: startup.py --probe METHOD MODULE... ---


def probe_child(endpoint: str, stop_pipe: Connection, stop_writer: Connection) -> None:
    """Connect a PUSH, then wait for EOF on stop_pipe (see probe())."""
    stop_writer.close()  # a forked child inherits the parent's copy too: with it open, no EOF would ever come
    stopping.ignore_signals()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    try:
        push.connect(endpoint)
        with contextlib.suppress(EOFError, OSError):
            stop_pipe.recv()  # the parent never writes: this returns only at EOF, by raising
    finally:
        push.close(linger=0)
        ctx.term()


def probe(method: str, children: int = RIDERS) -> dict:
    """Seconds from the first Process.start() to `children` handshakes, and from stop to all joined.
    The children stop when this process closes the pipe's writing end, or dies."""
    mp: Any = multiprocessing.get_context(method)  # Any: see harness.MP
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    monitor = pull.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    stop_pipe, stop_writer = mp.Pipe(duplex=False)
    processes: list[BaseProcess] = []
    try:
        endpoint = bind(pull, LOOPBACK)
        processes = [mp.Process(target=probe_child, args=(endpoint, stop_pipe, stop_writer)) for _ in range(children)]
        with stopping.shielded_children():
            began = time.perf_counter()
            for process in processes:
                process.start()
        connected = wait_handshakes(monitor, children, 60)
        started = time.perf_counter() - began if connected == children else math.nan
        stop_writer.close()
        stopping.join_or_kill(processes, 10, "bench")
        return {"start_s": started, "stop_s": time.perf_counter() - began - started}
    finally:
        stop_writer.close()
        stopping.join_or_kill(processes, 3, "bench")
        pull.disable_monitor()
        monitor.close(linger=0)
        pull.close(linger=0)
        ctx.term()


def run_probe(method: str, preload: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", method, *preload]
    status, out, err = run_command(command, timeout=120)
    if status != 0 or not out.strip():
        return {"error": "timed out" if status is None else (err.strip().splitlines() or [f"exit {status}"])[-1]}
    return json.loads(out.strip().splitlines()[-1])


def bench_startup(cfg: argparse.Namespace, table: Table) -> None:
    orders, speed, runs = (20 if cfg.quick else 50), 0.1, []
    runpy_runs = 1 if cfg.quick else 3
    for i in range(runpy_runs):
        progress(f"start-up: run.py --orders {orders} --speed {speed:g} ({i + 1}/{runpy_runs})")
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
    available = multiprocessing.get_all_start_methods()
    for method, preload in PROBES:
        if method not in available:
            continue
        label = method
        if method == "forkserver":
            label += f", preload {preload[0]}" + (f" + {len(preload) - 1} modules" if len(preload) > 1 else "")
        if method == START_METHOD and (method != "forkserver" or preload == FORKSERVER_PRELOAD):
            label += " (run.py)"
        progress(f"start-up: 10 x (context + connect), {label}")
        result = run_probe(method, preload)
        if "error" in result:
            cell = f"failed: {result['error']}"
        else:
            cell = f"{result['start_s']:.2f}, {result['stop_s']:.2f} s"
        table.add("startup", f"{label}: start, stop", RIDERS, "-", cell)
    note = (
        "startup: 'run.py overhead' = run.py's wall time - its busiest rider (its last line). Start methods, from a "
        "fresh interpreter: 10 processes making a context and connecting, Process.start() -> 10 handshakes, stop -> "
        "joined."
    )
    if "forkserver" in available:
        note += (
            f" run.py preloads {FORKSERVER_PRELOAD}. Before Python 3.13.8 the fork server skips '__main__' (gh-126631):"
            " each child imports it again, and 'preload __main__' alone preloads nothing."
        )
    if missing := sorted({method for method, _ in PROBES} - set(available)):
        note += f" No {' or '.join(missing)} row: not a start method on this platform."
    table.notes.append(note)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:  # run_probe(): one probe, in this fresh interpreter
        method, *preload = sys.argv[2:]
        if method == "forkserver":
            multiprocessing.set_forkserver_preload(preload)
        print(json.dumps(probe(method)))
        sys.exit(0)
    sys.exit(harness.main({"startup": bench_startup}))
