"""The updater's one place that starts processes (nvidia-smi, the acceptance and health checks)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence


def run(cmd: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` capturing text output; never raises for a non-zero exit.

    A command that cannot start or runs past ``timeout`` seconds comes back with returncode
    127 or 124 and the reason in stderr, so callers treat every failure the same way.
    """
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, cwd=cwd, check=False)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(list(cmd), 127, "", f"cannot start: {exc}")
    except PermissionError as exc:
        return subprocess.CompletedProcess(list(cmd), 126, "", f"cannot start: {exc}")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(cmd), 124, "", f"timed out after {timeout:.0f} s")
