"""Faults the scripts survive, and what the pipeline loses when a peer dies.

Each test runs the real scripts in their own processes and breaks something the way
it breaks in life: a process killed outright (SIGKILL; TerminateProcess on Windows), a
peer that is not there yet, a signal at a random moment.
"""

from __future__ import annotations

import random
import re
import signal
import socket

import psutil
import pytest
from conftest import Script, Sink, our_frames, posix_signals, signal_while_python_starts, wait_until
from test_readme import check, mismatches
from test_run import report_rows
from test_scripts import start_consumer, start_producer


def free_tcp_endpoint() -> str:
    """An endpoint nobody listens on yet (the OS picks the port; we let it go again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_a_consumer_started_before_the_producer_waits_then_delivers(scripts, sink: Sink) -> None:
    endpoint = free_tcp_endpoint()
    rider = start_consumer(scripts, "rider-1", [endpoint], sink)
    rider.wait_for_line("connecting to")  # connect() succeeded with nobody there
    producer = scripts("-m", "hardened.producer", "--bind", endpoint, "--orders", "5", "--interval", "0")
    assert [r["order_id"] for r in sink.collect(5)] == [f"p1-{n:06d}" for n in range(1, 6)]
    assert producer.wait() == 0
    assert rider.stderr == []  # it waited quietly


def test_consumers_carry_on_when_the_producer_is_killed_and_restarted(scripts, sink: Sink) -> None:
    first, endpoint = start_producer(scripts, "--name", "p1", "--interval", "0.01", "--quiet")
    # By host name, as across machines: reconnecting must not look like a broken link.
    by_name = endpoint.replace("127.0.0.1", "localhost")
    riders = [start_consumer(scripts, f"rider-{n}", [by_name], sink) for n in (1, 2)]
    wait_until(lambda: len(sink.collect(0)) >= 10, what="orders from the first producer")
    first.kill()
    first.wait()
    # Both riders reconnect by themselves (every 100 ms); --wait-consumers keeps the
    # first one back from taking the whole burst.
    second = scripts(
        "-m",
        "hardened.producer",
        "--bind",
        endpoint,
        "--name",
        "p2",
        "--orders",
        "20",
        "--interval",
        "0",
        "--wait-consumers",
        "2",
    )
    assert second.wait(timeout=20) == 0
    from_p2 = wait_until(
        lambda: records if len(records := [r for r in sink.collect(0) if r["producer"] == "p2"]) >= 20 else None,
        what="the restarted producer's 20 orders",
    )
    assert sorted(r["order_id"] for r in from_p2) == [f"p2-{n:06d}" for n in range(1, 21)]
    assert {r["consumer"] for r in from_p2} == {"rider-1", "rider-2"}
    assert all(rider.proc.poll() is None for rider in riders)
    assert [line for rider in riders for line in rider.stderr] == []  # no false alarm


@posix_signals  # the producer is stopped with Ctrl-C (SIGINT), so that every order it sent is final
def test_a_killed_consumer_loses_its_queue_and_the_others_get_everything_after(scripts, sink: Sink) -> None:
    # 0.06 s apart: under 20 a second, so the producer prints a line per order (see cli.Pacer).
    producer, endpoint = start_producer(scripts, "--interval", "0.06", "--wait-consumers", "3")
    riders = {n: start_consumer(scripts, f"rider-{n}", [endpoint], sink) for n in (1, 2, 3)}
    wait_until(lambda: len(sink.collect(0)) >= 15, what="the first orders")
    riders[3].kill()
    riders[3].wait()
    # The producer noticed the death, and says which consumer (its address) is gone.
    producer.wait_for_line(r"p1: consumer 127\.0\.0\.1:\d+ gone \(it quit, or went silent for 1.5 s\)")
    closed_at = next(i for i, line in enumerate(producer.stdout) if " gone (" in line)
    producer.wait_for_line(r"sent p1-\d+", timeout=5)
    wait_until(lambda: len(producer.stdout) > closed_at + 30, what="30 more orders after the death")
    producer.signal(signal.SIGINT)
    assert producer.wait() == 0
    sent_after = [m.group(1) for line in producer.stdout[closed_at:] if (m := re.search(r"sent (p1-\d+)", line))]
    assert len(sent_after) >= 30
    delivered = wait_until(
        lambda: ids if (ids := {r["order_id"] for r in sink.collect(0)}) >= set(sent_after) else None,
        what="every order sent after the death",
    )
    assert {r["consumer"] for r in sink.records if r["order_id"] in sent_after} == {"rider-1", "rider-2"}
    assert len(sink.records) == len(delivered)  # and none twice


def test_run_py_crash_consumer_reports_the_lost_orders(scripts) -> None:
    run = scripts("-m", "hardened.run", "--crash-consumer", "--consumers", "4", "--orders", "40", "--speed", "0.05")
    run.wait_for_workers(5)
    check_crash_consumer_report(run)


def check_crash_consumer_report(run: Script) -> None:
    """run.py --crash-consumer --consumers 4 --orders 40: rider-1 killed outright, its
    queued orders reported lost, every other order delivered once, nothing left running."""
    assert run.wait(timeout=30) == 0, run.output
    lost_line = next(line for line in run.stdout if line.startswith("lost with rider-1"))
    lost = lost_line.split(": ", 1)[1].split()
    rows = report_rows(run)
    assert sum(orders for orders, *_ in rows.values()) + len(lost) == 40
    assert rows["rider-1"][0] + len(lost) == 10  # its round-robin share: delivered or lost
    assert "every other order delivered exactly once: yes" in run.stdout
    assert any(line.rstrip().endswith("(killed)") and line.startswith("rider-1") for line in run.stdout)
    # The ideal shares the work among the riders that lived, as the timeline's does.
    work, ideal = next(
        map(float, m.groups())
        for line in run.stdout
        if (m := re.fullmatch(r"work delivered: (\S+) s; ideal time \(work / 3 riders that lived\): (\S+) s", line))
    )
    assert abs(ideal - work / 3) <= 0.01
    assert "Traceback" not in run.output
    run.assert_no_process_left(workers=5)


def test_ten_thousand_orders_through_ten_riders_exactly_once(scripts) -> None:
    run = scripts("-m", "hardened.run", "--orders", "10000", "--speed", "0")
    assert run.wait(timeout=60) == 0, run.output[-2000:]
    assert "delivered exactly once: yes" in run.stdout
    assert sum(orders for orders, *_ in report_rows(run).values()) == 10000


def test_a_producer_that_exits_right_after_its_last_send_loses_nothing(scripts, sink: Sink) -> None:
    producer, endpoint = start_producer(
        scripts, "--orders", "10000", "--interval", "0", "--wait-consumers", "3", "--quiet"
    )
    for n in (1, 2, 3):
        start_consumer(scripts, f"rider-{n}", [endpoint], sink, "--quiet")
    # Read the records meanwhile: a sink nobody reads fills up, and riders then drop records.
    ids = [r["order_id"] for r in sink.collect(10000, timeout=30)]
    assert producer.wait(timeout=30) == 0  # exits as soon as its linger has flushed the queue
    assert sorted(ids) == [f"p1-{n:06d}" for n in range(1, 10001)]


TRIALS = 14


def signal_trial(trial: int) -> tuple[signal.Signals, float, bool]:
    """One moment in each fourteenth of 0.05-1.1 s (seeded), so that start-up gets its share.
    Before 0.3 s only SIGINT: Python's start-up has more to say of it (a KeyboardInterrupt)
    than of a SIGTERM, which kills it without a word until run.py's first statement."""
    rng = random.Random(trial)
    delay = round(0.05 + 1.05 * (trial + rng.random()) / TRIALS, 2)  # run.py ends at about 1.05 s
    signum = rng.choice([signal.SIGINT, signal.SIGTERM]) if delay >= 0.3 else signal.SIGINT
    return signum, delay, trial % 2 == 1


