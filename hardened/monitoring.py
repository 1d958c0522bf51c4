"""Watching connections through the socket monitor, on both sides of the pipeline.

PUSH and PULL sockets don't tell the application who is connected: that is the
point of the pattern, and its blind spot. A socket monitor is a PAIR socket on which
libzmq reports connection events. It must exist before bind() or connect(), or the
first events happen unseen.

- The producer's ConsumerWatch counts consumers (handshakes), so that it can wait for
  K of them before the first order (the slow-joiner fix), and says who was refused.
- A rider's ProducerLinks notices when libzmq has given up on a producer for good (a
  protocol error: an oversized message, a refused CURVE key) and dials it again. It
  names each producer as the user gave it (tcp://platform:5557), whatever address
  libzmq names in its events.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator

from hardened.cli import addresses, error, host_name, plural, say

import zmq

from hardened.orders import MAX_ORDER_BYTES
from hardened.stopping import POLL_MS, StopFlag

SILENT_S = 3.0  # how long a script waits for a peer in silence before it says so, once
REFUSALS_EVERY_S = 10.0  # how often a producer sums up the refusals it did not print

HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def pending_events(monitor: zmq.Socket) -> Iterator[tuple[int, int, str]]:
    """Every event waiting on a socket monitor, without blocking: (event, value, endpoint)."""
    while monitor.poll(0):
        # libzmq's own layout (zmq_socket_monitor): a frame of event (16 bits) and value
        # (32 bits), then the endpoint. Read here rather than with zmq.utils.monitor, whose
        # import brings asyncio: about 25 ms of every rider's start-up.
        head, endpoint, *_ = monitor.recv_multipart()
        event, value = struct.unpack("=Hi", head[:6])
        yield event, value, endpoint.decode(errors="replace")


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


class ConsumerWatch:
    """Counts consumers through the socket monitor: the only way a PUSH socket tells
    you who is connected. A consumer counts once its ZMTP handshake has succeeded,
    which is when PUSH starts giving it orders."""

    EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILURES

    def __init__(
        self, push: zmq.Socket, name: str, quiet: bool = False, curve: bool = False, gone_why: str = "it quit"
    ) -> None:
        self.push = push
        self.gone_why = gone_why  # why a connection may end (see heartbeats.Heartbeats.says)
        self.peers: dict[int, str] = {}  # socket descriptor -> the consumer's address
        self.monitor = push.get_monitor_socket(self.EVENTS)
        self.name = name
        self.quiet = quiet
        self.curve = curve
        self.handshakes = 0
        self.caught_up = False  # see catch_up()
        self.next_drain = 0.0
        self.endpoint = ""  # where riders connect, once bound
        self.since = time.monotonic()
        self.nudged = False
        self.said: set[str] = set()  # the kinds of refusal said once already
        self.refused = Counter[str]()  # reason -> refusals since the last summary
        self.closing_refused = 0  # refused connections whose DISCONNECTED is still to come
        self.next_summary = 0.0

    def bound(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.since = time.monotonic()

    def drain_if_due(self) -> None:
        """A producer that never waits still reports events, every POLL_MS (not at
        every order: that would cost a system call per order)."""
        if time.monotonic() >= self.next_drain:
            self.drain()

    def drain(self) -> None:
        """Read every pending monitor event (without blocking) and report it."""
        now = time.monotonic()
        self.next_drain = now + POLL_MS / 1000
        for event, value, _ in pending_events(self.monitor):
            if event == zmq.EVENT_ACCEPTED:
                self.peers[value] = peer_address(value)  # now: it is gone by DISCONNECTED
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
                if not self.quiet:
                    say(f"{self.name}: consumer connected ({self.handshakes} so far)")
            elif event == zmq.EVENT_DISCONNECTED:
                peer = self.peers.pop(value, "at an unknown address")
                if self.closing_refused:
                    self.closing_refused -= 1  # a refused peer going: said already
                elif not self.quiet:
                    say(f"{self.name}: consumer {peer} gone ({self.gone_why})")
            else:
                self.closing_refused += 1
                self.refuse(event, value, now)
        if self.refused and now >= self.next_summary:
            self.sum_up_refusals()
            self.next_summary = now + REFUSALS_EVERY_S

    def pause(self, seconds: float, stop: StopFlag) -> bool:
        """Wait between two orders, hearing about consumers meanwhile: promptly, as a
        consumer's address is read from its connection's descriptor, which must still
        be open (and not yet reused by the next one). True if stopped meanwhile."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self.monitor.poll(min(round(left * 1000), POLL_MS)):
                self.drain()
        return stop.is_set()

    def catch_up(self) -> None:
        """A consumer took an order before its handshake event came: the event can
        trail the connection by a moment. Wait for it (briefly), so the log tells the
        story in order. Once: a peer that never shakes hands (see README, Security)
        must not slow every send."""
        if not self.caught_up:
            self.caught_up = True
            self.monitor.poll(POLL_MS)
            self.drain()

    def sum_up_refusals(self) -> None:
        for reason, count in self.refused.items():
            error(f"{self.name}: refused {plural(count, 'more connection')}: {reason}")
        self.refused.clear()

    def refuse(self, event: int, value: int, now: float) -> None:
        """A failed handshake: that peer gets no orders. A refused rider dials again every
        few seconds, so the first refusal of a kind is said, the next ones counted."""
        reason = handshake_failure(event, value, self.curve)
        if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and not self.curve:
            # Nothing was refused: the peer went away mid-handshake (a rider that quit
            # at once, or something that does not speak ZeroMQ).
            if not self.quiet:
                say(f"{self.name}: a connection closed during its handshake")
        elif reason in self.said:
            self.refused[reason] += 1
        else:
            self.said.add(reason)
            self.next_summary = now + REFUSALS_EVERY_S
            error(f"{self.name}: refused a connection: {reason}")

    def nudge(self, wanted: int) -> None:
        """Say once, when we have waited SILENT_S for consumers, what we are waiting for."""
        if self.handshakes < wanted and not self.nudged and time.monotonic() - self.since > SILENT_S:
            self.nudged = True
            have = f"{self.handshakes} of {wanted} consumers" if self.handshakes else "no consumer"
            # Bound to every interface (tcp://0.0.0.0:PORT): riders elsewhere use this machine's name.
            endpoint = self.endpoint.replace("//0.0.0.0:", f"//{socket.gethostname()}:")
            say(
                f"{self.name}: {have} after {SILENT_S:g} s; ZeroMQ keeps waiting; "
                f"riders connect with: python -m hardened.consumer --connect {endpoint}"
            )

    def close(self) -> None:
        self.quiet = True  # the producer has said its last line
        self.drain()  # refusals that came since the last look count too
        self.sum_up_refusals()
        self.push.disable_monitor()
        self.monitor.close(linger=0)


