"""Same work, three sides: the first read's scripts, the hardened ones, and bare pyzmq.

Why: a user runs scripts, whose output goes somewhere. This runs both reads' scripts as
a user would, and next to them the least pyzmq that does the same job, all started the
same way, so that two ratios say what each read costs: the hardened read against the
first (target >= 0.90), and the first read against bare pyzmq (target >= 0.95). Each
side is 1 producer and 10 riders, each `python SCRIPT ...` in a process of its own with
stdout and stderr to files (as `> file 2> file` would; PYTHONUNBUFFERED unset), and each
rider PUSHes a completion record per order to a PULL sink in this process:

- first read: python producer.py --bind tcp://127.0.0.1:0 --orders N --interval 0
  --wait-consumers 10 --seed S (its first line says the port it bound), and 10 x
  python consumer.py --connect EP --results SINK --speed 0 --name rider-K. Each prints
  a line per order, flushed as it goes;
- hardened: python -m hardened.producer and 10 x python -m hardened.consumer with the
  same options. Each prints as it does by default: a line per order up to 20 a second,
  past that a summary line a second (cli.Pacer); it has no option to print every line;
- bare: bare_pipeline.py's producer and riders: the same orders, the first read's lines
  (block-buffered), the same records; no validation, blocking send and recv, no flush
  per line. So the first read is not the least pyzmq that does this work: bare is less
  (bare_pipeline.py says what it leaves out), and the ratio first read / bare is its cost.

Clock, the same for every side: from the first completion record reaching the sink to
the Nth; orders/s = (N - 1) / that span. Start-up (11 interpreters, their imports, the
producer waiting for its 10 riders) is outside it; "total" in the detail (the producer
started -> the Nth record) has it.

CPU per order: each process reports its own user + system CPU (timed.py runs every
script, on every side) when the first record arrives and when the Nth has (or when it
exits, if sooner); the side's 11 processes together, over that window, / (N - 1). This
process's sink is counted on no side.

Five rounds of N = 50,000 orders (--quick: one of 3,000) interleave the sides (first,
hardened, bare; then bare, hardened, first; ...) so that a change in the machine's load
hits them alike, and each ratio sets a side against the other side of the same round:
the ratios are medians of per-round ratios.

    python benchmarks/same_work.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import harness  # first: it puts the repository on sys.path (for cli and orders, below)
from harness import LOOPBACK, REPO, RIDERS, Table, progress

from hardened.cli import bind

import zmq

from hardened.heartbeats import read_without_limit
from hardened.orders import order_id

HERE = Path(__file__).resolve().parent
TIMED = HERE / "timed.py"
BOUND_LINE = re.compile(r"bound (tcp://[\d.]+:\d+)")
# The scripts' environment: ours, but output buffered as Python buffers it for a file
# whatever the caller set (the tests run us with PYTHONUNBUFFERED=1).
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


Command = Callable[[int, int, str, str, int], tuple[str, list[str]]]


def first_read_scripts(n: int, seed: int, endpoint: str, sink: str, rider: int) -> tuple[str, list[str]]:
    """The first read's producer.py (rider 0) or consumer.py as rider number `rider`."""
    if not rider:
        options = ["--bind", LOOPBACK, "--orders", str(n), "--interval", "0", "--wait-consumers", str(RIDERS)]
        return str(REPO / "producer.py"), [*options, "--seed", str(seed)]
    options = ["--connect", endpoint, "--results", sink, "--speed", "0", "--name", f"rider-{rider}"]
    return str(REPO / "consumer.py"), options


def hardened_scripts(n: int, seed: int, endpoint: str, sink: str, rider: int) -> tuple[str, list[str]]:
    """The hardened producer (rider 0) or rider number `rider`: the first read's options."""
    script, args = first_read_scripts(n, seed, endpoint, sink, rider)
    return "-m", [f"hardened.{Path(script).stem}", *args]


def bare_scripts(n: int, seed: int, endpoint: str, sink: str, rider: int) -> tuple[str, list[str]]:
    if not rider:
        args = ["producer", "--bind", LOOPBACK, "--orders", str(n), "--wait-consumers", str(RIDERS)]
        return str(HERE / "bare_pipeline.py"), [*args, "--seed", str(seed)]
    options = ["consumer", "--connect", endpoint, "--results", sink, "--name", f"rider-{rider}"]
    return str(HERE / "bare_pipeline.py"), options


# kind: (case, the command of the producer (rider 0) or rider K)
SIDES: dict[str, tuple[str, Command]] = {
    "first": ("first read: producer.py -> 10 x consumer.py, a line per order", first_read_scripts),
    "hardened": ("hardened: -m hardened.producer -> 10 x -m hardened.consumer, paced lines", hardened_scripts),
    "bare": ("bare pyzmq: bare_pipeline.py, a line per order, no validation", bare_scripts),
}
# (case, numerator, denominator, target): what each read costs, against the side below it.
RATIOS = [
    ("ratio hardened / first read", "hardened", "first", 0.90),
    ("ratio first read / bare pyzmq", "first", "bare", 0.95),
]


