"""liveview.py: what a real terminal ends up showing, and a terminal that goes away.

The view writes to a pseudo-terminal (the pty module), the test reads what a terminal
would receive from the other end and plays it on a small screen emulator: the final
screen is what a person would see. Nothing here sleeps: the view's clock is a fake, and
reading waits for a mark written after the view's output (or fails at a deadline).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from hardened.liveview import TerminalView, ansi_terminal

RIDERS = ["rider-1", "rider-2", "rider-3", "rider-4"]
MARK = "<the end>"  # written after the view's output: once read, all of it has arrived

posix_pty = pytest.mark.skipif(
    sys.platform == "win32", reason="the pty module is POSIX-only: there is no pseudo-terminal to test with"
)


class Clock:
    """The view's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal:
    """A pseudo-terminal: the view writes to `stream` (the terminal's side), the test
    reads from the master side what a terminal window would receive."""

    master: int
    stream: TextIO

    # The POSIX-only parts sit under a platform check, which mypy --platform win32 skips.
    def __init__(self, rows: int, columns: int) -> None:
        if sys.platform != "win32":
            import pty

            self.master, slave = pty.openpty()
            self.stream = open(slave, "w", encoding="utf-8")  # noqa: SIM115 (Terminal.close() closes it)
            self.resize(rows, columns)

    def resize(self, rows: int, columns: int) -> None:
        if sys.platform != "win32":
            import fcntl
            import termios

            fcntl.ioctl(self.stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def output(self) -> str:
        """Everything written to the terminal since the last call."""
        self.stream.write(MARK)
        self.stream.flush()
        data, deadline = b"", time.monotonic() + 10
        while not data.endswith(MARK.encode()):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the terminal's output did not come through: {data!r}"
            if select.select([self.master], [], [], remaining)[0]:
                data += os.read(self.master, 65536)
        return data.decode()[: -len(MARK)]

    def hang_up(self) -> None:
        """The window closes: from now on, writing to the terminal fails (EIO)."""
        os.close(self.master)
        self.master = -1  # closed once only: by now the number may be another file's

    def close(self) -> None:
        with contextlib.suppress(OSError):  # what a view wrote to a terminal that is gone
            self.stream.close()
        if self.master >= 0:
            os.close(self.master)


class Screen:
    """Just enough of a terminal to play the view's output: printable characters, \\r,
    \\n, cursor up (ESC[nA), erase line (ESC[2K, ESC[K), erase below (ESC[J), and hide
    and show the cursor (ESC[?25l, ESC[?25h). Anything else fails the test."""

    TOKEN = re.compile(r"\x1b\[([0-9?]*)([A-Za-z])|(.)", re.DOTALL)

    def __init__(self, width: int) -> None:
        self.width = width
        self.lines = [""]
        self.row = self.col = 0
        self.cursor_visible = True

    def play(self, text: str) -> None:
        for match in self.TOKEN.finditer(text):
            params, command, char = match.groups()
            if command:
                self.escape(params + command)
            elif char == "\r":
                self.col = 0
            elif char == "\n":  # the pty turns the view's "\n" into "\r\n", as a terminal gets it
                self.row += 1
                self.lines += [""] * (self.row + 1 - len(self.lines))
            else:
                assert char.isprintable(), f"unexpected control character {char!r}"
                self.put(char)

    def escape(self, sequence: str) -> None:
        if sequence.endswith("A"):
            self.row = max(self.row - int(sequence[:-1] or 1), 0)
        elif sequence == "2K":
            self.lines[self.row] = ""
        elif sequence in ("K", "0K"):
            self.lines[self.row] = self.lines[self.row][: self.col]
        elif sequence in ("J", "0J"):
            self.lines[self.row] = self.lines[self.row][: self.col]
            del self.lines[self.row + 1 :]
        elif sequence in ("?25l", "?25h"):
            self.cursor_visible = sequence == "?25h"
        else:
            raise AssertionError(f"unexpected escape sequence ESC[{sequence}")

    def put(self, char: str) -> None:
        # A real terminal would wrap here, and the view could no longer move back over its lines.
        assert self.col < self.width, f"a line longer than the {self.width} columns: {self.lines[self.row]!r}"
        line = self.lines[self.row].ljust(self.col)
        self.lines[self.row] = line[: self.col] + char + line[self.col + 1 :]
        self.col += 1


def rider_lines(screen: Screen) -> dict[str, tuple[int, int]]:
    """Each rider line on the screen as rider -> (count, bar length)."""
    found = {}
    for line in screen.lines:
        match = re.fullmatch(r"(rider-\d+) +(\d+) ?(#*) *", line)
        if match:
            found[match[1]] = (int(match[2]), len(match[3]))
    return found


def assert_bars_in_proportion(riders: dict[str, tuple[int, int]]) -> None:
    busiest_count, longest = max(riders.values())
    assert longest > 0
    for count, bar in riders.values():
        assert abs(bar - count * longest / busiest_count) <= 1, riders


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Terminal]:
    monkeypatch.setenv("TERM", "xterm")
    term = Terminal(rows=30, columns=60)
    yield term
    term.close()


