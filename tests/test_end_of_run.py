"""When run.py ends a run (hardened/sink.py: nothing_more_to_come), and what its report
says of every order still missing then.

A quiet rider is not a dead one: slow to start, or paused (a laptop swapping), it still
delivers, and run.py waits for it. run.py gives up only on orders that nobody alive
can have, and then says on whom and why; interrupted, it says where each missing
order is. Real processes, held with SIGSTOP / SIGCONT (psutil's suspend and resume) or
killed outright, as life does it.
"""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import psutil
import pytest
from conftest import Script, Scripts, posix_signals, wait_until
from test_faults import riders_alone
from test_hostile import an_order
from test_run import report_rows

from hardened.orders import completion_record, utc_now
from hardened.report import Ledger, Results
from hardened.sink import SETTLE_S, Whereabouts, nothing_more_to_come

RUN = ("-m", "hardened.run")
LINE = re.compile(r"^\s*(.+?) \((\d+)\): (.*)$")  # a report line: label (count): ids


def delivered_ids(run: Script) -> list[str]:
    """The orders run.py said were delivered, a line each (PlainView; no flood here)."""
    return [m.group(1) for line in run.stdout if (m := re.match(r"rider-\d+ delivered (p\d-\d+) ", line))]


def report_lines(run: Script) -> dict[str, list[str]]:
    """label -> ids, for the report's lines about missing orders."""
    found = {}
    for line in run.stdout:
        if (m := LINE.match(line)) and not line.startswith("total orders"):
            ids = m.group(3).split()
            assert "..." not in ids, line  # every id shown: the tests keep below report.SHOWN_IDS
            found[m.group(1)] = [] if ids == ["none"] else ids
    return found


def all_ids(producer: str, orders: int) -> set[str]:
    return {f"{producer}-{n:06d}" for n in range(1, orders + 1)}


def held(processes: list[psutil.Process]) -> None:
    for process in processes:
        process.suspend()


@pytest.mark.slow  # 12 s, mostly the pause: CI's own step, python -m pytest -m slow
@posix_signals  # SIGSTOP / SIGCONT
def test_a_rider_paused_for_10_s_delivers_its_orders_and_the_run_ends_exactly_once(scripts: Scripts) -> None:
    run = scripts(*RUN, "--consumers", "3", "--orders", "15", "--speed", "0.3")
    run.wait_for_line("run.py: p1 sent its 15 orders and exited")  # its share is queued at each rider
    paused = riders_alone(run, 3)[0]
    paused.suspend()
    try:
        run.watch(10)  # the pause: what the test is about, not a synchronisation
        assert run.proc.poll() is None, run.output  # no giving up on a rider that is alive
        assert len(delivered_ids(run)) < 15, run.output  # not vacuous: it held orders all along
    finally:
        paused.resume()
    assert run.wait(timeout=20) == 0, run.output
    assert "delivered exactly once: yes" in run.stdout
    assert sorted(delivered_ids(run)) == sorted(all_ids("p1", 15))
    assert not any("killing it" in line for line in run.stderr), run.stderr
    run.assert_no_process_left(workers=3)


@pytest.mark.slow  # 10 s, mostly the late start
@posix_signals  # SIGSTOP / SIGCONT
def test_every_rider_starting_5_s_late_still_gets_every_order_delivered_once(scripts: Scripts) -> None:
    """The defaults, with each rider held from the moment it is seen (the test looks
    every few milliseconds: most are held before they connect) and let go 5 s later:
    a slow start, as under Wine or an antivirus."""
    run = scripts(*RUN)
    producer = wait_until(lambda: next((w for w in run.workers() if listening(w)), None), what="the producer bound").pid
    riders: dict[int, psutil.Process] = {}

    def hold_new_riders() -> bool:
        for worker in run.workers():
            if worker.pid != producer and worker.pid not in riders:
                worker.suspend()
                riders[worker.pid] = worker
        return len(riders) == 10

    wait_until(hold_new_riders, what="10 riders held")
    try:
        run.watch(5)  # the slow start: what the test is about
        assert run.proc.poll() is None, run.output
        assert not delivered_ids(run), run.output
    finally:
        for rider in riders.values():
            rider.resume()
    assert run.wait(timeout=30) == 0, run.output
    assert "delivered exactly once: yes" in run.stdout
    assert sum(orders for orders, *_ in report_rows(run).values()) == 50


