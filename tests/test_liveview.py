"""liveview.py: what a real terminal ends up showing, and a terminal that goes away.

The view writes to a pseudo-terminal (the pty module), the test reads what a terminal
would receive from the other end and plays it on a small screen emulator: the final
screen is what a person would see, and its scrollback what they would find scrolling
up. The emulator resizes as tmux does, and a test holds it to that: the same bytes and
resizes in a real tmux pane leave the same rows. Nothing here sleeps: the view's clock
is a fake, and reading waits for a mark written after the view's output, or for tmux to
show what is expected (or fails at a deadline).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest
from conftest import wait_until

from hardened.liveview import BAR_MAX, QUIET_S, TerminalView, ansi_terminal

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


@dataclass
class Row:
    """A row of the screen or of its scrollback."""

    text: str = ""
    wrapped: bool = False  # its line goes on in the next row: the terminal wrapped it


class Screen:
    """Just enough of a terminal to play the view's output: printable characters, \\r,
    \\n, cursor up (ESC[nA), erase line (ESC[2K, ESC[K), erase below (ESC[J), and hide
    and show the cursor (ESC[?25l, ESC[?25h). Anything else fails the test, and so does
    a character past the last column (a real terminal would wrap there, and the view
    could no longer move back over its lines).

    With wrap, a character past the last column goes on the next row, as a terminal
    wraps a long line (xterm's way: the row full, the next character begins a new one).

    Without a height, the screen grows as lines come (everything a terminal received, as
    it would look with room for all of it). With one, it behaves as tmux 3.3 does, the
    terminal that showed the view's stale frames: a line feed on the bottom row pushes
    the top row into the scrollback (`history`); erase-below from the top-left corner
    first pushes the whole screen there (tmux's scroll-on-clear); and resize() re-wraps
    every line for the new width, keeping the bottom row at the bottom and the cursor
    on its character, after a shorter window has dropped rows below the cursor first,
    then pushed rows from the top into the scrollback."""

    TOKEN = re.compile(r"\x1b\[([0-9?]*)([A-Za-z])|(.)", re.DOTALL)

    def __init__(self, width: int, height: int | None = None, wrap: bool = False) -> None:
        self.width, self.height, self.wrap = width, height, wrap
        self.history: list[Row] = []  # oldest first
        self.rows = [Row() for _ in range(height or 1)]
        self.scrolled = 0  # rows the screen scrolled into the history: a taller window brings them back
        self.row = self.col = 0
        self.cursor_visible = True
        self.cleared_from_top_left = 0  # erase-belows from the top-left corner, which push the screen away

    @property
    def lines(self) -> list[str]:
        """Everything, the scrollback first (as `tmux capture-pane -p -S -` shows it),
        down to the cursor's row or the last one written, whichever is lower."""
        rows = self.history + self.rows
        written = [index for index, row in enumerate(rows) if row.text]
        last = max([len(self.history) + self.row, *written])
        return [row.text for row in rows[: last + 1]]

    @property
    def history_lines(self) -> list[str]:
        return [row.text for row in self.history]

    @property
    def shown(self) -> list[str]:
        """The rows in the window, top to bottom."""
        return [row.text for row in self.rows]

    def play(self, text: str) -> None:
        for match in self.TOKEN.finditer(text):
            params, command, char = match.groups()
            if command:
                self.escape(params + command)
            elif char == "\r":
                self.col = 0
            elif char == "\n":  # the pty turns the view's "\n" into "\r\n", as a terminal gets it
                self.line_feed()
            else:
                assert char.isprintable(), f"unexpected control character {char!r}"
                self.put(char)

    def line_feed(self) -> None:
        if self.height is None:
            self.rows += [Row()] * (self.row + 2 - len(self.rows))
            self.row += 1
        elif self.row < self.height - 1:
            self.row += 1
        else:
            self.history.append(self.rows.pop(0))
            self.rows.append(Row())
            self.scrolled += 1

    def escape(self, sequence: str) -> None:
        if sequence.endswith("A"):
            self.row = max(self.row - int(sequence[:-1] or 1), 0)
        elif sequence == "2K":
            self.rows[self.row] = Row()
        elif sequence in ("K", "0K"):
            self.rows[self.row].text = self.rows[self.row].text[: self.col]
        elif sequence in ("J", "0J"):
            self.cleared_from_top_left += (self.row, self.col) == (0, 0)
            if (self.row, self.col) == (0, 0) and self.height is not None:
                # tmux's scroll-on-clear: the screen, down to its last written row, goes to the scrollback.
                used = max((index for index, row in enumerate(self.rows) if row.text), default=-1)
                self.history += self.rows[: used + 1]
                self.rows = [Row() for _ in self.rows]
            self.rows[self.row].text = self.rows[self.row].text[: self.col]
            self.rows[self.row + 1 :] = [Row() for _ in self.rows[self.row + 1 :]] if self.height else []
        elif sequence in ("?25l", "?25h"):
            self.cursor_visible = sequence == "?25h"
        else:
            raise AssertionError(f"unexpected escape sequence ESC[{sequence}")

    def put(self, char: str) -> None:
        if self.wrap and self.col >= self.width:
            self.rows[self.row].wrapped = True
            self.line_feed()
            self.col = 0
        row = self.rows[self.row]
        assert self.col < self.width, f"a line longer than the {self.width} columns: {row.text!r}"
        line = row.text.ljust(self.col)
        row.text = line[: self.col] + char + line[self.col + 1 :]
        self.col += 1

    def resize(self, width: int, height: int) -> None:
        """The window changes size, as tmux 3.3 handles it (screen_resize_cursor): the
        height first, then the width, re-wrapping every line, the scrollback's too."""
        assert self.height is not None, "a screen without a height has no window to resize"
        cursor = len(self.history) + self.row  # the cursor's row, counting the scrollback's
        if height < self.height:
            needed = self.height - height
            below = min(self.height - 1 - self.row, needed)  # rows under the cursor go first
            del self.rows[len(self.rows) - below :]
            needed -= below
            self.history += self.rows[:needed]  # then rows from the top, into the scrollback
            del self.rows[:needed]
            self.scrolled += needed
        elif height > self.height:
            back = min(self.scrolled, height - self.height)  # rows that had scrolled away come back
            if back:
                self.rows[:0] = self.history[-back:]
                del self.history[-back:]
            self.scrolled -= back
            self.rows += [Row() for _ in range(height - self.height - back)]
        self.height = height
        if width != self.width:
            cursor = self.reflow(width, cursor)
        self.width = width
        if cursor >= len(self.history):
            self.row = cursor - len(self.history)
        else:  # the cursor's row went into the scrollback: tmux puts it at the top-left
            self.row = self.col = 0

    def reflow(self, width: int, cursor: int) -> int:
        """Re-wrap every line at `width`, keeping the bottom row at the bottom: the
        cursor's new row (counting the scrollback's); its column goes in self.col."""
        rows = self.history + self.rows
        lines: list[str] = []  # each line whole, however many rows it took
        cursor_line = cursor_char = 0  # the cursor as (line, character in it)
        for index, row in enumerate(rows):
            goes_on = index > 0 and rows[index - 1].wrapped
            if index == cursor:
                cursor_line = len(lines) - 1 if goes_on else len(lines)
                cursor_char = (len(lines[-1]) if goes_on else 0) + self.col
            if goes_on:
                lines[-1] += row.text
            else:
                lines.append(row.text)
        new: list[Row] = []
        for number, line in enumerate(lines):
            pieces = [line[at : at + width] for at in range(0, len(line), width)] or [""]
            if number == cursor_line:
                piece = min(cursor_char // width, len(pieces) - 1)
                cursor, self.col = len(new) + piece, cursor_char - piece * width
            new += [Row(text, wrapped=index < len(pieces) - 1) for index, text in enumerate(pieces)]
        new += [Row() for _ in range(self.height - len(new))] if self.height and len(new) < self.height else []
        split = len(new) - (self.height or len(new))
        self.history, self.rows = new[:split], new[split:]
        self.scrolled = min(self.scrolled, len(self.history))
        return cursor


VIEW_RIDER = re.compile(r"(rider-\d+) +(\d+) ?(#*)(?:  (killed|died|quiet \d+ s))? *")
HEADER = re.compile(r"orders delivered( \(a full bar: \d+, (a fair share|the busiest rider's)\)| \(full bar: \d+\))?")
PROGRESS = re.compile(r"delivered \d+/\d+, \d+\.\d s")
MORE = re.compile(r"\.\.\. and \d+ more riders( \(a taller window shows them\)|: .+)")


def view_lines(lines: list[str]) -> dict[str, tuple[int, int, str]]:
    """Each rider line among `lines` as rider -> (count, bar length, mark)."""
    return {m[1]: (int(m[2]), len(m[3]), m[4] or "") for line in lines if (m := VIEW_RIDER.fullmatch(line))}


def rider_lines(screen: Screen) -> dict[str, tuple[int, int]]:
    """Each rider line on the screen as rider -> (count, bar length)."""
    return {rider: (count, bar) for rider, (count, bar, _) in view_lines(screen.lines).items()}


def is_frame_line(line: str) -> bool:
    return any(pattern.fullmatch(line) for pattern in (VIEW_RIDER, HEADER, PROGRESS, MORE))


def assert_bars_in_proportion(riders: dict[str, tuple[int, int]]) -> None:
    busiest_count, longest = max(riders.values())
    assert longest > 0
    for count, bar in riders.values():
        assert abs(bar - count * longest / busiest_count) <= 1, riders


def assert_one_frame_and_notes(screen: Screen, notes: list[str]) -> list[str]:
    """The scrollback holds notes only, and the window the notes that are left, one
    whole frame below them, and blank rows below it: no stale frame, whole or in part.
    Returns the frame's lines."""
    assert all(line in notes for line in screen.history_lines), screen.lines
    shown = screen.shown
    top = next(index for index, line in enumerate(shown) if not line or line not in notes)
    assert shown[:top] == [line for line in notes if line in shown[:top]], shown
    frame = shown[top : top + next(i for i, line in enumerate(shown[top:]) if not is_frame_line(line))]
    assert HEADER.fullmatch(frame[0]) and PROGRESS.fullmatch(frame[-1]), shown
    riders = [line for line in frame if VIEW_RIDER.fullmatch(line)]
    assert len(riders) == len(view_lines(riders)) == len(frame) - 2 - bool(MORE.fullmatch(frame[-2])), shown
    assert not any(shown[top + len(frame) :]), f"something below the frame: {shown}"
    assert not screen.cleared_from_top_left, "an erase-below from the top-left corner"
    return frame


class Window:
    """A pseudo-terminal and the screen a terminal window shows of it, resized together."""

    def __init__(self, terminal: Terminal, columns: int, rows: int) -> None:
        terminal.resize(rows=rows, columns=columns)
        self.terminal = terminal
        self.screen = Screen(columns, rows)

    def show(self) -> None:
        """What was written so far, played on the screen."""
        self.screen.play(self.terminal.output())

    def resize(self, columns: int, rows: int) -> None:
        self.show()  # before the new size: the terminal had drawn it
        self.terminal.resize(rows=rows, columns=columns)
        self.screen.resize(columns, rows)


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
def test_the_final_screen_shows_a_header_each_rider_in_place_and_the_progress(terminal: Terminal) -> None:
    clock = Clock()
    view = TerminalView(RIDERS, total=10, stream=terminal.stream, clock=clock)
    window = Window(terminal, columns=60, rows=30)
    screen = window.screen
    for rider in ["rider-1", "rider-2", "rider-1", "rider-4", "rider-1", "rider-2", "rider-1"]:
        view.delivered({"consumer": rider})
        clock.now += 0.4
        view.draw()
        window.show()
        assert (screen.row, screen.col) == (0, 0)  # between frames, the cursor waits on the frame's first line
    assert not screen.cursor_visible  # hidden while the view is up, so it does not flicker about
    view.close()
    window.show()

    # Seven frames drawn over each other: the header, one line per rider, the progress, the cursor below.
    assert screen.lines[0] == "orders delivered (a full bar: 4, the busiest rider's)"  # a fair share is 3
    assert screen.lines[5:] == ["delivered 7/10, 2.8 s", ""]
    assert (screen.row, screen.col, screen.cursor_visible) == (6, 0, True)
    riders = rider_lines(screen)
    assert list(riders) == RIDERS
    assert {rider: count for rider, (count, _) in riders.items()} == {
        "rider-1": 4,
        "rider-2": 2,
        "rider-3": 0,
        "rider-4": 1,
    }
    assert_bars_in_proportion(riders)
    assert riders["rider-1"][1] == BAR_MAX  # the busiest rider's bar is full


@posix_pty
def test_a_rider_killed_died_or_quiet_is_marked_and_so_are_those_a_short_window_hides(terminal: Terminal) -> None:
    clock = Clock()
    riders = [f"rider-{n}" for n in range(1, 13)]
    view = TerminalView(riders, total=24, stream=terminal.stream, clock=clock)
    window = Window(terminal, columns=60, rows=10)  # room for 5 riders
    for rider in riders:
        view.delivered({"consumer": rider})
    view.draw(force=True)
    clock.now = QUIET_S - 0.1
    for rider in [*riders[2:10], "rider-12"]:  # not rider-1, rider-2 or rider-11
        view.heard_from(rider)  # an order taken, or a queue found empty: word from it all the same
    view.draw(force=True)
    window.show()
    assert not any(mark for *_, mark in view_lines(window.screen.shown).values())  # nobody quiet yet

    clock.now = QUIET_S + 1.2
    view.rider_ended("rider-1", "killed")
    view.rider_ended("rider-12", "died")  # beyond the window's height
    for rider in [*riders[3:10], "rider-12"]:
        view.heard_from(rider)
    view.close()
    window.show()
    shown = window.screen.shown
    assert {rider: mark for rider, (*_, mark) in view_lines(shown).items()} == {
        "rider-1": "killed",  # not "quiet": dead, it would be quiet for ever
        "rider-2": "quiet 4 s",  # nothing heard since its delivery at 0 s
        "rider-3": "",  # heard from at 2.9 s: 1.3 s ago
        "rider-4": "",
        "rider-5": "",
    }
    assert "... and 7 more riders: 1 died, 1 quiet" in shown  # rider-12 and rider-11


@posix_pty
def test_after_a_resize_frames_fit_the_new_width_and_the_rewrapped_old_one_is_gone(terminal: Terminal) -> None:
    """A narrower window re-wraps the old frame's lines, as tmux does: each line of it
    takes more rows than it did, and the next frame must still cover all of them."""
    clock = Clock()
    view = TerminalView(RIDERS, total=12, stream=terminal.stream, clock=clock)
    window = Window(terminal, columns=60, rows=30)
    notes = [f"run.py: note {n}" for n in range(1, 31)]
    for note in notes:  # the window full: its rows scrolled into the scrollback
        view.note(note)
    for rider in RIDERS * 2:
        view.delivered({"consumer": rider})
    view.draw(force=True)
    window.show()
    wide = rider_lines(window.screen)["rider-1"][1]

    window.resize(columns=30, rows=30)  # every line of the frame but the progress takes 2 rows
    assert window.screen.row > 0 and window.screen.col == 0  # the cursor on the old frame's first line still
    view.delivered({"consumer": "rider-1"})
    view.draw(force=True)
    view.close()
    window.show()  # fails on any line wider than 30 columns
    assert_one_frame_and_notes(window.screen, notes)
    riders = rider_lines(window.screen)
    assert riders["rider-1"][0] == 3
    assert 0 < riders["rider-2"][1] < wide
    assert_bars_in_proportion(riders)


@posix_pty
def test_many_riders_in_a_small_window_notes_and_resizes_leave_no_stale_frame(
    terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    """What tmux showed: 50 riders in 100x30 or 30 in 80x24 left stale frames in the
    scrollback; so did a window shrunk mid-run. Here 30 riders in 60x16, on a screen that
    keeps a scrollback and resizes as tmux does; the first frame starts at the top-left
    corner, where an erase-below would push the screen into the scrollback."""
    clock = Clock()
    riders = [f"rider-{n}" for n in range(1, 31)]
    view = TerminalView(riders, total=60, stream=terminal.stream, clock=clock)
    window = Window(terminal, columns=60, rows=16)
    notes = ["run.py: p1 bound tcp://127.0.0.1:5557; starting 30 riders", "run.py: p1 sent its 60 orders and exited"]
    view.draw(force=True)  # before any note: the frame's first line is the window's top row
    window.show()
    assert window.screen.shown[0].startswith("orders delivered")
    view.note(notes[0])
    for step, rider in enumerate(riders * 2):
        view.delivered({"consumer": rider})
        clock.now = step * 0.05
        view.draw()
        if step == 20:
            view.note(notes[1])
            view.note("run.py: rider-3 died of SIGKILL", problem=True)  # on stderr, not this terminal
            view.rider_ended("rider-3", "died")
        if step == 40:
            window.resize(columns=60, rows=11)  # shorter: the rows under the cursor go first
        if step == 50:
            window.resize(columns=100, rows=11)  # wider
    window.resize(columns=58, rows=11)  # narrower, but every line still fits
    clock.now = 3.0
    view.close()
    window.show()
    frame = assert_one_frame_and_notes(window.screen, notes)
    assert len(frame) == 11 - 2  # a frame never reaches the window's height
    assert view_lines(frame)["rider-3"][2] == "died"
    assert frame[-2] == "... and 24 more riders (a taller window shows them)"
    assert frame[-1] == "delivered 60/60, 3.0 s"
    assert capsys.readouterr().err == "run.py: rider-3 died of SIGKILL\n"


@posix_pty
def test_riders_beyond_the_windows_height_are_summed_up_in_a_line(terminal: Terminal) -> None:
    riders = [f"rider-{n}" for n in range(1, 21)]
    view = TerminalView(riders, total=40, stream=terminal.stream)
    window = Window(terminal, columns=60, rows=8)
    for _ in range(3):
        view.draw(force=True)
    view.close()
    window.show()
    shown = window.screen.lines[:-1]  # the last line is the cursor's, below the view
    assert len(shown) == 8 - 2  # at the window's bottom, its first line would not be the top row
    assert shown[0] == "orders delivered (a full bar: 2, a fair share)"
    assert list(rider_lines(window.screen)) == riders[:3]
    assert shown[-2] == "... and 17 more riders (a taller window shows them)"
    assert shown[-1].startswith("delivered 0/40")


# A tmux pane's program: it writes to the pane each chunk the test sends down a FIFO (in
# hex, a line each), as it comes: no waiting but on the FIFO.
PANE = """import sys
with open(sys.argv[1], "rb") as chunks:
    for chunk in chunks:
        sys.stdout.write(bytes.fromhex(chunk.decode()).decode())
        sys.stdout.flush()
"""
NOTES = "".join(f"note {n}\n" for n in range(5))


def block(lines: int, width: int = 84) -> str:
    """Lines as a frame draws them: each erased, then written; the cursor back on the first."""
    return "".join(f"\x1b[2KL{n:02d} {'#' * (width - 4)}\n" for n in range(lines)) + f"\x1b[{lines}A"


@pytest.mark.parametrize(
    "size, steps",
    [
        ((100, 30), [NOTES + block(12), (100, 10), "X"]),  # shorter: the rows under the cursor go first
        ((100, 20), ["".join(f"n{n}\n" for n in range(30)) + block(12), (60, 15), "X", (100, 25), "Y"]),
        ((100, 30), [NOTES + block(12).rsplit("\x1b[", 1)[0], (60, 30), "X"]),  # re-wrapped, bottom kept
        ((60, 10), ["".join(f"n{n}\n" for n in range(9)) + "\x1b[9A\x1b[Jafter"]),  # scroll-on-clear
        ((100, 30), [NOTES + block(4, 74), (50, 30), "".join(f"\x1b[2KN{n} short\n" for n in range(8)), (100, 30)]),
    ],
    ids=["shorter", "narrower-shorter-taller", "narrower-cursor-below", "erase-below-top-left", "rewritten-rows"],
)
def test_the_screen_emulator_plays_what_tmux_shows(
    tmp_path: Path, size: tuple[int, int], steps: list[str | tuple[int, int]]
) -> None:
    """Screen's scrollback and resizes are worth what they model: the same bytes and the
    same resizes in a real tmux pane leave the same rows, scrollback included, and the
    cursor in the same place."""
    tmux = shutil.which("tmux")
    if not tmux or sys.platform == "win32":
        pytest.skip("no tmux here: the test compares the emulator with it (apt-get install tmux)")
    fifo = tmp_path / "chunks"
    os.mkfifo(fifo)
    config = tmp_path / "tmux.conf"
    config.write_text("set -g status off\nset -g history-limit 5000\n")
    # A server of its own, its socket in a short path (a socket's has a limit of about 100
    # bytes) that goes at the end with it: tmux leaves its socket behind when killed.
    sockets = Path(tempfile.mkdtemp(prefix="pipeline-tmux-", dir="/tmp"))
    server = [tmux, "-S", str(sockets / "server"), "-f", str(config)]
    env = {key: value for key, value in os.environ.items() if key != "TMUX"}
    screen = Screen(*size)

    def pane() -> tuple[list[str], list[int]]:
        rows = subprocess.run([*server, "capture-pane", "-p", "-S", "-", "-E", "-"], capture_output=True, text=True)
        where = subprocess.run(
            [*server, "display", "-p", "#{cursor_x} #{cursor_y} #{history_size}"], capture_output=True, text=True
        )
        return [row.rstrip() for row in rows.stdout.split("\n")[:-1]], [int(n) for n in where.stdout.split()]

    def emulated() -> tuple[list[str], list[int]]:
        return [row.text.rstrip() for row in screen.history + screen.rows], [
            screen.col,
            screen.row,
            len(screen.history),
        ]

    width, height = size
    command = [sys.executable, "-c", PANE, str(fifo)]
    size_options = ["-x", str(width), "-y", str(height)]
    try:
        subprocess.run([*server, "new-session", "-d", *size_options, *command], env=env, check=True)
        with open(fifo, "w") as chunks:
            for step in steps:
                if isinstance(step, str):
                    chunks.write(step.encode().hex() + "\n")
                    chunks.flush()
                    screen.play(step.replace("\n", "\r\n"))  # as the pty passes it on
                else:
                    subprocess.run([*server, "resize-window", "-x", str(step[0]), "-y", str(step[1])], check=True)
                    screen.resize(*step)
                wait_until(lambda: pane() == emulated(), 5, lambda: f"tmux {pane()}\nemulated {emulated()}")
    finally:
        subprocess.run([*server, "kill-server"], capture_output=True, timeout=30)
        shutil.rmtree(sockets, ignore_errors=True)


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
