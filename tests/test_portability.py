"""The pipeline on the platforms it must run on: Windows, macOS and Linux.

Windows, simulated. CI runs on Linux, so the tests marked `simulation` run the scripts
on a Linux Python made to look like Windows (tests/simulated_windows/sitecustomize.py,
loaded through PYTHONPATH by the scripts and every process they start, never by the
test process): no signal masks, no SIGKILL or process groups, os.kill() kills
outright, and multiprocessing can only spawn. What it can't show is the Windows
console itself: a Ctrl-C there reaches every process attached to the console, which the
tests stand in for by sending SIGINT to run.py, or to its whole process group.

Spawn on this platform's own Python: the start method Windows has alone, and macOS
(where the fork server is possible) uses by default.

producer.py and consumer.py start no process and never import multiprocessing, so no
start method applies to them: the simulated-Windows run of a producer and two consumers
below is what covers them, and test_producer_and_consumer_never_use_multiprocessing
shows that nothing else needs to.
"""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import SIMULATED_WINDOWS, Script, Scripts, Sink
from test_faults import check_crash_consumer_report
from test_run import check_even_spread, check_interrupted
from test_scripts import start_consumer, start_producer

simulation = pytest.mark.skipif(
    sys.platform == "win32",
    reason="simulates Windows on a POSIX system: on Windows, the rest of the suite runs on the real one",
)

# Runs as a script under the simulation; prints what it and a spawned child find.
PROBE = '''
import json, multiprocessing, os, signal, sys


def facts():
    try:
        multiprocessing.get_context("forkserver")
        forkserver = "available"
    except ValueError as exc:
        forkserver = str(exc)
    return {
        "simulated": getattr(sys.modules.get("sitecustomize"), "SIMULATED_WINDOWS", False),
        "pthread_sigmask": hasattr(signal, "pthread_sigmask"),
        "signals": sorted(n for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_")),
        "os": sorted(n for n in ("fork", "forkpty", "getloadavg", "getpgid", "killpg", "setpgrp", "setsid")
                     if hasattr(os, n)),
        "start_methods": multiprocessing.get_all_start_methods(),
        "start_method": multiprocessing.get_start_method(),
        "forkserver": forkserver,
    }


def report(pipe):
    pipe.send(facts())


def ignore_sigint_and_wait(pipe):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pipe.send("ready")
    pipe.recv()  # until killed


def killed(how):
    """Exit code of a child that ignores SIGINT after `how` was done to it (None: alive)."""
    here, there = multiprocessing.Pipe()
    child = multiprocessing.Process(target=ignore_sigint_and_wait, args=(there,))
    child.start()
    assert here.recv() == "ready"
    how(child)
    child.join(5)
    if child.exitcode is None:
        child.kill()
    return child.exitcode


if __name__ == "__main__":
    receiver, sender = multiprocessing.Pipe(duplex=False)
    grandchild = multiprocessing.Process(target=report, args=(sender,))
    grandchild.start()
    print(json.dumps({
        "child": facts(),
        "grandchild": receiver.recv(),
        "os.kill(pid, SIGINT)": killed(lambda child: os.kill(child.pid, signal.SIGINT)),
        "Process.kill()": killed(lambda child: child.kill()),
    }))
    grandchild.join()
'''

WINDOWS = {
    "simulated": True,
    "pthread_sigmask": False,
    "signals": ["SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM"],  # Windows also has SIGBREAK
    "os": [],
    "start_methods": ["spawn"],
    "start_method": "spawn",
    "forkserver": "cannot find context for 'forkserver'",
}