SIGNAL_TRIALS = [signal_trial(trial) for trial in range(TRIALS)]


@posix_signals
@pytest.mark.parametrize(
    ("signum", "delay", "to_group"),
    SIGNAL_TRIALS,
    ids=[f"{s.name}-at-{d}s-to-{'group' if g else 'run.py'}" for s, d, g in SIGNAL_TRIALS],
)
def test_a_signal_at_any_moment_ends_run_py_cleanly(scripts, signum: signal.Signals, delay: float, to_group: bool):
    """Start-up, mid-run and the report: 14 seeded moments between 0.05 and 1.1 s. Half
    the signals go to run.py alone (kill), half to its whole process group, children
    included, as Ctrl-C in a terminal does."""
    run = scripts("-m", "hardened.run", "--consumers", "4", "--orders", "16", "--speed", "0.2")
    run.watch(delay)  # the chosen moment (unless run.py has finished already)
    printed = list(run.stdout)
    run.workers()  # a last look: every worker that had started by then is still there, or was seen
    if to_group:
        run.signal_group(signum)
    else:
        run.signal(signum)
    code = run.wait(timeout=3)  # past it, the test fails with what run.py printed
    assert not our_frames(run.output), run.output  # no traceback through this project's code
    if signal_while_python_starts(code, run.output, signum):
        run.assert_no_process_left(workers=0)
        return  # it landed before run.py's first statement (seen on a loaded machine)
    assert code in (0, 130), run.output  # 0 only if it had already finished
    assert "Traceback" not in run.output
    # Not vacuous: the workers that had started by then were seen while they ran. Once
    # run.py said it was starting riders, its producer was up (waiting for them); once a
    # rider had delivered, the 4 riders were, and stay until run.py stops them. The
    # producer may be gone by then, unseen on a loaded machine: it exits once it has sent.
    started = 0
    if any(re.match(r"rider-\d+ delivered", line) for line in printed):
        started = 4
    elif any("starting 4 riders" in line for line in printed):
        started = 1
    run.assert_no_process_left(workers=started, timeout=3)


