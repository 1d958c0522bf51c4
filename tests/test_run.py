"""run.py end to end: real processes, the even spread, and a clean exit."""

from __future__ import annotations

import re
import signal

import pytest
from conftest import Script, group_members, wait_until

ROW = re.compile(r"^(rider-\d+)\s+(\d+)\s+[\d.]+((?:\s+\d+)*)\s+#*(  \((killed|died)\))?$")


def report_rows(script: Script) -> dict[str, list[int]]:
    """rider -> [orders, per-producer orders...], read from the report table."""
    return {
        m.group(1): [int(m.group(2)), *map(int, m.group(3).split())] for line in script.stdout if (m := ROW.match(line))
    }


def assert_no_process_left(script: Script) -> None:
    # run.py ran in its own process group: its riders, producers and the fork server
    # must all be gone once it has exited (the fork server follows within moments).
    wait_until(lambda: not group_members(script.pid), timeout=5, what="run.py's children to exit")


def test_ten_riders_get_an_even_share_and_every_order_once(scripts) -> None:
    run = scripts("run.py", "--orders", "53", "--speed", "0.05")
    assert run.wait(timeout=30) == 0, run.output
    rows = report_rows(run)
    assert sorted(rows) == sorted(f"rider-{n}" for n in range(1, 11))
    counts = [orders for orders, *_ in rows.values()]
    assert sum(counts) == 53 and max(counts) - min(counts) <= 1
    assert "delivered exactly once: yes" in run.stdout
    assert "spread: max - min orders per rider = 1" in run.stdout
    assert len([line for line in run.stdout if " delivered p1-" in line]) == 53  # a line per delivery
    assert_no_process_left(run)


def test_two_producers_are_fair_queued_and_spread_evenly(scripts) -> None:
    run = scripts("run.py", "--producers", "2", "--consumers", "4", "--orders", "21", "--speed", "0.05")
    assert run.wait(timeout=30) == 0, run.output
    rows = report_rows(run)
    assert len(rows) == 4
    for producer_column in (1, 2):
        split = [row[producer_column] for row in rows.values()]
        assert sum(split) == 21 and max(split) - min(split) <= 1
    assert "delivered exactly once: yes" in run.stdout
    assert "spread per producer: p1 1, p2 1" in run.stdout
    assert_no_process_left(run)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_run_py_and_every_child(scripts, signum: int) -> None:
    run = scripts("run.py", "--orders", "200", "--speed", "1")
    run.wait_for_line(r"delivered p1-")  # mid-run
    run.signal(signum)
    assert run.wait(timeout=3) == 130
    assert "Traceback" not in run.output
    assert re.search(r"run.py: interrupted, \d+ of 200 orders delivered", run.output)
    assert_no_process_left(run)


def test_run_py_works_when_the_default_port_is_taken(scripts) -> None:
    blocker = scripts("producer.py")  # binds the default tcp://127.0.0.1:5557
    blocker.wait_for_line("bound tcp://127.0.0.1:5557")
    run = scripts("run.py", "--consumers", "2", "--orders", "4", "--speed", "0")
    assert run.wait(timeout=30) == 0, run.output
    assert "delivered exactly once: yes" in run.stdout
    blocker.signal(signal.SIGINT)
    assert blocker.wait() == 0
