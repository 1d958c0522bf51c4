"""What a person sees, at any rate: a line per event while they can read it, a summary a
second in a flood, a live view on a terminal, and a timeline picture of the run.

cli.Pacer is tested on its own with a fake clock; producer.py, consumer.py and run.py
as a person runs them: into a pipe (the scripts fixture), and run.py on a
pseudo-terminal too (POSIX: the pty module), whose output is played on test_liveview's
screen emulator to see the final screen. Nothing here sleeps to synchronise: the
processes are waited on with deadlines.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hardened.cli import LINES_PER_S, Pacer

import psutil
import pytest
from conftest import TAG_VARIABLE, Script, Scripts, tagged_processes, wait_until
from test_liveview import PROGRESS, Clock, Screen, Terminal, posix_pty, rider_lines
from test_liveview import VIEW_RIDER as VIEW_LINE
from test_scripts import start_consumer, start_producer

from hardened import cli
from hardened.liveview import BAR_MAX
from hardened.report import CONTINUED, Ledger, Results, report

SVG = "{http://www.w3.org/2000/svg}"
REPORT_HEADER = "rider      orders  busy s"  # report.report(): f"{'rider':<10}{'orders':>7}{'busy s':>8}"
REPORT_ROW = re.compile(r"(rider-\d+) +(\d+) +(\d+\.\d\d) +#*")
REPORT_BARS = re.compile(r"bars: busy seconds \(a full bar: \d+\.\d\d s, the busiest rider\)")  # under the rows
RUN_DELIVERY = re.compile(r"(rider-[1-4]) delivered (p1-\d{6}) from p1 \((.+)\) in (\d+\.\d\d) s")
VIEW_RIDER = re.compile(r"rider-\d+ +\d+ ?#* *")  # a rider's line in the live view (test_liveview.rider_lines)
ORDERS = [f"p1-{seq:06d}" for seq in range(1, 13)]  # run.py --orders 12, one producer


# --- cli.Pacer, on a fake clock ---


class Lines:
    """The function a Pacer is given to make a line: it counts how often it is called."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, seq: int) -> str:
        self.made += 1
        return f"order {seq}"


@pytest.fixture
def pacer(monkeypatch: pytest.MonkeyPatch) -> tuple[Pacer, Clock, Lines]:
    monkeypatch.setattr(cli, "MUTED", False)  # say() prints, whatever ran in this process before
    clock = Clock()
    return Pacer("p1", "sent", clock=clock), clock, Lines()


def feed(pacer: tuple[Pacer, Clock, Lines], per_second: list[int], start: int = 0, seq: int = 0) -> int:
    """Events at an even rate within each second: per_second[i] of them in second i
    (counting from `start`), numbered on from seq + 1. Returns the last one's number."""
    lines, clock, make = pacer
    for second, count in enumerate(per_second, start=start):
        for index in range(count):
            clock.now = second + index / count
            seq += 1
            lines.event(make, seq)
    return seq


def printed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_pacer_at_a_teaching_rate_prints_every_line_and_no_summary(pacer, capsys) -> None:
    lines, clock, make = pacer
    assert feed(pacer, [10, 10, 10]) == 30
    clock.now = 3.0
    lines.flush()
    assert printed(capsys) == [f"order {seq}" for seq in range(1, 31)]
    assert make.made == 30


def test_pacer_prints_exactly_lines_per_s_in_a_second_and_summarises_one_more(pacer, capsys) -> None:
    lines, clock, make = pacer
    feed(pacer, [LINES_PER_S])  # the limit itself is still readable: every line
    feed(pacer, [LINES_PER_S + 1], start=1, seq=LINES_PER_S)  # one more: the lines stop, and a summary comes
    clock.now = 2.0
    lines.flush()
    assert printed(capsys) == [
        *(f"order {seq}" for seq in range(1, 2 * LINES_PER_S + 1)),
        f"p1: sent {LINES_PER_S + 1} orders in 1.0 s, {LINES_PER_S + 1}/s",
    ]
    assert make.made == 2 * LINES_PER_S


