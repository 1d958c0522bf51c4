"""Everything from the network is hostile (issue #21): any JSON value in any field, any
text. Nothing that arrives can raise, and no control character from a message ever
reaches a terminal.

One test per row of the issue (each failed on the old code, 4a80f2e), then the property
tests: arbitrary JSON in every field, and mutations of valid orders and records, for the
validators of both reads (hardened.orders.parse_order, the first read's
consumer.parse_order) and for run.py's sink (hardened.report.record_or_reason).

Where the two riders' validators differ (test_both_reads_agree says it too): the
hardened one also checks the order id's form (its producer's name, "-", the sequence
number) and created_at (a date and time with a UTC offset), and refuses NaN and
Infinity anywhere in the message (they are not JSON); the first read checks only the
fields it uses, and their types, so as to stay short.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from hardened.cli import Pacer

import psutil
import pytest
import zmq
from conftest import LOOPBACK_ANY_PORT, Script, Scripts, Sink, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scripts import start_consumer

import consumer as first_read
from hardened.moments import the_run
from hardened.orders import MAX_DELIVERY_S, InvalidOrder, completion_record, make_orders, parse_order, utc_now
from hardened.report import record_or_reason
from hardened.timeline import timeline_svg

# Escape sequences a producer could use to steer a rider's terminal: clear the screen,
# set the window title (OSC), a C1 CSI, a bell, a backspace, DEL, a carriage return.
ESCAPES = ["\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "\x9b2J", "\a", "x\by", "\x7f", "\rrider-1 delivered"]
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what the captured output must not hold (\t, \n aside)


def an_order(seq: int = 1, **changes: Any) -> dict:
    order = next(make_orders("p1", seq, (0, 0)))
    order["order_id"] = f"p1-{seq:06d}"
    order["created_at"] = utc_now()
    return order | changes


def encode(order: dict) -> bytes:
    return json.dumps(order).encode()


@pytest.fixture
def push(ctx: zmq.Context) -> zmq.Socket:
    socket = ctx.socket(zmq.PUSH)
    socket.bind(LOOPBACK_ANY_PORT)
    return socket


def hardened_rider(scripts: Scripts, push: zmq.Socket, sink: Sink) -> Script:
    return start_consumer(scripts, "rider-1", [push.getsockopt_string(zmq.LAST_ENDPOINT)], sink)


def rejected_then_delivers(push: zmq.Socket, rider: Script, sink: Sink, message: bytes, reason: str) -> None:
    """The message is rejected with one line saying `reason`, and the rider goes on:
    the next valid order is delivered."""
    before = len(rider.stderr)
    push.send(message)
    line = rider.wait_for_line(f"rejected message: {re.escape(reason)}", stream="stderr")
    assert line.string.startswith("rider-1: rejected message: ")
    seq = 100 + len(sink.records)
    push.send(encode(an_order(seq)))
    assert sink.collect(len(sink.records) + 1)[-1]["order_id"] == f"p1-{seq:06d}"
    assert len(rider.stderr) == before + 1, rider.stderr[before:]
    assert rider.proc.poll() is None, rider.tail()


def no_control_characters(script: Script) -> None:
    assert "Traceback" not in script.output
    assert not CONTROL.search(script.output), [line for line in script.stdout + script.stderr if CONTROL.search(line)]


# --- 1: a 400-digit integer: OverflowError in math.isfinite, the rider exited 1 ---


def test_1_huge_integers_are_rejected(scripts: Scripts, push: zmq.Socket, sink: Sink) -> None:
    rider = hardened_rider(scripts, push, sink)
    huge = "9" * 400
    for field, reason in [("delivery_s", "'delivery_s'"), ("total", "'total'"), ("price", "'items'")]:
        order = an_order()
        if field == "price":
            order["items"][0]["price"] = "HUGE"
        else:
            order[field] = "HUGE"
        rejected_then_delivers(push, rider, sink, encode(order).replace(b'"HUGE"', huge.encode()), reason)
    no_control_characters(rider)


# --- 2: a lone surrogate: accepted, then UnicodeEncodeError when printed, exit 1 ---


def test_2_a_lone_surrogate_is_rejected(scripts: Scripts, push: zmq.Socket, sink: Sink) -> None:
    rider = hardened_rider(scripts, push, sink)
    message = encode(an_order(restaurant="Pizza \ud800 Roma"))  # json.dumps writes it as \ud800
    assert b"\\ud800" in message
    rejected_then_delivers(push, rider, sink, message, "'restaurant' holds control characters")
    no_control_characters(rider)


# --- 3: ANSI and OSC escapes in the text fields: printed raw ---


def test_3_escape_sequences_are_rejected(scripts: Scripts, push: zmq.Socket, sink: Sink) -> None:
    rider = hardened_rider(scripts, push, sink)
    # 13 messages: over 20 in a second, the lines would be paced (row 9)
    cases = [(field, escape) for field in ("address", "order_id", "producer") for escape in ESCAPES[:2]]
    for field, escape in [*cases, *(("restaurant", escape) for escape in ESCAPES)]:
        order = an_order()
        order[field] += escape
        rejected_then_delivers(push, rider, sink, encode(order), f"{field!r} holds control characters")
    no_control_characters(rider)


# --- 4: a newline inside restaurant: a forged line stood on its own ---


def test_4_a_newline_cannot_forge_a_line(scripts: Scripts, push: zmq.Socket, sink: Sink) -> None:
    rider = hardened_rider(scripts, push, sink)
    forged = "rider-1 delivered p1-999999 from p1 (Nowhere -> Nowhere) in 0.00 s"
    for newline in ("\n", "\r\n", "\u2028", "\x85"):
        order = an_order(restaurant=f"Pizza Roma{newline}{forged}")
        rejected_then_delivers(push, rider, sink, encode(order), "'restaurant' holds control characters")
    assert not any(line.startswith(forged) for line in rider.stdout + rider.stderr)
    no_control_characters(rider)


# --- 5: malformed completion records crashed run.py's sink ---


def listening_port(script: Script) -> int | None:
    """The TCP port run.py's own process listens on: its sink (the producers listen in
    their own processes). Found with psutil, as lsof would, on every platform; on
    Windows a virtualenv's python.exe is a launcher, and run.py is its child."""
    try:
        process = psutil.Process(script.pid)
        candidates = [process, *process.children()]
        for candidate in candidates:
            if candidate is not process and "multiprocessing" in " ".join(candidate.cmdline()):
                continue
            for connection in candidate.net_connections("tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr:
                    return int(connection.laddr.port)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return None


def a_record(**changes: Any) -> dict:
    order = an_order(seq=999_999)  # a real order id, of an order no producer of the run sends
    return completion_record(order, "rider-x", utc_now()) | changes


MALFORMED_RECORDS = [
    json.dumps(a_record()).replace('"delivery_s": 0.0', '"delivery_s": ' + "9" * 400).encode(),  # OverflowError
    b"[" * 2000 + b"]" * 2000,  # RecursionError (under the size cap)
    json.dumps(a_record(order_id="p1-" + "1" * 50)).encode(),  # ValueError past 4,300 digits; too many anyway
    json.dumps(a_record(received_at="2026-01-01T10:00:00")).encode(),  # TypeError: naive minus aware
    json.dumps(a_record(restaurant="\x1b]0;pwned\x07")).encode(),  # to the live view and the timeline
    json.dumps(a_record(consumer="rider-1\nrider-2 delivered")).encode(),
    json.dumps(a_record(order_id="p2-000001")).encode(),  # not its producer's
    json.dumps(a_record(delivery_s=1e308)).encode(),
    b'{"order_id": NaN}',
    b"\xff",
]


def test_5_malformed_records_cannot_break_runs_sink(scripts: Scripts, ctx: zmq.Context) -> None:
    run = scripts("-m", "hardened.run", "--consumers", "2", "--orders", "10", "--delivery", "0.3-0.3")
    port = wait_until(lambda: listening_port(run), what=lambda: f"run.py's sink listening; {run.tail()}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    copies = 5  # 50 malformed records: more than the 20 lines a second run.py says
    for _ in range(copies):
        for record in MALFORMED_RECORDS:
            push.send(record)
    # Over the size cap (MAXMSGSIZE): libzmq drops the connection that sent it, nothing more.
    too_big = ctx.socket(zmq.PUSH)
    too_big.connect(f"tcp://127.0.0.1:{port}")
    too_big.send(json.dumps(a_record(order_id="p1-" + "1" * 5000)).encode())
    assert run.wait(timeout=20) == 0, run.tail()
    assert "delivered exactly once: yes" in run.stdout, run.tail()
    assert "total orders: 10 (p1), delivered 10" in run.stdout
    lines = [line for line in run.stderr if line.startswith("run.py: ignored")]
    one_by_one = [line for line in lines if line.startswith("run.py: ignored a malformed completion record (")]
    summary = re.compile(r"run.py: ignored (\d+) malformed completion records in .*?: (.+)$")
    summaries = [match for line in lines if (match := summary.match(line))]
    assert len(one_by_one) == 20, lines  # paced: a line each for the first 20 in a second
    # then a summary a second, counting each reason; it counts the first 20 too
    assert sum(int(match.group(1)) for match in summaries) == copies * len(MALFORMED_RECORDS), "\n".join(run.stderr)
    no_control_characters(run)


# --- 7: the validator was looser than the wire format ---


def test_7_order_id_and_created_at_follow_the_wire_format(scripts: Scripts, push: zmq.Socket, sink: Sink) -> None:
    rider = hardened_rider(scripts, push, sink)
    for order_id in ["p2-000001", "p1-1", "p1-0000001", "p1-000000", "p1-١٢٣٤٥٦", "p1-000001x", "p1" + "-1" * 9]:
        message = encode(an_order(order_id=order_id))
        rejected_then_delivers(push, rider, sink, message, "'order_id' is not the producer's name")
    for created_at in ["2026-01-01", "2026-01-01T10:00:00", "yesterday"]:
        message = encode(an_order(created_at=created_at))
        rejected_then_delivers(push, rider, sink, message, "'created_at' is not an ISO-8601 date and time")
    # What order_id() makes past 999,999 orders is an order id too.
    push.send(encode(an_order(order_id="p1-1000000")))
    assert sink.collect(len(sink.records) + 1)[-1]["order_id"] == "p1-1000000"


# --- 9: a flood of junk: a line for each ---


def test_9_a_flood_of_junk_is_summed_up_once_a_second(scripts: Scripts, push: zmq.Socket, sink: Sink) -> None:
    rider = hardened_rider(scripts, push, sink)
    rejected_then_delivers(push, rider, sink, b"[]", "not a JSON object")  # connected, and a line at a low rate
    junk = 10_000
    for n in range(junk):
        push.send(b"{oops" if n % 2 else b"[]")
    summary = re.compile(r"rider-1: rejected ([\d,]+) messages in \d+\.\d s(, [\d,]+/s)?: (.+)$")

    def summed_up() -> int:
        # A summary counts its second's every message, the first 20 (said a line each) too.
        return sum(int(m.group(1).replace(",", "")) for line in rider.stderr if (m := summary.match(line)))

    wait_until(lambda: summed_up() >= junk, timeout=20, what=lambda: f"{junk} rejections summed up; {rider.tail()}")
    assert summed_up() in (junk, junk + 1)  # + 1: the "[]" above, if it was in the flood's first second
    assert len(rider.stderr) < 45, rider.stderr  # at most 20 lines and a summary a second
    reasons = [m.group(3) for line in rider.stderr if (m := summary.match(line))]
    counts = [dict(re.findall(r"(not JSON|not a JSON object but list) \(([\d,]+)\)", r)) for r in reasons]
    assert all(counts) and sum(int(c.replace(",", "")) for each in counts for c in each.values()) == summed_up()

    push.send(encode(an_order(7)))
    assert sink.collect(len(sink.records) + 1)[-1]["order_id"] == "p1-000007"
    no_control_characters(rider)


# --- 11a: a stray "rider-1: delivered 0 orders in 0.2 s, 0/s" after a flood ---


def test_11a_no_empty_summary_after_a_flood() -> None:
    now = [0.0]
    lines: list[str] = []
    pacer = Pacer("rider-1", "delivered", clock=lambda: now[0], out=lines.append)
    for step in range(25):  # a flood: 25 in the first second
        now[0] = step * 0.036
        pacer.event(lambda: "a delivery")
    for step in range(25):  # and 25 more in 0.2 s
        now[0] = 1.0 + step * 0.008
        pacer.event(lambda: "a delivery")
    now[0] = 2.0
    pacer.tick()  # the second window's summary
    now[0] = 2.5
    pacer.flush()  # the rider stops: nothing more to say
    summary = "rider-1: delivered 25 orders in 1.0 s, 25/s"
    assert lines == [*["a delivery"] * 20, summary, summary]  # and not "delivered 0 orders in 0.2 s, 0/s"


# --- the terminal and the timeline: what a record carries is printable, and escaped in XML ---


def test_the_timeline_escapes_what_a_record_carries() -> None:
    text = "<b>Fish & \"Chips\" 'n' </title>"
    record = completion_record(an_order(restaurant=text), "rider-1", utc_now())
    checked = record_or_reason(json.dumps(record).encode())
    assert isinstance(checked, dict)
    svg = timeline_svg(the_run([checked], ["rider-1"], ["p1"]), title="t")
    bar = ET.fromstring(svg.encode()).find(".//{http://www.w3.org/2000/svg}rect[@class='delivery']")
    assert bar is not None
    tooltip = bar.findtext("{http://www.w3.org/2000/svg}title") or ""
    assert tooltip.startswith(f"rider-1: p1-000001 from {text}; ")


# --- property tests: whatever the JSON, a verdict, never an exception ---

FIELDS = ["order_id", "producer", "restaurant", "items", "total", "customer", "address", "created_at", "delivery_s"]
# Every code point, lone surrogates and controls included (st.text() leaves surrogates out).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
numbers = (
    st.integers() | st.integers(min_value=10**300, max_value=10**400) | st.floats() | st.sampled_from([1e308, -0.0])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)
# Numbers as text: what json.dumps never writes, a peer may.
RAW_NUMBERS = ["1e400", "-1e400", "9" * 400, "1" + "0" * 5000, "NaN", "Infinity", "-0", "1E-400"]


def message(order: object, raw: str | None = None) -> bytes:
    text = json.dumps(order, allow_nan=True)
    return (text.replace('"RAW"', raw) if raw is not None else text).encode("utf-8", "surrogatepass")


@st.composite
def mutated_orders(draw: st.DrawFn) -> bytes:
    """A valid order with a field (or an item's field) replaced by any JSON, or by a raw
    number, or deleted; or an extra field."""
    order = an_order(draw(st.integers(1, 999_999)))
    if draw(st.booleans()):
        order["items"][0][draw(st.sampled_from(["name", "qty", "price"]))] = "RAW"
    else:
        order[draw(st.sampled_from([*FIELDS, "extra"]))] = "RAW"
    what = draw(st.sampled_from(["json", "raw", "delete"]))
    if what == "json":
        return message(order, json.dumps(draw(json_values), allow_nan=True))
    if what == "raw":
        return message(order, draw(st.sampled_from(RAW_NUMBERS)))
    return message({k: v for k, v in order.items() if v != "RAW"})


messages = mutated_orders() | json_values.map(message) | st.binary(max_size=300)


def hardened_verdict(data: bytes) -> dict | None:
    try:
        return parse_order(data)
    except InvalidOrder as exc:
        assert str(exc)  # a reason to print
        assert not CONTROL.search(str(exc)) and str(exc).isprintable(), str(exc)
        return None


def first_read_verdict(data: bytes) -> dict | None:
    try:
        return first_read.parse_order([data])
    except ValueError as exc:  # and nothing else
        assert str(exc).isprintable()
        return None


def printable_text(order: dict) -> bool:
    text = ("order_id", "producer", "restaurant", "customer", "address", "created_at")
    return all(isinstance(order[name], str) and order[name].isprintable() for name in text)


@settings(max_examples=400, deadline=None)
@given(messages)
def test_neither_validator_raises_and_what_they_accept_prints(data: bytes) -> None:
    for verdict in (hardened_verdict(data), first_read_verdict(data)):
        if verdict is not None:
            assert printable_text(verdict)
            assert 0 <= verdict["delivery_s"] <= MAX_DELIVERY_S


def hardened_only_rejects(data: bytes) -> bool:
    """Where the reads differ, on purpose: the hardened rider checks the order id's form
    and created_at, and takes no NaN or Infinity anywhere in the message."""
    try:
        parse_order(data)
    except InvalidOrder as exc:
        reason = str(exc)
        return reason.startswith(("'order_id' is not", "'created_at' is not")) or "is not a number" in reason
    return False


@settings(max_examples=400, deadline=None)
@given(messages)
def test_both_reads_agree(data: bytes) -> None:
    hardened, first = hardened_verdict(data), first_read_verdict(data)
    if hardened is not None:
        assert first == hardened
    elif first is not None:
        assert hardened_only_rejects(data), data


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    record = completion_record(an_order(draw(st.integers(1, 999_999))), "rider-1", utc_now())
    record[draw(st.sampled_from([*record, "extra"]))] = "RAW"
    if draw(st.booleans()):
        return message(record, draw(st.sampled_from(RAW_NUMBERS)))
    return message(record, json.dumps(draw(json_values), allow_nan=True))


@settings(max_examples=400, deadline=None)
@given(mutated_records() | json_values.map(message) | st.binary(max_size=300))
def test_the_sink_never_raises_and_what_it_takes_is_usable(data: bytes) -> None:
    record = record_or_reason(data)
    if isinstance(record, str):
        assert record.isprintable()
        return
    names = ("order_id", "producer", "consumer", "received_at", "done_at")
    assert all(isinstance(record[name], str) and record[name].isprintable() for name in names)
    assert isinstance(record.get("restaurant", ""), str) and record.get("restaurant", "").isprintable()
    assert isinstance(record["delivery_s"], float) and 0 <= record["delivery_s"] <= MAX_DELIVERY_S
    timeline_svg(the_run([record], ["rider-1"], [record["producer"]]))  # the timeline takes it
