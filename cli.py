"""What the three command-line scripts share: endpoints, option types, and output.

Endpoints: bind() and connect() turn ZeroMQ's errors into SetupError, which a script
prints as one line before it exits with status 1 (never a traceback). Output: say()
and error() write whole lines, so that lines from many processes sharing a terminal
never interleave mid-line.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys

import zmq


class SetupError(Exception):
    """A bind, connect or key file that failed: the message names it and the reason."""


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the real endpoint (port 0 means "any free port")."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise SetupError(f"cannot bind {endpoint}: {zmq.strerror(exc.errno or 0)}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def connect(sock: zmq.Socket, endpoint: str) -> None:
    # connect() succeeds even when nobody is listening yet: ZeroMQ connects in the
    # background and retries until a peer binds. Only a malformed endpoint fails here.
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        raise SetupError(f"cannot connect to {endpoint}: {zmq.strerror(exc.errno or 0)}") from None


def numeric(endpoint: str) -> str:
    """tcp://HOST:PORT with the host name looked up once, here. libzmq reports the first
    connection's monitor events under the name as given but, after a reconnect, under
    the address it resolved to; a rider must see one producer as one endpoint."""
    match = re.fullmatch(r"tcp://([^:\[\]]+):(\d+)", endpoint)
    if not match or re.fullmatch(r"[\d.]+|\*", match.group(1)):
        return endpoint  # already numeric, or not TCP: leave it to libzmq
    try:
        # IPv4: a ZeroMQ socket does not use IPv6 unless told to (zmq.IPV6).
        address = socket.getaddrinfo(match.group(1), int(match.group(2)), socket.AF_INET)[0][4][0]
    except (OSError, UnicodeError) as exc:
        raise SetupError(f"cannot connect to {endpoint}: {exc}") from None
    return f"tcp://{address}:{match.group(2)}"


def say(line: str) -> None:
    """Print one line with a single write, so that lines from many processes sharing
    a terminal never interleave mid-line (print() writes the newline separately)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """One line on stderr: how every script reports what went wrong."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def fail(message: str) -> int:
    """A SetupError's way out of main(): one line on stderr, exit status 1."""
    error(message)
    return 1


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