def test_pacer_in_a_flood_prints_a_summary_a_second_then_lines_again(pacer, capsys) -> None:
    lines, clock, make = pacer
    # A flood of 4,213 then 1,000 a second; a second of exactly LINES_PER_S (not a flood,
    # but the lines come back only after its summary); then a calm second.
    assert feed(pacer, [4213, 1000, LINES_PER_S, 3]) == 5236
    clock.now = 4.0
    lines.flush()  # not flooding any more: nothing to add
    first = [f"order {seq}" for seq in range(1, LINES_PER_S + 1)]
    assert printed(capsys) == [
        *first,  # the first second: its first LINES_PER_S lines, then none
        "p1: sent 4,213 orders in 1.0 s, 4,213/s",  # every event of the second, the printed ones too
        "p1: sent 1,000 orders in 1.0 s, 1,000/s",
        f"p1: sent {LINES_PER_S} orders in 1.0 s, {LINES_PER_S}/s",
        "order 5234",
        "order 5235",
        "order 5236",
    ]
    assert make.made == LINES_PER_S + 3  # a line that is not printed is not made


def test_pacer_flush_in_a_flood_prints_the_last_summary_for_the_time_it_took(pacer, capsys) -> None:
    lines, clock, make = pacer
    for seq in range(1, 51):
        clock.now = (seq - 1) / 100  # 50 events in half a second
        lines.event(make, seq)
    clock.now = 0.5
    lines.flush()
    assert printed(capsys)[LINES_PER_S:] == ["p1: sent 50 orders in 0.5 s, 100/s"]
    assert make.made == LINES_PER_S


def test_pacer_tick_sums_up_a_flood_that_stopped_on_time_and_lines_come_back(pacer, capsys) -> None:
    """A flood of 100 in 0.2 s, then silence: a waiting caller's tick() sums it up once
    its second has passed, timed to its last event; the next events, a quiet second
    later, are lines again."""
    lines, clock, make = pacer
    for seq in range(1, 101):
        clock.now = (seq - 1) / 500
        lines.event(make, seq)
    clock.now = 0.9
    lines.tick()  # the second is not over: nothing yet
    assert printed(capsys) == [f"order {seq}" for seq in range(1, LINES_PER_S + 1)]
    clock.now = 1.5
    lines.tick()
    assert printed(capsys) == ["p1: sent 100 orders in 0.2 s, 505/s"]
    clock.now = 12.0
    lines.event(make, 101)
    lines.event(make, 102)
    assert printed(capsys) == ["order 101", "order 102"]
    assert make.made == LINES_PER_S + 2


def test_pacer_flush_of_a_flood_too_short_to_time_gives_no_rate(pacer, capsys) -> None:
    lines, clock, make = pacer
    for seq in range(1, 31):
        lines.event(make, seq)  # all at time 0
    clock.now = 0.01
    lines.flush()
    assert printed(capsys) == [*(f"order {seq}" for seq in range(1, LINES_PER_S + 1)), "p1: sent 30 orders in 0.0 s"]


def test_pacer_flush_ends_a_flood_with_its_summary_then_says_nothing(pacer, capsys) -> None:
    lines, clock, make = pacer
    feed(pacer, [100, 5])  # a flood, then a calm second: its summary comes at the flush
    clock.now = 2.0
    lines.flush()
    assert printed(capsys)[LINES_PER_S:] == ["p1: sent 100 orders in 1.0 s, 100/s", "p1: sent 5 orders in 1.0 s, 5/s"]
    lines.flush()  # and once the flood is over, a flush says nothing
    assert printed(capsys) == []
    assert make.made == LINES_PER_S


# --- producer.py and consumer.py, paced ---


def paced_count(lines: list[str], per_order: re.Pattern[str], summary: re.Pattern[str]) -> tuple[int, int, int]:
    """Account for every event a script's lines speak of: (events, per-order lines,
    summaries). Orders are numbered 1, 2, 3... in the order the events happened.

    Lines printed since the last summary are those of calm seconds, then, if a summary
    follows, the first LINES_PER_S of the flooded second it sums up (which counts them
    too). So every per-order line is the event right after the ones accounted for so
    far, and the totals add up exactly whatever the timing was."""
    accounted = 0  # events summed up or printed, up to the last summary
    group: list[int] = []  # the orders printed since the last summary
    orders_lines = summaries = 0
    summary_lines: list[str] = []
    for line in lines:
        if match := per_order.fullmatch(line):
            seq = int(match[1])
            assert seq == accounted + len(group) + 1, f"order {seq} out of turn after {accounted + len(group)}"
            group.append(seq)
            orders_lines += 1
        elif match := summary.fullmatch(line):
            count, seconds = int(match[1].replace(",", "")), float(match[2])
            assert count > 0 and 0 <= seconds <= 1.0, line
            if match[3]:  # a rate, only given for a window longer than 0.05 s
                rate = int(match[3].replace(",", ""))
                assert seconds >= 0.1 and count / (seconds + 0.05) - 1 <= rate <= count / (seconds - 0.05) + 1, line
            else:
                assert seconds <= 0.1, line
            if group:  # the flood began in this window: its first lines were printed
                assert len(group) >= LINES_PER_S, f"{len(group)} lines before {line!r}"
                accounted += len(group) - LINES_PER_S
            accounted += count
            group = []
            summaries += 1
            summary_lines.append(line)
    # Every summary but the last is for a whole second (the last one: up to the end).
    assert all(" in 1.0 s" in line for line in summary_lines[:-1]), summary_lines
    return accounted + len(group), orders_lines, summaries


