"""The pipeline across machines: a producer host and rider hosts on a LAN of namespaces.

What loopback can't show (tests/hosts.py says how the hosts are made): riders that
reach the producer by address and by host name, also after its host moves; a rider whose link goes dead without a
word, which only heartbeats notice, and the orders that vanish meanwhile; and CURVE
seen from the wire, in a capture on the producer host's interface. Linux and root only:
elsewhere these tests are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import hosts
import pytest
import zmq.auth
from conftest import Script, Scripts, wait_until
from hosts import Host, Network

from hardened.orders import CUSTOMERS, MENUS

pytestmark = pytest.mark.hosts  # CI's own step: python -m pytest -m hosts

PORT = 5557  # every host has its own ports, so fixed ones never collide across tests
SINK_PORT = 5558
ANYWHERE = f"tcp://0.0.0.0:{PORT}"  # every interface of the producer host
# Short heartbeats on both sides: a peer silent for TIMEOUT_S is dropped. Its last word
# may be up to INTERVAL_S old when it goes silent, and the producer looks at its socket
# monitor every 0.1 s: MARGIN_S is for a loaded machine on top of all that.
INTERVAL_S, TIMEOUT_S, MARGIN_S = 0.2, 0.6, 1.5
HEARTBEATS = ("--heartbeat", str(INTERVAL_S), "--heartbeat-timeout", str(TIMEOUT_S))
RATE = 20.0  # orders a second, in the partition test


@pytest.fixture
def network() -> Iterator[Callable[..., Network]]:
    """network("platform", "rider-1", ...): hosts 10.9.0.1, .2, ... on one switch,
    removed at the end of the test whatever happened (hosts.network)."""
    if reason := hosts.unavailable():
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        yield lambda *names: stack.enter_context(hosts.network(*names))


def producer_on(scripts: Scripts, host: Host, *args: str, bind: str = ANYWHERE) -> Script:
    producer = scripts(*host.python("-m", "hardened.producer", "--bind", bind, "--seed", "1", *args))
    producer.wait_for_line(rf"bound {re.escape(bind)}")
    return producer


def rider_on(scripts: Scripts, host: Host, name: str, producer: str, *args: str) -> Script:
    """A rider on `host`, connected to `producer` (HOST:PORT, by address or by name)."""
    return scripts(
        *host.python("-m", "hardened.consumer", "--name", name, "--speed", "0", "--connect", f"tcp://{producer}", *args)
    )


def sink_on(scripts: Scripts, host: Host) -> Script:
    """A results sink on `host` (hosts.sink), printing one JSON completion record a line."""
    sink = scripts(*host.tool("sink", f"tcp://0.0.0.0:{SINK_PORT}"))
    sink.wait_for_line("sink: bound")
    return sink


def records(sink: Script) -> list[dict]:
    return [json.loads(line) for line in list(sink.stdout) if line.startswith("{")]


def seqs(script: Script, verb: str) -> list[int]:
    """The sequence numbers of the orders a producer says it sent (verb "sent") or a rider
    says it delivered ("delivered"), in the order it said so."""
    return [int(m.group(1)) for line in list(script.stdout) if (m := re.search(rf"{verb} p1-(\d{{6}})", line))]


def last(script: Script, verb: str) -> int:
    """The highest of seqs(script, verb); 0 before the first."""
    return max(seqs(script, verb), default=0)


def test_riders_on_three_hosts_get_every_order_exactly_once(network, scripts) -> None:
    lan = network("platform", "rider-1", "rider-2", "rider-3")
    platform = lan["platform"]
    sink = sink_on(scripts, platform)
    producer = producer_on(scripts, platform, "--orders", "30", "--interval", "0", "--wait-consumers", "3")
    results = ("--results", f"tcp://platform:{SINK_PORT}")
    # Two riders dial the address, one the host name, which only its /etc/hosts knows.
    riders = [
        rider_on(scripts, lan["rider-1"], "rider-1", f"{platform.address}:{PORT}", *results),
        rider_on(scripts, lan["rider-2"], "rider-2", f"{platform.address}:{PORT}", *results),
        rider_on(scripts, lan["rider-3"], "rider-3", f"platform:{PORT}", *results),
    ]
    assert producer.wait() == 0, producer.tail()
    done = wait_until(lambda: found if len(found := records(sink)) >= 30 else None, what=lambda: sink.tail())
    assert sorted(r["order_id"] for r in done) == [f"p1-{n:06d}" for n in range(1, 31)]
    assert {r["consumer"] for r in done} == {"rider-1", "rider-2", "rider-3"}
    for rider in riders:  # and each said so itself (before it sent the record; read here a moment later)
        wait_until(partial(seqs, rider, "delivered"), what=rider.tail)
    # rider-3 names the producer as it was given: libzmq looks the name up itself.
    riders[2].wait_for_line(rf"connecting to tcp://platform:{PORT}$")


def delivered(rider: Script, producer: str) -> list[int]:
    """The sequence numbers of the orders from `producer` (its --name) that a rider delivered."""
    found = (re.search(rf"delivered {producer}-(\d{{6}})", line) for line in list(rider.stdout))
    return [int(m.group(1)) for m in found if m]


def test_a_rider_given_a_host_name_follows_the_producer_to_its_new_address(network, scripts) -> None:
    lan = network("platform", "rider-1")
    platform = lan["platform"]
    by_name = f"tcp://platform:{PORT}"
    orders = ("--orders", "3", "--interval", "0", "--wait-consumers", "1")
    first = producer_on(scripts, platform, "--name", "p1", *orders)
    rider = rider_on(scripts, lan["rider-1"], "rider-1", f"platform:{PORT}")
    assert first.wait() == 0, first.tail()
    wait_until(lambda: delivered(rider, "p1") == [1, 2, 3], what=lambda: f"p1's 3 orders; {rider.tail()}")
    rider.wait_for_line(r"lost producer \S+")  # the first producer quit; ZeroMQ keeps retrying
    old = platform.address

    # The platform's host moves: a new address under the same name, and a producer there.
    lan.move("platform", f"{hosts.SUBNET}.101")
    second = producer_on(scripts, platform, "--name", "p2", *orders)
    # libzmq looked the name up again as it reconnected, and found the new address.
    wait_until(lambda: delivered(rider, "p2") == [1, 2, 3], what=lambda: f"p2's 3 orders; {rider.tail()}")
    assert second.wait() == 0, second.tail()
    rider.wait_for_line(rf"producer {re.escape(by_name)} back")
    # One producer, one endpoint: the name as given, in every line, never an address.
    named = [line for line in rider.stdout + rider.stderr if "tcp://" in line]
    assert [re.findall(r"tcp://\S+?(?=[\s,;)]|$)", line) for line in named] == [[by_name]] * len(named), named
    assert any(f"lost producer {by_name} (" in line for line in named), named
    assert old not in rider.output and platform.address not in rider.output, rider.output
    # Nor taken for a producer that ZeroMQ gave up on (a protocol error), and dialled again.
    assert rider.stderr == [], rider.stderr


def test_a_rider_out_of_coverage_is_noticed_and_comes_back(network, scripts) -> None:
    lan = network("platform", "rider-1", "rider-2")
    platform, away = lan["platform"], lan["rider-1"]
    producer_at = f"tcp://{platform.address}:{PORT}"
    sink = sink_on(scripts, platform)
    producer = producer_on(scripts, platform, "--interval", str(1 / RATE), "--wait-consumers", "2", *HEARTBEATS)
    results = ("--results", f"tcp://platform:{SINK_PORT}")
    rider1, rider2 = (
        rider_on(scripts, lan[name], name, f"{platform.address}:{PORT}", *results, *HEARTBEATS)
        for name in ("rider-1", "rider-2")
    )
    wait_until(lambda: len(seqs(rider1, "delivered")) >= 3, what=lambda: f"rider-1's first orders; {rider1.tail()}")

    sent_before_cut = last(producer, "sent")
    away.cut()  # rider-1's phone leaves coverage: no FIN, no RST, only silence
    cut = time.monotonic()
    gone = producer.wait_for_line(rf"consumer {re.escape(away.address)}:\d+ gone", timeout=TIMEOUT_S + 10)
    noticed = time.monotonic() - cut
    sent_at_notice = last(producer, "sent")  # every line before the one just seen is in
    assert noticed <= TIMEOUT_S + INTERVAL_S + MARGIN_S, f"noticed {noticed:.2f} s after the cut: {gone.string}"
    rider1.wait_for_line(rf"lost producer {re.escape(producer_at)}\b")
    # rider-2 carries on, and takes every order now: wait until it has delivered well past
    # the notice, so that every order sent until then has arrived if it ever will.
    wait_until(
        lambda: last(rider2, "delivered") >= sent_at_notice + 5,
        what=lambda: f"rider-2 delivering past p1-{sent_at_notice + 5:06d}; {rider2.tail()}",
    )
    delivered = set(seqs(rider1, "delivered")) | set(seqs(rider2, "delivered"))
    lost = sorted(set(range(1, sent_at_notice + 1)) - delivered)
    # What went into the dead connection between the cut and the notice: rider-1's turns,
    # half the orders of that window. Loosely: at most all of them, and a few in flight.
    assert 1 <= len(lost) <= noticed * RATE + 3, f"lost {lost} in {noticed:.2f} s at {RATE:g}/s"
    # Nor anything sent well before the cut (rider-1's last order or two may still have
    # been on their way): what reached a rider, it delivers.
    assert min(lost) >= sent_before_cut - 3, f"lost {lost}; p1-{sent_before_cut:06d} was sent before the cut"

    away.restore()
    restored = time.monotonic()
    sent_at_restore = last(producer, "sent")
    rider1.wait_for_line(rf"producer {re.escape(producer_at)} back", timeout=TIMEOUT_S + 10)
    back_after = time.monotonic() - restored
    wait_until(
        lambda: last(rider1, "delivered") > sent_at_restore,
        what=lambda: f"rider-1 delivering again ({back_after:.2f} s to reconnect); {rider1.tail()}",
    )
    # Its completion records get through again too: its results socket reconnected.
    wait_until(
        lambda: any(r["consumer"] == "rider-1" and int(r["order_id"][3:]) > sent_at_restore for r in records(sink)),
        what=lambda: f"a completion record from rider-1 after the link came back; {sink.tail()}",
    )
    gone_lines = [line for line in producer.stdout if re.search(r"consumer \S+ gone", line)]
    assert gone_lines == [gone.string], "only rider-1 may be gone: rider-2 was never cut off"


def test_a_host_name_that_does_not_resolve_yet_is_one_line_and_the_rider_keeps_trying(network, scripts) -> None:
    lan = network("rider-1")  # in a host, where a name no hosts file has goes nowhere else
    rider = rider_on(scripts, lan["rider-1"], "rider-1", f"kitchen:{PORT}")
    said = rf"rider-1: cannot look up tcp://kitchen:{PORT} \(yet\): .+; ZeroMQ keeps trying"
    rider.wait_for_line(said, stream="stderr")
    time.sleep(0.5)  # libzmq accepted the name and looks it up again at every attempt: no exit
    assert rider.proc.poll() is None and len(rider.stderr) == 1, rider.tail()


def make_keys(directory: Path) -> dict[str, str]:
    """Certificates as the README makes them: the platform's, rider-1's (its public key
    in allowed/, so the platform accepts it) and a rogue's (not in allowed/)."""
    allowed = directory / "allowed"
    allowed.mkdir()
    files = {"allowed": str(allowed)}
    for name in ("platform", "rider-1", "rogue"):
        public, secret = zmq.auth.create_certificates(directory, name)
        files[name], files[f"{name}.public"] = str(secret), str(public)
    (allowed / "rider-1.key").write_bytes(Path(files["rider-1.public"]).read_bytes())
    return files


