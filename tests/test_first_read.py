"""The first read: the top-level producer.py, consumer.py and run.py, run as a learner would.

They must be short and still right where a copy-paste would lose data or hang: every
order exactly once, the slow-joiner wait, bad messages rejected with one line, Ctrl-C
ending each script with its last line, and the same wire format as the hardened
package (tests here run orders across the two reads, both ways).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import zmq
from conftest import (
    LOOPBACK_ANY_PORT,
    ROOT,
    Script,
    Scripts,
    Sink,
    bound_endpoint,
    posix_signals,
    tagged_processes,
    wait_until,
)
from test_newcomer import run_into_closed_pipe
from test_scripts import start_consumer as start_hardened_consumer
from test_scripts import start_producer as start_hardened_producer

import consumer
import producer
from hardened import run as hardened_run
from hardened.orders import make_orders, parse_order

FIRST_READ = ("producer.py", "consumer.py", "run.py")


def start_producer(scripts: Scripts, *args: str, **kwargs: object) -> tuple[Script, str]:
    script = scripts("producer.py", "--bind", LOOPBACK_ANY_PORT, "--seed", "1", "--interval", "0", *args, **kwargs)
    return script, bound_endpoint(script)


def start_consumer(scripts: Scripts, name: str, endpoints: list[str], sink: Sink | None = None) -> Script:
    connects = [arg for endpoint in endpoints for arg in ("--connect", endpoint)]
    results = ["--results", sink.endpoint] if sink else []
    return scripts("consumer.py", "--name", name, "--speed", "0", *connects, *results)


# --- the layout: three files, nothing of the project but each other ---


def test_the_top_level_holds_the_three_scripts_and_they_import_only_zmq_and_each_other() -> None:
    assert sorted(path.name for path in ROOT.glob("*.py")) == sorted(FIRST_READ)
    allowed = set(sys.stdlib_module_names) | {"zmq", "producer", "consumer"}
    for name in FIRST_READ:
        tree = ast.parse((ROOT / name).read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        assert imported <= allowed, f"{name} imports {imported - allowed}"


def test_the_lessons_socket_calls_stand_in_the_files_themselves() -> None:
    """The context, the socket, bind/connect, send and receive: in the file, near the top."""
    for name, calls in (
        ("producer.py", ["zmq.Context()", "socket(zmq.PUSH)", ".bind(", ".send("]),
        ("consumer.py", ["zmq.Context()", "socket(zmq.PULL)", ".connect(", ".recv_multipart("]),
    ):
        lines = (ROOT / name).read_text().splitlines()
        for call in calls:
            assert any(call in line and not line.lstrip().startswith("#") for line in lines), f"{call} not in {name}"
        first_socket = next(number for number, line in enumerate(lines, 1) if "ctx.socket(" in line)
        assert first_socket <= 40, f"{name}: the first socket is on line {first_socket}"


# --- the default demo, and the scripts in terminals ---


def test_run_py_with_its_defaults_delivers_every_order_exactly_once_evenly(scripts: Scripts) -> None:
    run = scripts("run.py")
    assert run.wait(timeout=30) == 0, run.tail()
    rows = {m[1]: int(m[2]) for line in run.stdout if (m := re.match(r"(rider-\d+)\s+(\d+)\s+\d+\.\d\d", line))}
    assert rows == {f"rider-{n}": 5 for n in range(1, 11)}, run.output
    assert "delivered exactly once: yes" in run.stdout
    assert "spread: max - min orders per rider = 0" in run.stdout
    assert re.search(r"^wall time: \d+\.\d\d s", run.output, re.MULTILINE)
    assert "Traceback" not in run.output


def test_a_producer_and_two_riders_in_terminals_split_the_orders(scripts: Scripts, sink: Sink) -> None:
    producer_script, endpoint = start_producer(scripts, "--orders", "6", "--wait-consumers", "2")
    riders = [start_consumer(scripts, f"rider-{n}", [endpoint], sink) for n in (1, 2)]
    assert producer_script.wait() == 0
    assert producer_script.stdout[-1] == "p1: sent 6 orders"
    records = sink.collect(6)
    assert Counter(r["consumer"] for r in records) == {"rider-1": 3, "rider-2": 3}
    assert sorted(r["order_id"] for r in records) == [f"p1-{seq:06d}" for seq in range(1, 7)]
    for rider in riders:
        rider.wait_for_line(r"^rider-\d delivered p1-\d{6} from p1 \(.+ -> .+\) in \d+\.\d\d s$")


def test_a_rider_takes_two_producers_in_turn(scripts: Scripts, sink: Sink) -> None:
    """Fair queueing: both producers have orders waiting, the rider alternates."""
    first, endpoint1 = start_producer(scripts, "--name", "p1", "--orders", "20", "--wait-consumers", "1")
    second, endpoint2 = start_producer(scripts, "--name", "p2", "--orders", "20", "--wait-consumers", "1")
    scripts(
        "consumer.py",
        "--name",
        "rider-1",
        "--speed",
        "0.05",
        "--connect",
        endpoint1,
        "--connect",
        endpoint2,
        "--results",
        sink.endpoint,
    )
    order = [r["producer"] for r in sink.collect(40, timeout=30)]
    assert Counter(order) == {"p1": 20, "p2": 20}
    both = order[: min(len(order) - order[::-1].index(p) for p in ("p1", "p2"))]  # while both had orders
    runs = [len(m.group()) for m in re.finditer(r"(.)\1*", "".join(p[1] for p in both))]
    assert max(runs[1:], default=0) <= 3, order  # the first run: before the second connection was up


# --- Ctrl-C, bad command lines, a port in use ---


@posix_signals
def test_ctrl_c_ends_a_waiting_producer_and_an_idle_rider_with_their_last_line(scripts: Scripts) -> None:
    waiting, _ = start_producer(scripts, "--wait-consumers", "1")
    idle = scripts("consumer.py", "--name", "rider-1", "--connect", "tcp://127.0.0.1:9")  # nobody there
    idle.wait_for_line("connecting to")
    for script, last in ((waiting, "p1: stopped, sent 0 orders"), (idle, "rider-1: stopped, delivered 0 orders")):
        script.signal(signal.SIGINT)
        assert script.wait(timeout=3) == 0
        assert script.stdout[-1] == last
        assert "Traceback" not in script.output


@posix_signals
def test_ctrl_c_ends_run_py_mid_run_with_a_count_and_no_process_left(scripts: Scripts) -> None:
    run = scripts("run.py", "--consumers", "3", "--orders", "30", "--speed", "1")
    run.wait_for_workers(3)  # the riders (the producer may be gone already)
    run.wait_for_line(r"delivered p1-\d{6}")
    run.signal_group(signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    assert run.wait(timeout=5) == 130
    assert re.search(r"^run.py: interrupted, \d+ of 30 orders delivered$", "\n".join(run.stderr), re.MULTILINE)
    assert "Traceback" not in run.output
    run.assert_no_process_left(workers=3)


@posix_signals
def test_a_rider_stopped_says_how_many_orders_it_held_are_lost(scripts: Scripts) -> None:
    """PUSH gave them to this rider alone: stopped, it counts them, and nobody else gets them."""
    producer_script, endpoint = start_producer(scripts, "--orders", "10", "--wait-consumers", "1")
    rider = scripts("consumer.py", "--name", "rider-1", "--speed", "1", "--connect", endpoint)
    assert producer_script.wait() == 0  # all 10 handed over: the rider's queue holds them
    rider.wait_for_line(r"^rider-1 delivered p1-000001 ")
    rider.signal(signal.SIGINT)  # on the second ride
    assert rider.wait(timeout=5) == 0
    delivered = int(re.fullmatch(r"rider-1: stopped, delivered (\d+) orders?", rider.stdout[-2])[1])  # type: ignore[index]
    assert rider.stdout[-1] == f"rider-1: lost {10 - delivered} orders it held (PUSH gave them to it alone)"


@posix_signals
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3])
def test_an_early_ctrl_c_to_the_whole_group_leaves_no_traceback_and_no_process(scripts: Scripts, delay: float) -> None:
    """A terminal's Ctrl-C reaches every process, riders starting included: none may die
    with a traceback or be left running. One that lands while a child is being started
    is ignored, and the run goes on to its report."""
    run = scripts("run.py", "--consumers", "4", "--orders", "8", "--speed", "0.2")
    run.wait_for_line(r"^p1: bound ")  # the riders are starting now
    run.wait_for_workers(1)  # the producer, waiting for them
    run.watch(delay)
    run.signal_group(signal.SIGINT)
    code = run.wait(timeout=15)
    assert "Traceback" not in run.output, run.output
    if code == 0:  # it landed while a child was being started
        assert "delivered exactly once: yes" in run.stdout
    else:
        assert code == 130, run.output
        assert re.search(r"^run.py: interrupted, \d+ of 8 orders delivered$", "\n".join(run.stderr), re.MULTILINE)
    run.assert_no_process_left(workers=1)


@posix_signals
def test_run_py_into_a_closed_pipe_ends_with_no_traceback_and_no_process() -> None:
    """`python run.py | head -3`: every process writes to the pipe that head closed."""
    code, stderr, tag = run_into_closed_pipe(["run.py"], 3)
    assert "Traceback" not in stderr, stderr
    assert code in (-13, 1), (code, stderr)  # -13: SIGPIPE (13 on Linux and macOS), as a shell tool ends
    wait_until(lambda: not tagged_processes(tag), 5, "no process of run.py left")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["producer.py", "--orders", "-1"], "--orders, --interval and --wait-consumers take a number >= 0"),
        (["producer.py", "--interval", "nan"], "--orders, --interval and --wait-consumers take a number >= 0"),
        (["consumer.py", "--speed", "-2"], "--speed takes a number >= 0"),
        (["run.py", "--consumers", "0"], "--consumers and --orders take a whole number >= 1"),
    ],
)
def test_a_bad_command_line_is_one_usage_line(scripts: Scripts, args: list[str], message: str) -> None:
    script = scripts(*args)
    assert script.wait() == 2
    assert message in script.stderr[-1]
    assert "Traceback" not in script.output


def test_a_port_in_use_says_how_to_pick_another(scripts: Scripts) -> None:
    _, endpoint = start_producer(scripts)
    second = scripts("producer.py", "--bind", endpoint)
    assert second.wait() == 1
    assert second.stderr == [
        f"p1: cannot bind {endpoint}: Address already in use (another program has that port: "
        "pick another, such as tcp://127.0.0.1:5558)"
    ]


# --- run.py when a rider dies: it says so, ends, and fails ---


def test_run_py_ends_and_fails_when_a_rider_dies(scripts: Scripts) -> None:
    run = scripts("run.py", "--consumers", "3", "--orders", "15", "--speed", "0.5")
    run.wait_for_workers(3)
    run.wait_for_line(r"^p1: sent 15 orders$")  # the producer is done: the workers left are riders
    wait_until(lambda: len(run.workers()) == 3, 10, "the producer's exit")
    run.workers()[0].kill()
    assert run.wait(timeout=30) == 1, run.tail()
    assert "delivered exactly once: no" in run.stdout
    assert any(line.startswith("missing (") for line in run.stdout), run.output
    assert "run.py: a process died: the orders it held are lost" in run.stderr


# --- one wire format: orders cross between the two reads, both ways ---


def test_a_first_read_producer_feeds_hardened_riders(scripts: Scripts, sink: Sink) -> None:
    producer_script, endpoint = start_producer(scripts, "--orders", "20", "--wait-consumers", "2")
    for n in (1, 2):
        start_hardened_consumer(scripts, f"rider-{n}", [endpoint], sink)
    assert producer_script.wait() == 0
    records = sink.collect(20)
    assert sorted(r["order_id"] for r in records) == [f"p1-{seq:06d}" for seq in range(1, 21)]


def test_a_hardened_producer_feeds_first_read_riders(scripts: Scripts, sink: Sink) -> None:
    hardened, endpoint = start_hardened_producer(scripts, "--orders", "20", "--interval", "0", "--wait-consumers", "2")
    riders = [start_consumer(scripts, f"rider-{n}", [endpoint], sink) for n in (1, 2)]
    assert hardened.wait() == 0
    records = sink.collect(20)
    assert sorted(r["order_id"] for r in records) == [f"p1-{seq:06d}" for seq in range(1, 21)]
    assert Counter(r["consumer"] for r in records) == {"rider-1": 10, "rider-2": 10}
    assert all(rider.stderr == [] for rider in riders)  # not one order rejected


@pytest.mark.parametrize("seed", [1, 2, 12345, None])
def test_the_same_seed_makes_the_same_orders_in_both_reads(seed: int | None) -> None:
    if seed is None:  # no seed: each producer its own orders; only the shape is common
        assert len(list(producer.make_orders("p1", None, 3))) == 3
        return
    first = list(producer.make_orders("p1", seed, 200))
    assert first == [next(it) for it in [make_orders("p1", seed, (0.2, 1.0))] for _ in range(200)]


def test_hardened_run_py_makes_the_orders_producer_py_makes_with_the_same_seed(scripts: Scripts) -> None:
    """--seed 5 means the same orders in both reads: p1's seed is --seed itself, and the
    delivery range is producer.py's."""
    run = scripts("-m", "hardened.run", "--seed", "5", "--orders", "8", "--consumers", "1", "--speed", "0")
    assert run.wait(timeout=30) == 0, run.tail()
    shown = dict(re.findall(r"delivered (p1-\d{6}) from p1 \((.+)\) in", run.output))
    made = {order["order_id"]: order["restaurant"] for order in producer.make_orders("p1", 5, 8)}
    assert shown == made
    assert hardened_run.parse_args([]).delivery == (0.2, 1.0)


