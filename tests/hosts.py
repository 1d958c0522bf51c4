"""Machines on a LAN, made of Linux network namespaces: the pipeline across hosts on one box.

The rest of the suite runs everything on 127.0.0.1, where a connection never goes
silent: a peer that dies closes its socket and the kernel says so at once. Across
machines a rider's phone can leave coverage and send nothing at all, no FIN, no RST.
To test that for real, each "host" here is a network namespace with its own loopback,
its own ports and one interface, eth0, plugged into a "switch": another namespace
holding a Linux bridge. Cutting a host's link sets its switch port down, so packets
vanish in both directions, as when a phone goes out of range; hosts know each other's
MAC addresses for good, so that even a new connect() gets silence, not an error.

    with network("platform", "rider-1") as lan:            # 10.9.0.1, 10.9.0.2
        producer = scripts(*lan["platform"].python("-m", "hardened.producer", "--bind", "tcp://0.0.0.0:5557"))
        rider = scripts(*lan["rider-1"].python("-m", "hardened.consumer", "--connect", "tcp://platform:5557"))
        lan["rider-1"].cut()                               # and .restore()
        lan.move("platform", "10.9.0.101")                 # a new address, the same name

Host.python() returns the arguments for conftest's Script (or its `scripts` fixture),
so output capture, wait_for_line() and the tag that finds every process a test started
all work as on loopback. Each host resolves the others by name: `ip netns exec` mounts
/etc/netns/NAME/hosts over /etc/hosts for the process it starts.

Every namespace has a name unique to the test (pid and a uuid fragment), so tests run
in parallel under pytest-xdist; their addresses can all be 10.9.0.x, because each
test's hosts reach nothing but their own switch. network() always takes it all down
again: processes still in a namespace are killed, namespaces and hosts files removed,
also when the test fails or times out. A namespace left by a test process that was
killed outright is removed by the next network() made on the machine.

Linux and root only: unavailable() says why not, for a skip.

Run as a script, this file is also two small tools that tests start inside a host:

    python tests/hosts.py sink ENDPOINT          # a results sink: one JSON record per line
    python tests/hosts.py capture IFACE FILE     # every frame on an interface, into a pcap file
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq

SUBNET = "10.9.0"  # host i (from 1) is SUBNET.i/24
PREFIX = "zpp-"  # our namespaces: zpp-PID-UID-ROLE, so that stale ones can be told apart
NETNS_ETC = Path("/etc/netns")

# Script (conftest) starts `python ARGS...`; this makes that python enter a namespace
# and run the real command there. exec all the way: the pid Script holds is the pid of
# the script in the namespace, and its environment (with Script's tag) goes along.
ENTER = "import os, sys; os.execvp('ip', ['ip', 'netns', 'exec', sys.argv[1], sys.executable, *sys.argv[2:]])"

TOOLS = str(Path(__file__).resolve())  # this file, run as a script inside a host


class NetworkError(Exception):
    """An `ip` command failed while the network was made."""


def ip(*args: str, batch: str | None = None) -> str:
    """Run `ip ARGS` (with `batch`: `ip ARGS -batch -`, one command a line, at once);
    its output, or NetworkError with what it said."""
    command = ["ip", *args, *(["-batch", "-"] if batch is not None else [])]
    done = subprocess.run(command, input=batch, capture_output=True, text=True)
    if done.returncode:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done.stdout


@functools.cache
def unavailable() -> str | None:
    """Why namespace hosts can't be made here (a reason for pytest.skip), or None.
    Probed once per process by really making a namespace with a bridge and a veth pair:
    a container may run us as root yet refuse them (no CAP_SYS_ADMIN or CAP_NET_ADMIN)."""
    if sys.platform != "linux":
        return f"network namespaces are Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    probe = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}-probe"
    try:
        ip("netns", "add", probe)
        ip("-n", probe, "link", "add", "br0", "type", "bridge")
        ip("-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "b0")
    except (NetworkError, OSError) as exc:
        return f"cannot make network namespaces here: {exc}"
    finally:
        with contextlib.suppress(NetworkError):
            ip("netns", "delete", probe)
    return None


@dataclass
class Host:
    """One machine: a namespace whose eth0 has `address`, plugged into `port` of the switch."""

    name: str  # as other hosts call it (in their /etc/hosts)
    netns: str
    address: str
    mac: str  # its eth0's, fixed: the others know it (see Network.build)
    port: str  # its cable's switch end, in the switch namespace
    switch: str  # the switch namespace

    def python(self, *args: str) -> tuple[str, ...]:
        """Arguments for conftest.Script (or the `scripts` fixture) that run
        `python ARGS...` on this host: scripts(*host.python("-m", "hardened.producer", ...))."""
        return ("-c", ENTER, self.netns, *args)

    def tool(self, *args: str) -> tuple[str, ...]:
        """Run one of this file's tools on this host (see the module docstring)."""
        return self.python(TOOLS, *args)

    def endpoint(self, port: int) -> str:
        return f"tcp://{self.address}:{port}"

    def cut(self) -> None:
        """Unplug its cable at the switch: from now on its packets vanish, both ways,
        without a FIN or a RST, as when a phone leaves coverage. Its own eth0 stays up
        (it loses carrier), so its programs get no error either: only silence."""
        ip("-n", self.switch, "link", "set", self.port, "down")

    def restore(self) -> None:
        """Plug it back in: the same address, and whatever TCP state survived."""
        ip("-n", self.switch, "link", "set", self.port, "up")


