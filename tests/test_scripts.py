"""producer.py and consumer.py run as a person would run them, each in its own process.

Stopping one with Ctrl-C is tested with SIGINT, POSIX only (see conftest.posix_signals):
on Windows a test can't send one process a Ctrl-C.
"""

from __future__ import annotations

import errno
import signal
import sys
from collections import Counter
from typing import Any

import pytest
import zmq
from conftest import LOOPBACK_ANY_PORT, Script, Scripts, Sink, bound_endpoint, posix_signals, wait_until

from hardened.orders import make_orders, utc_now


def start_producer(scripts: Scripts, *args: str, **kwargs: Any) -> tuple[Script, str]:
    producer = scripts("-m", "hardened.producer", "--bind", LOOPBACK_ANY_PORT, "--seed", "1", *args, **kwargs)
    return producer, bound_endpoint(producer)


def start_consumer(
    scripts: Scripts, name: str, endpoints: list[str], sink: Sink | None = None, *args: str, **kwargs: Any
) -> Script:
    connects = [arg for endpoint in endpoints for arg in ("--connect", endpoint)]
    results = ["--results", sink.endpoint] if sink else []
    return scripts("-m", "hardened.consumer", "--name", name, "--speed", "0", *connects, *results, *args, **kwargs)


def test_every_order_is_delivered_exactly_once_and_spread_evenly(scripts, sink: Sink) -> None:
    producer, endpoint = start_producer(scripts, "--orders", "60", "--interval", "0", "--wait-consumers", "3")
    for n in range(1, 4):
        start_consumer(scripts, f"rider-{n}", [endpoint], sink)
    assert producer.wait() == 0
    records = sink.collect(60)
    assert sorted(r["order_id"] for r in records) == [f"p1-{seq:06d}" for seq in range(1, 61)]
    # --wait-consumers made every rider connect before the first order: 20 each.
    assert Counter(r["consumer"] for r in records) == {"rider-1": 20, "rider-2": 20, "rider-3": 20}
    assert producer.stdout[-1] == "p1: sent 60 orders"


def test_a_consumer_connected_to_two_producers_receives_from_both(scripts, sink: Sink) -> None:
    first, endpoint1 = start_producer(
        scripts, "--name", "p1", "--orders", "10", "--interval", "0", "--wait-consumers", "1"
    )
    second, endpoint2 = start_producer(
        scripts, "--name", "p2", "--orders", "10", "--interval", "0", "--wait-consumers", "1"
    )
    rider = start_consumer(scripts, "rider-1", [endpoint1, endpoint2], sink)
    records = sink.collect(20)
    assert Counter(r["producer"] for r in records) == {"p1": 10, "p2": 10}
    assert first.wait() == 0 and second.wait() == 0
    rider.wait_for_line(r"delivered p1-000010 from p1")
    rider.wait_for_line(r"delivered p2-000010 from p2")


def test_a_consumer_started_later_joins_the_round_robin(scripts, sink: Sink) -> None:
    producer, endpoint = start_producer(scripts, "--interval", "0.02", "--quiet")
    start_consumer(scripts, "early", [endpoint], sink)
    sink.collect(5)
    start_consumer(scripts, "late", [endpoint], sink)
    wait_until(
        lambda: sink.collect(0) and any(r["consumer"] == "late" for r in sink.records), what="late rider's order"
    )
    # From then on the two alternate: of the next 10 orders each gets about half.
    count = len(sink.records)
    later = Counter(r["consumer"] for r in sink.collect(count + 10)[count : count + 10])
    assert later["early"] >= 4 and later["late"] >= 4, later
    if sys.platform != "win32":  # and Ctrl-C stops the producer cleanly (POSIX signals)
        producer.signal(signal.SIGINT)
        assert producer.wait() == 0


def test_a_producer_with_no_consumer_waits_then_sends_when_one_connects(scripts, sink: Sink) -> None:
    producer, endpoint = start_producer(scripts, "--orders", "3", "--interval", "0")
    # PUSH with no peer blocks in send: nothing is sent, nothing is lost.
    with pytest.raises(pytest.fail.Exception):
        producer.wait_for_line(r"sent p1-000001", timeout=0.5)
    start_consumer(scripts, "rider-1", [endpoint], sink)
    assert [r["order_id"] for r in sink.collect(3)] == ["p1-000001", "p1-000002", "p1-000003"]
    assert producer.wait() == 0


