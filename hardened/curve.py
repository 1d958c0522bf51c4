"""CURVE: encryption and authentication for the pipeline (README, "Security").

Plain TCP lets anyone who reaches the producer's port take orders and read them on the
wire. This is the ZeroMQ guide's "Ironhouse" model, as in pyzmq's
examples/security/ironhouse.py: the producer has a key pair and accepts only riders
whose public key it holds; every rider has a key pair and checks that it talks to the
real producer. Keys are certificate files made by zmq.auth.create_certificates: NAME.key
holds the public key, NAME.key_secret both keys. Each setup call must run before
bind() or connect().
"""

from __future__ import annotations

import argparse
import os
import sys

from hardened.cli import SetupError, error, is_loopback

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def add_curve_options(parser: argparse.ArgumentParser, secret_help: str, peer: str, metavar: str, help: str) -> None:
    """--curve-secret FILE, and `peer`: --curve-allow DIR (producer) or --curve-server FILE (rider)."""
    parser.add_argument("--curve-secret", metavar="FILE", help=f"CURVE: {secret_help}")
    parser.add_argument(peer, metavar=metavar, help=f"CURVE: {help}")


def curve_option(parser: argparse.ArgumentParser, args: argparse.Namespace, peer: str) -> tuple[str, str] | None:
    """The `curve` argument of produce() or consume(): (--curve-secret, `peer`), or None."""
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


def load_keys(path: str, need_secret: bool = False) -> tuple[bytes, bytes | None]:
    """(public key, secret key) from a certificate file."""
    if not os.path.isfile(path):
        raise SetupError(f"cannot read the key file {path}: no such file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read the key file {path}: {exc}") from None
    if need_secret and not secret:
        raise SetupError(f"{path} holds no secret key: pass the NAME.key_secret file")
    if secret:
        warn_if_readable(path)
    return public, secret


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


def curve_server(ctx: zmq.Context, push: zmq.Socket, secret_file: str, allow_dir: str) -> ThreadAuthenticator:
    """The producer's side: encrypt every connection, and accept only consumers whose
    public key file (NAME.key) is in allow_dir. Stop the authenticator before ctx.term()."""
    public, secret = load_keys(secret_file, need_secret=True)
    # pyzmq's authenticator only logs a key file it cannot read, and then refuses
    # everyone: read them here first, to say so and stop.
    try:
        allowed = zmq.auth.load_certificates(allow_dir)
    except (OSError, ValueError) as exc:
        raise SetupError(f"--curve-allow {allow_dir}: {exc}") from None
    if not allowed:
        raise SetupError(f"--curve-allow {allow_dir} holds no public key (NAME.key): no rider could connect")
    set_keys(
        push,
        f"{secret_file}: not a usable CURVE key",
        curve_secretkey=secret,
        curve_publickey=public,
        curve_server=True,
    )
    # The authenticator answers libzmq's ZAP requests from a thread of this process.
    # It reads allow_dir now: restart the producer after adding a rider's key.
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=allow_dir)
    return auth


def curve_client(pull: zmq.Socket, secret_file: str, server_public_file: str) -> None:
    """A rider's side: our own key pair, and the producer's public key, which proves we
    talk to the real producer."""
    public, secret = load_keys(secret_file, need_secret=True)
    server_public = load_keys(server_public_file)[0]
    unusable = f"not a usable CURVE key in {secret_file} or {server_public_file}"
    set_keys(pull, unusable, curve_publickey=public, curve_secretkey=secret, curve_serverkey=server_public)


def set_keys(sock: zmq.Socket, unusable: str, **options: bytes | bool | None) -> None:
    """Set CURVE socket options; a key that libzmq refuses is a SetupError."""
    try:
        for name, value in options.items():
            setattr(sock, name, value)
    except zmq.ZMQError as exc:
        raise SetupError(f"{unusable} ({exc.strerror})") from None


def make_keys(directory: str, riders: list[str]) -> dict[str, tuple[str, str]]:
    """run.py --curve: fresh certificates, as a person would make them. Returns each
    process's `curve` argument: for the producers (which share the platform's key pair)
    the secret file and the directory of authorised riders' public keys; for each rider
    its secret file and the platform's public key."""
    allowed = os.path.join(directory, "allowed")
    os.mkdir(allowed)
    platform_public, platform_secret = zmq.auth.create_certificates(directory, "platform")
    os.chmod(platform_secret, 0o600)  # secret: ours alone (see warn_if_readable)
    keys = {"producer": (platform_secret, allowed)}
    for name in riders:
        public, secret = zmq.auth.create_certificates(directory, name)
        os.chmod(secret, 0o600)
        os.replace(public, os.path.join(allowed, os.path.basename(public)))
        keys[name] = (secret, platform_public)
    return keys
