"""Shared test helpers: run the scripts as a person would, and wait on conditions.

Every wait here is "until this is true, or fail after a deadline": no sleep is used to
synchronise anything.

Portability: the helpers work on Windows, macOS and Linux. A script's processes are
found by a tag in their environment (see Script.processes), not by process group or
/proc. Tests that need POSIX signals (SIGINT or SIGTERM sent to a pid or a process
group, a SIGINT inherited as ignored) carry the posix_signals mark and are skipped on
Windows, where sending a signal to a process is TerminateProcess, not a Ctrl-C.

Type checks, per platform, from the project's folder (MYPYPATH: the tests import
conftest and each other as top-level modules):

    MYPYPATH=tests mypy --platform linux tests      # and win32, darwin
"""

from __future__ import annotations

import compileall
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil
import pytest
import zmq
import zmq.auth

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hardened.heartbeats import read_without_limit  # noqa: E402  (the repository's: needs the entry above)

LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"

# Every process a Script starts, and everything that process starts in turn (spawned
# children, the fork server and its children, the resource tracker), inherits this
# variable with the Script's own value: that is how a test finds them on any platform.
TAG_VARIABLE = "PIPELINE_TEST_TAG"

# A folder whose sitecustomize.py makes the Python started with it on PYTHONPATH look
# like Windows (see tests/test_portability.py).
SIMULATED_WINDOWS = Path(__file__).resolve().parent / "simulated_windows"

posix_signals = pytest.mark.skipif(
    sys.platform == "win32",
    reason="needs POSIX signals (SIGINT/SIGTERM to a pid or a process group, SIGINT inherited as ignored); "
    "on Windows send_signal() and os.kill() are TerminateProcess, not a Ctrl-C",
)

