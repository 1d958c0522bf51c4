"""What producer.py, consumer.py and run.py share: stopping on a signal, and endpoints.

Not a script: the three programs import it so that each of these things has one
implementation. Read producer.py or consumer.py first; come here when they call in.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

# How long a blocked call waits before the loop looks at the stop flag again. A
# blocking recv() or send() can't be interrupted by a Python signal handler that only
# sets a flag (pyzmq retries the call after EINTR), so every wait is a poll with this
# timeout. 100 ms keeps Ctrl-C prompt and costs nothing measurable.
POLL_MS = 100

# The longest delivery a consumer accepts. delivery_s comes from the network, and a
# buggy or hostile producer must not be able to put a rider to sleep for a year.
MAX_DELIVERY_S = 60.0


class SetupError(Exception):
    """A bind, connect or key file that failed: the message names it and the reason."""


class StopFlag:
    """Set by SIGINT or SIGTERM; the loops look at it between short waits.

    Not a threading.Event: a signal handler runs between two bytecodes of the main
    thread, possibly while that thread holds the Event's internal lock (inside
    Event.wait), and Event.set() in the handler would then wait for that lock forever.
    A plain attribute takes no lock.
    """

    def __init__(self) -> None:
        self.stopped = False

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


def install_stop_handlers() -> StopFlag:
    """Turn SIGINT (Ctrl-C) and SIGTERM into a flag that the main loop checks.

    Installed explicitly because a process started in the background by a
    non-interactive shell inherits SIGINT as *ignored*, and Python then never raises
    KeyboardInterrupt. A flag instead of an exception lets each loop finish the call
    it is in and close its sockets properly.
    """
    stop = StopFlag()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    # run.py holds these signals back until its handlers are in (see its first lines);
    # now that ours are in place, let them in, and any that waited with them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return stop


def bind(socket: zmq.Socket, endpoint: str) -> str:
    """Bind and return the real endpoint (port 0 means "any free port")."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        raise SetupError(f"cannot bind {endpoint}: {zmq.strerror(exc.errno)}") from None
    return socket.last_endpoint.decode()


def connect(socket: zmq.Socket, endpoint: str) -> None:
    # connect() succeeds even when nobody is listening yet: ZeroMQ connects in the
    # background and retries until a peer binds. Only a malformed endpoint fails here.
    try:
        socket.connect(endpoint)
    except zmq.ZMQError as exc:
        raise SetupError(f"cannot connect to {endpoint}: {zmq.strerror(exc.errno)}") from None


def load_keys(path: str, need_secret: bool = False) -> tuple[bytes, bytes | None]:
    """(public key, secret key) from a certificate made by zmq.auth.create_certificates:
    NAME.key holds the public key only, NAME.key_secret both."""
    if not os.path.isfile(path):
        raise SetupError(f"cannot read the key file {path}: no such file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read the key file {path}: {exc}") from None
    if need_secret and not secret:
        raise SetupError(f"{path} holds no secret key: pass the NAME.key_secret file")
    return public, secret


def handshake_failure(event: int, value: int, curve: bool) -> str:
    """A failed handshake as the socket monitor reports it, in words. `curve`: whether
    this side uses CURVE, which decides the likely cause of a failure without detail."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"CURVE key not authorised (ZAP status {value})"
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "security mismatch: CURVE on one side only"
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "CURVE handshake failed: wrong server key on the consumer?"
    if curve:
        return "handshake failed (the wrong server key, or CURVE on one side only?)"
    return "closed during the handshake (not a ZeroMQ peer, or the other side wants CURVE?)"


def pending_events(monitor: zmq.Socket) -> Iterator[tuple[int, int, str]]:
    """Every event waiting on a socket monitor, without blocking: (event, value, endpoint)."""
    while monitor.poll(0):
        message = recv_monitor_message(monitor)
        # int(): pyzmq wraps the value in a zmq.Event flag, which prints as nonsense.
        yield message["event"], int(message["value"]), message["endpoint"].decode()


def utc_now() -> str:
    """The current time as ISO-8601 UTC, as the wire format wants it."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def say(line: str) -> None:
    """Print one line with a single write, so that lines from many processes sharing
    a terminal never interleave mid-line (print() writes the newline separately)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """One line on stderr: how every script reports what went wrong."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def non_negative_int(text: str) -> int:
    """argparse type: 0, 1, 2, ... (a bad value becomes argparse's usage error)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, got 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value
