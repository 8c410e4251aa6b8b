"""The one chokepoint for subprocesses: every command is echoed as ``+ cmd``.

Nothing else in mlfreeze imports :mod:`subprocess`; tests forbid it in the
unit tier by patching :func:`run` and :func:`capture`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

Command = Sequence[str | os.PathLike[str]]


def _echo(cmd: Command, cwd: Path | None) -> None:
    where = f" (in {cwd})" if cwd else ""
    print("+ " + shlex.join(str(c) for c in cmd) + where, file=sys.stderr, flush=True)


def run(
    cmd: Command,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    echo: bool = True,
    timeout: float | None = None,
) -> int:
    """Run ``cmd`` with inherited output; return its exit status."""
    if echo:
        _echo(cmd, cwd)
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=dict(env) if env is not None else None,
                          check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, [str(c) for c in cmd])
    return proc.returncode


def capture(
    cmd: Command,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` and return its completed process with text stdout/stderr."""
    if echo:
        _echo(cmd, cwd)
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=dict(env) if env is not None else None,
                          check=False, capture_output=True, text=True, timeout=timeout)


def spawn(cmd: Command, *, env: Mapping[str, str], cwd: Path, stdout: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` without waiting (a server under test), echoed; its output goes to ``stdout``
    (a file). On POSIX it gets its own session, so its whole process group can be killed."""
    _echo(cmd, cwd)
    return subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, start_new_session=os.name == "posix")


CalledProcessError = subprocess.CalledProcessError
TimeoutExpired = subprocess.TimeoutExpired