def riders_alone(run: Script, count: int) -> list[psutil.Process]:
    """run.py's riders, once its producer (the other worker) has exited."""
    return wait_until(lambda: w if len(w := run.workers()) == count else None, what=f"{count} riders alone")


def test_run_py_fails_when_a_rider_dies_unplanned(scripts) -> None:
    run = scripts("-m", "hardened.run", "--consumers", "3", "--orders", "30", "--speed", "0.3")
    run.wait_for_line("run.py: p1 sent its 30 orders and exited")  # from now on the workers are riders
    run.wait_for_line(r"rider-\d delivered")
    riders = riders_alone(run, 3)
    riders[0].kill()  # outright: SIGKILL, or TerminateProcess on Windows
    assert run.wait(timeout=30) == 1, run.output  # lost orders that no demo explains
    assert any(line.endswith("(died)") for line in run.stdout)
    run.assert_no_process_left(workers=3)


def test_the_children_are_found_by_tag_and_stop_by_themselves_when_run_py_is_killed(scripts) -> None:
    """What the "no process left" checks stand on. The tag finds exactly run.py's process
    tree: every descendant psutil knows of, and nothing else. And it finds a child that is
    left behind: with run.py killed outright, a rider held suspended (it can't exit) is
    still found, while the others stop by themselves (their end of the stop pipe reads
    EOF) and are gone; once resumed, it stops by itself as well. (The fork server and the
    resource tracker wait for it: it holds their pipes too.)"""
    run = scripts("-m", "hardened.run", "--consumers", "3", "--orders", "200", "--speed", "1")
    run.wait_for_line("run.py: p1 sent its 200 orders and exited")  # from now on the workers are riders
    riders = riders_alone(run, 3)

    def tree() -> set[int]:
        return {run.pid, *(child.pid for child in psutil.Process(run.pid).children(recursive=True))}

    tagged = wait_until(
        lambda: found if (found := {p.pid for p in run.processes()}) == tree() else None, what="tagged = tree"
    )
    assert len(tagged) >= 1 + 3  # run.py and the riders (POSIX: the resource tracker too, and maybe the fork server)
    held = riders[0]
    held.suspend()
    try:
        run.kill()
        assert run.proc.wait(timeout=10) != 0  # not run.wait(): the held rider keeps the output pipe open
        others = {p.pid for p in riders[1:]}
        found = wait_until(
            lambda: None if others & (pids := {p.pid for p in run.processes()}) else pids, what="the others to stop"
        )
        assert held.pid in found  # found although run.py, its parent, is gone
    finally:
        held.resume()
    run.assert_no_process_left(workers=3)
    run.wait()  # now the output pipe is closed: the readers are done


