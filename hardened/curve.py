"""CURVE: encryption and authentication for the pipeline (README, "Security").

Plain TCP lets anyone who reaches the producer's port take orders and read them on the
wire. This is the ZeroMQ guide's "Ironhouse" model, as in pyzmq's
examples/security/ironhouse.py: the producer has a key pair and accepts only riders
whose public key it holds; every rider has a key pair and checks that it talks to the
real producer.

Keys live in memory, as ServerKeys (the producer's) and ClientKeys (a rider's), and
one code path puts them on a socket: curve_server() and curve_client(). Where they
come from is the caller's business. The standalone producer and consumer read them
from certificate files made by zmq.auth.create_certificates (NAME.key holds the public
key, NAME.key_secret both keys): ServerKeys.from_files(), ClientKeys.from_files().
run.py --curve makes fresh ones in memory (make_keys()) and hands them to its children
as process arguments: no secret key ever touches the disk, so none is left behind when
run.py is killed. Each setup call must run before bind() or connect().
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hardened.cli import SetupError, error, is_loopback

import zmq

# zmq.auth comes in only where a key is read or checked: its thread brings asyncio, about
# 60 ms of start-up that every rider without --curve would pay (10 of them per run.py).
if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator


@dataclass(frozen=True)
class ServerKeys:
    """The producer's key pair, and the public keys (Z85, 40 bytes) of the riders it
    accepts. `origin` names where they came from, for an error message."""

    public: bytes
    secret: bytes = field(repr=False)  # never in a log line or a traceback
    allowed: frozenset[bytes]
    origin: str

    @classmethod
    def from_files(cls, secret_file: str, allow_dir: str) -> ServerKeys:
        """--curve-secret NAME.key_secret and --curve-allow DIR (every NAME.key in it).
        The directory is read now: restart the producer after adding a rider's key."""
        public, secret = load_secret_keys(secret_file)
        if os.path.exists(allow_dir) and not os.path.isdir(allow_dir):
            raise SetupError(f"--curve-allow {allow_dir} is a file, expected a directory of NAME.key files")
        # pyzmq's own directory reading only logs a key file it cannot read, and then
        # refuses everyone: read them here, to say so and stop.
        import zmq.auth

        try:
            allowed = frozenset(zmq.auth.load_certificates(allow_dir))
        except (OSError, ValueError) as exc:
            raise SetupError(f"--curve-allow {allow_dir}: {exc}") from None
        if not allowed:
            raise SetupError(f"--curve-allow {allow_dir} holds no public key (NAME.key): no rider could connect")
        return cls(public, secret, allowed, origin=secret_file)

    def callback(self, domain: str, key: bytes) -> bool:
        """The authenticator's question for each rider's handshake (its credentials
        provider): is this public key (Z85) one we accept?"""
        return key in self.allowed


@dataclass(frozen=True)
class ClientKeys:
    """A rider's key pair, and the producer's public key, which proves that the rider
    talks to the real producer."""

    public: bytes
    secret: bytes = field(repr=False)
    server: bytes
    origin: str

    @classmethod
    def from_files(cls, secret_file: str, server_public_file: str) -> ClientKeys:
        """--curve-secret NAME.key_secret and --curve-server NAME.key (the producer's)."""
        public, secret = load_secret_keys(secret_file)
        server = load_keys(server_public_file, "NAME.key")[0]
        return cls(public, secret, server, origin=f"{secret_file} or {server_public_file}")


def add_curve_options(parser: argparse.ArgumentParser, secret_help: str, peer: str, metavar: str, help: str) -> None:
    """--curve-secret FILE, and `peer`: --curve-allow DIR (producer) or --curve-server FILE (rider)."""
    parser.add_argument("--curve-secret", metavar="FILE", help=f"CURVE: {secret_help}")
    parser.add_argument(peer, metavar=metavar, help=f"CURVE: {help}")


def curve_option(parser: argparse.ArgumentParser, args: argparse.Namespace, peer: str) -> tuple[str, str] | None:
    """The key files: (--curve-secret, `peer`), or None. ServerKeys.from_files() or
    ClientKeys.from_files() reads them."""
    pair = (args.curve_secret, getattr(args, peer.lstrip("-").replace("-", "_")))
    if any(pair) and not all(pair):
        parser.error(f"--curve-secret and {peer} go together")
    return pair if all(pair) else None