def good_order(seq: int) -> bytes:
    order = next(make_orders("test", seq, (0, 0)))
    order["order_id"] = f"test-{seq:06d}"
    order["created_at"] = utc_now()
    return zmq.utils.jsonapi.dumps(order)


BAD_MESSAGES = [
    ([b"\xff\xfe"], "not UTF-8"),
    ([b"{oops"], "not JSON"),
    ([b"[]"], "not a JSON object"),
    ([b'{"order_id": "x"}'], "'producer' missing"),
    ([good_order(1).replace(b'"delivery_s": 0.0', b'"delivery_s": -5')], "'delivery_s'"),
    ([good_order(2), good_order(3)], "2 frames, expected 1"),
]


def test_bad_messages_are_rejected_and_the_consumer_keeps_going(scripts, ctx: zmq.Context, sink: Sink) -> None:
    push = ctx.socket(zmq.PUSH)
    push.bind(LOOPBACK_ANY_PORT)
    rider = start_consumer(scripts, "rider-1", [push.last_endpoint.decode()], sink)
    for n, (frames, reason) in enumerate(BAD_MESSAGES):
        push.send_multipart(frames)
        line = rider.wait_for_line(r"rejected message: .*" + reason.replace("(", r"\("), stream="stderr")
        assert line.string.startswith("rider-1: rejected message: ")
        push.send(good_order(100 + n))
        assert sink.collect(n + 1)[-1]["order_id"] == f"test-{100 + n:06d}"
    assert len(rider.stderr) == len(BAD_MESSAGES)  # exactly one line per bad message
    if sys.platform != "win32":  # Ctrl-C (POSIX signals): it stops, and counts the good ones only
        rider.signal(signal.SIGINT)
        assert rider.wait() == 0
        assert rider.stdout[-1] == f"rider-1: stopped, delivered {len(BAD_MESSAGES)} orders"


@posix_signals
@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["sigint", "sigint-inherited-as-ignored"])
def test_ctrl_c_stops_an_idle_consumer_at_once(scripts, ignore_sigint: bool) -> None:
    # Connected to a port nobody listens on: a plain recv() would block forever here.
    rider = start_consumer(scripts, "rider-1", ["tcp://127.0.0.1:9"], ignore_sigint=ignore_sigint)
    rider.wait_for_line("connecting to")
    rider.signal(signal.SIGINT)
    assert rider.wait(timeout=2) == 0
    assert rider.stdout[-1] == "rider-1: stopped, delivered 0 orders"
    assert "Traceback" not in rider.output


@posix_signals
def test_sigterm_stops_a_consumer_mid_delivery(scripts) -> None:
    producer, endpoint = start_producer(scripts, "--orders", "1", "--delivery", "30-30")
    rider = start_consumer(scripts, "rider-1", [endpoint], None, "--speed", "1")
    assert producer.wait() == 0  # the order has been handed over; the rider is on a 30 s ride
    rider.signal(signal.SIGTERM)
    assert rider.wait(timeout=2) == 0
    assert "stopped while delivering p1-000001: not delivered" in rider.output
    assert "Traceback" not in rider.output


@posix_signals
@pytest.mark.parametrize("phase", ["waiting for consumers", "blocked in send", "between orders"])
def test_ctrl_c_stops_the_producer_at_once(scripts, phase: str) -> None:
    args = {
        "waiting for consumers": ["--wait-consumers", "1"],
        "blocked in send": [],
        "between orders": ["--interval", "60"],
    }[phase]
    producer, endpoint = start_producer(scripts, *args, ignore_sigint=True)
    if phase == "between orders":
        start_consumer(scripts, "rider-1", [endpoint])
        producer.wait_for_line("sent p1-000001")
    producer.signal(signal.SIGINT)
    assert producer.wait(timeout=2) == 0
    assert "Traceback" not in producer.output
    # Its last line, in every phase: how many orders went out.
    sent = "sent 1 order" if phase == "between orders" else "sent 0 orders"
    assert producer.stdout[-1] == f"p1: stopped, {sent}", producer.output


