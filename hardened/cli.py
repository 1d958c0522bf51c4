"""What the three command-line scripts share: endpoints, option types, and output.

Endpoints: bind() and connect() turn ZeroMQ's errors into SetupError, which a script
prints as one line before it exits with status 1 (never a traceback). Output: say()
and error() write whole lines, so that lines from many processes sharing a terminal
never interleave mid-line.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import re
import socket
import sys
import time
from collections.abc import Callable

try:
    import zmq
except ModuleNotFoundError:  # the usual first stumble: not in the virtualenv
    sys.exit(
        "pyzmq is not installed for this Python: activate the project's virtualenv "
        "(. .venv/bin/activate, or .venv\\Scripts\\Activate.ps1 on Windows), "
        "or pip install -r requirements.txt"
    )

from hardened import stopping


class SetupError(Exception):
    """A bind, connect or key file that failed: the message names it and the reason."""


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the real endpoint (port 0 means "any free port")."""
    on_endpoint(sock.bind, endpoint, "bind")
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def connect(sock: zmq.Socket, endpoint: str) -> None:
    # connect() succeeds even when nobody is listening yet: ZeroMQ connects in the
    # background and retries until a peer binds. Only a malformed endpoint fails here.
    on_endpoint(sock.connect, endpoint, "connect to")


def on_endpoint(call: Callable[[str], object], endpoint: str, verb: str) -> None:
    """bind() or connect(), with a failure as a SetupError that says what went wrong.
    ZeroMQ says only "Invalid argument" for `5558` or `localhost:5557`: say what it wants."""
    if "://" not in endpoint:
        raise SetupError(f"cannot {verb} {endpoint}: {expected_form(endpoint)}")
    port = endpoint.rpartition(":")[2]
    if endpoint.startswith("tcp://") and re.fullmatch("[0-9]+", port) and int(port) > 65535:
        # libzmq would take it, and a rider would then wait for ever.
        raise SetupError(f"cannot {verb} {endpoint}: port {port} is out of range (0-65535)")
    try:
        call(endpoint)
    except zmq.ZMQError as exc:
        text = zmq.strerror(exc.errno or 0)
        hint = ""
        if exc.errno == errno.EINVAL:
            hint = f" ({expected_form(endpoint)})"
        elif exc.errno == errno.ENODEV and "[" in endpoint:
            hint = " (IPv6: these sockets use IPv4 only)"
        elif exc.errno == zmq.EADDRINUSE and re.fullmatch("[0-9]+", port):
            hint = f" (another program has that port: pick another, such as {endpoint[: -len(port)]}{int(port) + 1})"
        elif exc.errno in (errno.ENODEV, zmq.Errno.EADDRNOTAVAIL):  # libzmq's values: not WSA's on Windows
            hint = " (not an address of this machine: bind 127.0.0.1, or 0.0.0.0 for every interface)"
        raise SetupError(f"cannot {verb} {endpoint}: {text}{hint}") from None


def expected_form(endpoint: str) -> str:
    """The form an endpoint takes, with the user's own host or port in the example."""
    host, _, port = endpoint.rpartition("://")[2].rpartition(":")
    if not re.fullmatch("[0-9]+", port):
        host, port = "", "5557"
    return f"expected tcp://HOST:PORT, such as tcp://{host or '127.0.0.1'}:{port}"


def is_loopback(endpoint: str) -> bool:
    """Whether only this machine can reach a bound endpoint (tcp://127.0.0.1:5557 yes,
    tcp://0.0.0.0:5557 no; ipc:// and inproc:// are local by nature)."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://") :].rpartition(":")[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(endpoint: str) -> str | None:
    """The HOST of tcp://HOST:PORT if it is a name (platform, not 10.0.0.5), else None."""
    match = re.fullmatch(r"tcp://([^:\[\]]+):(\d+)", endpoint)
    if not match or re.fullmatch(r"[\d.]+|\*", match.group(1)):
        return None  # an address, or not TCP
    return match.group(1)


def addresses(host: str) -> set[str]:
    """The IPv4 addresses `host` resolves to now (none if it does not): a ZeroMQ socket
    does not use IPv6 unless told to (zmq.IPV6)."""
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except (OSError, UnicodeError):
        return set()


def unresolved(endpoint: str) -> str | None:
    """Why the host name in a tcp:// endpoint does not resolve now; None if it does (or
    the endpoint has an address, not a name). Not an error for a rider: it connects by
    the name, and libzmq looks the name up again at every attempt, so the rider finds
    its producer once the name resolves, and again if the producer's host moves."""
    host = host_name(endpoint)
    if host is None:
        return None
    try:
        socket.getaddrinfo(host, None, socket.AF_INET)
    except OSError as exc:
        return exc.strerror or str(exc)
    except UnicodeError as exc:  # a label over 63 characters, say
        return f"not a valid host name ({exc})"
    return None