@posix_pty
def test_a_pty_is_an_ansi_terminal_unless_term_is_dumb(terminal: Terminal, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ansi_terminal(terminal.stream)
    monkeypatch.setenv("TERM", "dumb")
    assert not ansi_terminal(terminal.stream)


def test_a_pipe_or_a_file_is_not_an_ansi_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    reading, writing = os.pipe()
    with open(writing, "w") as pipe, open(tmp_path / "out.txt", "w") as file:
        assert not ansi_terminal(pipe)
        assert not ansi_terminal(file)
        assert not ansi_terminal(io.StringIO())
    os.close(reading)


@posix_pty
def test_the_final_screen_shows_each_rider_in_place_and_the_progress(terminal: Terminal) -> None:
    clock = Clock()
    view = TerminalView(RIDERS, total=10, stream=terminal.stream, clock=clock)
    screen = Screen(width=60)
    for rider in ["rider-1", "rider-2", "rider-1", "rider-4", "rider-1", "rider-2", "rider-1"]:
        view.delivered({"consumer": rider})
        clock.now += 0.4
        view.draw()
        screen.play(terminal.output())
    assert not screen.cursor_visible  # hidden while the view is up, so it does not flicker about
    view.close()
    screen.play(terminal.output())

    # Seven frames drawn over each other: one line per rider, the progress, the cursor below.
    assert screen.lines[4:] == ["delivered 7/10, 2.8 s", ""]
    assert (screen.row, screen.col, screen.cursor_visible) == (5, 0, True)
    riders = rider_lines(screen)
    assert list(riders) == RIDERS
    assert {rider: count for rider, (count, _) in riders.items()} == {
        "rider-1": 4,
        "rider-2": 2,
        "rider-3": 0,
        "rider-4": 1,
    }
    assert_bars_in_proportion(riders)
    assert riders["rider-1"][1] > 60 // 2  # the bars use the width


@posix_pty
def test_after_a_resize_frames_fit_the_new_width(terminal: Terminal) -> None:
    clock = Clock()
    view = TerminalView(RIDERS, total=12, stream=terminal.stream, clock=clock)
    screen = Screen(width=60)
    for rider in RIDERS * 2:
        view.delivered({"consumer": rider})
    view.draw(force=True)
    screen.play(terminal.output())
    wide = rider_lines(screen)["rider-1"][1]

    terminal.resize(rows=30, columns=40)
    screen.width = 40  # Screen.put fails the test on any character past column 40
    view.delivered({"consumer": "rider-1"})
    view.draw(force=True)
    view.close()
    screen.play(terminal.output())
    riders = rider_lines(screen)
    assert riders["rider-1"][0] == 3
    assert 0 < riders["rider-2"][1] < wide
    assert_bars_in_proportion(riders)
    assert all(len(line) <= 40 for line in screen.lines)


@posix_pty
def test_riders_beyond_the_windows_height_are_summed_up_in_a_line(terminal: Terminal) -> None:
    terminal.resize(rows=8, columns=60)
    riders = [f"rider-{n}" for n in range(1, 21)]
    view = TerminalView(riders, total=40, stream=terminal.stream)
    screen = Screen(width=60)
    for _ in range(3):
        view.draw(force=True)
    view.close()
    screen.play(terminal.output())
    shown = screen.lines[:-1]  # the last line is the cursor's, below the view
    assert len(shown) <= 8 - 1  # so it never scrolls, and can move back up over itself
    assert list(rider_lines(screen)) == riders[: len(shown) - 2]
    assert f"{len(riders) - len(shown) + 2} more riders" in shown[-2]
    assert shown[-1].startswith("delivered 0/40")


@posix_pty
def test_a_terminal_that_goes_away_stops_the_view_quietly(terminal: Terminal) -> None:
    view = TerminalView(RIDERS, total=10, stream=terminal.stream)
    view.draw(force=True)
    terminal.output()
    terminal.hang_up()
    view.delivered({"consumer": "rider-1"})
    view.draw(force=True)
    assert view.output_closed
    view.draw(force=True)
    view.close()
    assert view.output_closed


def test_the_view_draws_at_most_every_tenth_of_a_second_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")  # a StringIO has no terminal: the view falls back on these
    monkeypatch.setenv("LINES", "30")
    clock, stream = Clock(), io.StringIO()
    view = TerminalView(RIDERS, total=10, stream=stream, clock=clock)
    frames = []
    for now, force in [(0.0, False), (0.05, False), (0.06, True), (0.1, False), (0.161, False), (0.17, False)]:
        clock.now = now
        before = len(stream.getvalue())
        view.draw(force=force)
        frames.append(len(stream.getvalue()) > before)
    assert frames == [True, False, True, False, True, False]
