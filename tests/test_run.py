"""run.py end to end: real processes, the even spread, and a clean exit."""

from __future__ import annotations

import contextlib
import re
import signal
import socket

import pytest
from conftest import Script, posix_signals

ROW = re.compile(r"^(rider-\d+)\s+(\d+)\s+[\d.]+((?:\s+\d+)*)\s+#*(  \((killed|died)\))?$")


def report_rows(script: Script) -> dict[str, list[int]]:
    """rider -> [orders, per-producer orders...], read from the report table."""
    return {
        m.group(1): [int(m.group(2)), *map(int, m.group(3).split())] for line in script.stdout if (m := ROW.match(line))
    }


def check_even_spread(run: Script, orders: int, consumers: int) -> None:
    """run.py --orders N --consumers C (one producer) ended well: every order once, the
    even spread, a line per delivery, and nothing left running."""
    assert run.wait(timeout=30) == 0, run.output
    rows = report_rows(run)
    assert sorted(rows) == sorted(f"rider-{n}" for n in range(1, consumers + 1))
    counts = [count for count, *_ in rows.values()]
    assert sum(counts) == orders and max(counts) - min(counts) <= 1
    assert "delivered exactly once: yes" in run.stdout
    spread = int(orders % consumers != 0)
    assert f"spread: max - min orders per rider = {spread}" in run.stdout
    # A line per delivery, unless over 20 a second: then a summary line a second (cli.Pacer).
    lines = [line for line in run.stdout if " delivered p1-" in line]
    flooded = any(line.startswith("run.py: riders delivered") for line in run.stdout)
    assert len(lines) == orders or (flooded and len(lines) < orders), run.stdout
    assert "Traceback" not in run.output
    assert not run.stderr, run.stderr  # a run that went well complains of nothing (once: "gave up on 0 orders")
    run.assert_no_process_left(workers=consumers + 1)


def check_interrupted(run: Script, orders: int, workers: int) -> None:
    """run.py stopped by a signal: 130, its one line, no traceback, nothing left running."""
    assert run.wait(timeout=3) == 130
    assert "Traceback" not in run.output
    assert re.search(rf"run.py: interrupted, \d+ of {orders} orders delivered", run.output)
    run.assert_no_process_left(workers)


def test_ten_riders_get_an_even_share_and_every_order_once(scripts) -> None:
    run = scripts("-m", "hardened.run", "--orders", "53", "--speed", "0.05")
    run.wait_for_workers(11)  # 10 riders and the producer
    check_even_spread(run, orders=53, consumers=10)


def test_two_producers_are_fair_queued_and_spread_evenly(scripts) -> None:
    run = scripts("-m", "hardened.run", "--producers", "2", "--consumers", "4", "--orders", "21", "--speed", "0.05")
    run.wait_for_workers(6)
    assert run.wait(timeout=30) == 0, run.output
    rows = report_rows(run)
    assert len(rows) == 4
    for producer_column in (1, 2):
        split = [row[producer_column] for row in rows.values()]
        assert sum(split) == 21 and max(split) - min(split) <= 1
    assert "delivered exactly once: yes" in run.stdout
    assert "spread per producer: p1 1, p2 1" in run.stdout
    run.assert_no_process_left(workers=6)


@posix_signals
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_run_py_and_every_child(scripts, signum: int) -> None:
    run = scripts("-m", "hardened.run", "--orders", "200", "--speed", "1")
    run.wait_for_workers(11)
    run.wait_for_line(r"delivered p1-")  # mid-run
    run.signal(signum)
    check_interrupted(run, orders=200, workers=11)


def test_run_py_works_when_the_default_port_is_taken(scripts) -> None:
    """run.py binds port 0 everywhere, so a producer.py of yours on 5557 can't stop it.
    Whoever holds 5557 during the test will do: this test, or any other program."""
    with contextlib.ExitStack() as holding:
        with contextlib.suppress(OSError):  # taken already: just as good
            holding.enter_context(socket.create_server(("127.0.0.1", 5557)))
        with pytest.raises(OSError):
            socket.create_server(("127.0.0.1", 5557)).close()  # it is taken
        run = scripts("-m", "hardened.run", "--consumers", "2", "--orders", "4", "--speed", "0")
        assert run.wait(timeout=30) == 0, run.output
    assert "delivered exactly once: yes" in run.stdout
