"""Windows for real: the official Windows CPython 3.13 and pyzmq's win_amd64 wheel, under Wine.

What a Windows learner runs first, both reads: the default demo, a producer and two
riders as separate processes, Ctrl-C to each script, CURVE. Not part of the README's
test command (Wine is slow to start every python.exe): CI runs it as its own step,

    bash .ci/windows-python && python -m pytest -m windows

and a machine without Wine skips it with the reason (tests/windows.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import psutil
import pytest
from conftest import (
    LOOPBACK_ANY_PORT,
    TAG_VARIABLE,
    Script,
    Scripts,
    Sink,
    bound_endpoint,
    tagged_processes,
    wait_until,
)
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


def test_the_live_view_on_a_windows_console_fits_and_leaves_no_stale_line(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """run.py in a real terminal of 100x30 (a tmux pane), on Wine's Windows console: what a
    person sees, scrollback included. Wine's console takes ENABLE_VIRTUAL_TERMINAL_PROCESSING
    and prints the sequences as text anyway, so the view must notice and show the plain
    lines; a Windows console that understands them gets the bars. Either way: no line
    reaches the last column (a Windows console wraps there), no bar is wrapped, the report
    comes once at the end with no frame or stale line after it, and the cursor is shown,
    at the start of a fresh line."""
    tmux = shutil.which("tmux")
    if not tmux:
        pytest.skip("no tmux here: the test needs a terminal of a known size (apt-get install tmux)")
    interpreter, wine_env = windows_python()  # first: Wine's own services start untagged, outside this test
    columns, rows = 100, 30
    tag = uuid.uuid4().hex  # what the tmux server and everything in its pane carry, to be killed at the end
    env = {**os.environ, **wine_env, TAG_VARIABLE: tag, "TERM": "xterm-256color"}
    env.pop("TMUX", None)  # a test run from inside tmux starts its own server all the same
    config = tmp_path / "tmux.conf"
    config.write_text("set -g status off\nset -g history-limit 2000\n")  # all rows for the pane
    status = tmp_path / "status"
    run = [*interpreter, "-m", "hardened.run", "--consumers", "4", "--orders", "12", "--speed", "0.3"]
    # END goes where run.py leaves the cursor; the pane stays (sleep) for the capture.
    shell = f"{shlex.join(run)}; echo $? > {shlex.quote(str(status))}; printf END; exec sleep 300"
    server = [tmux, "-L", f"pipeline-test-{tag[:12]}", "-f", str(config)]
    cwd = request.config.getoption("--scripts-dir")
    try:
        subprocess.run(
            [*server, "new-session", "-d", "-x", str(columns), "-y", str(rows), "-c", cwd, "sh", "-c", shell],
            env=env,
            check=True,
            timeout=30,
        )
        started = time.monotonic()
        wait_until(lambda: status.exists() and status.read_text().strip(), timeout=90, what="run.py to end")
        screen = ""

        def ended() -> bool:  # END is out once printf has run: the screen is the last one
            nonlocal screen
            screen = subprocess.run(
                [*server, "capture-pane", "-p", "-S", "-", "-E", "-"], capture_output=True, text=True, check=True
            ).stdout
            return screen.rstrip().endswith("END")

        wait_until(ended, timeout=10, what=lambda: f"END at the end of the pane:\n{screen}")
        cursor = subprocess.run(
            [*server, "display-message", "-p", "#{cursor_x} #{cursor_flag}"], capture_output=True, text=True
        ).stdout.split()
        took = time.monotonic() - started
    finally:
        subprocess.run([*server, "kill-server"], env=env, capture_output=True, timeout=30)
        for process in tagged_processes(tag):  # anything of the run that outlived its terminal
            try:
                process.kill()
            except psutil.NoSuchProcess:
                continue

    lines = screen.rstrip().split("\n")
    shown = "\n".join(lines)
    assert status.read_text().strip() == "0", shown
    assert lines[-1] == "END", f"run.py left the cursor mid-line:\n{shown}"
    assert cursor == ["3", "1"], f"cursor column and shown flag {cursor}"  # after END, and visible
    for line in lines:
        assert len(line) < columns, f"a line reaches the last column, where a Windows console wraps: {line!r}"
        assert not re.search(r"\x1b|\[(\?25[hl]|\d*[AJK])", line), f"an escape sequence printed as text: {line!r}"
        if "#" in line:  # a live bar (name, count, bar) or the report's (name, count, busy s, bar), whole
            assert re.fullmatch(r"rider-\d+ +\d+ +(\d+\.\d\d +)?#*", line), f"a wrapped or stale bar: {line!r}"
    header = [i for i, line in enumerate(lines) if re.fullmatch(r"rider +orders +busy s", line)]
    assert len(header) == 1, shown
    report = lines[header[0] :]
    assert report[-2].startswith("wall time: "), shown  # then END: the report is the last thing
    assert not any(re.match(r"delivered \d+/\d+, ", line) for line in report), shown
    live = [line for line in lines[: header[0]] if re.fullmatch(r"rider-\d+ +\d+ +#*|delivered \d+/12, .*", line)]
    # The live view, if it was up: its last frame alone, right above the report.
    assert len(live) in (0, 5), shown
    if live:
        assert lines[header[0] - 5 : header[0]] == live, shown
    assert len({line.split()[0] for line in live}) == len(live), f"a stale frame above the report:\n{shown}"
    print(f"run.py under Wine in a {columns}x{rows} pane: {took:.1f} s\n{shown}")