def curve_rider(keys: dict[str, str], name: str) -> tuple[str, ...]:
    """A rider's CURVE options: its own key pair and the platform's public key."""
    return ("--curve-secret", keys[name], "--curve-server", keys["platform.public"])


# What gives an order away on the wire.
ORDER_TEXT = [b"order_id", b"customer", *(name.encode() for name in CUSTOMERS), *(name.encode() for name in MENUS)]


def test_curve_across_hosts_hides_orders_on_the_wire_and_shuts_a_rogue_out(network, scripts, tmp_path: Path) -> None:
    lan = network("platform", "rider-1", "rogue")
    platform, rider_host, rogue_host = lan["platform"], lan["rider-1"], lan["rogue"]
    keys = make_keys(tmp_path)
    pcap = tmp_path / "platform-eth0.pcap"
    scripts(*platform.tool("capture", "eth0", str(pcap))).wait_for_line("capture: on eth0")
    # The same 10 orders (same seed) twice at once: encrypted from PORT, and in plain
    # text from plain_port, the control that shows this capture would see them.
    plain_port = PORT + 10
    orders = ("--orders", "10", "--interval", "0", "--wait-consumers", "1")
    curve = ("--curve-secret", keys["platform"], "--curve-allow", keys["allowed"])
    encrypted = producer_on(scripts, platform, *orders, *curve)
    plain = producer_on(scripts, platform, *orders, bind=f"tcp://0.0.0.0:{plain_port}")

    # The rogues dial first, so they would be first in line for orders if they got in.
    at = f"{platform.address}:{PORT}"
    unknown_key = rider_on(scripts, rogue_host, "rogue", at, *curve_rider(keys, "rogue"))
    no_curve = rider_on(scripts, rogue_host, "plain-rogue", at)
    unknown_key.wait_for_line("refused us: CURVE key not authorised", stream="stderr")
    no_curve.wait_for_line("refused us: (security mismatch|closed during the handshake)", stream="stderr")
    encrypted.wait_for_line("refused a connection: CURVE key not authorised", stream="stderr")

    riders = [
        rider_on(scripts, rider_host, "rider-1", at, *curve_rider(keys, "rider-1")),
        rider_on(scripts, rider_host, "rider-1-plain", f"{platform.address}:{plain_port}"),
    ]
    assert encrypted.wait() == 0 and plain.wait() == 0, encrypted.tail() + plain.tail()
    wait_until(
        lambda: all(sorted(seqs(rider, "delivered")) == list(range(1, 11)) for rider in riders),
        what=lambda: f"both riders to deliver p1-000001 to 10; {[rider.tail() for rider in riders]}",
    )

    def conversation(port: int) -> bytes | None:
        """The bytes the platform sent rider-1 from `port`, once its FIN is in the capture
        (the producer has exited: everything before it was captured too)."""
        segments = [
            s
            for s in hosts.tcp_segments(pcap)
            if (s.source, s.source_port, s.destination) == (platform.address, port, rider_host.address)
        ]
        return b"".join(s.payload for s in segments) if any(s.flags & hosts.FIN for s in segments) else None

    in_plain = wait_until(lambda: conversation(plain_port), what="the plain conversation's end in the capture")
    in_curve = wait_until(lambda: conversation(PORT), what="the encrypted conversation's end in the capture")
    # The control: without CURVE, the wire shows everything.
    assert b'"order_id": "p1-000001"' in in_plain
    assert any(name.encode() in in_plain for name in CUSTOMERS)
    # With CURVE: the 10 orders crossed this interface (more bytes than in plain text),
    # and nothing in them reads as an order.
    assert len(in_curve) > len(in_plain) * 0.9, (len(in_curve), len(in_plain))
    assert [t for t in ORDER_TEXT if t in in_curve] == []
    # The rogues got nothing: not one order on their wire, not one delivery.
    to_rogue = b"".join(s.payload for s in hosts.tcp_segments(pcap) if s.destination == rogue_host.address)
    assert [t for t in ORDER_TEXT if t in to_rogue] == []
    for rogue in (unknown_key, no_curve):
        assert seqs(rogue, "delivered") == [], rogue.tail()