@simulation
def test_the_simulation_holds_in_the_scripts_and_their_spawned_children(scripts: Scripts, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    child = scripts(str(probe), simulate_windows=True)
    assert child.wait(timeout=20) == 0, child.output
    facts = json.loads(child.stdout[-1])
    assert facts["child"] == WINDOWS
    assert facts["grandchild"] == WINDOWS  # spawned: PYTHONPATH is inherited
    # As TerminateProcess: killed outright (SIGKILL underneath), a handler or SIG_IGN notwithstanding.
    assert facts["os.kill(pid, SIGINT)"] == -9
    assert facts["Process.kill()"] == -9
    # And not in the test process, which stays a real POSIX system.
    assert str(SIMULATED_WINDOWS) not in sys.path
    assert not getattr(sys.modules.get("sitecustomize"), "SIMULATED_WINDOWS", False)
    assert hasattr(signal, "pthread_sigmask") or sys.platform != "linux"


def assert_spawned(run: Script) -> None:
    """Every worker that run.py started was spawned, a fresh interpreter: no fork server."""
    assert run.workers_seen
    assert all("multiprocessing.spawn" in run.seen[pid][0] for pid in run.workers_seen)
    assert not any("forkserver" in cmdline for cmdline, _ in run.seen.values())


@simulation
def test_run_py_on_windows(scripts: Scripts) -> None:
    run = scripts("-m", "hardened.run", "--consumers", "4", "--orders", "20", "--speed", "0.05", simulate_windows=True)
    run.wait_for_workers(5)
    check_even_spread(run, orders=20, consumers=4)
    assert_spawned(run)


@simulation
@pytest.mark.parametrize("to_group", [False, True], ids=["to-run.py", "to-every-process"])
def test_ctrl_c_stops_run_py_on_windows(scripts: Scripts, to_group: bool) -> None:
    """A Windows console's Ctrl-C, mid-run: to run.py alone, or, as the console does, to
    every process attached (its children ignore it; run.py stops them)."""
    run = scripts("-m", "hardened.run", "--consumers", "4", "--orders", "200", "--speed", "1", simulate_windows=True)
    run.wait_for_workers(5)
    run.wait_for_line(r"delivered p1-")
    if to_group:
        run.signal_group(signal.SIGINT)
    else:
        run.signal(signal.SIGINT)
    check_interrupted(run, orders=200, workers=5)


@simulation
def test_run_py_crash_consumer_on_windows(scripts: Scripts) -> None:
    """--crash-consumer kills rider-1 with Process.kill(): TerminateProcess on Windows."""
    run = scripts(
        "-m",
        "hardened.run",
        "--crash-consumer",
        "--consumers",
        "4",
        "--orders",
        "40",
        "--speed",
        "0.05",
        simulate_windows=True,
    )
    run.wait_for_workers(5)
    check_crash_consumer_report(run)


@simulation
def test_producer_and_two_consumers_on_windows(scripts: Scripts, sink: Sink) -> None:
    producer, endpoint = start_producer(
        scripts, "--orders", "30", "--interval", "0", "--wait-consumers", "2", simulate_windows=True
    )
    riders = {name: start_consumer(scripts, name, [endpoint], sink, simulate_windows=True) for name in ("r1", "r2")}
    assert producer.wait() == 0, producer.output
    records = sink.collect(30)
    counts = Counter(r["consumer"] for r in records)
    assert counts == {"r1": 15, "r2": 15}  # --wait-consumers 2: an even round robin
    for name, rider in riders.items():
        rider.signal(signal.SIGINT)  # the console's Ctrl-C
        assert rider.wait(timeout=2) == 0
        assert rider.stdout[-1] == f"{name}: stopped, delivered {counts[name]} orders"
        assert "Traceback" not in rider.output
    # Every order exactly once, counted again now that no rider can add one.
    assert sorted(r["order_id"] for r in sink.collect(0)) == [f"p1-{n:06d}" for n in range(1, 31)]


def test_run_py_with_spawn_on_this_platform(scripts: Scripts) -> None:
    """--start-method spawn on the real platform (no simulation), as on Windows and macOS."""
    run = scripts(
        "-m", "hardened.run", "--start-method", "spawn", "--consumers", "4", "--orders", "20", "--speed", "0.05"
    )
    run.wait_for_workers(5)
    check_even_spread(run, orders=20, consumers=4)
    assert_spawned(run)


def test_producer_and_consumer_never_use_multiprocessing(scripts: Scripts) -> None:
    """So the start method is nothing to them: they run the same under spawn-only Windows
    as anywhere (test_producer_and_two_consumers_on_windows). Python lists every module
    they import (-X importtime, on stderr); each ends by itself, without a signal."""
    producer = scripts("-X", "importtime", "-m", "hardened.producer", "--bind", "tcp://127.0.0.1:0", "--orders", "4",
                       "--interval", "0", "--wait-consumers", "1", "--quiet")  # fmt: skip
    endpoint = producer.wait_for_line(r"bound (tcp://\S+?),").group(1)
    consumer = scripts(
        "-X", "importtime", "-m", "hardened.consumer", "--connect", endpoint, "--orders", "4", "--speed", "0"
    )
    for script in (producer, consumer):
        assert script.wait() == 0, script.output
        imported = [line.split("|")[-1].strip() for line in script.stderr if line.startswith("import time:")]
        assert "zmq" in imported  # the list is there
        assert [name for name in imported if name.startswith("multiprocessing")] == []
