"""Simulated Windows: a Linux Python that offers only what Windows offers to our scripts.

Python imports this module at start-up when its folder is on PYTHONPATH (see
tests/test_portability.py). PYTHONPATH is in the environment, so every process a
script starts gets it too: spawned children, and the resource tracker. The test process
itself never has the folder on its path and stays a real Linux.

What changes:

- signal: only what Windows has. No signal masks (pthread_sigmask, sigwait...), no
  SIGKILL, SIGHUP, SIGQUIT, SIGUSR1/2, SIGALRM, SIGCHLD and the rest; SIGINT and
  SIGTERM stay.
- os: no process groups or sessions (killpg, setpgrp, setsid, getpgid...), no fork,
  no getloadavg. os.kill(pid, anything) kills outright, as TerminateProcess does.
- multiprocessing: "spawn" is the only start method; the fork and forkserver
  contexts are gone, and Process.kill()/terminate() kill outright.

sys.platform stays "linux": code that asks "is this Windows?" by name is not
simulated, code that asks "does this platform have X?" is. Real Windows behaviour that
this cannot show: the console's Ctrl-C (CTRL_C_EVENT) reaching every process attached
to it, SetConsoleCtrlHandler, named pipes instead of sockets.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from multiprocessing import context as _context
from multiprocessing import popen_fork as _popen_fork

# For POSIX systems: on Windows, the tests run on the real thing. (This also tells mypy
# --platform win32 to skip the rest of the file.)
assert sys.platform != "win32", "the simulated Windows is for POSIX systems"

SIMULATED_WINDOWS = True  # a child can be asked: is the simulation loaded here?

# What the signal module has on Windows (besides the SIG_DFL/SIG_IGN handlers).
_WINDOWS_SIGNALS = {"SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM", "SIGBREAK"}
_NOT_ON_WINDOWS_SIGNAL = [
    "alarm", "getitimer", "pause", "pidfd_send_signal", "pthread_kill", "pthread_sigmask",
    "setitimer", "siginterrupt", "sigpending", "sigtimedwait", "sigwait", "sigwaitinfo",
    "ITIMER_PROF", "ITIMER_REAL", "ITIMER_VIRTUAL", "ItimerError",
    "SIG_BLOCK", "SIG_SETMASK", "SIG_UNBLOCK", "Sigmasks", "struct_siginfo",
]  # fmt: skip
_NOT_ON_WINDOWS_OS = [
    "fork", "forkpty", "getloadavg", "getpgid", "getpgrp", "getsid", "killpg",
    "register_at_fork", "setpgid", "setpgrp", "setsid", "wait3", "wait4",
]  # fmt: skip

_real_kill = os.kill
_real_sigkill: int = getattr(signal, "SIGKILL", 9)

for _name in dir(signal):
    if _name.startswith("SIG") and not _name.startswith("SIG_") and _name not in _WINDOWS_SIGNALS:
        delattr(signal, _name)
for _name in _NOT_ON_WINDOWS_SIGNAL:
    if hasattr(signal, _name):
        delattr(signal, _name)
for _name in _NOT_ON_WINDOWS_OS:
    if hasattr(os, _name):
        delattr(os, _name)


def _terminate(pid: int, sig: int) -> None:
    """On Windows os.kill() with any signal but the two console events is
    TerminateProcess: the process gets no chance to run a handler."""
    _real_kill(pid, _real_sigkill)


os.kill = _terminate


def _kill_outright(self: _popen_fork.Popen) -> None:
    """Process.kill() and terminate(), which on Windows are both TerminateProcess.
    (popen_fork's own kill() would need signal.SIGKILL, which is gone now.)"""
    if self.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)  # the os.kill above: outright


_popen_fork.Popen.kill = _kill_outright  # type: ignore[method-assign]
_popen_fork.Popen.terminate = _kill_outright  # type: ignore[method-assign]

# multiprocessing: spawn only. get_context("fork") or ("forkserver") raises
# ValueError("cannot find context for 'forkserver'"), as on Windows.
for _method in ("fork", "forkserver"):
    _context._concrete_contexts.pop(_method, None)  # type: ignore[attr-defined]
_context.DefaultContext.get_all_start_methods = lambda self: ["spawn"]  # type: ignore[method-assign]
_spawn = _context._concrete_contexts["spawn"]  # type: ignore[attr-defined]
_context._default_context = _context.DefaultContext(_spawn)
for _name in multiprocessing.__all__:  # the module's functions are the default context's methods
    setattr(multiprocessing, _name, getattr(_context._default_context, _name))