# A shell that starts a job in the background without job control does this: the job
# inherits SIGINT as ignored (through exec). POSIX only; a trampoline rather than
# preexec_fn, which is not safe in a process with threads (the test's readers, zmq's).
IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--scripts-dir",
        default=str(ROOT),
        help="run the scripts (python -m hardened.run, hardened.producer, hardened.consumer) from this folder, "
        "e.g. an older checkout made with git worktree, to see which tests its scripts fail (default: this checkout). "
        "Write it --scripts-dir=DIR: with a space, pytest takes DIR for a folder of tests too",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Compile the scripts' modules once, before any test starts them. The suite starts
    hundreds of Python processes, and where PYTHONDONTWRITEBYTECODE is set (as on this
    project's machines) each would compile them again: 3-5 s of the suite's 40 on 2 cores.
    Python still reads a .pyc that is there, and checks it against its source."""
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller has done it
    scripts = Path(config.getoption("--scripts-dir"))
    compileall.compile_dir(scripts / "hardened", quiet=2)
    for script in ("producer.py", "consumer.py", "run.py"):  # imported by run.py's children
        if (scripts / script).exists():
            compileall.compile_file(scripts / script, quiet=2)


# The longest tests of the README's suite: mostly waiting (a rider paused 10 s, riders
# starting 5 s late, twelve early Ctrl-Cs), so they are best started first, side by side.
LONGEST = (
    "rider_paused_for_10_s",
    "starting_5_s_late",
    "early_ctrl_c_to_the_whole_group_ends_run_py",
    "run_py_with_its_defaults_delivers",
    "test_arbitrary_json",
    "far_behind_stays_connected",
    "silent_waits_are_said_once",
    "every_order[scripts]",  # the quick benchmark's halves (CI's own step): apart too
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pytest-xdist hands each worker a run of consecutive tests to start with. The
    longest tests go a sixteenth of the list apart, so that they start early on
    different workers instead of ending the suite late, one after the other. Order
    changes nothing else."""
    longest = [item for item in items if any(name in item.nodeid for name in LONGEST)]
    for item in longest:
        items.remove(item)
    run = max(1, len(items) // 16)
    for index, item in enumerate(longest):
        items.insert(min(index * run, len(items)), item)


def wait_until(
    condition: Callable[[], T | None], timeout: float = 10.0, what: str | Callable[[], str] = "condition"
) -> T:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`.
    `what` says what was awaited: a string, or a function that says it at that moment."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(0.01)  # a polling interval, not a synchronisation


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes (zombies excluded) whose environment carries TAG_VARIABLE=tag.

    psutil reads another process's environment on Linux, macOS and Windows alike, for
    processes of the same user; those it may not read, or that vanish meanwhile, are
    not ours anyway."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(TAG_VARIABLE) == tag and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def parent_pid(process: psutil.Process) -> int | None:
    try:
        return int(process.ppid())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class Script:
    """One of the project's scripts running in its own process, its output collected
    line by line by reader threads so the test can wait for a line to appear.

    simulate_windows: run it on the simulated Windows (tests/simulated_windows), it and
    every process it starts. ignore_sigint (POSIX): it inherits SIGINT as ignored."""

    def __init__(
        self,
        *args: str,
        ignore_sigint: bool = False,
        simulate_windows: bool = False,
        cwd: Path = ROOT,
        python: tuple[list[str], dict[str, str]] | None = None,
    ) -> None:
        """python: another Python to run it with, and what its environment needs
        (tests/windows.py: the Windows CPython under Wine)."""
        self.args = args
        self.tag = uuid.uuid4().hex
        interpreter, extra_env = python or ([sys.executable], {})
        env = {**os.environ, "PYTHONUNBUFFERED": "1", TAG_VARIABLE: self.tag, **extra_env}
        if simulate_windows:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SIMULATED_WINDOWS), env.get("PYTHONPATH")]))
        command = [*interpreter, *args]
        if ignore_sigint:
            if sys.platform == "win32":
                raise NotImplementedError("no inherited signal dispositions on Windows: mark the test posix_signals")
            command = [sys.executable, "-c", IGNORING_SIGINT, *args]
        # Its own process group (POSIX: session): signals for the group (test_faults)
        # reach it and its children only, and never the test process.
        group: dict[str, Any]
        if sys.platform == "win32":
            group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        else:
            group = {"start_new_session": True}
        # stdin: nothing to read (Windows CPython under Wine must not inherit a file there).
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **group,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        # What processes() has seen of its descendants: pid -> (command line, parent pid).
        self.seen: dict[int, tuple[str, int | None]] = {}
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_line(self, pattern: str, timeout: float = 10.0, stream: str = "stdout") -> re.Match[str]:
        lines = self.stdout if stream == "stdout" else self.stderr
        regex = re.compile(pattern)

        def find() -> re.Match[str] | None:
            return next((m for line in list(lines) if (m := regex.search(line))), None)

        return wait_until(find, timeout, lambda: f"{pattern!r} on {stream} of {list(self.args)}; {self.tail()}")

    def signal(self, signum: int = signal.SIGINT) -> None:
        """POSIX: send it a signal (tests doing this are marked posix_signals)."""
        self.proc.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """POSIX: signal its whole process group, children included, as a terminal's
        Ctrl-C does."""
        if sys.platform == "win32":
            raise NotImplementedError("process groups take no signals on Windows: mark the test posix_signals")
        os.killpg(self.pid, signum)

    def kill(self) -> None:
        """Kill it outright, no chance to clean up: SIGKILL, or TerminateProcess."""
        self.proc.kill()

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for exit, and for the readers to drain the output. Past the timeout,
        the test fails with what the process printed so far."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{list(self.args)} still running after {timeout:g} s; {self.tail()}")
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> None:
        """Kill it and every process it started that is still there; read the rest of its
        output (children left alive would keep the pipes open)."""
        if self.proc.poll() is None:
            self.proc.kill()
        for process in self.processes():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                continue
        self.wait()

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)

    def tail(self) -> str:
        """Its last lines, for a failure message."""
        return f"stdout ends {self.stdout[-5:]}, stderr ends {self.stderr[-5:]}"

    # --- its processes, found by tag ---

    def processes(self) -> list[psutil.Process]:
        """It and every live process it started, directly or not. Each one goes into
        `seen` with its command line (the latest: one seen between its fork and its exec
        still shows its parent's) and its parent (the first: once the parent has exited,
        the process gets another)."""
        found = tagged_processes(self.tag)
        for process in found:
            if process.pid != self.pid:
                cmdline, ppid = self.seen.get(process.pid, ("", None))
                ppid = parent_pid(process) if ppid is None else ppid
                self.seen[process.pid] = (command_line(process) or cmdline, ppid)
        return found

    def is_worker(self, pid: int) -> bool:
        """Whether a process it started (and processes() saw) runs a multiprocessing
        Process: for run.py, a producer or a rider. Told by command line, which works
        whoever the parent is (on Windows, a virtualenv's python.exe is a launcher whose
        child runs the script): a spawned worker runs multiprocessing.spawn; a worker forked
        by the fork server shares the fork server's command line, and has it as its parent.
        Not workers: the script itself, the fork server, the resource tracker."""
        cmdline, ppid = self.seen[pid]
        if "multiprocessing.spawn" in cmdline:
            return True
        parent_cmdline = self.seen.get(ppid, ("", None))[0] if ppid is not None else ""
        return "multiprocessing.forkserver" in cmdline and "multiprocessing.forkserver" in parent_cmdline

    def workers(self) -> list[psutil.Process]:
        """Its live workers (see is_worker)."""
        return [process for process in self.processes() if process.pid != self.pid and self.is_worker(process.pid)]

    @property
    def workers_seen(self) -> list[int]:
        """Every worker that processes() saw, alive or not by now."""
        return [pid for pid in self.seen if self.is_worker(pid)]

    def wait_for_workers(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` of its workers have been seen running (not necessarily at
        once: run.py's producer may be done before the last rider has started)."""

        def seen_enough() -> bool:
            if self.proc.poll() is not None:
                self.wait(timeout=2)  # its last lines
                code = self.proc.returncode
                pytest.fail(f"{list(self.args)} exited ({code}) having shown {self.seen}; {self.tail()}")
            self.workers()
            return len(self.workers_seen) >= count

        wait_until(seen_enough, timeout, lambda: f"{count} workers of {list(self.args)} (seen {self.seen})")

    def watch(self, seconds: float) -> None:
        """Let it run for `seconds` (less if it exits first), looking at its processes
        meanwhile so that `seen` has the ones that came and went."""
        deadline = time.monotonic() + seconds
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.processes()
            time.sleep(0.01)  # a polling interval: the moment itself is what the test chose

    def assert_no_process_left(self, workers: int, timeout: float = 5.0) -> None:
        """It has exited, and so has everything it started (the fork server and the
        resource tracker follow within moments). Not vacuous: at least `workers` of its
        workers must have been seen while it ran (wait_for_workers, watch)."""
        assert self.proc.poll() is not None, f"{list(self.args)} is still running"
        assert len(self.workers_seen) >= workers, f"saw {len(self.workers_seen)} of {workers} workers: {self.seen}"
        wait_until(lambda: not self.processes(), timeout, lambda: f"no process of {list(self.args)} left: {self.seen}")


def our_frames(traceback: str) -> list[str]:
    """The source lines of this project's files in a traceback, except a script's first
    statement (`from hardened import stopping`) and whatever runs under it (the package's
    and stopping.py's module bodies, a class body in them): a signal that lands there came
    before the script could catch it, while Python was still starting it. The project's
    files: those in ROOT and in ROOT/hardened."""
    ours = []
    for chained in traceback.split("Traceback (most recent call last):"):
        importing = False  # below the first statement: the import that installs the handler
        for path, line, _ in re.findall(r'File "([^"]+)", line (\d+), in (\S+)', chained):
            file = Path(path)
            if file.parent not in (ROOT, ROOT / "hardened"):
                continue
            text = file.read_text().splitlines()[int(line) - 1]
            if text == "from hardened import stopping":
                importing = True
            elif not importing:
                ours.append(f"{file.name}:{line}: {text.strip()}")
    return ours


def signal_while_python_starts(code: int, output: str, signum: int = signal.SIGINT) -> bool:
    """Whether a stop signal ended a script before its first statement, while Python
    itself was starting it. Until a handler is in (Python's own for SIGINT, early in its
    start-up; ours, at the script's first statement, for SIGTERM) the default action kills
    it without a word: death by that signal, no output (seen at 0.36 s on a machine loaded
    past its cores). A SIGINT that comes later, in site.py, in the first import or before
    any frame, raises KeyboardInterrupt: Python exits 1, or dies by SIGINT as it does for
    any KeyboardInterrupt that ends a script. Beyond any script: from its first statement
    on a stop signal only sets a flag, and no script of ours dies by one."""
    if our_frames(output):
        return False
    killed_silently = code == -signum and not output.strip()
    return killed_silently or (signum == signal.SIGINT and code in (1, -signum) and "KeyboardInterrupt" in output)


Scripts = Callable[..., Script]  # the type of the scripts fixture


@pytest.fixture
def scripts(request: pytest.FixtureRequest) -> Iterator[Scripts]:
    """Start scripts with scripts("-m", "hardened.producer", "--orders", "3"); all are killed at the
    end, and every process they started."""
    started: list[Script] = []
    cwd = Path(request.config.getoption("--scripts-dir"))

    def start(*args: str, **kwargs: Any) -> Script:
        script = Script(*args, cwd=cwd, **kwargs)
        started.append(script)
        return script

    yield start
    for script in started:
        script.stop()


def bound_endpoint(script: Script) -> str:
    """The endpoint a producer started with --bind tcp://127.0.0.1:0 actually bound."""
    return script.wait_for_line(r"bound (tcp://\S+?)(,|$)").group(1)


@pytest.fixture
def unused_endpoint() -> Iterator[str]:
    """An endpoint that nobody listens on, and nobody else can take while the test runs:
    a plain socket holds the port, bound but not listening (and without SO_REUSEADDR,
    so that no ZeroMQ socket binds it beside us). A port that was merely free a moment
    ago may be bound by a test running in parallel."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{holder.getsockname()[1]}"


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context: zmq.Context = zmq.Context()
    yield context
    context.destroy(linger=0)


class Sink:
    """A results sink like run.py's: a bound PULL collecting completion records."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.socket = ctx.socket(zmq.PULL)
        read_without_limit(self.socket)  # as run.py's sink: riders send heartbeats
        self.socket.bind(LOOPBACK_ANY_PORT)
        self.endpoint = self.socket.last_endpoint.decode()
        self.records: list[dict] = []

    def collect(self, count: int, timeout: float = 20.0) -> list[dict]:
        def have_enough() -> bool:
            while self.socket.poll(10):
                self.records.append(self.socket.recv_json())
            return len(self.records) >= count

        wait_until(have_enough, timeout, lambda: f"{count} completion records (got {len(self.records)})")
        return self.records


@pytest.fixture
def sink(ctx: zmq.Context) -> Sink:
    return Sink(ctx)


def make_certificates(directory: str | Path, name: str) -> tuple[str, str]:
    """(NAME.key, NAME.key_secret) in directory, made as the README says: the secret
    one readable by its owner alone (curve.warn_if_readable)."""
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return public, secret
