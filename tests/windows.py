"""The official Windows CPython and pyzmq's Windows wheel, run under Wine.

.ci/windows-python sets them up in .venv-win (or the folder PIPELINE_WINDOWS_DIR names);
then `python -m pytest -m windows` runs tests/test_windows.py with them:

    scripts("run.py", python=windows_python())

A machine without Wine or that folder skips those tests, with the reason. Under Wine a
Windows program is a Linux process: the tests find it by its environment (conftest's tag)
and send it SIGINT, which Windows CPython takes as a Ctrl-C in its console.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PureWindowsPath

import pytest
from conftest import ROOT

WINDOWS_DIR = Path(os.environ.get("PIPELINE_WINDOWS_DIR", ROOT / ".venv-win"))


def windows_path(path: Path) -> str:
    """A Linux path as Windows programs under Wine see it: drive Z: is /."""
    return str(PureWindowsPath("Z:/", *path.resolve().parts[1:]))


def windows_python() -> tuple[list[str], dict[str, str]]:
    """The command that runs Windows CPython, and its environment; skips the test where
    this machine has no Wine or no Windows CPython set up."""
    wine = shutil.which("wine")
    python = WINDOWS_DIR / "python" / "python.exe"
    if not wine or not python.exists() or not (WINDOWS_DIR / "site" / "zmq").is_dir():
        pytest.skip(f"no Windows CPython under Wine here (bash .ci/windows-python sets it up in {WINDOWS_DIR})")
    env = {
        "WINEPREFIX": str(WINDOWS_DIR / "prefix"),
        "WINEDEBUG": "-all",
        "PYTHONPATH": windows_path(WINDOWS_DIR / "site"),
    }
    global WARM
    if not WARM:
        # The wine server and Windows' own services (a dozen processes, several seconds)
        # start with the first Windows program: start them here, outside any test's
        # processes. A test kills every process it started when it ends, and services it
        # had started would go too, under the feet of the tests running beside it.
        subprocess.run([shutil.which("wineserver") or "wineserver", "-p"], env={**os.environ, **env}, check=False)
        # Pipes, not files (Windows CPython under Wine wants them), and no wait for their end:
        # the services it starts keep them open.
        warm = subprocess.Popen(
            [wine, str(python), "-c", "pass"],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        warm.wait(timeout=120)
        WARM = True
    return [wine, str(python)], env


WARM = False  # this process has started the wine server