def test_a_flood_prints_a_summary_a_second_and_accounts_for_every_order(scripts: Scripts) -> None:
    producer, endpoint = start_producer(scripts, "--orders", "3000", "--interval", "0")
    rider = start_consumer(scripts, "rider-1", [endpoint], None, "--orders", "3000")
    assert rider.wait(timeout=30) == 0, rider.tail()
    assert producer.wait(timeout=30) == 0, producer.tail()
    for script, per_order, summary, final in [
        (
            producer,
            r"p1: sent p1-(\d{6}) .+ -> .+ \(\d+\.\d\d s\)",
            r"p1: sent ([\d,]+) orders in (\d+\.\d) s(?:, ([\d,]+)/s)?",
            "p1: sent 3000 orders",
        ),
        (
            rider,
            r"rider-1 delivered p1-(\d{6}) from p1 \(.+ -> .+\) in \d+\.\d\d s",
            r"rider-1: delivered ([\d,]+) orders in (\d+\.\d) s(?:, ([\d,]+)/s)?",
            "rider-1: done, delivered 3000 orders",
        ),
    ]:
        events, lines, summaries = paced_count(script.stdout, re.compile(per_order), re.compile(summary))
        assert events == 3000, script.stdout
        assert summaries >= 1, script.tail()
        # At most LINES_PER_S a second: a flood's second prints that many, then sums up.
        assert LINES_PER_S <= lines <= LINES_PER_S * (1 + summaries), script.tail()
        assert script.stdout[-1] == final
        assert script.stderr == []


def test_a_slow_run_prints_a_line_per_order_and_no_summary(scripts: Scripts) -> None:
    producer, endpoint = start_producer(scripts, "--orders", "8", "--interval", "0.1")
    rider = start_consumer(scripts, "rider-1", [endpoint], None, "--orders", "8")
    assert rider.wait(timeout=20) == 0, rider.tail()
    assert producer.wait(timeout=20) == 0, producer.tail()
    for script, per_order, final in [
        (producer, r"p1: sent (p1-\d{6}) .+ -> .+ \(\d+\.\d\d s\)", "p1: sent 8 orders"),
        (
            rider,
            r"rider-1 delivered (p1-\d{6}) from p1 \(.+ -> .+\) in \d+\.\d\d s",
            "rider-1: done, delivered 8 orders",
        ),
    ]:
        orders = [match[1] for line in script.stdout if (match := re.fullmatch(per_order, line))]
        assert orders == [f"p1-{seq:06d}" for seq in range(1, 9)], script.stdout  # every one, in turn
        assert not any(re.search(r"orders in \d", line) for line in script.stdout), script.stdout
        assert script.stdout[-1] == final
        assert script.stderr == []


# --- run.py: a live view on a terminal, lines elsewhere ---