def listening(process: psutil.Process) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN for c in process.net_connections(kind="tcp"))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def test_a_rider_killed_mid_run_is_named_with_the_orders_lost_with_it(scripts: Scripts) -> None:
    run = scripts(*RUN, "--consumers", "3", "--orders", "18", "--speed", "0.3")
    run.wait_for_line("run.py: p1 sent its 18 orders and exited")
    run.wait_for_line(r"rider-\d delivered")
    riders_alone(run, 3)[0].kill()  # outright: SIGKILL, or TerminateProcess on Windows
    assert run.wait(timeout=30) == 1, run.output
    dead = [name for name in report_rows(run) if any(re.match(rf"{name}\s.*\(died\)$", line) for line in run.stdout)]
    assert len(dead) == 1, run.stdout
    lines = report_lines(run)
    lost = lines[f"lost with {dead[0]} (died)"]
    delivered = delivered_ids(run)
    assert lost and sorted(lost + delivered) == sorted(all_ids("p1", 18)), run.output  # each once
    assert report_rows(run)[dead[0]][0] + len(lost) == 6  # its round-robin share: delivered or lost
    assert "every other order delivered exactly once: yes" in run.stdout
    gave_up = rf"run.py: gave up on {len(lost)} orders?: {dead[0]} died; the producers are done, and every living"
    assert any(re.match(gave_up, line) for line in run.stderr), run.stderr
    run.assert_no_process_left(workers=3)


def test_a_producer_killed_mid_run_is_named_with_its_orders_never_taken(scripts: Scripts) -> None:
    run = scripts(
        *RUN, "--producers", "2", "--consumers", "3", "--orders", "15", "--interval", "0.1", "--speed", "0.05"
    )
    bound = run.wait_for_line(r"p1 bound tcp://127\.0\.0\.1:\d+, p2 bound tcp://127\.0\.0\.1:(\d+)")
    port = int(bound.group(1))
    run.wait_for_line(r"rider-\d delivered p2-000002 ")  # mid-run: it has sent some
    p2 = next(w for w in run.workers() if port in listening_ports(w))
    p2.kill()
    assert run.wait(timeout=30) == 1, run.output
    assert any(re.match(r"run\.py: p2 (died of SIGKILL|failed \(exit \d+\)); collecting", line) for line in run.stderr)
    lines = report_lines(run)
    never = next(
        ids for label, ids in lines.items() if re.fullmatch(r"never taken: p2 \S.* before sending them", label)
    )
    delivered = delivered_ids(run)
    assert sorted(never + delivered) == sorted(all_ids("p1", 15) | all_ids("p2", 15)), run.output
    assert all(order_id.startswith("p2-") for order_id in never) and never
    assert lines["missing"] == never
    assert "delivered exactly once: no" in run.stdout
    run.assert_no_process_left(workers=5)


def listening_ports(process: psutil.Process) -> set[int]:
    try:
        return {c.laddr.port for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()


@posix_signals  # Ctrl-C: SIGINT
def test_ctrl_c_mid_run_says_where_each_missing_order_is(scripts: Scripts) -> None:
    run = scripts(*RUN, "--consumers", "3", "--orders", "18", "--speed", "0.5")
    run.wait_for_line("run.py: p1 sent its 18 orders and exited")
    riders_alone(run, 3)
    run.wait_for_line(r"rider-\d delivered")
    run.signal(signal.SIGINT)
    assert run.wait(timeout=5) == 130, run.output
    assert any(re.match(r"run\.py: interrupted, \d+ of 18 orders delivered$", line) for line in run.stderr)
    lines = report_lines(run)
    missing = lines.pop("missing")
    being_delivered = {label: ids for label, ids in lines.items() if label.endswith(", alive, not delivered yet")}
    assert all(len(ids) == 1 for ids in being_delivered.values()), lines  # a rider takes one at a time
    queued = lines.get("never taken, queued at a living rider", [])
    reasons = [order_id for ids in being_delivered.values() for order_id in ids] + queued
    assert sorted(reasons) == sorted(missing), run.output  # a reason for each missing order, one each
    assert sorted(missing + delivered_ids(run)) == sorted(all_ids("p1", 18)), run.output
    assert being_delivered and queued, run.output  # mid-run: riders on a ride, and orders queued
    run.assert_no_process_left(workers=3)


def test_the_last_record_and_every_idle_in_one_round_give_up_on_nothing() -> None:
    """Once, a run that went well could end with 'gave up on 0 orders' on stderr: the last
    record and every rider's 'idle' came in the round in which collect() finished."""
    producer_done = datetime.now(timezone.utc) - timedelta(seconds=SETTLE_S + 1)
    results = Results(Ledger({"p1": 1}))
    results.ledger.add(completion_record(an_order(seq=1), "rider-1", utc_now()), 1.0)
    where = Whereabouts(["rider-1"], None)
    where.take(json.dumps({"event": "idle", "consumer": "rider-1", "at": utc_now()}).encode())
    alive = SimpleNamespace(name="rider-1", exitcode=None)  # what collect() reads of a process
    exited = SimpleNamespace(name="p1", exitcode=0)
    args = SimpleNamespace(interval=0.0, consumers=1)
    assert results.ledger.complete() and where.ran_dry("rider-1", producer_done)
    why = nothing_more_to_come(results, where, [alive], [exited], {"p1": producer_done}, None, args)  # type: ignore[list-item, arg-type]
    assert why == ""