class Network:
    """The hosts of one network() and their switch, by name: lan["rider-1"]."""

    def __init__(self, names: tuple[str, ...]) -> None:
        tag = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.switch = f"{tag}-switch"
        self.hosts = {
            # Locally administered MAC addresses (02:...), the last byte the host's own.
            name: Host(name, f"{tag}-h{i}", f"{SUBNET}.{i}", f"02:00:0a:09:00:{i:02x}", f"port{i}", self.switch)
            for i, name in enumerate(names, start=1)
        }

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *(host.netns for host in self.hosts.values())]

    def build(self) -> None:
        """The switch, then each host with its cable plugged in and its hosts file."""
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            ip("netns", "add", host.netns)
            # The cable: a veth pair made with one end in each namespace, so that no
            # interface name ever exists in the root namespace, where tests would collide.
            cable = ("type", "veth", "peer", "name", host.port, "netns", self.switch)
            ip("link", "add", "eth0", "netns", host.netns, "address", host.mac, *cable)
            ip("-n", self.switch, "link", "set", host.port, "master", "br0")
            ip("-n", self.switch, "link", "set", host.port, "up")
            ip("-n", host.netns, "link", "set", "lo", "up")  # riders and sink on the host use 127.0.0.1 too
            ip("-n", host.netns, "address", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            (NETNS_ETC / host.netns).mkdir(parents=True, exist_ok=True)
        self.write_hosts_files()
        # Every host knows every other's MAC address for good, as a phone knows its
        # router's: a cut is then pure silence. Were it learnt by ARP, a cut would also
        # make ARP fail, and the kernel would fail a connect() at once (EHOSTUNREACH)
        # instead of resending its SYN with backoff (1, 2, 4, ... s), as over a real
        # network: a rider would come back sooner than it does across the internet.
        for host in self.hosts.values():
            neighbours = [h for h in self.hosts.values() if h is not host]
            lines = "".join(f"neigh replace {h.address} lladdr {h.mac} nud permanent dev eth0\n" for h in neighbours)
            ip("-n", host.netns, batch=lines)

    def write_hosts_files(self) -> None:
        """Every host knows every host by name: `ip netns exec` mounts its hosts file over
        /etc/hosts. Written in place (the same file, truncated), so that programs already
        running in a host, which see the file through that mount, read the new names."""
        hosts_file = "127.0.0.1 localhost\n" + "".join(f"{h.address} {h.name}\n" for h in self.hosts.values())
        for host in self.hosts.values():
            with open(NETNS_ETC / host.netns / "hosts", "w") as file:  # not a new file: see above
                file.write(hosts_file)

    def move(self, name: str, address: str) -> None:
        """Host `name` gets a new address under the same name, as a machine does that moves
        to another network or gets another lease: its eth0 changes address, the others
        forget the old one (a connect() there now fails, as to a machine that is gone)
        and know its MAC at the new one, and every hosts file maps the name to it."""
        host = self.hosts[name]
        # The old one first: deleting a primary address deletes the secondaries with it.
        ip("-n", host.netns, "address", "del", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.netns, "address", "add", f"{address}/24", "dev", "eth0")
        for other in self.hosts.values():
            if other is not host:
                commands = f"neigh del {host.address} dev eth0\n"
                commands += f"neigh replace {address} lladdr {host.mac} nud permanent dev eth0\n"
                ip("-n", other.netns, batch=commands)
        host.address = address
        self.write_hosts_files()

    def destroy(self) -> None:
        """Everything build() made, whatever state it is in; never raises."""
        for netns in self.namespaces:
            remove_namespace(netns)


def remove_namespace(netns: str) -> None:
    """Kill what still runs in it (a namespace outlives its name while a process is in
    it), remove it and its /etc/netns folder. Quiet about what is already gone."""
    if sys.platform != "linux":  # no namespaces elsewhere (and no SIGKILL on Windows)
        return
    with contextlib.suppress(NetworkError):
        for pid in ip("netns", "pids", netns).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(NetworkError):
        ip("netns", "delete", netns)
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def remove_stale_namespaces() -> None:
    """Namespaces of ours whose test process is gone (killed outright: no finally ran)."""
    with contextlib.suppress(NetworkError):
        for line in ip("netns", "list").splitlines():
            netns = line.split()[0] if line.split() else ""
            pid = netns[len(PREFIX) :].split("-")[0]
            if netns.startswith(PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                remove_namespace(netns)


@contextlib.contextmanager
def network(*names: str) -> Iterator[Network]:
    """Hosts named `names` (SUBNET.1, .2, ... in that order) on one switch; all removed
    on the way out, whatever happened inside. Check unavailable() first."""
    remove_stale_namespaces()
    lan = Network(names)
    try:
        lan.build()
        yield lan
    finally:
        lan.destroy()


# --- the tools, run inside a host: python tests/hosts.py TOOL ARGS ---


def sink(endpoint: str) -> None:
    """A results sink like run.py's, for riders on other hosts: bind a PULL socket and
    print every completion record as one JSON line, until killed."""
    pull = zmq.Context().socket(zmq.PULL)
    pull.rcvhwm = 0  # as run.py's sink: riders send heartbeats (heartbeats.read_without_limit)
    pull.bind(endpoint)
    print(f"sink: bound {pull.getsockopt_string(zmq.LAST_ENDPOINT)}", flush=True)
    while True:
        print(json.dumps(pull.recv_json()), flush=True)


# veth hands over TCP segments before they are cut to the MTU (GSO): up to 64 KiB each.
SNAPLEN = 256 * 1024
ETH_P_ALL = 0x0003  # every protocol, not only IP
FIN = 0x01  # a TCP flag: the sender has no more to say


def capture(interface: str, path: str) -> None:
    """What someone tapping the wire would see: every frame that crosses `interface`,
    both ways, written to `path` as a pcap file as it comes (a test reads it while this
    runs; Wireshark opens it too). Until killed."""
    if sys.platform != "linux":  # AF_PACKET; and mypy checks this file for every platform
        raise SystemExit("capture: Linux only")
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a burst must not overflow it
    raw.bind((interface, 0))
    with open(path, "wb") as out:
        # pcap: magic, version 2.4, UTC, no accuracy claimed, snapshot length, Ethernet.
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))
        out.flush()
        print(f"capture: on {interface}", flush=True)  # from here on, nothing is missed
        while True:
            frame = raw.recv(SNAPLEN)
            seconds, fraction = divmod(time.time(), 1)
            out.write(struct.pack("<IIII", int(seconds), int(fraction * 1e6), len(frame), len(frame)) + frame)
            out.flush()