# A trampoline that makes the terminal on its stdout the controlling one of its session
# (the Script starts it in a session of its own), as a terminal window's shell does.
CONTROLLING_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(1, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class TerminalScript(Script):
    """A script whose stdout (and stderr, unless told otherwise) is a pseudo-terminal, in
    a terminal that understands ANSI (TERM=xterm). Tagged as a Script is, so that its
    processes can be followed (processes(), workers_seen, assert_no_process_left); its
    output is read from the terminal, not collected line by line."""

    def __init__(
        self,
        terminal: Terminal,
        *args: str,
        cwd: Path,
        stderr: IO[str] | None = None,
        controlling: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.tag = uuid.uuid4().hex
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "xterm", TAG_VARIABLE: self.tag, **(env or {})}
        command = [sys.executable, *(["-c", CONTROLLING_TERMINAL] if controlling else []), *args]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=terminal.stream,
            stderr=stderr if stderr is not None else terminal.stream,
            text=True,
            start_new_session=True,
        )
        self.stdout, self.stderr, self.seen, self._readers = [], [], {}, []
        self.terminal = terminal
        self.received = b""  # what the terminal received so far

    def read(self, timeout: float) -> None:
        """Add what the terminal receives within `timeout` seconds (a wait, not a sleep)."""
        if select.select([self.terminal.master], [], [], timeout)[0]:
            self.received += os.read(self.terminal.master, 65536)

    def read_until_exit(self, timeout: float) -> str:
        """Everything it writes to the terminal until it exits, watching its processes
        meanwhile (so that workers_seen has them all); fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"{list(self.args)} still running after {timeout} s: {self.received!r}"
            self.processes()
            self.read(0.05)
        return self.received.decode() + self.terminal.output()  # and the rest, up to a mark written after it


@pytest.fixture
def on_terminal(request: pytest.FixtureRequest) -> Iterator[Callable[..., TerminalScript]]:
    """Start a script on a pseudo-terminal of its own, 30x100 unless told: on_terminal("-m",
    "hardened.run", ..., columns=60). Everything it started is killed at the end, and the
    terminal closed."""
    started: list[TerminalScript] = []
    cwd = Path(request.config.getoption("--scripts-dir"))

    def start(*args: str, rows: int = 30, columns: int = 100, **kwargs: Any) -> TerminalScript:
        terminal = Terminal(rows=rows, columns=columns)
        try:
            script = TerminalScript(terminal, *args, cwd=cwd, **kwargs)
        except BaseException:
            terminal.close()
            raise
        started.append(script)
        return script

    yield start
    for script in started:
        script.stop()
        script.terminal.close()


def report_table(lines: list[str]) -> dict[str, tuple[int, float]]:
    """rider -> (orders, busy s), read from run.py's report (one producer)."""
    return {m[1]: (int(m[2]), float(m[3])) for line in lines if (m := REPORT_ROW.fullmatch(line))}