def peer_address(fd: int) -> str:
    """HOST:PORT of the far end of a connection that libzmq accepted: the monitor gives
    only its socket descriptor. Borrowed, and handed back (detach), never closed."""
    try:
        borrowed = socket.socket(fileno=fd)
    except OSError:
        return "at an unknown address"
    try:
        address = borrowed.getpeername()
        return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "on a local socket"
    except OSError:
        return "at an unknown address"
    finally:
        borrowed.detach()


class ProducerLinks:
    """Watches a rider's connections to its producers through the socket monitor.

    ZeroMQ reconnects by itself after a network error (a producer restarting, say),
    but not after a protocol error: a message over MAX_ORDER_BYTES, a refused CURVE
    key, CURVE on one side only. Then it gives up on that producer for good and tells
    the application nothing. The monitor tells us; we say why, and dial again.

    A producer given by host name stays that name. libzmq looks the name up again at
    every connection attempt, so a rider finds a producer whose host has moved to
    another address. But its events name the first connection as given and, after a
    reconnect, by the address the name resolved to last time (one libzmq 4.3 names its
    new attempt by): as_given() maps them back, so one producer is one endpoint.
    """

    EVENTS = (
        zmq.EVENT_CONNECTED
        | zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_DISCONNECTED
        | zmq.EVENT_CONNECT_RETRIED
        | HANDSHAKE_FAILURES
    )
    GIVE_UP_S = 0.5  # after a disconnect, ZeroMQ's own retry shows up well within this
    REDIAL_S = 2.0  # how often to try again a producer that refused our handshake

    def __init__(
        self,
        pull: zmq.Socket,
        name: str,
        endpoints: list[str],
        curve: bool = False,
        quiet: bool = False,
        gone_why: str = "it quit",
    ) -> None:
        self.pull = pull
        self.name = name
        self.curve = curve
        self.quiet = quiet  # no line when a producer goes and comes back
        self.gone_why = gone_why  # why a connection may end (see heartbeats.Heartbeats.says)
        # endpoint -> "connected"; "dropped" (disconnected: lost if ZeroMQ retries, else a
        # refused message); "lost" (ZeroMQ is reconnecting)
        self.link: dict[str, str] = {}
        self.given = set(endpoints)
        # An endpoint as libzmq names it in an event -> as given (see as_given)
        self.aliases: dict[str, str] = {}
        self.unheard = set(endpoints)  # producers we have not reached yet
        self.since = time.monotonic()
        self.monitor = pull.get_monitor_socket(self.EVENTS)
        self.poller = zmq.Poller()
        self.poller.register(pull, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.redial: dict[str, tuple[float, str]] = {}  # endpoint -> (when, why)
        self.troubled: set[str] = set()  # endpoints whose handshake failure we reported
        self.cut_once: dict[str, int] = {}  # endpoint that closed one handshake -> ZeroMQ's retries since
        self.next_service = 0.0

    def wait(self, timeout_ms: int) -> bool:
        """Wait for a message or a connection event, deal with the events, and say
        whether a message is waiting."""
        ready = dict(self.poller.poll(timeout_ms))
        if self.monitor in ready or time.monotonic() >= self.next_service:
            self.service()
        return self.pull in ready

    def service(self) -> None:
        self.next_service = time.monotonic() + POLL_MS / 1000
        for event, value, endpoint in pending_events(self.monitor):
            self.on_event(event, value, endpoint)
        if self.unheard and time.monotonic() - self.since > SILENT_S:
            for endpoint in sorted(self.unheard):
                say(
                    f"{self.name}: no producer at {endpoint} yet; ZeroMQ keeps retrying; "
                    "is it running, and on this port?"
                )
            self.unheard.clear()  # once
        for endpoint, (when, why) in list(self.redial.items()):
            if time.monotonic() >= when:
                del self.redial[endpoint]
                if why:
                    error(f"{self.name}: {why}")
                with contextlib.suppress(zmq.ZMQError):  # ENOENT: nothing left to disconnect
                    self.pull.disconnect(endpoint)
                self.pull.connect(endpoint)

    def as_given(self, endpoint: str) -> str:
        """The endpoint as the user gave it, for one that an event names: tcp://platform:5557
        for tcp://10.9.0.1:5557 once the name has led there. Addresses come from each
        connection (learn()); one never seen is looked for among what the names with its
        port resolve to now, and failing that it is the only such name's."""
        if endpoint in self.given:
            return endpoint
        if endpoint not in self.aliases:
            address, _, port = endpoint[len("tcp://") :].rpartition(":")
            names = sorted(e for e in self.given if host_name(e) and e.endswith(f":{port}"))
            found = [e for e in names if address in addresses(host_name(e) or "")]
            self.aliases[endpoint] = (found or names)[0] if found or len(names) == 1 else endpoint
        return self.aliases[endpoint]

    def learn(self, fd: int, endpoint: str) -> None:
        """A connection to `endpoint` (as given) was made: remember the address it reached,
        the one libzmq will name this producer by after the next reconnect."""
        peer = peer_address(fd)
        same_port = endpoint.endswith(f":{peer.rpartition(':')[2]}")  # not a descriptor already reused
        if re.fullmatch(r"[\d.]+:\d+", peer) and same_port and f"tcp://{peer}" not in self.given:
            self.aliases[f"tcp://{peer}"] = endpoint

    def on_event(self, event: int, value: int, endpoint: str) -> None:
        now = time.monotonic()
        endpoint = self.as_given(endpoint)
        if event == zmq.EVENT_CONNECTED:
            self.learn(value, endpoint)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.unheard.discard(endpoint)
            self.cut_once.pop(endpoint, None)
            self.redial.pop(endpoint, None)
            if self.link.get(endpoint) == "lost":
                self.tell(f"{self.name}: producer {endpoint} back")
            self.link[endpoint] = "connected"
            if endpoint in self.troubled:
                self.troubled.discard(endpoint)
                self.tell(f"{self.name}: connected to {endpoint}")
        elif event == zmq.EVENT_CONNECT_RETRIED:
            self.redial.pop(endpoint, None)  # ZeroMQ is retrying: a network error
            if endpoint in self.cut_once:  # the first retry follows the cut; a second: no handshake came of it
                self.cut_once[endpoint] += 1
                if self.cut_once[endpoint] > 1:
                    del self.cut_once[endpoint]
            if self.link.get(endpoint) == "dropped":
                self.link[endpoint] = "lost"
                self.tell(f"{self.name}: lost producer {endpoint} ({self.gone_why}); ZeroMQ keeps retrying")
        elif event == zmq.EVENT_DISCONNECTED:
            if self.link.get(endpoint) == "connected":
                self.link[endpoint] = "dropped"
            # Unless a CONNECT_RETRIED follows, ZeroMQ has given up: a protocol error.
            # After a good handshake that means a message it refused to take.
            why = (
                f"rejected message: over the {MAX_ORDER_BYTES}-byte limit (or malformed), so ZeroMQ "
                f"dropped the connection to {endpoint}; reconnecting"
            )
            self.redial.setdefault(endpoint, (now + self.GIVE_UP_S, why))
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and endpoint not in self.cut_once:
            # The producer closed the connection mid-handshake. One that is stopping does
            # that once (then refuses to connect at all); one that will not have us (it
            # wants CURVE, or is no ZeroMQ peer) does it again on ZeroMQ's next retry.
            self.cut_once[endpoint] = 0
        else:
            self.unheard.discard(endpoint)  # refused, and said so below
            if endpoint not in self.troubled:  # one line per producer, not one per retry
                self.troubled.add(endpoint)
                error(f"{self.name}: {endpoint} refused us: {handshake_failure(event, value, self.curve)}")
            if event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # ZeroMQ retries that one itself
                self.redial[endpoint] = (now + self.REDIAL_S, "")

    def tell(self, line: str) -> None:
        if not self.quiet:
            say(line)

    def close(self) -> None:
        self.pull.disable_monitor()
        self.monitor.close(linger=0)
