"""A live view of a run in the terminal: a bar per rider that grows as it delivers.

run.py's report comes at the end; this shows the same spread while it happens. The view
redraws itself in place with a few ANSI escape sequences (cursor up, erase line, erase
below) rather than curses, which Windows does not have: Windows 10 and later understand
them once virtual terminal processing is on, which ansi_terminal() asks for, and then
checks: a console that takes the setting but prints the sequences as text (Wine's) gets
the plain lines. No line reaches the terminal's last column, where a Windows console wraps.

    view = TerminalView(riders, total=50)        # only if ansi_terminal(sys.stdout)
    view.delivered(record); view.draw()          # a completion record; draw as often as you like
    view.heard_from("rider-3")                   # it said something else: it is not quiet
    view.rider_ended("rider-1", "killed")        # or "died": its line says so
    view.close()                                 # last frame; the cursor comes back below it

A frame is a header (what the bars count), a line per rider and a progress line. It
leaves no stale copy behind, in the window or in its scrollback:

- Between two frames the cursor waits on the frame's first line, not below it. A
  terminal keeps the cursor where it is when the window changes size: a narrower one
  re-wraps the frame's lines (tmux, VTE, Windows Terminal, iTerm2 do) and a shorter one
  drops the lines below the cursor first (tmux does), so the next frame starts on the
  old one's first line however many rows the old one takes now.
- A frame never takes more than the window's height less 2 lines: at the bottom of the
  window its first line is never the top row. The one erase-below, for what an old
  frame left under a new one, comes after a written line: never from the top-left
  corner, where tmux (scroll-on-clear) and other terminals push the whole screen into
  the scrollback first.
- Bars are at most BAR_MAX characters, so a line stays short (under 60 columns with
  run.py's riders) and a window narrowed to 60 columns re-wraps none of it.

What no program can help: a window narrowed so much that the old frame, re-wrapped,
needs more rows than there are above it (tmux keeps the rows below, blank or not) has
its first lines pushed into the scrollback before anyone is told of the new size.
Nothing else may write to the terminal while the view is up, or the lines it draws over
are not its own. A terminal that goes away (a closed
window, a broken pipe) stops the view quietly: it sets `output_closed`, for the caller
to stop too.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from hardened.cli import Pacer, error, say

FRAME_S = 0.1  # at most 10 frames a second: more only costs CPU
# Nothing heard from a rider for this long (no delivery, no order taken, no word that its
# queue is empty, which a rider with nothing to do says every half second): its line says
# "quiet 4 s". Longer than a ride at the default speed (0.2-1.0 s), so a working rider
# is never called quiet; it may be slow to start, on a long ride, paused, or stuck.
QUIET_S = 3.0
BAR_MAX = 30  # the longest bar, as in the report: lines short enough to survive a narrower window
MARK_W = len("  quiet 99 min")  # kept free after each bar for what became of its rider
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
    """A header, a bar and a count per rider, and a progress line, redrawn in place."""

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
        self.heard_at = dict.fromkeys(riders, self.started)  # rider -> when it was last heard from
        # Riders heard from since the last frame, stamped when it is drawn: a set's add per
        # message, not a clock reading, in a flood of thousands a second.
        self.fresh: set[str] = set()
        self.ended: dict[str, str] = {}  # rider -> "killed" or "died"
        self.drawn = False  # a frame is up: the cursor waits on its first line, hidden
        self.output_closed = False  # the terminal went away: nothing is drawn any more
        self.finished = False

    def delivered(self, record: Mapping[str, Any]) -> None:
        """Count one delivery (a completion record). A rider the view was not told
        about gets a row too."""
        rider = record["consumer"]
        self.counts[rider] = self.counts.get(rider, 0) + 1
        self.fresh.add(rider)

    def heard_from(self, rider: str) -> None:
        """The rider said something other than a delivery (it took an order, or its queue
        is empty): it is not quiet."""
        self.fresh.add(rider)

    def rider_ended(self, rider: str, how: str) -> None:
        """The rider's process ended before the run did: `how` is "killed" (on purpose)
        or "died". Its line says so from the next frame on."""
        self.ended[rider] = how

    def note(self, line: str, problem: bool = False) -> None:
        """Say something while the view is up: the line goes above it (on stderr if it
        is a problem), the view below."""
        # The cursor waits on the frame's first line: the note takes that line's place.
        # A problem goes to stderr, which may not be this terminal: the line is blanked
        # here in any case, and the frame drawn again from wherever the note leaves the cursor.
        self.write("\r" + ERASE_LINE + ("" if problem else line + "\n"))
        if problem:
            error(line)
        self.draw(force=True)

    def draw(self, force: bool = False, last: bool = False) -> None:
        """Redraw, unless the last frame was under FRAME_S ago (force: draw anyway). The
        cursor goes back to the frame's first line, or stays below it after the last one."""
        now = self.clock()
        if self.finished or self.output_closed or (not force and now - self.last_frame < FRAME_S):
            return
        self.last_frame = now
        lines = self.frame(now)
        # Each line erased before it is written, then whatever a longer old frame left
        # below: an erase-below after a written line, so never from the top-left corner.
        text = "".join(f"{ERASE_LINE}{line}\n" for line in lines) + ERASE_BELOW
        back = "" if last else f"\x1b[{len(lines)}A"
        self.write(("" if self.drawn else HIDE_CURSOR) + "\r" + text + back)
        self.drawn = True

    def close(self) -> None:
        """The last frame, with the cursor shown again on the line below it."""
        self.draw(force=True, last=True)
        if not self.finished and self.drawn:
            self.write(SHOW_CURSOR)
        self.finished = True

    def frame(self, now: float) -> list[str]:
        """The lines of a frame, each one short of the terminal's width (a line that
        reaches the last column wraps on some terminals), and at most the terminal's
        height less 2 of them: with the line below it, where its last line feed goes,
        the frame then never starts on the window's top row, even at its bottom."""
        width, height = terminal_size(self.stream)
        room = max(width - 1, 1)
        for rider in self.fresh:
            self.heard_at[rider] = now
        self.fresh.clear()
        marks = {name: self.mark(name, now) for name in self.counts}
        fair = math.ceil(self.total / max(len(self.counts), 1))
        # A full bar is a fair share of the orders, or the busiest rider's count once
        # someone has more: the bars grow steadily, and an uneven spread shows.
        full = max(fair, *self.counts.values(), 1)
        whose = "a fair share" if full == fair else "the busiest rider's"
        headers = [f"orders delivered (a full bar: {full}, {whose})", f"orders delivered (full bar: {full})"]
        header = next((line for line in headers if len(line) <= room), "orders delivered")
        progress = f"delivered {sum(self.counts.values())}/{self.total}, {now - self.started:.1f} s"
        riders = self.rider_lines(room, full, marks)
        fits = max(height - 2, 1)
        if len(riders) + 2 > fits:  # the riders that fit, and a line for the others
            shown = max(fits - 3, 0)
            riders = [*riders[:shown], more_line(list(marks.values())[shown:])]
        return [line[:room] for line in [header, *riders, progress][-fits:]]  # a tiny window: the progress at least

    def mark(self, rider: str, now: float) -> str:
        """What became of a rider, after its bar: killed, died, quiet for a while, or nothing."""
        if rider in self.ended:
            return self.ended[rider]
        silent = now - self.heard_at.get(rider, self.started)
        if silent < QUIET_S:
            return ""
        return f"quiet {silent:.0f} s" if silent < 99.5 else f"quiet {silent / 60:.0f} min"

    def rider_lines(self, room: int, full: int, marks: Mapping[str, str]) -> list[str]:
        """A line per rider: its name, its count, a bar in the room left, and its mark."""
        name_w = max((len(name) for name in self.counts), default=0)
        count_w = len(str(self.total))
        bar_w = max(min(BAR_MAX, room - name_w - count_w - 2 - MARK_W), 0)
        return [
            f"{name:<{name_w}} {count:>{count_w}} {'#' * round(count * bar_w / full)}"
            + (f"  {marks[name]}" if marks[name] else "")
            for name, count in self.counts.items()
        ]

    def write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal is gone (EIO, a broken pipe) or the stream closed
            self.output_closed = True


def more_line(marks: Sequence[str]) -> str:
    """The line for the riders a frame has no room for: how many, and what became of
    those that were killed, died or are quiet, so that a short window hides no trouble."""
    kinds = Counter(mark.split()[0] for mark in marks if mark)
    said = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    return f"... and {len(marks)} more riders" + (f": {said}" if said else " (a taller window shows them)")


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

    def heard_from(self, rider: str) -> None:
        pass  # only the terminal view shows who is quiet

    def rider_ended(self, rider: str, how: str) -> None:
        pass  # run.py says so in a line of its own already

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