def assert_report(lines: list[str], riders: int, orders: int) -> None:
    """The lines are run.py's whole report, every order delivered once, evenly spread."""
    assert lines[0] == REPORT_HEADER, lines
    table = report_table(lines[1 : riders + 1])
    assert sorted(table) == [f"rider-{n}" for n in range(1, riders + 1)], lines
    assert {count for count, _ in table.values()} == {orders // riders}, lines
    assert REPORT_BARS.fullmatch(lines[riders + 1]), lines  # what the bars show: not what the live view's did
    assert lines[riders + 2 : riders + 5] == [
        "",
        f"total orders: {orders} (p1), delivered {orders}",
        "delivered exactly once: yes",
    ]
    assert lines[-1].startswith("wall time: "), lines


@posix_pty
def test_run_py_on_a_terminal_shows_a_live_view_then_the_report(on_terminal) -> None:
    run = on_terminal("-m", "hardened.run", "--consumers", "4", "--orders", "12", "--speed", "0.05")
    raw = run.read_until_exit(timeout=20)
    assert run.proc.returncode == 0, raw
    # Nothing left. Seen while it ran: the 4 riders at least (they live to the end of the run;
    # the producer is gone once its 12 orders are queued, maybe between two looks).
    run.assert_no_process_left(workers=4)
    # The view replaced the line per delivery, drawing over itself (cursor up, 4 riders and the progress).
    assert "delivered p1-" not in raw and "riders delivered" not in raw, raw
    assert "\x1b[6A" in raw and "Traceback" not in raw, raw  # back to the frame's first line

    screen = Screen(width=100)  # fails on any line wider than the terminal, or an escape it does not know
    screen.play(raw)
    lines = screen.lines
    view = [index for index, line in enumerate(lines) if VIEW_RIDER.fullmatch(line)]
    assert len(view) == 4 and view == list(range(view[0], view[0] + 4)), lines  # once each: no stale copy
    riders = rider_lines(screen)
    assert list(riders) == ["rider-1", "rider-2", "rider-3", "rider-4"]
    assert {count for count, _ in riders.values()} == {3}, lines
    assert {bar for _, bar in riders.values()} == {BAR_MAX}, lines  # equal, and full: each its fair share
    # Above the view, what run.py said meanwhile; atop it, what its bars count; below it, the
    # progress, then the report.
    assert lines[view[0] - 1] == "orders delivered (a full bar: 3, a fair share)", lines
    notes = lines[: view[0] - 1]
    assert re.fullmatch(r"run\.py: p1 bound tcp://127\.0\.0\.1:\d+; starting 4 riders", notes[0]), lines
    assert set(notes[1:]) <= {"run.py: p1 sent its 12 orders and exited"}, lines
    progress = view[-1] + 1
    assert re.fullmatch(r"delivered 12/12, \d+\.\d s", lines[progress]), lines
    assert_report(lines[progress + 1 : -1], riders=4, orders=12)
    assert lines[-1] == "" and screen.col == 0 and screen.cursor_visible  # the cursor back, below it all


@posix_pty
def test_run_py_quiet_on_a_terminal_draws_no_view(on_terminal) -> None:
    run = on_terminal("-m", "hardened.run", "--quiet", "--consumers", "4", "--orders", "12", "--speed", "0.05")
    raw = run.read_until_exit(timeout=20)
    assert run.proc.returncode == 0, raw
    run.assert_no_process_left(workers=4)  # the riders at least (see above)
    assert "\x1b" not in raw, raw
    assert_report(raw.replace("\r\n", "\n").splitlines(), riders=4, orders=12)


def test_run_py_into_a_pipe_prints_a_line_per_delivery_and_no_escape(
    scripts: Scripts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm")  # a terminal type that knows ANSI: the pipe is what decides
    run = scripts("-m", "hardened.run", "--consumers", "4", "--orders", "12", "--speed", "0.05")
    assert run.wait(timeout=30) == 0, run.output
    assert "\x1b" not in run.output
    assert re.fullmatch(r"run\.py: p1 bound tcp://127\.0\.0\.1:\d+; starting 4 riders", run.stdout[0]), run.stdout
    deliveries = [match for line in run.stdout if (match := RUN_DELIVERY.fullmatch(line))]
    assert sorted(match[2] for match in deliveries) == ORDERS, run.stdout  # 12 a run: a line each
    assert not any("riders delivered" in line for line in run.stdout)
    header = run.stdout.index(REPORT_HEADER)
    assert_report(run.stdout[header:], riders=4, orders=12)
    assert Counter(match[1] for match in deliveries) == {rider: n for rider, (n, _) in report_table(run.stdout).items()}
    assert run.stderr == []


def test_run_py_quiet_prints_the_report_alone(scripts: Scripts) -> None:
    run = scripts("-m", "hardened.run", "--quiet", "--consumers", "4", "--orders", "12", "--speed", "0.05")
    assert run.wait(timeout=30) == 0, run.output
    assert_report(run.stdout, riders=4, orders=12)  # from its first line to its last
    assert not any("delivered p1-" in line or line.startswith("run.py:") for line in run.stdout)
    assert run.stderr == []


@posix_pty
@pytest.mark.parametrize(
    "controlling, stderr_to_file",
    [(False, True), (True, False)],
    ids=["terminal-on-stdout-stderr-to-a-file", "controlling-terminal-on-stdout-and-stderr"],
)
def test_run_py_stops_promptly_when_its_terminal_goes_away(
    on_terminal, tmp_path: Path, request: pytest.FixtureRequest, controlling: bool, stderr_to_file: bool
) -> None:
    """The window closes mid-run: writing to it fails (EIO) from then on and, if it was
    the session's controlling terminal, the kernel hangs up (SIGHUP). Either way run.py
    ends within moments, and so does everything it started; nothing may be read on the
    terminal any more, so a traceback would go unseen: stderr goes to a file, or it
    would have been lost with the terminal (and then the exit status speaks)."""
    # Where run.py --curve keeps its keys while it runs: a short path, as the fork server's
    # socket lives there too, and a Unix socket's path has a limit of about 100 bytes.
    temporary = Path(tempfile.mkdtemp(prefix="pipeline-test-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(temporary, ignore_errors=True))
    with open(tmp_path / "stderr.txt", "w") as errors:
        run = on_terminal(
            "-m",
            "hardened.run",
            # An order every 0.05 s for 20 s, each ride 0.1-1 s: the producer and the riders have
            # long to go when the terminal goes away.
            *("--consumers", "4", "--orders", "400", "--interval", "0.05", "--speed", "1", "--curve"),
            stderr=errors if stderr_to_file else None,
            controlling=controlling,
            env={"TMPDIR": str(temporary)},
        )

        def drawing_with_every_rider() -> bool:
            assert run.proc.poll() is None, f"run.py exited ({run.proc.returncode}): {run.received!r}"
            run.processes()
            run.read(0.05)
            drawn = re.search(rb"\x1b\[J\x1b\[\d+A$", run.received)  # a whole frame, the cursor back on its top line
            return len(run.workers_seen) >= 5 and bool(drawn) and b"rider-4" in run.received

        wait_until(drawing_with_every_rider, 15, lambda: f"a frame with every rider: {run.received[-300:]!r}")
        run.terminal.hang_up()
        hung_up = time.monotonic()
        wait_until(lambda: run.proc.poll() is not None, 10, "run.py to stop once its terminal went away")
        took = time.monotonic() - hung_up
    code = run.proc.returncode
    assert took < 5, f"run.py took {took:.1f} s to stop"  # with many seconds of orders left
    # 141: it saw the terminal go (stopping.EXIT_OUTPUT_CLOSED); 130: the kernel's hang-up
    # (SIGHUP) came first, and stopped it as Ctrl-C does. Either way it cleaned up.
    assert code in (0, 130, 141), code
    run.assert_no_process_left(workers=5)
    assert not list(temporary.glob("pipeline-keys-*")), "run.py left its CURVE secret keys behind"
    if stderr_to_file:
        said = (tmp_path / "stderr.txt").read_text()
        assert "Traceback" not in said and "Exception" not in said, said


def joined(lines: list[str]) -> list[str]:
    """The report's lines as they were before a terminal's width wrapped them: a line
    indented 4 more than the one before goes on from it (report.fit)."""
    whole: list[str] = []
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        if whole and line.strip() and indent == len(whole[-1]) - len(whole[-1].lstrip(" ")) + len(CONTINUED):
            whole[-1] += " " + line.strip()
        else:
            whole.append(line)
    return whole


@posix_pty
def test_run_py_report_fits_a_60_column_terminal_and_wraps_at_spaces_only(on_terminal) -> None:
    """A report wider than the terminal wrapped mid-number ("ideal time ... : 2.81" then
    " s"); now every line is shorter than the width, the table's bars shrink to fit its
    rows, and a longer line wraps between words, its continuation indented."""
    args = ("--producers", "2", "--consumers", "3", "--orders", "6", "--speed", "0.05")
    run = on_terminal("-m", "hardened.run", *args, columns=60)
    raw = run.read_until_exit(timeout=20)
    assert run.proc.returncode == 0, raw
    run.assert_no_process_left(workers=3)
    screen = Screen(width=60, wrap=True)  # run.py's notes are longer: a terminal wraps them
    screen.play(raw)
    header = screen.lines.index("rider      orders  busy s    p1    p2")  # the table, as in a pipe
    report = screen.lines[header:-1]
    assert all(len(line) < 60 for line in report), report  # none reaches the last column, where some terminals wrap
    rows = [re.fullmatch(r"(rider-\d) +(\d+) +(\d+\.\d\d) +(\d+) +(\d+)  (#+)", line) for line in report[1:4]]
    assert all(rows) and max(len(row[6]) for row in rows if row) == 59 - len(report[0]) - 2, report  # bars shrunk
    assert any(line.startswith(CONTINUED) for line in report), report  # not vacuous: something wrapped
    whole = joined(report)
    assert REPORT_BARS.fullmatch(whole[4]), whole
    assert whole[5:9] == [
        "",
        "total orders: 12 (p1, p2), delivered 12",
        "delivered exactly once: yes",
        "spread: max - min orders per rider = 0",
    ], whole
    # Wrapped between words only: put back together, each line is whole again, every number with its unit.
    assert re.fullmatch(r"work delivered: \d+\.\d\d s; ideal time \(work / 3 riders\): \d+\.\d\d s", whole[-2]), whole
    assert re.fullmatch(
        r"wall time: \d+\.\d\d s; busiest rider: \d+\.\d\d s; run\.py overhead: -?\d+\.\d\d s", whole[-1]
    ), whole
    assert not any(re.match(rf"{CONTINUED}(s|riders?)\b", line) for line in report), report  # never a bare unit


def test_report_in_a_narrow_terminal_keeps_a_killed_riders_row_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """report() itself, told a width: the bars make room for '(killed)', and a long list
    of lost orders wraps between ids, never inside one."""
    ledger = Ledger({"p1": 8})
    for seq, rider, seconds in [(1, "rider-1", 0.5), (2, "rider-2", 0.9), (4, "rider-2", 0.7)]:
        ledger.add({"order_id": f"p1-{seq:06d}", "producer": "p1", "consumer": rider, "delivery_s": seconds}, 1.0)
    results = Results(ledger, dead=["rider-1"], killed="rider-1", fates={"p1": ""}, gave_up=True)
    results.holding = {"rider-1": "p1-000003"}
    monkeypatch.setattr(cli, "MUTED", False)  # say() prints, whatever ran in this process before
    report(results, ["rider-1", "rider-2"], ["p1"], wall_s=2.0, width=44)
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 44 for line in lines), lines
    assert re.fullmatch(r"rider-1 +1 +0\.50 +#+  \(killed\)", lines[1]), lines
    assert re.fullmatch(r"rider-2 +2 +1\.60 +#{7}", lines[2]), lines  # 44 - 25 - 2 - len("  (killed)")
    lost = joined(lines)[6]  # after the table, its caption, a blank line and the total
    assert lost == "lost with rider-1 (killed) (5): p1-000003 p1-000005 p1-000006 p1-000007 p1-000008", lines
    start = next(index for index, line in enumerate(lines) if line.startswith("lost with"))
    assert lines[start + 1].startswith(CONTINUED + "p1-"), lines  # wrapped between two ids


def test_run_py_in_tmux_leaves_one_frame_after_a_resize_and_none_in_the_scrollback(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """run.py in a real terminal: 30 riders in an 80x24 tmux pane (more than a frame has
    room for), shrunk to 60x16 while the view is up. tmux pushes lines into its scrollback
    when a line feed scrolls the pane, when erase-below starts from the top-left corner,
    and when a shorter pane has no room; `capture-pane -S -` shows the scrollback and the
    pane: one frame in all, the last one, right above the report."""
    tmux = shutil.which("tmux")
    if not tmux:
        pytest.skip("no tmux here: the test needs a real terminal (apt-get install tmux)")
    tag = uuid.uuid4().hex  # what everything in the pane carries, to be killed at the end
    env = {**os.environ, TAG_VARIABLE: tag, "TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"}
    env.pop("TMUX", None)  # a test run from inside tmux starts its own server all the same
    config = tmp_path / "tmux.conf"
    config.write_text("set -g status off\nset -g history-limit 5000\n")  # scroll-on-clear: on, its default
    status = tmp_path / "status"
    command = [sys.executable, "-m", "hardened.run", "--consumers", "30", "--orders", "60", "--speed", "0.4"]
    shell = f"{shlex.join(command)}; echo $? > {shlex.quote(str(status))}; printf END; exec sleep 60"
    # A server of its own, its socket in a short path (a socket's has a limit of about 100
    # bytes) that goes at the end with it: tmux leaves its socket behind when killed.
    sockets = Path(tempfile.mkdtemp(prefix="pipeline-tmux-", dir="/tmp"))
    server = [tmux, "-S", str(sockets / "server"), "-f", str(config)]
    cwd = request.config.getoption("--scripts-dir")

    def capture(*whole: str) -> str:
        return subprocess.run(
            [*server, "capture-pane", "-p", *whole], capture_output=True, text=True, check=True
        ).stdout

    def mid_run() -> str | None:
        """The pane, once the view is up with deliveries to come."""
        pane = capture()
        return pane if re.search(r"^delivered ([1-5]?\d)/60, ", pane, re.M) else None

    try:
        subprocess.run(
            [*server, "new-session", "-d", "-x", "80", "-y", "24", "-c", cwd, "sh", "-c", shell], env=env, check=True
        )
        # The view is up with deliveries to come: then the window shrinks.
        shown = wait_until(mid_run, 15, "a frame with deliveries to come")
        subprocess.run([*server, "resize-window", "-x", "60", "-y", "16"], check=True)
        wait_until(lambda: status.exists() and status.read_text().strip(), 20, "run.py to end")
        wait_until(lambda: capture().rstrip().endswith("END"), 10, "END at the end of the pane")
        everything = capture("-S", "-", "-E", "-").rstrip().split("\n")
    finally:
        subprocess.run([*server, "kill-server"], capture_output=True, timeout=30)
        shutil.rmtree(sockets, ignore_errors=True)
        for process in tagged_processes(tag):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
    text = "\n".join(everything)
    assert status.read_text().strip() == "0", text
    before = shown.split("\n")
    top = next(index for index, line in enumerate(before) if line.startswith("orders delivered"))
    bottom = next(index for index, line in enumerate(before) if PROGRESS.fullmatch(line))
    assert bottom - top + 1 == 24 - 2, shown  # as tall as a frame may be: never the pane's top row at its bottom
    headers = [i for i, line in enumerate(everything) if line.startswith("orders delivered")]
    assert len(headers) == 1, f"a stale frame:\n{text}"
    frame = everything[headers[0] : everything.index(REPORT_HEADER)]
    assert len(frame) == 16 - 2 and frame[-1].startswith("delivered 60/60, "), text  # drawn for the new height
    view_rows = [line for line in everything if VIEW_LINE.fullmatch(line)]
    assert len(view_rows) == len(frame) - 3, f"a stale rider line:\n{text}"  # the riders shown, and no other
    assert not any(PROGRESS.fullmatch(line) for line in everything if line != frame[-1]), text
    assert all(line.startswith("run.py: ") for line in everything[: headers[0]]), text  # above it: notes only


# --- run.py --timeline ---


def test_run_py_timeline_draws_a_bar_per_delivery_that_agrees_with_the_report(scripts: Scripts, tmp_path: Path) -> None:
    svg = tmp_path / "run.svg"
    run = scripts("-m", "hardened.run", "--timeline", str(svg), "--consumers", "4", "--orders", "12", "--speed", "0.05")
    assert run.wait(timeout=30) == 0, run.output
    assert run.stdout[-1] == f"timeline: {svg}"
    assert "Traceback" not in run.output
    table = report_table(run.stdout)
    wall = next(float(m[1]) for line in run.stdout if (m := re.match(r"wall time: (\d+\.\d+) s;", line)))
    lines = [m for line in run.stdout if (m := RUN_DELIVERY.fullmatch(line))]
    assert sorted(m[2] for m in lines) == ORDERS, run.stdout
    deliveries = {m[2]: m for m in lines}

    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    rows = root.findall(f".//{SVG}g[@class='rider']")
    assert [row.get("data-rider") for row in rows] == ["rider-1", "rider-2", "rider-3", "rider-4"]
    seen = []
    for row in rows:
        rider = row.get("data-rider", "")
        bars = row.findall(f"{SVG}rect[@class='delivery']")
        orders, busy = table[rider]
        assert len(bars) == orders, f"{rider}: {len(bars)} bars, {orders} orders in the report"
        total = 0.0
        for bar in bars:
            order_id = bar.get("data-order", "")
            start, end = float(bar.get("data-start", "")), float(bar.get("data-end", ""))
            assert 0 <= start <= end <= wall + 0.005, (order_id, start, end, wall)  # within the run
            total += end - start
            line = deliveries[order_id]  # the line run.py printed for it: who, from where, how long
            assert line[1] == rider and bar.get("data-producer") == "p1"
            tooltip = bar.findtext(f"{SVG}title") or ""
            title = re.fullmatch(r"(rider-\d): (p1-\d{6}) from (.+); sent .*, rode (\d+\.\d\d) s", tooltip)
            assert title, tooltip
            assert (title[1], title[2], title[3]) == (rider, order_id, line[3])
            assert abs(float(title[4]) - (end - start)) <= 0.005 + 1e-6
            assert abs(float(title[4]) - float(line[4])) <= 0.01 + 1e-6
            sent = float(bar.get("data-sent", ""))
            assert 0 <= sent <= start, (order_id, sent, start)  # sent before it was taken
            seen.append(order_id)
        # A bar lasts from pick-up to drop-off: at least the ride (busy s), and a little more.
        assert busy - 0.01 <= total <= busy + 0.1 * orders + 0.3, (rider, total, busy)
    assert sorted(seen) == ORDERS  # one bar per delivered order
    # The title says what happened: 12 orders from one producer, 3 per rider.
    assert root.findtext(f".//{SVG}text[@class='title']") == "1 producer x 12 orders, 4 riders: 3 orders per rider"


def test_run_py_timeline_in_a_missing_folder_is_a_usage_error(scripts: Scripts, tmp_path: Path) -> None:
    svg = tmp_path / "nowhere" / "run.svg"
    run = scripts("-m", "hardened.run", "--timeline", str(svg), "--consumers", "2", "--orders", "4")
    assert run.wait(timeout=15) == 2, run.output
    assert run.stdout == []  # nothing started: it failed before the run
    assert run.stderr[0].startswith("usage: run.py")
    errors = [line for line in run.stderr if "error" in line]
    assert errors == [f"run.py: error: argument --timeline: no such directory for {svg}"], run.stderr
    assert run.stderr[-1] == errors[0]
    assert "Traceback" not in run.output
    assert not svg.parent.exists()
