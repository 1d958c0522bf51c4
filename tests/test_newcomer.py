"""What a newcomer meets when trying the scripts: each test here failed on the code before
it was fixed (a closed pipe, an early Ctrl-C, silent waits, endpoint typos, fair queueing
that starved a producer, a log flooded by a refused rider, small wording)."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import (
    LOOPBACK_ANY_PORT,
    ROOT,
    TAG_VARIABLE,
    Script,
    Scripts,
    Sink,
    make_certificates,
    our_frames,
    posix_signals,
    signal_while_python_starts,
    tagged_processes,
    wait_until,
)
from test_faults import free_tcp_endpoint
from test_scripts import start_consumer, start_producer

EXIT_OUTPUT_CLOSED = 141


@pytest.fixture
def scripts_dir(request: pytest.FixtureRequest) -> Path:
    """Where the scripts are: this checkout, or --scripts-dir (see conftest)."""
    return Path(request.config.getoption("--scripts-dir"))


def run_into_closed_pipe(args: list[str], lines: int, cwd: Path = ROOT) -> tuple[int, str, str]:
    """`python ARGS | head -LINES`: read that many lines, close the pipe, and return the
    script's exit status (within a deadline), its stderr, and its tag (for leftovers)."""
    tag = uuid.uuid4().hex
    env = {**os.environ, TAG_VARIABLE: tag}
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout and proc.stderr
    for _ in range(lines):
        assert proc.stdout.readline()
    proc.stdout.close()  # what head does once it has its lines
    try:
        code = proc.wait(timeout=10)  # it hung for good before
    except subprocess.TimeoutExpired:
        proc.kill()
        for process in tagged_processes(tag):
            process.kill()
        pytest.fail(f"{args} still running 10 s after its stdout closed")
    return code, proc.stderr.read(), tag


@pytest.mark.parametrize("lines", [3, 30])
def test_run_py_into_a_closed_pipe_ends_promptly_and_quietly(lines: int, scripts_dir: Path) -> None:
    code, stderr, tag = run_into_closed_pipe(["-m", "hardened.run"], lines, scripts_dir)  # the default: lines for 4 s
    assert code == EXIT_OUTPUT_CLOSED
    assert stderr == ""  # no traceback, no BrokenPipeError, no "refused a connection"
    wait_until(lambda: not tagged_processes(tag), 5, "no process of run.py left")


def test_a_rider_into_a_closed_pipe_stops_quietly(scripts: Scripts, scripts_dir: Path) -> None:
    producer, endpoint = start_producer(scripts, "--interval", "0", "--quiet")
    code, stderr, _ = run_into_closed_pipe(
        ["-m", "hardened.consumer", "--connect", endpoint, "--speed", "0"], 5, scripts_dir
    )
    assert (code, stderr) == (EXIT_OUTPUT_CLOSED, "")


# --- an early Ctrl-C ---


EARLY = [round(random.Random(trial).uniform(0.02, 0.12), 3) for trial in range(12)]


def test_only_a_traceback_past_the_first_statement_counts_against_us() -> None:
    """A Ctrl-C inside the first statement's import (seen: in stopping.py's class body, at
    0.065 s, on a loaded machine) came before any handler could be in: not ours."""
    run_py, stopping_py = ROOT / "hardened" / "run.py", ROOT / "hardened" / "stopping.py"
    first = run_py.read_text().splitlines().index("from hardened import stopping") + 1
    class_line = stopping_py.read_text().splitlines().index("class StopFlag:") + 1
    frames = (
        f'  File "<frozen runpy>", line 88, in _run_code\n  File "{run_py}", line {first}, in <module>\n'
        f'  File "{stopping_py}", line {class_line}, in StopFlag\n'
    )
    assert our_frames(f"Traceback (most recent call last):\n{frames}KeyboardInterrupt") == []
    later = f'  File "{run_py}", line {first + 4}, in <module>\n'  # past the first statement
    assert our_frames(f"Traceback (most recent call last):\n{later}{frames}KeyboardInterrupt") != []


