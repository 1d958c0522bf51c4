"""Stopping cleanly, the same way on Windows, macOS and Linux.

A person stops a script with Ctrl-C (or SIGTERM). That only sets a flag, which every
loop looks at between short waits: a blocking ZeroMQ call can't be cut short by a
handler that sets a flag (pyzmq retries it after EINTR), and a KeyboardInterrupt in
the middle of a send or a close would lose orders and print a traceback.

run.py stops its children another way: they ignore the stop signals and watch a pipe
whose writing end only run.py holds; closing it stops them all, and so does run.py
dying. A signal can't do that job everywhere: on Windows os.kill() is TerminateProcess,
which would kill a rider before it reports its last delivery.

This is the one module with a POSIX check (see shielded_children): liveview.py and curve.py
have Windows ones of their own, for the console and for file modes.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time

# Cheap imports only: the scripts import this module first of all, and every import
# here delays the moment from which Ctrl-C is theirs. These are for mypy alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

# How long a wait lasts before the loop looks at the stop flag again. 100 ms keeps
# Ctrl-C prompt and costs nothing measurable.
POLL_MS = 100

# The exit status when stdout was closed under us (`python -m hardened.run | head`): what a shell
# reports for a program that a closed pipe ended (128 + SIGPIPE).
EXIT_OUTPUT_CLOSED = 141

STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM]  # Ctrl-C, and `kill` or a service manager
IGNORED_ON_PURPOSE: list[signal.Signals] = []  # a stop signal left ignored if it is (see below: SIGHUP and nohup)
if sys.platform == "win32":
    STOP_SIGNALS.append(signal.SIGBREAK)  # Ctrl-Break in a Windows console


class StopFlag:
    """Set on a stop signal or by run.py; the loops look at it between short waits.

    Not a threading.Event: a signal handler runs between two bytecodes of the main
    thread, possibly while that thread holds the Event's internal lock (inside
    Event.wait), and Event.set() in the handler would then wait for that lock forever.
    A plain attribute takes no lock.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.output_closed = False  # why: nobody reads our output any more (see cli.say)

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped

    def wait(self, timeout: float) -> bool:
        """Sleep for up to `timeout` seconds, less once set; True if set."""
        deadline = time.monotonic() + timeout
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, POLL_MS / 1000))
        return self.stopped


# This process's flag: what a stop signal sets once catch_signals() has run.
STOP = StopFlag()


def catch_signals() -> StopFlag:
    """Make SIGINT, SIGTERM (and on Windows Ctrl-Break) set STOP; return it.

    The scripts call this before their slower imports, so that a Ctrl-C at any moment
    after their first line ends them cleanly. Explicit handlers also matter because a
    process started in the background by a non-interactive shell inherits SIGINT as
    *ignored*, and would never see KeyboardInterrupt at all.
    """
    for sig in STOP_SIGNALS:
        if sig not in IGNORED_ON_PURPOSE or signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, lambda signum, frame: STOP.set())
    return STOP


def ignore_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def exit(status: int) -> None:
    """The scripts' last line (and run.py's children's). Once main() has returned a stop
    signal changes nothing, so ignore them: one that came while Python shuts down, its
    handlers gone, would turn a finished run into death by signal."""
    ignore_signals()
    sys.exit(EXIT_OUTPUT_CLOSED if STOP.output_closed else status)


def child_stop(pipe: Connection) -> StopFlag:
    """For a child of run.py: ignore the stop signals, and stop when run.py closes its end
    of `pipe` (or dies, which closes it too). A Ctrl-C in a terminal or a Windows console
    reaches every process attached to it: run.py alone decides what happens then."""
    ignore_signals()

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                pipe.recv()  # run.py never writes: this returns only at EOF, by raising
        STOP.set()

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    return STOP


def join_or_kill(processes: Sequence[BaseProcess], timeout: float, who: str) -> None:
    """Once the stop pipe is closed: wait for the children to exit, and kill any still
    there after `timeout` seconds, saying so (`who` names the program in that line)."""
    from multiprocessing.connection import wait

    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if p.is_alive()]) and (left := deadline - time.monotonic()) > 0:
        wait([p.sentinel for p in alive], left)
    for process in alive:
        sys.stderr.write(f"{who}: {process.name} did not stop in {timeout:g} s, killing it\n")
        process.kill()
        process.join()


# The one platform check. POSIX has signal masks; Windows, and the Windows that the
# tests simulate on Linux (without pthread_sigmask), have none.
if sys.platform == "win32" or not hasattr(signal, "pthread_sigmask"):

    @contextlib.contextmanager
    def shielded_children() -> Iterator[None]:
        """Start processes in here that never see Ctrl-C.

        Windows has a console flag instead of signal masks: while a process ignores
        Ctrl-C (SetConsoleCtrlHandler(NULL, TRUE)), the processes it starts inherit that
        for good. A Ctrl-C that comes meanwhile is lost to run.py too: starting a child
        is quick, and a second Ctrl-C works. (The simulated Windows has no such flag:
        there a child ignores Ctrl-C from run.py's first line, as __mp_main__.)
        """
        if sys.platform != "win32":
            yield
            return
        import ctypes

        ctypes.windll.kernel32.SetConsoleCtrlHandler(None, True)
        try:
            yield
        finally:
            ctypes.windll.kernel32.SetConsoleCtrlHandler(None, False)

else:
    STOP_SIGNALS.append(signal.SIGHUP)  # POSIX: the terminal window was closed
    IGNORED_ON_PURPOSE.append(signal.SIGHUP)  # unless started with nohup, which ignores it

    @contextlib.contextmanager
    def shielded_children() -> Iterator[None]:
        """Start processes in here that never see SIGINT or SIGTERM.

        They inherit the signals blocked, through fork and exec alike, and keep them
        blocked: the fork server, and each child (which ignores them too, in
        child_stop()). A terminal's Ctrl-C reaches the whole process group, and would
        otherwise kill a child half-started (with a traceback) or the fork server. In
        run.py itself a signal that comes meanwhile waits, and reaches its handler at
        the end of the block.
        """
        from multiprocessing import resource_tracker

        # Starting the resource tracker unblocks these signals: have it running first.
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
