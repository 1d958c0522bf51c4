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

import os

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from cli import SetupError


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
    return public, secret


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
    try:
        push.curve_secretkey = secret
        push.curve_publickey = public
        push.curve_server = True
    except zmq.ZMQError as exc:
        raise SetupError(f"{secret_file}: not a usable CURVE key ({exc.strerror})") from None
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
    try:
        pull.curve_publickey = public
        pull.curve_secretkey = secret
        pull.curve_serverkey = server_public
    except zmq.ZMQError as exc:
        raise SetupError(f"not a usable CURVE key in {secret_file} or {server_public_file} ({exc.strerror})") from None


def make_keys(directory: str, riders: list[str]) -> dict[str, tuple[str, str]]:
    """run.py --curve: fresh certificates, as a person would make them. Returns each
    process's `curve` argument: for the producers (which share the platform's key pair)
    the secret file and the directory of authorised riders' public keys; for each rider
    its secret file and the platform's public key."""
    allowed = os.path.join(directory, "allowed")
    os.mkdir(allowed)
    platform_public, platform_secret = zmq.auth.create_certificates(directory, "platform")
    keys = {"producer": (platform_secret, allowed)}
    for name in riders:
        public, secret = zmq.auth.create_certificates(directory, name)
        os.replace(public, os.path.join(allowed, os.path.basename(public)))
        keys[name] = (secret, platform_public)
    return keys