@dataclass
class Round:
    delivered: int = 0
    rate: float = math.nan  # orders/s, first record -> Nth
    total_s: float = math.nan  # the producer started -> the Nth record
    cpu_s: float = math.nan  # all the side's processes, first record -> Nth
    cpu_all_s: float = math.nan  # all the side's processes, start to end
    error: str = ""


class Script:
    """`python timed.py TIMES SCRIPT ARGS...` (or `... TIMES -m MODULE ARGS...`) with its output
    to NAME.out and NAME.err in `folder`."""

    def __init__(self, folder: Path, name: str, script: str, args: list[str]) -> None:
        self.name = name
        self.out, self.err, self.times = (folder / f"{name}.{ext}" for ext in ("out", "err", "times"))
        command = [sys.executable, str(TIMED), str(self.times), script, *args]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdin=subprocess.PIPE, stdout=out, stderr=err)

    def tell(self, close: bool) -> None:
        """A byte on its stdin (its CPU mark: the clock started), or end of file (its end)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # it has exited already
            if close:
                self.proc.stdin.close()
            else:
                self.proc.stdin.write(b"m")
                self.proc.stdin.flush()

    def cpu_s(self) -> tuple[float, float]:
        """(CPU seconds between its mark and its end, up to its end); a missing mark: it ended before."""
        times = json.loads(self.times.read_text())
        return times["end"] - (times["mark"] if times["mark"] is not None else times["end"]), times["end"]

    def complaint(self) -> str:
        """The first line it wrote to stderr, if any."""
        lines = self.err.read_text(errors="replace").strip().splitlines()
        return f"{self.name} on stderr: {lines[0][:80]}" if lines else ""


def bound_endpoint(producer: Script, timeout: float) -> str:
    """The endpoint the producer says (its first line) that it bound."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and producer.proc.poll() is None:
        if match := BOUND_LINE.search(producer.out.read_text(errors="replace")):
            return match.group(1)
        time.sleep(0.01)
    raise RuntimeError(f"the producer did not say where it bound in {timeout:g} s")


def collect(sink: zmq.Socket, n: int, scripts: list[Script], timeout: float) -> tuple[list[bytes], float, float]:
    """Records until n arrive: (records, perf_counter at the first, at the nth). Marks every
    script's CPU at the first. Raises RuntimeError on a timeout or a process gone early."""
    raw: list[bytes] = []
    first = last = math.nan
    deadline = time.monotonic() + timeout
    while len(raw) < n:
        if sink.poll(100):
            with contextlib.suppress(zmq.Again):
                while True:
                    raw.append(sink.recv(zmq.NOBLOCK))
                    if len(raw) == 1:
                        first = time.perf_counter()
                        for script in scripts:
                            script.tell(close=False)
                    if len(raw) >= n:
                        last = time.perf_counter()
                        break
            continue
        if gone := [s.name for s in scripts[1:] if s.proc.poll() is not None]:
            raise RuntimeError(f"{', '.join(gone)} exited early")
        if scripts[0].proc.poll() not in (None, 0):
            raise RuntimeError(f"the producer exited with status {scripts[0].proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s with {len(raw)} of {n} records")
    return raw, first, last