@dataclass(frozen=True)
class Segment:
    """An IPv4 TCP segment from a capture."""

    source: str
    source_port: int
    destination: str
    destination_port: int
    flags: int  # FIN, SYN 0x02, RST 0x04, ...
    payload: bytes


def frames(path: str | Path) -> list[bytes]:
    """The frames in a pcap file that capture() writes, but for one still being written."""
    data = Path(path).read_bytes()
    found, at = [], 24  # after the global header
    while at + 16 <= len(data):
        length = int.from_bytes(data[at + 8 : at + 12], "little")
        if at + 16 + length > len(data):
            break
        found.append(data[at + 16 : at + 16 + length])
        at += 16 + length
    return found


def tcp_segments(path: str | Path) -> list[Segment]:
    """The IPv4 TCP segments among the frames of a pcap file that capture() writes."""
    segments = []
    for frame in frames(path):
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:  # IPv4, protocol TCP
            continue
        tcp = 14 + (frame[14] & 0x0F) * 4  # the IP header's length is in 32-bit words
        if len(frame) < tcp + 20:
            continue
        ip_length = int.from_bytes(frame[16:18], "big")
        end = 14 + ip_length if ip_length else len(frame)  # what follows is Ethernet padding
        source, destination = (".".join(map(str, frame[at : at + 4])) for at in (26, 30))
        segments.append(
            Segment(
                source,
                int.from_bytes(frame[tcp : tcp + 2], "big"),
                destination,
                int.from_bytes(frame[tcp + 2 : tcp + 4], "big"),
                frame[tcp + 13],
                frame[tcp + (frame[tcp + 12] >> 4) * 4 : end],  # after the TCP header, also in words
            )
        )
    return segments


if __name__ == "__main__":
    tool, *arguments = sys.argv[1:] or ["help"]
    if tool == "sink" and len(arguments) == 1:
        sink(arguments[0])
    elif tool == "capture" and len(arguments) == 2:
        capture(*arguments)
    else:
        sys.exit(__doc__.split("Run as a script")[1] if __doc__ else "usage: hosts.py sink|capture ...")