MUTED = False  # see mute()


def mute() -> None:
    """say() prints nothing in this process: run.py's children, whose parent shows
    the run for them, in one voice."""
    global MUTED
    MUTED = True


def say(line: str) -> None:
    """Print one line with a single write, so that lines from many processes sharing
    a terminal never interleave mid-line (print() writes the newline separately).

    When nobody reads our output any more (`python -m hardened.run | head -3`, or quitting
    `less`), the script stops, quietly: as after Ctrl-C, but with EXIT_OUTPUT_CLOSED."""
    if MUTED:
        return
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except OSError as exc:
        # A closed pipe: EPIPE on POSIX; on Windows EINVAL as often as EPIPE.
        if exc.errno not in (errno.EPIPE, errno.EINVAL, errno.EIO):  # EIO: a closed terminal
            raise
        # Point stdout at the null device, or Python's final flush at exit would
        # fail again and print a complaint.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        stopping.STOP.output_closed = True
        stopping.STOP.set()


# Above this many lines a second, a person reads nothing: print a summary a second instead.
LINES_PER_S = 20


class Pacer:
    """A line per event at teaching rates; in a flood, one summary line a second.

    At --interval 0 a producer sends, and each rider delivers, thousands of orders a
    second: a line for each is unreadable, and the writes cost more than the orders.
    Past LINES_PER_S in a second the lines stop and a summary comes once a second,
    until a second with fewer switches back. event() takes a function that makes the
    line, and its arguments: a line that is not printed is not made either.

    Problems are paced the same way (a peer can send 100,000 bad messages a second):
    Pacer(name, "rejected", "messages", out=error), and event(..., reason=why) for a
    summary that counts each reason."""

    def __init__(
        self,
        name: str,
        verb: str,
        noun: str = "orders",
        clock: Callable[[], float] = time.monotonic,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.name, self.verb, self.noun, self.clock = name, verb, noun, clock
        self.out = out  # how a line goes out: say() unless told (looked up when used: tests replace it)
        self.since = 0.0  # when this second's window began: at its first event
        self.last = 0.0  # this window's last event
        self.events = 0  # in this window
        self.reasons: dict[str, int] = {}  # in this window: reason -> events
        self.flooding = False

    def event(self, line: Callable[..., str], *args: object, reason: str = "") -> None:
        now = self.clock()
        if self.events and now - self.since >= 1.0:
            self.flush(now)
        if not self.events:
            self.since = now
        self.events += 1
        self.last = now
        if reason:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if not self.flooding:
            if self.events <= LINES_PER_S:
                self.write(line(*args))
            else:
                self.flooding = True

    def tick(self) -> None:
        """For a caller that waits: a second that has passed is summed up now, not at
        the next event (which may never come)."""
        if self.events and self.clock() - self.since >= 1.0:
            self.flush()

    def flush(self, now: float | None = None) -> None:
        """End this second's window: its summary if it flooded, and a new window. A
        window without events has nothing to sum up (not "0 orders in 0.2 s")."""
        now = self.clock() if now is None else now
        ended = now - self.last >= 1.0  # a quiet second since: the flood is over
        if self.flooding and self.events:
            # Timed to its last event if it ended early, else the window's second.
            seconds = (self.last if ended else min(now, self.since + 1.0)) - self.since
            rate = f", {self.events / seconds:,.0f}/s" if seconds > 0.05 else ""
            why = ": " + ", ".join(f"{reason} ({count:,})" for reason, count in self.reasons.items())
            summary = f"{self.name}: {self.verb} {self.events:,} {self.noun} in {seconds:.1f} s{rate}"
            self.write(summary + (why if self.reasons else ""))
        self.flooding = self.events > LINES_PER_S and not ended
        self.events = 0
        self.reasons = {}

    def write(self, line: str) -> None:
        (self.out or say)(line)


def error(message: str) -> None:
    """One line on stderr: how every script reports what went wrong."""
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except OSError:  # nobody can read it any more (a closed terminal): nothing to tell
        pass


def plural(count: int, noun: str) -> str:
    """1 order, 2 orders."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def fail(message: str) -> int:
    """A SetupError's way out of main(): one line on stderr, exit status 1."""
    error(message)
    return 1


def non_negative_int(text: str) -> int:
    """argparse type: 0, 1, 2, ... (a bad value becomes argparse's usage error)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a whole number >= 1, got '0'")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value