@posix_signals
def test_an_early_ctrl_c_to_the_whole_group_ends_run_py_cleanly(scripts: Scripts) -> None:
    """Ctrl-C 0.02-0.12 s after start, to run.py and every child, as a terminal sends it.
    A traceback only counts against us if it shows our code past its first statement."""
    after_first_line = 0
    for delay in EARLY:
        run = scripts("-m", "hardened.run", "--consumers", "4", "--orders", "8", "--speed", "0.2")
        run.watch(delay)
        run.signal_group(signal.SIGINT)
        code = run.wait(timeout=5)
        assert not our_frames(run.output), (delay, our_frames(run.output), run.output)
        interpreter_starting = signal_while_python_starts(code, run.output)
        assert code in (0, 130, -signal.SIGINT) or interpreter_starting, (delay, code, run.output)
        if not interpreter_starting:
            after_first_line += 1
            assert code != -signal.SIGINT, run.output  # once our handler is in, it is a flag
        run.assert_no_process_left(workers=0)
    # Not vacuous: moments land after run.py's first statement (~25 ms in here; later on a
    # loaded machine, so not all of them).
    assert after_first_line >= len(EARLY) // 4


# --- silent waits ---


RIDER = "python -m hardened.consumer --connect"  # as the producer's hint says it


def test_silent_waits_are_said_once_and_the_waiting_goes_on(scripts: Scripts, sink: Sink) -> None:
    """Each hint comes only after 3 s of silence, so the four cases run side by side: a
    rider with no producer on its port; producers with too few consumers: one waiting
    for 2 with none, one blocked in send with none, one waiting for 2 with 1."""
    holder = socket.socket()  # holds the port (bound, not listening) until our producer takes it
    holder.bind(("127.0.0.1", 0))
    lonely_endpoint = f"tcp://127.0.0.1:{holder.getsockname()[1]}"
    rider = start_consumer(scripts, "rider-0", [lonely_endpoint], sink)
    rider_hint = (
        f"rider-0: no producer at {lonely_endpoint} yet; ZeroMQ keeps retrying; is it running, and on this port?"
    )
    cases = {  # name: (its options, riders before the hint, what the hint says)
        "waiting": (["--wait-consumers", "2"], 0, "no consumer"),
        "in-send": ([], 0, "no consumer"),
        "some": (["--wait-consumers", "2"], 1, "1 of 2 consumers"),
    }
    hints: dict[str, str] = {}
    producers: dict[str, Script] = {}
    for name, (options, riders, have) in cases.items():
        producer, endpoint = start_producer(scripts, "--orders", "2", "--interval", "0", *options)
        producers[name] = producer
        hints[name] = f"p1: {have} after 3 s; ZeroMQ keeps waiting; riders connect with: {RIDER} {endpoint}"
        for n in range(1, riders + 1):
            start_consumer(scripts, f"rider-{n}", [endpoint], sink)
    rider.wait_for_line(re.escape(rider_hint), timeout=6)
    for name, producer in producers.items():
        producer.wait_for_line(re.escape(hints[name]), timeout=6)
    for name in ("waiting", "in-send"):  # it kept waiting, and sends once riders are there
        endpoint = hints[name].rpartition(" ")[2]
        for n in (1, 2):
            start_consumer(scripts, f"rider-{n}", [endpoint], sink)
        assert producers[name].wait() == 0
        assert producers[name].stdout.count(hints[name]) == 1
    assert len(sink.collect(4)) == 4
    # The rider, silent for a while longer meanwhile: still one line. It kept waiting,
    # and delivers once a producer is there.
    assert rider.stdout.count(rider_hint) == 1
    holder.close()
    producer = scripts("-m", "hardened.producer", "--bind", lonely_endpoint, "--orders", "3", "--interval", "0")
    assert len(sink.collect(7)) == 7
    assert producer.wait() == 0


# --- endpoints ---


