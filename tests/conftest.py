"""Shared test helpers: run the scripts as a person would, and wait on conditions.

Every wait here is "until this is true, or fail after a deadline": no sleep is used to
synchronise anything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)  # a polling interval, not a synchronisation


class Script:
    """One of the project's scripts running in its own process, its output collected
    line by line by reader threads so the test can wait for a line to appear."""

    def __init__(self, *args: str, ignore_sigint: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A shell that starts a job in the background without job control does this:
        # the child inherits SIGINT as ignored. Our scripts must still stop on it.
        preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, so the test can find its children
            preexec_fn=preexec,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_line(self, pattern: str, timeout: float = 10.0, stream: str = "stdout") -> re.Match:
        lines = self.stdout if stream == "stdout" else self.stderr
        regex = re.compile(pattern)

        def find() -> re.Match | None:
            return next((m for line in list(lines) if (m := regex.search(line))), None)

        return wait_until(find, timeout, f"{pattern!r} on {stream} of {self.proc.args[1:]}; got {lines[-5:]}")

    def signal(self, signum: int = signal.SIGINT) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for exit, and for the readers to drain the output."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)


@pytest.fixture
def scripts() -> Iterator[Callable[..., Script]]:
    """Start scripts with scripts("producer.py", "--orders", "3"); all are killed at the end."""
    started: list[Script] = []

    def start(*args: str, **kwargs) -> Script:
        script = Script(*args, **kwargs)
        started.append(script)
        return script

    yield start
    for script in started:
        script.stop()
        for pid in group_members(script.pid):
            os.kill(pid, signal.SIGKILL)


def group_members(pgid: int) -> list[int]:
    """Live processes in a process group (read from /proc: Linux only)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def bound_endpoint(script: Script) -> str:
    """The endpoint a producer started with --bind tcp://127.0.0.1:0 actually bound."""
    return script.wait_for_line(r"bound (tcp://\S+?)(,|$)").group(1)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class Sink:
    """A results sink like run.py's: a bound PULL collecting completion records."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.socket = ctx.socket(zmq.PULL)
        self.socket.bind(LOOPBACK_ANY_PORT)
        self.endpoint = self.socket.last_endpoint.decode()
        self.records: list[dict] = []

    def collect(self, count: int, timeout: float = 20.0) -> list[dict]:
        def have_enough() -> bool:
            while self.socket.poll(10):
                self.records.append(self.socket.recv_json())
            return len(self.records) >= count

        wait_until(have_enough, timeout, f"{count} completion records (got {len(self.records)})")
        return self.records


@pytest.fixture
def sink(ctx: zmq.Context) -> Sink:
    return Sink(ctx)
