"""A live view of a run in the terminal: a bar per rider that grows as it delivers.

run.py's report comes at the end; this shows the same spread while it happens. The view
redraws itself in place with two ANSI escape sequences (cursor up, erase line) rather
than curses, which Windows does not have: Windows 10 and later understand them once
virtual terminal processing is on, which ansi_terminal() asks for, and then checks: a
console that takes the setting but prints the sequences as text (Wine's) gets the plain
lines. No line reaches the terminal's last column, where a Windows console wraps.

    view = TerminalView(riders, total=50)        # only if ansi_terminal(sys.stdout)
    view.delivered(record); view.draw()          # a completion record; draw as often as you like
    view.close()                                 # last frame; the cursor comes back

Nothing else may write to the terminal while the view is up, or the lines it moves
back over are not its own. The width is read again at every frame, so a resized window
gets a frame that fits; a terminal that re-wraps its old lines on a resize may leave a
stale copy above. A terminal that goes away (a closed window, a broken pipe) stops the
view quietly: it sets `output_closed`, for the caller to stop too.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from hardened.cli import Pacer, error, say

FRAME_S = 0.1  # at most 10 frames a second: more only costs CPU
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
ERASE_LINE, ERASE_BELOW = "\x1b[2K", "\x1b[J"


def ansi_terminal(stream: TextIO) -> bool:
    """True if `stream` is a terminal that understands ANSI escape sequences. On
    Windows this turns them on for the console (Windows 10 and later)."""
    try:
        if not stream.isatty():
            return False
    except (OSError, ValueError):  # closed, or no file behind it
        return False
    if sys.platform == "win32":
        return enable_virtual_terminal(stream)
    return os.environ.get("TERM", "dumb") not in ("", "dumb", "unknown")


if sys.platform == "win32":
    import ctypes
    import msvcrt
    from ctypes import wintypes

    ENABLE_VIRTUAL_TERMINAL_PROCESSING = 0x0004
    # Written to try the console out: understood, it moves nothing (the cursor is shown
    # already); printed as text, it takes six cells, which are blanked again.
    PROBE = SHOW_CURSOR

    class ScreenBufferInfo(ctypes.Structure):
        _fields_ = [
            ("size", wintypes._COORD),
            ("cursor", wintypes._COORD),
            ("attributes", wintypes.WORD),
            ("window", wintypes.SMALL_RECT),
            ("maximum", wintypes._COORD),
        ]

    # Our own kernel32, so that the argument types set here touch nobody else's.
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.GetConsoleMode.argtypes = [wintypes.HANDLE, wintypes.LPDWORD]
    kernel32.SetConsoleMode.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    kernel32.GetConsoleScreenBufferInfo.argtypes = [wintypes.HANDLE, ctypes.POINTER(ScreenBufferInfo)]
    kernel32.WriteConsoleW.argtypes = [
        wintypes.HANDLE,
        wintypes.LPCWSTR,
        wintypes.DWORD,
        wintypes.LPDWORD,
        wintypes.LPVOID,
    ]
    kernel32.FillConsoleOutputCharacterW.argtypes = [
        wintypes.HANDLE,
        wintypes.WCHAR,
        wintypes.DWORD,
        wintypes._COORD,
        wintypes.LPDWORD,
    ]
    kernel32.SetConsoleCursorPosition.argtypes = [wintypes.HANDLE, wintypes._COORD]

    def enable_virtual_terminal(stream: TextIO) -> bool:
        """Turn on ANSI sequences for the console behind `stream`; False if it is not a
        console, too old a Windows for them (before Windows 10), or a console that takes
        the setting and then prints the sequences as text anyway (Wine's, up to 8.0 at
        least): then the mode is put back, and the caller shows plain lines."""
        try:
            stream.flush()  # what was written before is on the console: the cursor is where it ends
            handle = wintypes.HANDLE(msvcrt.get_osfhandle(stream.fileno()))
        except (OSError, ValueError):
            return False
        mode = wintypes.DWORD()
        if not kernel32.GetConsoleMode(handle, ctypes.byref(mode)):
            return False
        if not kernel32.SetConsoleMode(handle, mode.value | ENABLE_VIRTUAL_TERMINAL_PROCESSING):
            return False
        if understands_sequences(handle):
            return True
        kernel32.SetConsoleMode(handle, mode.value)
        return False

    def understands_sequences(handle: wintypes.HANDLE) -> bool:
        """Whether the console really interprets what it was told to: PROBE written at
        the cursor must leave the cursor where it was. False too where the console's
        size cannot be read, or the probe would not fit on the cursor's line (it could
        wrap, scroll, and leave a mark that cannot be wiped)."""
        before, after = ScreenBufferInfo(), ScreenBufferInfo()
        if not kernel32.GetConsoleScreenBufferInfo(handle, ctypes.byref(before)):
            return False
        if before.window.Right - before.window.Left < 1 or before.cursor.X + len(PROBE) >= before.size.X:
            return False
        written = wintypes.DWORD()
        if not kernel32.WriteConsoleW(handle, PROBE, len(PROBE), ctypes.byref(written), None):
            return False
        if not kernel32.GetConsoleScreenBufferInfo(handle, ctypes.byref(after)):
            return False
        if (after.cursor.X, after.cursor.Y) == (before.cursor.X, before.cursor.Y):
            return True
        # Printed as text: blank those cells and put the cursor back where it was.
        kernel32.FillConsoleOutputCharacterW(handle, " ", len(PROBE), before.cursor, ctypes.byref(written))
        kernel32.SetConsoleCursorPosition(handle, before.cursor)
        return False


class TerminalView:
    """A bar and a count per rider, and a progress line, redrawn in place."""

    def __init__(
        self,
        riders: Sequence[str],
        total: int,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counts = dict.fromkeys(riders, 0)  # in display order
        self.total = total  # orders expected in the whole run
        self.stream = stream if stream is not None else sys.stdout  # looked up now: tests and tools replace sys.stdout
        self.clock = clock
        self.started = clock()
        self.last_frame = -math.inf
        self.lines = 0  # how many lines the last frame took: how far up the next one starts
        self.output_closed = False  # the terminal went away: nothing is drawn any more
        self.finished = False

    def delivered(self, record: Mapping[str, Any]) -> None:
        """Count one delivery (a completion record). A rider the view was not told
        about gets a row too."""
        rider = record["consumer"]
        self.counts[rider] = self.counts.get(rider, 0) + 1

    def note(self, line: str, problem: bool = False) -> None:
        """Say something while the view is up: the line goes above it (on stderr if it
        is a problem), the view below."""
        up = f"\x1b[{self.lines}A" if self.lines else ""
        if problem:
            self.write("\r" + up + ERASE_BELOW)
            error(line)
        else:
            self.write("\r" + up + ERASE_BELOW + line + "\n")
        self.lines = 0
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """Redraw, unless the last frame was under FRAME_S ago (force: draw anyway)."""
        now = self.clock()
        if self.finished or self.output_closed or (not force and now - self.last_frame < FRAME_S):
            return
        self.last_frame = now
        up = f"\x1b[{self.lines}A" if self.lines else HIDE_CURSOR  # the first frame starts where the cursor is
        lines = self.frame(now)
        # Each line erased before it is written; then whatever a longer frame left below.
        self.write("\r" + up + "".join(f"{ERASE_LINE}{line}\n" for line in lines) + ERASE_BELOW)
        self.lines = len(lines)

    def close(self) -> None:
        """The last frame, with the cursor shown again on the line below it."""
        self.draw(force=True)
        if not self.finished and self.lines:
            self.write(SHOW_CURSOR)
        self.finished = True

    def frame(self, now: float) -> list[str]:
        """The lines of a frame, each one short of the terminal's width (a line that
        reaches the last column wraps on some terminals), and no more of them than fit."""
        width, height = terminal_size(self.stream)
        room = max(width - 1, 1)
        lines = self.rider_lines(room)
        if len(lines) + 1 > height - 1:  # the view must fit, or it cannot move back up over itself
            shown = max(height - 3, 0)
            lines = [*lines[:shown], f"... and {len(lines) - shown} more riders (a taller window shows them)"]
        lines.append(f"delivered {sum(self.counts.values())}/{self.total}, {now - self.started:.1f} s")
        return [line[:room] for line in lines]

    def rider_lines(self, room: int) -> list[str]:
        """A line per rider: its name, its count, and a bar in the room left."""
        name_w = max((len(name) for name in self.counts), default=0)
        count_w = len(str(self.total))
        bar_w = max(room - name_w - count_w - 2, 0)
        # A full bar is a fair share of the orders, or the busiest rider's count once
        # someone has more: the bars grow steadily, and an uneven spread shows.
        full = max(math.ceil(self.total / max(len(self.counts), 1)), *self.counts.values(), 1)
        return [
            f"{name:<{name_w}} {count:>{count_w}} {'#' * round(count * bar_w / full)}"
            for name, count in self.counts.items()
        ]

    def write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal is gone (EIO, a broken pipe) or the stream closed
            self.output_closed = True


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """The columns and lines of the terminal behind `stream`, or else of the one
    shutil finds (COLUMNS and LINES, or 80x24)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        size = os.terminal_size((0, 0))
    fallback = shutil.get_terminal_size()
    return size.columns or fallback.columns, size.lines or fallback.lines


class PlainView:
    """Where stdout is no ANSI terminal (a pipe, a file, CI): a line per delivery at
    teaching rates, a summary line a second in a flood (cli.Pacer)."""

    output_closed = False  # say() stops the process itself when nobody reads its output

    def __init__(self) -> None:
        self.lines = Pacer("run.py", "riders delivered")

    def delivered(self, record: Mapping[str, Any]) -> None:
        self.lines.event(delivery_line, record)

    def draw(self, force: bool = False) -> None:
        self.lines.tick()  # run.py calls this as it waits: a flood's summary comes on time

    def note(self, line: str, problem: bool = False) -> None:
        (error if problem else say)(line)

    def close(self) -> None:
        self.lines.flush()


View = TerminalView | PlainView  # what shows run.py's run while it goes


def delivery_line(record: Mapping[str, Any]) -> str:
    took = datetime.fromisoformat(record["done_at"]) - datetime.fromisoformat(record["received_at"])
    where = f" ({record['restaurant']})" if "restaurant" in record else ""
    return (
        f"{record['consumer']} delivered {record['order_id']} from {record['producer']}{where} "
        f"in {took.total_seconds():.2f} s"
    )