def test_binding_beyond_loopback_without_curve_warns_once(scripts: Scripts) -> None:
    producer = scripts("-m", "hardened.producer", "--bind", "tcp://*:0", "--orders", "1")
    bound = producer.wait_for_line(r"bound (tcp://\S+)").group(1)
    producer.wait_for_line("is open to other machines", stream="stderr")
    assert producer.stderr == [
        f"p1: warning: {bound} is open to other machines, without CURVE: anyone who can reach it "
        "can take orders and read them (README, Security)"
    ]


def test_binding_beyond_loopback_with_curve_does_not_warn(scripts: Scripts, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _, secret = make_certificates(tmp_path, "platform")
    make_certificates(allowed, "rider")
    producer = scripts(
        "-m", "hardened.producer", "--bind", "tcp://*:0", "--curve-secret", str(secret), "--curve-allow", str(allowed)
    )
    producer.wait_for_line(r"bound tcp://0\.0\.0\.0:")
    producer.kill()
    producer.wait()
    assert producer.stderr == []


# --- fair queueing ---


def test_a_backlogged_rider_takes_two_producers_in_turn(scripts: Scripts, sink: Sink) -> None:
    """p1's orders wait in the rider's queue when p2 starts sending. A rider that polls
    before every receive alternates from then on; one that tried recv() first (the code
    before) read p1's backlog dry first: every one of p1's orders, then p2's."""
    common = ["--interval", "0", "--wait-consumers", "1", "--delivery", "0.05", "--quiet"]
    _, endpoint1 = start_producer(scripts, "--name", "p1", "--orders", "60", *common)  # a 3 s backlog
    endpoint2 = free_tcp_endpoint()  # p2 starts once p1's backlog is there
    start_consumer(scripts, "rider-1", [endpoint1, endpoint2], sink, "--speed", "1")
    sink.collect(2)
    scripts("-m", "hardened.producer", "--bind", endpoint2, "--name", "p2", "--seed", "2", "--orders", "16", *common)

    def p2_and_ten_more() -> list[str] | None:
        order = [r["producer"] for r in sink.collect(0)]
        return order if "p2" in order and len(order) >= order.index("p2") + 10 else None

    order = wait_until(p2_and_ten_more, 20, "p2's first order and ten more")
    first_p2 = order.index("p2")
    assert first_p2 < 50, order  # p2's orders did not wait for p1's backlog
    window = order[first_p2 : first_p2 + 10]
    assert window.count("p1") >= 4 and window.count("p2") >= 4, order


# --- a refused rider retries: said once, counted after ---


def test_a_producer_that_closes_one_handshake_refused_nothing(scripts: Scripts, sink: Sink) -> None:
    """A producer that stops while a rider is mid-handshake closes that connection once:
    no refusal, and no guess at CURVE (seen when a Ctrl-C reached run.py's group as riders
    were connecting). A producer that refuses a rider does it on every retry."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    endpoint = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    rider = start_consumer(scripts, "rider-1", [endpoint], sink)
    connection, _ = listener.accept()
    listener.close()  # first: the rider's next try is refused outright, as by a producer that stopped
    connection.close()  # mid-handshake: the rider's monitor reports HANDSHAKE_FAILED_NO_DETAIL
    producer = scripts("-m", "hardened.producer", "--bind", endpoint, "--orders", "2", "--interval", "0")
    assert len(sink.collect(2)) == 2  # the rider reconnected and delivers
    assert producer.wait() == 0
    rider.stop()
    assert "refused" not in rider.output, rider.output


@posix_signals
def test_a_refused_riders_retries_are_counted_not_printed(scripts: Scripts, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _, secret = make_certificates(tmp_path, "platform")
    make_certificates(allowed, "rider")
    producer, endpoint = start_producer(scripts, "--curve-secret", str(secret), "--curve-allow", str(allowed))
    # Three plain rogues: at least three refusals, however often each one retries.
    rogues = [scripts("-m", "hardened.consumer", "--name", f"rogue-{n}", "--connect", endpoint) for n in (1, 2, 3)]
    for rogue in rogues:
        rogue.wait_for_line("refused us", stream="stderr")
    producer.watch(0.5)  # and whatever retries come meanwhile
    for rogue in rogues:
        rogue.kill()
    producer.signal(signal.SIGINT)
    assert producer.wait() == 0
    # A plain rider against CURVE is refused as a "security mismatch" or a failed handshake,
    # depending on timing: each reason is said once, and its retries are summed up at exit.
    firsts = [m.group(1) for line in producer.stderr if (m := re.fullmatch(r"p1: refused a connection: (.+)", line))]
    counted = {
        m.group(2): int(m.group(1))
        for line in producer.stderr
        if (m := re.fullmatch(r"p1: refused (\d+) more connections?: (.+)", line))
    }
    assert firsts and len(firsts) == len(set(firsts)), producer.stderr
    assert set(counted) <= set(firsts), producer.stderr
    assert len(firsts) + sum(counted.values()) >= 3, producer.stderr  # every refusal said or counted
    assert len(producer.stderr) == len(firsts) + len(counted), producer.stderr
    assert not any(" gone (" in line for line in producer.stdout), producer.stdout


# --- small things ---


def test_one_order_is_singular(scripts: Scripts, sink: Sink) -> None:
    producer, endpoint = start_producer(scripts, "--orders", "1", "--wait-consumers", "1")
    rider = start_consumer(scripts, "rider-1", [endpoint], sink, "--orders", "1")
    assert rider.wait() == 0 and producer.wait() == 0
    assert rider.stdout[-1] == "rider-1: done, delivered 1 order"
    assert producer.stdout[-1] == "p1: sent 1 order"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-m", "hardened.producer", "--orders", "five"],
            "argument --orders: expected a whole number >= 0, got 'five'",
        ),
        (["-m", "hardened.run", "--consumers", "0"], "argument --consumers: expected a whole number >= 1, got '0'"),
        (["-m", "hardened.consumer", "--speed", "fast"], "argument --speed: expected a finite number >= 0, got 'fast'"),
    ],
)
def test_option_errors_name_no_function(scripts: Scripts, args: list[str], message: str) -> None:
    process = scripts(*args)
    assert process.wait() == 2
    assert process.stderr[-1].endswith(message)
    assert "_int" not in process.output and "_float" not in process.output


@pytest.mark.parametrize(
    "script", ["-m hardened.producer", "-m hardened.consumer", "-m hardened.run", "benchmarks/bench.py"]
)
def test_a_missing_pyzmq_says_what_to_do(script: str, scripts_dir: Path) -> None:
    # As in a Python without pyzmq: the import fails (a None in sys.modules makes it so).
    # The script's folder first on sys.path, as `python SCRIPT` puts it; for `python -m
    # MODULE`, the current folder.
    if script.startswith("-m "):
        module = script.removeprefix("-m ")
        run = f"sys.path.insert(0, os.getcwd()); runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    else:
        folder = f"os.path.dirname(os.path.abspath({script!r}))"
        run = f"sys.path.insert(0, {folder}); runpy.run_path({script!r}, run_name='__main__')"
    code = f"import os, runpy, sys; sys.modules['zmq'] = None; sys.argv = [{script!r}]; {run}"
    done = subprocess.run([sys.executable, "-c", code], cwd=scripts_dir, capture_output=True, text=True, timeout=20)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "activate the project's virtualenv" in done.stderr and "pip install -r requirements.txt" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_sink_endpoint_is_checked_too(scripts: Scripts) -> None:
    rider = scripts("-m", "hardened.consumer", "--connect", LOOPBACK_ANY_PORT.replace(":0", ":9"), "--results", "5559")
    assert rider.wait() == 1
    assert rider.stderr == ["rider: cannot connect to 5559: expected tcp://HOST:PORT, such as tcp://127.0.0.1:5559"]
