"""Memory as the work grows: run.py's peak memory for ten to a thousand times more orders.

Why: run.py is the pipeline's coordinator, and the one process that sees every order.
What it keeps to account for them decides how big a run it can take: memory that grows
with the number of orders runs out on a long enough run, however fast the pipeline.
Target: run.py's peak at most 80 MB at 100,000 orders and at 1,000,000.

    python -m hardened.run --speed 0 --orders N --consumers 10 --quiet  > file 2> file

at N = 10,000, 100,000 and 1,000,000 (--quick: 2,000), output to a file as a user would
redirect it. psutil samples, every 20 ms, the resident set (RSS; on Windows the working
set) of run.py's own process and of each of its workers: the row gives run.py's peak,
the detail the largest rider's and the producer's (the worker with a listening socket).
A peak that lasts less than 20 ms can be missed. MB: 2**20 bytes. Wall: run.py started
-> exited.

    python benchmarks/growth.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness  # first: it puts the repository on sys.path (for run, below)
from harness import REPO, RIDERS, Table, progress

import psutil

SAMPLE_S = 0.02
MB = 2**20
TARGET_MB, TARGET_FROM = 80.0, 100_000  # the target applies from this many orders up
TOTAL_LINE = re.compile(r"total orders: (\d+) \(.*\), delivered (\d+)")


@dataclass
class Watched:
    process: psutil.Process
    cmdline: str
    parent: int
    peak: int = 0


@dataclass
class Sampler:
    """The peak RSS of a process and of every process it starts (found by refresh())."""

    root: psutil.Process
    seen: dict[int, Watched] = field(default_factory=dict)
    producer: int | None = None  # the worker that listens: the producer binds, riders connect

    def refresh(self) -> None:
        """Look for processes not seen yet, and read the command lines again: one read between
        its fork and its exec shows its parent's (the fork server's would show run.py's)."""
        self.seen.setdefault(self.root.pid, Watched(self.root, "", 0))
        with contextlib.suppress(psutil.Error):
            for process in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    if process.pid not in self.seen:
                        self.seen[process.pid] = Watched(process, "", process.ppid())
                    self.seen[process.pid].cmdline = " ".join(process.cmdline())
                    self.seen[process.pid].peak = max(self.seen[process.pid].peak, process.memory_info().rss)
        workers = self.workers()
        if self.producer is None and len(workers) > 1:  # riders start once the producer has bound
            for pid in workers:
                with contextlib.suppress(psutil.Error):
                    if any(c.status == psutil.CONN_LISTEN for c in self.seen[pid].process.net_connections("tcp")):
                        self.producer = pid

    def sample(self) -> None:
        for watched in self.seen.values():
            with contextlib.suppress(psutil.Error):
                watched.peak = max(watched.peak, watched.process.memory_info().rss)

    def workers(self) -> list[int]:
        """The multiprocessing workers (producer and riders): spawned ones run multiprocessing.spawn;
        forked ones share the fork server's command line, and have it for their parent."""
        server = "multiprocessing.forkserver"
        return [
            pid
            for pid, w in self.seen.items()
            if "multiprocessing.spawn" in w.cmdline
            or (server in w.cmdline and server in self.seen.get(w.parent, Watched(self.root, "", 0)).cmdline)
        ]

    def runpy(self) -> Watched:
        """run.py's process: the one started, or (a Windows virtualenv's launcher) its child running run.py."""
        return next(
            (
                w
                for w in self.seen.values()
                if w.parent == self.root.pid and "hardened.run" in w.cmdline and "multiprocessing" not in w.cmdline
            ),
            self.seen[self.root.pid],
        )