def warn_if_exposed(name: str, bound: str, encrypted: bool) -> None:
    """Plain TCP beyond loopback lets anyone who reaches the port take orders: say so, once."""
    if not encrypted and not is_loopback(bound):
        error(
            f"{name}: warning: {bound} is open to other machines, without CURVE: anyone who can reach it "
            "can take orders and read them (README, Security)"
        )


def load_secret_keys(path: str) -> tuple[bytes, bytes]:
    """(public key, secret key) from a NAME.key_secret file."""
    public, secret = load_keys(path, "NAME.key_secret")
    if not secret:
        raise SetupError(f"{path} holds no secret key: pass the NAME.key_secret file")
    warn_if_readable(path)
    return public, secret


def load_keys(path: str, expected: str) -> tuple[bytes, bytes | None]:
    """(public key, secret key or None) from a certificate file; `expected` names the
    kind of file, for a directory given instead."""
    if os.path.isdir(path):
        raise SetupError(f"cannot read the key file {path}: is a directory, expected a {expected} file")
    if not os.path.isfile(path):
        raise SetupError(f"cannot read the key file {path}: no such file")
    import zmq.auth

    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read the key file {path}: {exc}") from None


def warn_if_readable(path: str) -> None:
    """Say, as ssh does of a private key, when a secret key file is readable by other
    users: whoever reads it can pose as us. zmq.auth.create_certificates() leaves it
    so (mode 0644). Windows has no such mode bits (os.stat reports 0o666 for any
    writable file): there the file's ACL decides, which we do not read."""
    if sys.platform == "win32":
        return
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        error(f"warning: {path} is readable by other users (mode {mode:04o}); chmod 600 {path}")


def curve_server(ctx: zmq.Context, push: zmq.Socket, keys: ServerKeys) -> ThreadAuthenticator:
    """The producer's side: encrypt every connection, and accept only consumers whose
    public key is in keys.allowed. Stop the authenticator before ctx.term()."""
    set_keys(
        push,
        f"{keys.origin}: not a usable CURVE key",
        curve_secretkey=keys.secret,
        curve_publickey=keys.public,
        curve_server=True,
    )
    # The authenticator answers libzmq's ZAP requests from a thread of this process,
    # asking keys.callback() about each rider's public key: no file involved.
    import asyncio

    from zmq.auth.thread import ThreadAuthenticator

    if sys.platform == "win32":
        # Its thread runs an asyncio loop, and Windows' default (Proactor) loop cannot
        # watch a ZeroMQ socket without tornado: the thread died at its first request and
        # every rider was refused (seen with Windows CPython 3.13 and pyzmq 27.3).
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=keys)
    return auth


def curve_client(pull: zmq.Socket, keys: ClientKeys) -> None:
    """A rider's side: our own key pair, and the producer's public key."""
    unusable = f"not a usable CURVE key in {keys.origin}"
    set_keys(pull, unusable, curve_publickey=keys.public, curve_secretkey=keys.secret, curve_serverkey=keys.server)


def set_keys(sock: zmq.Socket, unusable: str, **options: bytes | bool | None) -> None:
    """Set CURVE socket options; a key that libzmq refuses is a SetupError."""
    try:
        for name, value in options.items():
            setattr(sock, name, value)
    except zmq.ZMQError as exc:
        raise SetupError(f"{unusable} ({exc.strerror})") from None


def make_keys(riders: list[str]) -> tuple[ServerKeys, dict[str, ClientKeys]]:
    """run.py --curve: fresh key pairs, in memory (zmq.curve_keypair()), never on disk.
    Returns the producers' `curve` argument (they share the platform's key pair, and
    accept exactly these riders) and each rider's (its key pair and the platform's
    public key)."""
    platform_public, platform_secret = zmq.curve_keypair()
    pairs = {name: zmq.curve_keypair() for name in riders}
    allowed = frozenset(public for public, _ in pairs.values())
    server = ServerKeys(platform_public, platform_secret, allowed, origin="run.py's platform key")
    clients = {
        name: ClientKeys(public, secret, platform_public, origin=f"run.py's keys for {name}")
        for name, (public, secret) in pairs.items()
    }
    return server, clients