def test_a_port_in_use_is_one_clear_line_and_a_failure(scripts) -> None:
    first, endpoint = start_producer(scripts)
    second = scripts("-m", "hardened.producer", "--bind", endpoint)
    assert second.wait() == 1
    port = int(endpoint.rpartition(":")[2])
    assert second.stderr == [
        f"p1: cannot bind {endpoint}: Address already in use "
        f"(another program has that port: pick another, such as tcp://127.0.0.1:{port + 1})"
    ]
    if sys.platform != "win32":  # and Ctrl-C stops the first one cleanly (POSIX signals)
        first.signal(signal.SIGINT)
        assert first.wait() == 0


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        # ZeroMQ itself says only "Invalid argument": the scripts say what form they want.
        (
            "hardened.producer",
            ["--bind", "nonsense"],
            "p1: cannot bind nonsense: expected tcp://HOST:PORT, such as tcp://127.0.0.1:5557",
        ),
        (
            "hardened.producer",
            ["--bind", "5558"],
            "p1: cannot bind 5558: expected tcp://HOST:PORT, such as tcp://127.0.0.1:5558",
        ),
        (
            "hardened.consumer",
            ["--connect", "localhost:5557"],
            "rider: cannot connect to localhost:5557: expected tcp://HOST:PORT, such as tcp://localhost:5557",
        ),
        (
            "hardened.consumer",
            ["--connect", "tcp://"],
            "rider: cannot connect to tcp://: Invalid argument (expected tcp://HOST:PORT, such as tcp://127.0.0.1:5557)",
        ),
        (
            "hardened.consumer",
            ["--connect", "tcp://127.0.0.1:\u00b2"],  # a digit to str.isdigit(), not to int()
            "rider: cannot connect to tcp://127.0.0.1:\u00b2: Invalid argument "
            "(expected tcp://HOST:PORT, such as tcp://127.0.0.1:5557)",
        ),
        (
            "hardened.consumer",
            ["--connect", "tcp://127.0.0.1:99999"],
            "rider: cannot connect to tcp://127.0.0.1:99999: port 99999 is out of range (0-65535)",
        ),
        (
            "hardened.producer",
            ["--bind", "tcp://no-such-host:5557"],  # libzmq binds to interface names, not host names
            f"p1: cannot bind tcp://no-such-host:5557: {zmq.strerror(errno.ENODEV)} "
            "(not an address of this machine: bind 127.0.0.1, or 0.0.0.0 for every interface)",
        ),
    ],
)
def test_a_malformed_endpoint_is_one_clear_line_and_a_failure(scripts, script, args, message) -> None:
    process = scripts("-m", script, *args)
    assert process.wait() == 1
    assert process.stderr == [message]


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "hardened.producer", "--orders", "-1"],
        ["-m", "hardened.producer", "--interval", "nan"],
        ["-m", "hardened.producer", "--delivery", "2-1"],
        ["-m", "hardened.consumer", "--speed", "-1"],
        ["-m", "hardened.run", "--consumers", "0"],
        ["-m", "hardened.run", "--orders", "many"],
    ],
)
def test_bad_option_values_get_a_usage_error(scripts, args: list[str]) -> None:
    process = scripts(*args)
    assert process.wait() == 2
    assert process.stderr[0].startswith("usage:")
    assert "Traceback" not in process.output


def test_an_oversized_message_is_rejected_and_the_consumer_reconnects(scripts, ctx: zmq.Context, sink: Sink) -> None:
    push = ctx.socket(zmq.PUSH)
    push.bind(LOOPBACK_ANY_PORT)
    endpoint = push.last_endpoint.decode()
    rider = start_consumer(scripts, "rider-1", [endpoint], sink)
    push.send(good_order(1))
    sink.collect(1)
    # 100 kB is over the rider's MAXMSGSIZE (64 KiB): libzmq refuses it mid-stream,
    # ends the connection, and, being a protocol error, does not reconnect by itself.
    push.send(b"x" * 100_000)
    rider.wait_for_line(r"rejected message: over the 65536-byte limit .* reconnecting", stream="stderr")
    wait_until(lambda: push.poll(10, zmq.POLLOUT), what="the rider to reconnect")  # PUSH has a peer again
    push.send(good_order(2))
    assert sink.collect(2)[-1]["order_id"] == "test-000002"
    assert len(rider.stderr) == 1


def test_a_consumer_with_an_order_limit_stops_by_itself(scripts, sink: Sink) -> None:
    producer, endpoint = start_producer(scripts, "--orders", "10", "--interval", "0", "--wait-consumers", "2")
    riders = [start_consumer(scripts, f"rider-{n}", [endpoint], sink, "--orders", "5") for n in (1, 2)]
    assert producer.wait() == 0
    for rider in riders:
        assert rider.wait() == 0  # no signal needed: its shift ends after 5 orders
        assert rider.stdout[-1] == f"{rider.args[3]}: done, delivered 5 orders"  # -m hardened.consumer --name NAME
    assert len(sink.collect(10)) == 10
