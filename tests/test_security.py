"""CURVE: only authorised riders get orders, and the orders are encrypted on the wire."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import psutil
import pytest
from conftest import Sink, make_certificates, wait_until
from test_run import report_rows
from test_scripts import start_consumer, start_producer

from hardened.orders import CUSTOMERS


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    """Certificates made the way the README says: the producer's, two authorised riders'
    (their public keys copied into allowed/), and a rogue rider's (not copied)."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    files = {}
    for name in ("producer", "rider-1", "rider-2", "rogue"):
        public, secret = make_certificates(tmp_path, name)
        files[name], files[f"{name}.public"] = secret, public
        if name.startswith("rider"):
            (allowed / Path(public).name).write_bytes(Path(public).read_bytes())
    files["allowed"] = str(allowed)
    return files


def curve_producer(scripts, keys: dict[str, str], *args: str):
    return start_producer(scripts, "--curve-secret", keys["producer"], "--curve-allow", keys["allowed"], *args)


def curve_rider(scripts, keys, name: str, endpoint: str, sink: Sink, key: str | None = None, server: str = "producer"):
    curve = ["--curve-secret", keys[key or name], "--curve-server", keys[f"{server}.public"]]
    return start_consumer(scripts, name, [endpoint], sink, *curve)


def test_only_authorised_riders_receive_orders(scripts, keys, sink: Sink) -> None:
    producer, endpoint = curve_producer(scripts, keys, "--orders", "40", "--interval", "0", "--wait-consumers", "2")
    # Three rogues connect first, so that they would be first in line for the round robin.
    unknown_key = curve_rider(scripts, keys, "rogue", endpoint, sink)
    no_curve = start_consumer(scripts, "plain", [endpoint], sink)
    wrong_server = curve_rider(scripts, keys, "imposter", endpoint, sink, key="rider-1", server="rogue")
    unknown_key.wait_for_line("refused us: CURVE key not authorised", stream="stderr")
    # Which of the two a plain rider sees depends on timing; the producer says mismatch.
    no_curve.wait_for_line("refused us: (security mismatch|closed during the handshake)", stream="stderr")
    wrong_server.wait_for_line("refused us: handshake failed", stream="stderr")
    for name in ("rider-1", "rider-2"):
        curve_rider(scripts, keys, name, endpoint, sink)
    assert producer.wait(timeout=20) == 0
    records = sink.collect(40)
    assert sorted(r["order_id"] for r in records) == [f"p1-{n:06d}" for n in range(1, 41)]
    assert {r["consumer"] for r in records} == {"rider-1", "rider-2"}  # nothing lost to the rogues
    assert any("refused a connection: CURVE key not authorised" in line for line in producer.stderr)
    assert len([line for line in producer.stderr if "refused a connection" in line]) >= 3  # one per rogue
    for rogue in (unknown_key, no_curve, wrong_server):
        assert not any(" delivered " in line for line in rogue.stdout)


