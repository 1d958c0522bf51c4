"""Heartbeats: noticing a peer that vanished without a word.

A rider's phone that leaves coverage sends nothing: no FIN, no RST. TCP then keeps the
connection "up" for many minutes, and a PUSH socket keeps handing that rider its share
of the orders, which go nowhere. With ZMTP heartbeats each side PINGs the other every
interval and drops the connection when nothing came back within the timeout: the
producer stops sending into it (the orders already queued for it are lost, which is
the pattern's transience), and the rider's socket starts reconnecting.

On by default, on the producer's PUSH and on both of a rider's sockets (README,
"Across machines", has what this loses and detects, measured with and without).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from hardened.cli import non_negative_float

import zmq

# 0.5 s / 1.5 s. A PING is a few bytes: twice a second is nothing, even for a phone's
# data plan. The timeout is the trade-off. A rider that vanishes loses what the
# producer sent it until then: about (orders a second to that rider) x (the timeout
# plus up to one interval), measured in README, "Across machines": with 1 s / 3 s a
# short run could end before the producer noticed at all. A rider dropped in error
# (a stall longer than the timeout) loses no more than that, keeps what it had
# already received, and reconnects by itself: so we err on the short side.
INTERVAL_S = 0.5
MISSES = 3
MAX_S = 3600.0


@dataclass(frozen=True)
class Heartbeats:
    interval_s: float = INTERVAL_S  # 0: off
    timeout_s: float = INTERVAL_S * MISSES

    def apply(self, sock: zmq.Socket, connecting: bool = False) -> None:
        """Set on a socket before it binds or connects (they apply to new connections)."""
        if not self.interval_s:
            return
        sock.heartbeat_ivl = round(self.interval_s * 1000)
        sock.heartbeat_timeout = round(self.timeout_s * 1000)
        if connecting:
            # A reconnect into a dead network would otherwise wait for TCP to give up on
            # its SYN (minutes, with backoff): try again within the timeout, so a rider
            # whose signal returns is back within seconds.
            sock.connect_timeout = round(self.timeout_s * 1000)

    def says(self) -> str:
        """Why a connection may have ended, for a log line."""
        return f"it quit, or went silent for {self.timeout_s:g} s" if self.interval_s else "it quit"


def read_without_limit(sock: zmq.Socket) -> None:
    """No high-water mark on a socket that receives from a peer with heartbeats.

    libzmq 4.3 (pyzmq bundles 4.3.5) has a known bug: once a receiving socket's queue
    is full, its connection stops reading, so a PING waits unanswered; the peer drops
    the connection at its timeout (a busy rider taken for a vanished one), and libzmq
    may then abort the process ("Assertion failed: !_io_error", libzmq issues #3937,
    #4364, #4767). Measured here: a rider 1000 orders behind, heartbeats on, aborted.
    Without a limit the queue never fills: a slow rider's backlog waits in its own
    memory instead of the producer's (README, "HWM")."""
    sock.rcvhwm = 0


def add_heartbeat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heartbeat",
        type=heartbeat_seconds,
        default=INTERVAL_S,
        metavar="S",
        help="seconds between heartbeats, to notice a peer that vanished; 0 = off (default %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=heartbeat_seconds,
        metavar="S",
        help=f"drop a connection silent for this long (default {MISSES} x --heartbeat)",
    )


def heartbeat_option(args: argparse.Namespace) -> Heartbeats:
    timeout = args.heartbeat * MISSES if args.heartbeat_timeout is None else args.heartbeat_timeout
    return Heartbeats(args.heartbeat, timeout)


def heartbeat_seconds(text: str) -> float:
    """argparse type: 0 (off) or 0.01 to 3600 seconds (libzmq takes milliseconds, in 32 bits)."""
    value = non_negative_float(text)
    if value and not 0.01 <= value <= MAX_S:
        raise argparse.ArgumentTypeError(f"expected 0 or 0.01 to {MAX_S:g} seconds, got {text!r}")
    return value


DEFAULT_HEARTBEATS = Heartbeats()
