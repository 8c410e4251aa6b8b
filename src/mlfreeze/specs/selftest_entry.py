"""Entry script of ``<app>-selftest``: a small launcher that runs the sibling ``<app>`` executable
with ``MLFREEZE_ENTRY=selftest``. The app's last runtime hook (hooks/rthook_entry.py) then runs
mlfreeze_runtime.verify.selftest inside the app's own executable, so the bundle holds one copy of
the app's modules (one PYZ) and the self-test exercises the very program the user starts.

Standard library only (its own small Analysis). ``sys.argv[0]`` stays this launcher's path, so
usage and error lines name ``<app>-selftest``.
"""

import os
import subprocess
import sys

SUFFIX = "-selftest"


def app_path(executable: str) -> str:
    """``/b/photo-search-selftest(.exe)`` -> ``/b/photo-search(.exe)``; ValueError for another name."""
    name = os.path.basename(executable)
    stem, ext = os.path.splitext(name)
    if ext.lower() != ".exe":
        stem, ext = name, ""
    if not stem.endswith(SUFFIX) or stem == SUFFIX:
        raise ValueError(f"{name} is not named <app>{SUFFIX}")
    return os.path.join(os.path.dirname(executable), stem[: -len(SUFFIX)] + ext)


def app_environment(environ: dict) -> dict:
    """The app's environment: the caller's, plus ``MLFREEZE_ENTRY=selftest``. PyInstaller's
    bootloader prepends ``_internal/`` to this process's LD_LIBRARY_PATH and keeps the caller's
    value in LD_LIBRARY_PATH_ORIG; the app gets the caller's value back."""
    env = dict(environ, MLFREEZE_ENTRY="selftest")
    if "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    else:
        env.pop("LD_LIBRARY_PATH", None)
    return env


def main() -> int:
    exe = os.path.realpath(sys.executable)
    try:
        app = app_path(exe)
    except ValueError as exc:
        print(f"{os.path.basename(exe)}: error: {exc}", file=sys.stderr)
        return 2
    if not os.path.isfile(app):
        print(f"{os.path.basename(exe)}: error: {app} is missing; the bundle is incomplete", file=sys.stderr)
        return 2
    argv, env = [sys.argv[0], *sys.argv[1:]], app_environment(dict(os.environ))
    if os.name == "posix":
        os.execve(app, argv, env)  # same process: signals and the exit status are the app's
    return subprocess.call(argv, executable=app, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
