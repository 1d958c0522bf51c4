"""Windows for real: the official Windows CPython 3.13 and pyzmq's win_amd64 wheel, under Wine.

What a Windows learner runs first, both reads: the default demo, a producer and two
riders as separate processes, Ctrl-C to each script, CURVE. Not part of the README's
test command (Wine is slow to start every python.exe): CI runs it as its own step,

    bash .ci/windows-python && python -m pytest -m windows

and a machine without Wine skips it with the reason (tests/windows.py).
"""

from __future__ import annotations

import re
import signal
from collections import Counter

import pytest
from conftest import LOOPBACK_ANY_PORT, Script, Scripts, Sink, bound_endpoint
from windows import windows_python

pytestmark = [pytest.mark.windows, pytest.mark.timeout(120)]

RUN = {"first": ["run.py"], "hardened": ["-m", "hardened.run"]}
PRODUCER = {"first": ["producer.py"], "hardened": ["-m", "hardened.producer"]}
CONSUMER = {"first": ["consumer.py"], "hardened": ["-m", "hardened.consumer"]}


def windows(scripts: Scripts, *args: str) -> Script:
    return scripts(*args, python=windows_python())


def test_windows_python_is_windows(scripts: Scripts) -> None:
    script = windows(scripts, "-c", "import sys, zmq; print(sys.platform, zmq.zmq_version())")
    assert script.wait(timeout=60) == 0, script.tail()
    assert re.fullmatch(r"win32 4\.\d+\.\d+", script.stdout[-1])


@pytest.mark.parametrize("read", ["first", "hardened"])
def test_run_py_with_its_defaults_delivers_every_order_exactly_once(scripts: Scripts, read: str) -> None:
    run = windows(scripts, *RUN[read])
    assert run.wait(timeout=90) == 0, run.output[-3000:]
    assert "delivered exactly once: yes" in run.stdout
    rows = {m[1]: int(m[2]) for line in run.stdout if (m := re.match(r"(rider-\d+)\s+(\d+)\s", line))}
    assert rows == {f"rider-{n}": 5 for n in range(1, 11)}, run.output[-3000:]


@pytest.mark.parametrize("read", ["first", "hardened"])
def test_a_producer_and_two_riders_as_separate_processes(scripts: Scripts, sink: Sink, read: str) -> None:
    producer = windows(
        scripts,
        *PRODUCER[read],
        "--bind",
        LOOPBACK_ANY_PORT,
        "--orders",
        "6",
        "--interval",
        "0",
        "--wait-consumers",
        "2",
    )
    endpoint = bound_endpoint(producer)
    riders = [
        windows(
            scripts,
            *CONSUMER[read],
            "--name",
            f"rider-{n}",
            "--speed",
            "0",
            "--connect",
            endpoint,
            "--results",
            sink.endpoint,
        )
        for n in (1, 2)
    ]
    assert producer.wait(timeout=60) == 0, producer.tail()
    assert producer.stdout[-1] == "p1: sent 6 orders"
    records = sink.collect(6, timeout=60)
    assert Counter(r["consumer"] for r in records) == {"rider-1": 3, "rider-2": 3}
    for rider in riders:  # and Ctrl-C ends each with its last line
        rider.wait_for_line(r"delivered p1-\d{6}", timeout=30)
        rider.signal(signal.SIGINT)
        assert rider.wait(timeout=30) == 0, rider.tail()
        assert re.fullmatch(r"rider-\d: stopped, delivered 3 orders", rider.stdout[-1]), rider.tail()
        assert "Traceback" not in rider.output


@pytest.mark.parametrize("read", ["first", "hardened"])
def test_ctrl_c_ends_a_lone_producer_and_a_lone_rider(scripts: Scripts, read: str) -> None:
    producer = windows(scripts, *PRODUCER[read], "--bind", LOOPBACK_ANY_PORT, "--wait-consumers", "1")
    rider = windows(scripts, *CONSUMER[read], "--name", "rider-1", "--connect", "tcp://127.0.0.1:9")  # nobody there
    bound_endpoint(producer)
    rider.wait_for_line("connecting to", timeout=60)
    for script, last in ((producer, "p1: stopped, sent 0 orders"), (rider, "rider-1: stopped, delivered 0 orders")):
        script.signal(signal.SIGINT)  # Windows CPython takes it as Ctrl-C
        assert script.wait(timeout=30) == 0, script.tail()
        assert script.stdout[-1] == last
        assert "Traceback" not in script.output


@pytest.mark.parametrize("read", ["first", "hardened"])
def test_ctrl_c_ends_run_py_mid_run_and_leaves_no_process(scripts: Scripts, read: str) -> None:
    run = windows(scripts, *RUN[read], "--consumers", "3", "--orders", "60", "--speed", "1")
    run.wait_for_line(r"delivered p1-\d{6}", timeout=60)
    run.wait_for_workers(3, timeout=30)
    run.signal(signal.SIGINT)
    assert run.wait(timeout=30) == 130, run.tail()
    assert re.search(r"^run.py: interrupted, \d+ of 60 orders delivered$", "\n".join(run.stderr), re.MULTILINE)
    assert "Traceback" not in run.output
    run.assert_no_process_left(workers=3, timeout=30)


def test_hardened_run_py_with_curve_delivers_every_order(scripts: Scripts) -> None:
    run = windows(scripts, "-m", "hardened.run", "--curve", "--consumers", "3", "--orders", "12", "--speed", "0.2")
    assert run.wait(timeout=90) == 0, run.output[-3000:]
    assert "delivered exactly once: yes" in run.stdout


def test_the_wine_server_outlives_each_test(scripts: Scripts) -> None:
    """Each test kills what it started: Wine's own processes must not be among them."""
    first = windows(scripts, "-c", "print('one')")
    assert first.wait(timeout=60) == 0
    first.stop()
    second = windows(scripts, "-c", "print('two')")
    assert second.wait(timeout=60) == 0 and second.stdout == ["two"]