def measure(orders: int, folder: Path, timeout: float) -> dict:
    """run.py's run: wall, peaks (MB), workers seen, delivered, exactly once; and "error" if it failed."""
    command = [sys.executable, "-m", "hardened.run", "--speed", "0", "--orders", str(orders)]
    command += ["--consumers", str(RIDERS), "--quiet"]
    out_path = folder / f"run-{orders}.out"
    with open(out_path, "wb") as out, open(folder / f"run-{orders}.err", "wb") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err)
    sampler, ticks, error = Sampler(psutil.Process(proc.pid)), 0, ""
    try:
        while proc.poll() is None:
            # Every sample until all its workers are there (a short run's producer is soon gone), then now and then.
            if len(sampler.workers()) < RIDERS + 1 or not ticks % 25:
                sampler.refresh()
            sampler.sample()
            ticks += 1
            if time.perf_counter() - began > timeout:
                error = f"timed out after {timeout:g} s"
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(SAMPLE_S)
    finally:
        if proc.poll() is None:
            proc.kill()  # its children stop by themselves: they watch a pipe it holds
            proc.wait()
    wall = time.perf_counter() - began
    with open(out_path, "rb") as file:  # the report is at the end; the riders' lines may be a million
        file.seek(max(0, out_path.stat().st_size - 65536))
        tail = file.read().decode(errors="replace")
    total = TOTAL_LINE.search(tail)
    if not error and (proc.returncode != 0 or not total):
        said = (folder / f"run-{orders}.err").read_text(errors="replace").strip().splitlines()
        why = f": {said[-1][:100]}" if said else "" if total else ", no 'total orders' line"
        error = f"exit status {proc.returncode}{why}"
    workers = sampler.workers()
    riders = [sampler.seen[pid].peak for pid in workers if pid != sampler.producer]
    result = {
        "wall": wall,
        "peak": sampler.runpy().peak / MB,
        "rider": max(riders, default=0) / MB,
        "producer": sampler.seen[sampler.producer].peak / MB if sampler.producer is not None else None,
        "workers": len(workers),
        "delivered": int(total.group(2)) if total else 0,
        "exactly_once": "delivered exactly once: yes" in tail,
    }
    return result | ({"error": error} if error else {})


def bench_growth(cfg: argparse.Namespace, table: Table) -> None:
    sizes = (2_000,) if cfg.quick else (10_000, 100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-growth-", ignore_cleanup_errors=True) as folder:
        for orders in sizes:
            progress(f"growth: run.py --speed 0 --orders {orders} --quiet, sampling its memory")
            result = measure(orders, Path(folder), timeout=60 + orders / 2000)
            case = "run.py --speed 0 --orders N --quiet > file: run.py peak RSS"
            goal = f"<= {TARGET_MB:.0f} MB" if orders >= TARGET_FROM else ""
            label = f"growth {orders}"
            if "error" in result:
                cell, target = table.delivered(label, result["delivered"], orders), f"{goal} NOT MET" if goal else "-"
                detail = f"until then: wall {result['wall']:.2f} s; run.py peak {result['peak']:.1f} MB"
                table.add("growth", case, RIDERS, orders, f"failed: {result['error']}", cell, target, detail)
                continue
            if not result["exactly_once"]:
                table.lost.append(f"{label}: not delivered exactly once")
            target = f"{goal} {'met' if result['peak'] <= TARGET_MB else 'NOT MET'}" if goal else "-"
            if result["producer"] is None:  # not told apart from the riders
                workers = f"largest of {result['workers']} workers {result['rider']:.1f} MB"
            else:
                workers = f"largest of {result['workers'] - 1} riders {result['rider']:.1f} MB; "
                workers += f"producer {result['producer']:.1f} MB"
            once = "yes" if result["exactly_once"] else "NO"
            detail = f"wall {result['wall']:.2f} s; {workers}; exactly once: {once}"
            delivered = table.delivered(label, result["delivered"], orders)
            table.add("growth", case, RIDERS, orders, f"{result['peak']:.1f} MB", delivered, target, detail)
    note = "growth: peak RSS (Windows: working set), sampled every 20 ms with psutil, of run.py's own process; the "
    note += "detail has the largest rider's and the producer's. Wall: run.py started -> exited."
    table.notes.append(note)


if __name__ == "__main__":
    sys.exit(harness.main({"growth": bench_growth}))