def stop(scripts: list[Script]) -> None:
    """End of file on every stdin; once each has taken its end reading (or exited), kill
    the riders, which never stop by themselves: killed, not stopped, alike on every
    platform and for both sides, their work done and measured. The producer (scripts[0])
    exits by itself; killed only if still there 5 s later."""
    for script in scripts:
        script.tell(close=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(not s.times.exists() and s.proc.poll() is None for s in scripts):
        time.sleep(0.01)
    for script in scripts[1:]:
        script.proc.kill()
    for script in scripts:
        try:
            script.proc.wait(5)  # the producer: its last orders handed over, it exits
        except subprocess.TimeoutExpired:
            script.proc.kill()
            script.proc.wait()


def run_side(kind: str, n: int, seed: int, folder: Path, timeout: float) -> Round:
    folder.mkdir()
    commands = SIDES[kind][1]
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    read_without_limit(sink)  # as run.py's sink: the hardened riders send heartbeats
    scripts: list[Script] = []
    result = Round()
    try:
        sink_endpoint = bind(sink, LOOPBACK)
        began = time.perf_counter()
        scripts.append(Script(folder, "p1", *commands(n, seed, "", "", 0)))
        endpoint = bound_endpoint(scripts[0], 15)
        for rider in range(1, RIDERS + 1):
            scripts.append(Script(folder, f"rider-{rider}", *commands(n, seed, endpoint, sink_endpoint, rider)))
        raw, first, last = collect(sink, n, scripts, timeout)
    except RuntimeError as exc:
        result.error = str(exc)
    finally:
        stop(scripts)
        sink.close(linger=0)
        ctx.term()
    if result.error:
        complaint = next((c for s in scripts if (c := s.complaint())), "")
        result.error += f" ({complaint})" if complaint else ""
        return result
    planned = {order_id("p1", seq) for seq in range(1, n + 1)}
    result.delivered = len({json.loads(r)["order_id"] for r in raw} & planned)
    result.rate, result.total_s = (n - 1) / (last - first), last - began
    try:
        cpu = [script.cpu_s() for script in scripts]
    except (OSError, ValueError, KeyError) as exc:
        result.error = f"no CPU times ({exc})"
        return result
    result.cpu_s, result.cpu_all_s = sum(c[0] for c in cpu), sum(c[1] for c in cpu)
    result.error = next((c for s in scripts if (c := s.complaint())), "")
    if scripts[0].proc.returncode != 0:
        result.error = result.error or f"the producer exited with status {scripts[0].proc.returncode}"
    return result


def spread(values: list[float], scale: float = 1.0, fmt: str = ".2f") -> str:
    """median (min-max), or the one value."""
    median = format(statistics.median(values) * scale, fmt)
    if len(values) == 1:
        return median
    return f"{median} ({format(min(values) * scale, fmt)}-{format(max(values) * scale, fmt)})"


def bench_same_work(cfg: argparse.Namespace, table: Table) -> None:
    rounds, n = (1, 3_000) if cfg.quick else (5, 50_000)  # --quick: one round, for the time it takes
    timeout = 30 + n / 1000  # 1,000 orders/s would be far below any side's rate
    runs: dict[str, list[Round]] = {kind: [] for kind in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-same-work-", ignore_cleanup_errors=True) as folder:
        for number in range(1, rounds + 1):
            for kind in list(SIDES) if number % 2 else reversed(SIDES):
                progress(f"same work: {kind}, {n} orders, round {number}/{rounds}")
                runs[kind].append(run_side(kind, n, cfg.seed, Path(folder) / f"{number}-{kind}", timeout))
    failed = {kind: next((r.error for r in rs if r.error), "") for kind, rs in runs.items()}
    for kind, (case, _) in SIDES.items():
        label = f"same-work {kind}"
        if failed[kind]:
            table.add("same-work", case, RIDERS, n, f"failed: {failed[kind]}", table.delivered(label, 0, n))
            continue
        rs = runs[kind]
        rate = statistics.median(r.rate for r in rs)
        cpu_us = spread([r.cpu_s / (n - 1) for r in rs], 1e6, ".0f")
        detail = f"orders/s {spread([r.rate for r in rs], 1e-3, '.1f')}k; CPU us/order {cpu_us} "
        detail += f"(start-up included {statistics.median(r.cpu_all_s for r in rs) / n * 1e6:.0f}); "
        detail += f"total {statistics.median(r.total_s for r in rs):.2f} s"
        delivered = table.delivered(label, min(r.delivered for r in rs), n)
        table.add("same-work", case, RIDERS, n, f"{rate:,.0f} /s", delivered, "-", detail)
    for case, top, bottom, target in RATIOS:
        if failed[top] or failed[bottom]:
            table.add("same-work", case, RIDERS, n, "failed: a side failed", "-", f">= {target:.2f} NOT MET")
            continue
        pairs = list(zip(runs[top], runs[bottom], strict=True))
        ratio = statistics.median(t.rate / b.rate for t, b in pairs)
        verdict = f">= {target:.2f} {'MET' if ratio >= target else 'NOT MET'}"
        cpu = statistics.median(t.cpu_s / b.cpu_s for t, b in pairs)
        detail = f"per round: {spread([t.rate / b.rate for t, b in pairs], fmt='.3f')}; CPU per order, "
        detail += f"{top} / {bottom}: {cpu:.2f}"
        table.add("same-work", case, RIDERS, n, f"{ratio:.3f}", "-", verdict, detail)
    table.notes.append(
        f"same-work: {rounds} round{'s' * (rounds > 1)} of the three sides, interleaved; each side 1 producer + 10 "
        "riders, each its own `python SCRIPT` (through benchmarks/timed.py, which records its CPU) with output to "
        "files, completion records to a sink here. "
        "Clock: the first record at the sink -> the Nth, (N - 1) / span. CPU us/order: the 11 processes' user + system "
        "CPU over the same window / (N - 1); start-up included: process start to end / N; total: the producer started "
        "-> the Nth record. Ratios: medians of per-round ratios (min-max). Bare pyzmq does less than the first read "
        "(no validation, no flush per line, blocking send and recv): it is kept as the floor, not dropped."
    )


if __name__ == "__main__":
    sys.exit(harness.main({"samework": bench_same_work}))
