"""The test suite on the other Pythons and pyzmq versions the README promises.

.ci/run runs the suite once on the machine's default Python; these sessions run it
again on the oldest and newest supported Python found on the machine, and on the
default Python with the lowest pyzmq that requirements.txt allows:

    nox -f .ci/noxfile.py                      # all sessions
    nox -f .ci/noxfile.py -s lowest_pyzmq      # one

A Python that is not on the machine is reported and skipped (.ci/run passes
--no-error-on-missing-interpreters), not a failure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent.parent
OLDEST, NEWEST = "3.10", "3.13"  # README: Python 3.10 and newer


def interpreter(version: str) -> str:
    """python3.X as pyenv keeps it (this project's machines keep several there, where
    a plain python3.X on PATH may be a shim that refuses), else whatever PATH has."""
    root = Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser()
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    return str(found[-1]) if found else version


def lowest_allowed(package: str) -> str:
    """The lower bound requirements.txt gives `package` (pyzmq>=25,<28 gives 25)."""
    text = (ROOT / "requirements.txt").read_text()
    match = re.search(rf"^{package}\s*>=\s*([\w.]+)", text, re.MULTILINE | re.IGNORECASE)
    if not match:
        raise ValueError(f"requirements.txt gives {package} no lower bound")
    return match.group(1)


@nox.session(python=[interpreter(OLDEST), interpreter(NEWEST)])
def tests(session: nox.Session) -> None:
    session.chdir(ROOT)
    session.install("-r", "requirements-dev.txt")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lowest_pyzmq(session: nox.Session) -> None:
    """On the Python that runs nox."""
    session.chdir(ROOT)
    session.install("-r", "requirements-dev.txt")
    session.install(f"pyzmq=={lowest_allowed('pyzmq')}")
    session.run("python", "-c", "import zmq; print('pyzmq', zmq.__version__, 'libzmq', zmq.zmq_version())")
    session.run("python", "-m", "pytest", *session.posargs)
