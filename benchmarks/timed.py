"""Run a Python script as `python SCRIPT ARG...` would, and record the CPU time it uses.

Why: same_work.py compares the CPU that two sets of processes spend per order, on
every platform. A process's own time.process_time() is the portable and exact way to
know it: psutil cannot read a process that has exited (on macOS, not even before it is
reaped), and on Windows os.times() has no children's times for the parent to read.
process_time() rather than os.times(): on Linux and macOS it counts in nanoseconds,
not in 10 ms clock ticks.

    python benchmarks/timed.py TIMES_FILE SCRIPT [ARG...]
    python benchmarks/timed.py TIMES_FILE -m MODULE [ARG...]

runs SCRIPT as its __main__ (its folder first on sys.path, its name in sys.argv[0]), or
MODULE as `python -m MODULE` does (the current folder first on sys.path), and writes to
TIMES_FILE, as JSON, this process's user + system CPU seconds:

- "mark": when the first byte arrives on stdin (same_work.py sends one when its clock
  starts); null if none came before the script ended;
- "end": when stdin reaches end of file (same_work.py closes it when its clock stops),
  or when the script ends, whichever comes first.

A process whose stdin has closed exits GRACE_S later if it has not ended by then: so the
script stops even if the parent that started it died without stopping it. Only the
standard library is imported here: the script's own imports are all it makes.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time

GRACE_S = 3.0  # stdin closed: how long the script may still run (its parent stops it sooner)


def cpu_s() -> float:
    return time.process_time()  # user + system, this process's threads all (ZeroMQ's I/O thread too)


class Times:
    """The two readings, written to `path` (through a temporary file, so never half-written)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mark: float | None = None
        self.end: float | None = None
        self.lock = threading.Lock()

    def take_mark(self) -> None:
        with self.lock:
            if self.end is None:
                self.mark = cpu_s()

    def take_end(self) -> None:
        with self.lock:
            if self.end is not None:
                return
            self.end = cpu_s()
            temporary = f"{self.path}.tmp"
            with open(temporary, "w") as file:
                json.dump({"mark": self.mark, "end": self.end}, file)
            os.replace(temporary, self.path)


def watch_stdin(times: Times) -> None:
    """A byte: the mark; end of file: the end, then at most GRACE_S more for the script."""
    try:
        if os.read(0, 1):
            times.take_mark()
            while os.read(0, 4096):
                pass
    except OSError:
        pass
    times.take_end()
    time.sleep(GRACE_S)
    os._exit(1)  # still here: nobody stopped the script


def main() -> None:
    times_file, script, *args = sys.argv[1:]
    times = Times(times_file)
    threading.Thread(target=watch_stdin, args=(times,), name="timed-stdin", daemon=True).start()
    try:
        if script == "-m":
            module, *args = args
            sys.argv = [module, *args]  # run_module() puts the module's file in sys.argv[0]
            sys.path[0] = os.getcwd()
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [script, *args]
            sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name="__main__")
    finally:
        times.take_end()


if __name__ == "__main__":
    main()