HEARTBEATS = ("--heartbeat", "0.2", "--heartbeat-timeout", "0.6")


def test_heartbeats_drop_a_frozen_rider_and_it_comes_back_by_itself(scripts, sink: Sink) -> None:
    """A suspended rider answers nothing, as when a phone loses signal (its kernel still
    acks TCP, so only heartbeats can tell). The producer drops it within the timeout,
    saying who; once thawed the rider notices, reconnects and delivers again."""
    producer, endpoint = start_producer(scripts, "--interval", "0.02", "--wait-consumers", "2", *HEARTBEATS)
    riders = [start_consumer(scripts, f"rider-{n}", [endpoint], sink, *HEARTBEATS) for n in (1, 2)]

    def delivered_by(name: str) -> int:
        return sum(r["consumer"] == name for r in sink.collect(0))

    wait_until(lambda: delivered_by("rider-1") and delivered_by("rider-2"), what="both riders delivering")
    frozen = psutil.Process(riders[0].pid)
    frozen.suspend()
    try:
        producer.wait_for_line(r"p1: consumer 127\.0\.0\.1:\d+ gone \(it quit, or went silent for 0\.6 s\)", 5)
        before = delivered_by("rider-2")
        wait_until(lambda: delivered_by("rider-2") > before + 10, what="rider-2 taking every order meanwhile")
    finally:
        frozen.resume()
    riders[0].wait_for_line(r"rider-1: lost producer tcp://127\.0\.0\.1:\d+ \(.*\); ZeroMQ keeps retrying")
    riders[0].wait_for_line(r"rider-1: producer tcp://127\.0\.0\.1:\d+ back")
    before = delivered_by("rider-1")
    wait_until(lambda: delivered_by("rider-1") > before + 5, what="rider-1 delivering again")
    check(mismatches("heartbeats", producer, {"rider-1": riders[0]}))  # what README.md shows


@pytest.mark.timeout(90)  # 3,000 short sleeps; see below
def test_a_rider_far_behind_stays_connected_with_heartbeats(scripts, sink: Sink) -> None:
    """Busy is not gone: a rider thousands of orders behind keeps its connection and
    delivers them all. With its receive queue capped (the default high-water mark),
    libzmq 4.3 stopped reading PINGs once the queue was full, dropped the rider at the
    heartbeat timeout, or aborted it (see heartbeats.read_without_limit)."""
    producer, endpoint = start_producer(
        scripts, "--orders", "3000", "--interval", "0", "--wait-consumers", "1", *HEARTBEATS
    )
    rider = start_consumer(scripts, "rider-1", [endpoint], sink, "--speed", "0.001", "--quiet", *HEARTBEATS)
    # 3,000 sleeps of 0.6 ms: about 2.5 s here; on a machine with more runnable processes
    # than cores each wake-up waits its turn (CI once took 30 s for 2,208 of them).
    assert len(sink.collect(3000, timeout=75)) == 3000
    assert producer.wait() == 0
    assert not any(" gone (" in line for line in producer.stdout), producer.stdout
    assert rider.proc.poll() is None and rider.stderr == [], rider.output