def test_the_package_says_in_one_line_that_it_needs_python_3_10() -> None:
    older = sorted(Path("~/.pyenv/versions").expanduser().glob("3.[6-9].*/bin/python3.[6-9]"))
    older += [Path(p) for name in ("python3.9", "python3.8") if (p := shutil.which(name)) and "shims" not in p]
    if not older:
        pytest.skip("no Python older than 3.10 on this machine (pyenv's or on PATH)")
    done = subprocess.run([older[-1], "-m", "hardened.run"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert re.fullmatch(r"This project needs Python 3\.10 or newer; this is Python 3\.[6-9]\.\d+\.\n", done.stderr)


def test_a_first_read_order_is_valid_for_both_riders_and_the_record_matches() -> None:
    order = next(producer.make_orders("p1", 1, 1)) | {"created_at": "2026-12-05T10:00:00.000001+00:00"}
    data = json.dumps(order).encode()
    assert consumer.parse_order([data]) == order == parse_order(data)


# --- a rider trusts nothing it receives ---


def good(**change: object) -> bytes:
    order = next(producer.make_orders("p1", 7, 1)) | {"created_at": "2026-12-05T10:00:00+00:00"}
    return json.dumps(order | change).encode()


HOSTILE = [
    ([b"\xff\xfe"], "not JSON"),
    ([b"{oops"], "not JSON"),
    ([b"[" * 5_000], "not JSON"),  # nested too deep
    ([b"[]"], "not a JSON object"),
    ([good(), good()], "2 frames, expected 1"),
    ([good(delivery_s=10**400)], "'delivery_s'"),
    ([good(total=10**400)], "'total'"),  # beyond any float: not an amount
    ([good(delivery_s=float("nan"))], "'delivery_s'"),
    ([good(delivery_s=-1)], "'delivery_s'"),
    ([good(delivery_s=True)], "'delivery_s'"),
    ([good(restaurant="\ud800")], "'restaurant'"),
    ([good(restaurant="\x1b]0;owned\x07")], "'restaurant'"),
    ([good(address="a\nrider-1 delivered p1-999999")], "'address'"),
    ([good(order_id="\x9b2J")], "'order_id'"),
    ([good(items=[{"name": "x", "qty": 1.5, "price": 1}])], "'items'"),
]


def test_hostile_messages_get_one_line_each_and_the_rider_goes_on(
    scripts: Scripts, ctx: zmq.Context, sink: Sink
) -> None:
    push = ctx.socket(zmq.PUSH)
    push.bind(LOOPBACK_ANY_PORT)
    rider = start_consumer(scripts, "rider-1", [push.getsockopt_string(zmq.LAST_ENDPOINT)], sink)
    rejected = 0
    for frames, reason in HOSTILE:
        push.send_multipart(frames)
        rejected += reason is not None
        if reason:
            rider.wait_for_line(r"^rider-1: rejected message: .*" + re.escape(reason), stream="stderr")
    push.send(good(order_id="p1-000099"))
    wait_until(lambda: any(r["order_id"] == "p1-000099" for r in sink.collect(0)), 10, "the good order after them")
    assert len(rider.stderr) == rejected, rider.stderr
    assert not any(re.search(r"[\x00-\x1f\x7f-\x9f]", line) for line in rider.stdout + rider.stderr)


# Arbitrary JSON in every field and arbitrary bytes, on both reads' validators: tests/test_hostile.py.