class Relay:
    """A TCP relay of the test's own between rider and producer, recording every byte
    the producer sends: what someone tapping the wire would see."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.recorded = bytearray()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        while not self.done.is_set():
            for key, _ in selector.select(timeout=0.1):
                source = cast(socket.socket, key.fileobj)  # registered above: sockets only
                data = source.recv(65536)
                if not data:
                    self.done.set()
                    break
                if source is server:
                    self.recorded += data
                key.data.sendall(data)
        for sock in (client, server, self.listener):
            sock.close()

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)


@pytest.fixture
def relay_to() -> Iterator[Callable[[str], Relay]]:
    relays = []

    def make(target: str) -> Relay:
        relays.append(Relay(target))
        return relays[-1]

    yield make
    for relay in relays:
        relay.close()


@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve"])
def test_curve_encrypts_what_goes_over_the_wire(scripts, keys, sink: Sink, relay_to, curve: bool) -> None:
    orders = ["--orders", "10", "--interval", "0", "--wait-consumers", "1"]
    producer, endpoint = curve_producer(scripts, keys, *orders) if curve else start_producer(scripts, *orders)
    relay = relay_to(endpoint)
    if curve:
        curve_rider(scripts, keys, "rider-1", relay.endpoint, sink)
    else:
        start_consumer(scripts, "rider-1", [relay.endpoint], sink)
    records = sink.collect(10)
    assert len(records) == 10 and producer.wait() == 0
    wait_until(lambda: b"p1-000010" in relay.recorded or len(relay.recorded) > 2000, what="the relay to record")
    names_seen = [name for name in CUSTOMERS if name.encode() in relay.recorded]
    if curve:
        assert names_seen == [] and b"order_id" not in relay.recorded
    else:
        assert names_seen and b'"order_id": "p1-000001"' in relay.recorded


def test_run_py_curve_keeps_the_even_spread(scripts) -> None:
    run = scripts("-m", "hardened.run", "--curve", "--consumers", "5", "--orders", "23", "--speed", "0.05")
    assert run.wait(timeout=30) == 0, run.output
    run.wait_for_line(r"CURVE on, fresh keys in memory")
    counts = [orders for orders, *_ in report_rows(run).values()]
    assert sum(counts) == 23 and max(counts) - min(counts) <= 1
    assert "delivered exactly once: yes" in run.stdout


def files_in(folder: Path) -> list[str]:
    """Everything in folder, as paths relative to it, but the one thing Python's
    multiprocessing leaves where a fork server ran: a folder pymp-XXXX holding the fork
    server's socket, listener-XXXX (a socket: no content, no key), which a killed
    run.py cannot remove."""

    def fork_servers(path: Path) -> bool:
        socket_ = path.parent.name.startswith("pymp-") and path.name.startswith("listener-") and path.is_socket()
        return socket_ or (path.name.startswith("pymp-") and all(map(fork_servers, path.iterdir())))

    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if not fork_servers(path))


def open_paths(process: psutil.Process) -> list[str]:
    """The files a process has open (sockets and pipes aside), or none if it is gone."""
    try:
        return [file.path for file in process.open_files()]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


@pytest.mark.parametrize(
    "options",
    [[], ["--curve"], ["--curve", "--start-method", "spawn"]],
    ids=["plain", "curve", "curve-spawn"],
)
def test_run_py_killed_outright_leaves_no_key_and_no_folder(
    scripts,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sink: Sink,
    options: list[str],
) -> None:
    """run.py --curve keeps its keys in memory: killed (SIGKILL, TerminateProcess: no
    clean-up), it leaves no secret key behind, nor a folder; without --curve it makes
    none either. Its temporary folder is one of the test's own, empty, that it and its
    children must leave as it was, during the run and after."""
    # A short path: the fork server's socket goes there, and a Unix socket's path has a
    # limit of about 100 bytes (tmp_path can be longer, as on macOS). Windows has no fork server.
    temporary = Path(tempfile.mkdtemp(prefix="keys-test-", dir=None if sys.platform == "win32" else "/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(temporary, ignore_errors=True))
    for variable in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(variable, str(temporary))
    orders = ("--orders", "300", "--interval", "0.05")  # 15 s of orders: the producer is there
    run = scripts("-m", "hardened.run", "--consumers", "3", *orders, "--speed", "0.2", *options)
    endpoint = run.wait_for_line(r"p1 bound (tcp://\S+?);", timeout=20).group(1)
    run.wait_for_line(r"rider-\d delivered p1-", timeout=20)
    during = files_in(temporary)
    open_files = [path for process in run.processes() for path in open_paths(process)]
    if "--curve" in options:
        # CURVE is on (so what goes over the wire is encrypted): a rider with keys of its
        # own, or with no CURVE at all, is refused. (The platform's public key stays in
        # run.py's memory: "not authorised" is test_only_authorised_riders_receive_orders'.)
        public, secret = make_certificates(tmp_path, "rogue")
        rogue = start_consumer(scripts, "rogue", [endpoint], sink, "--curve-secret", secret, "--curve-server", public)
        plain = start_consumer(scripts, "plain", [endpoint], sink)
        rogue.wait_for_line("refused us: handshake failed", stream="stderr")
        plain.wait_for_line("refused us: (security mismatch|closed during the handshake)", stream="stderr")
    run.kill()
    run.wait()
    wait_until(lambda: not [p for p in run.processes() if p.pid != run.pid], what="run.py's children to stop")
    assert during == [], f"run.py made {during} in its temporary folder"
    assert files_in(temporary) == [], "run.py left files behind"
    assert [path for path in open_files if ".key" in path or path.startswith(str(temporary))] == []
    if "spawn" in options or sys.platform == "win32":
        assert list(temporary.iterdir()) == []  # no fork server: nothing at all


def test_a_directory_given_as_a_key_file_says_so(scripts, keys, tmp_path: Path) -> None:
    folder = tmp_path / "somedir"
    folder.mkdir()
    producer = scripts("-m", "hardened.producer", "--curve-secret", str(folder), "--curve-allow", keys["allowed"])
    rider = scripts("-m", "hardened.consumer", "--curve-secret", keys["rider-1"], "--curve-server", str(folder))
    cases = [
        (producer, f"p1: cannot read the key file {folder}: is a directory, expected a NAME.key_secret file"),
        (rider, f"rider: cannot read the key file {folder}: is a directory, expected a NAME.key file"),
    ]
    for script, message in cases:
        assert script.wait(timeout=5) == 1
        assert script.stderr == [message], script.output


@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve"])
def test_a_stray_http_client_takes_orders_only_without_curve(scripts, keys, sink: Sink, curve: bool) -> None:
    orders = ["--orders", "20", "--interval", "0", "--wait-consumers", "1"]
    producer, endpoint = curve_producer(scripts, keys, *orders) if curve else start_producer(scripts, *orders)
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as probe:
        # Not ZeroMQ at all: a health check or a port scanner speaking HTTP. libzmq takes
        # it for a peer of an old protocol version, and it joins the round robin.
        probe.sendall(b"GET / HTTP/1.0\r\n\r\n")
        probe.settimeout(0.2)
        if curve:
            curve_rider(scripts, keys, "rider-1", endpoint, sink)
        else:
            start_consumer(scripts, "rider-1", [endpoint], sink)
        assert producer.wait(timeout=20) == 0
        stolen = bytearray()
        with contextlib.suppress(OSError):  # timeout, or reset by a CURVE producer
            while chunk := probe.recv(65536):
                stolen += chunk
    taken = stolen.count(b'"order_id"')
    wait_until(lambda: len(sink.collect(0)) + taken >= 20, what="all 20 orders accounted for")
    assert len(sink.records) + taken == 20
    if curve:
        assert taken == 0  # refused at the handshake: it never joined the round robin
    else:
        assert taken > 0, "the HTTP client took no order"


def test_unusable_curve_files_are_one_clear_line_and_a_failure(scripts, keys, tmp_path: Path) -> None:
    broken = tmp_path / "broken.key_secret"
    text = Path(keys["producer"]).read_text()
    broken.write_text(text.replace('secret-key = "', 'secret-key = "x'))  # 41 characters: not a key
    broken.chmod(0o600)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--curve-secret", str(broken), "--curve-allow", keys["allowed"]], "not a usable CURVE key"),
        (["--curve-secret", keys["producer"], "--curve-allow", str(empty)], "holds no public key"),
        (["--curve-secret", keys["producer.public"], "--curve-allow", keys["allowed"]], "holds no secret key"),
    ]
    for args, message in cases:
        producer = scripts("-m", "hardened.producer", "--bind", "tcp://127.0.0.1:0", *args)
        assert producer.wait(timeout=5) == 1  # no hang, even with the authenticator involved
        assert len(producer.stderr) == 1 and message in producer.stderr[0], producer.output


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no group/other mode bits: its ACLs decide")
def test_a_secret_key_readable_by_others_is_warned_about_once(scripts, keys, sink: Sink) -> None:
    """As zmq.auth.create_certificates() leaves it (0644): whoever can read it can pose as us."""
    os.chmod(keys["producer"], 0o644)
    producer, endpoint = curve_producer(scripts, keys, "--orders", "2", "--interval", "0", "--wait-consumers", "1")
    rider = curve_rider(scripts, keys, "rider-1", endpoint, sink)  # its key is 0600: no word
    assert len(sink.collect(2)) == 2
    assert producer.wait() == 0
    warning = f"warning: {keys['producer']} is readable by other users (mode 0644); chmod 600 {keys['producer']}"
    assert producer.stderr == [warning]
    rider.stop()
    assert rider.stderr == []
