"""Somewhere to write for an app without a console (``[tool.mlfreeze] console = false``).

A windowed executable (Windows GUI subsystem, a macOS app launched from Finder) starts with no
standard streams: Python sets ``sys.stdout``/``sys.stderr`` to None, and the first ``print()``,
``logging`` record to stderr, warning or tqdm bar raises AttributeError. The bundle's runtime hook
(src/mlfreeze/specs/hooks/rthook_stdio.py) calls :func:`redirect_missing_streams` before the app
runs: each missing stream becomes the log file :func:`log_path` (appended, UTF-8, line-buffered),
and where that cannot be opened, ``os.devnull``. Streams that exist are left alone, so a console
app, or a windowed app started from a terminal or with redirected output, writes where it always did.
Standard library only (the lite bundle imports this).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from mlfreeze_runtime.app import data_dir, running_app_name

LOG_DIR = "logs"


def log_path(app: str | None = None) -> Path:
    """``<data_dir(app)>/logs/<app>.log`` (mlfreeze_runtime.app.data_dir)."""
    name = app or running_app_name()
    return data_dir(name) / LOG_DIR / f"{name}.log"


def _open_log(path: Path) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)
    except OSError:
        return open(os.devnull, "w", encoding="utf-8")


def redirect_missing_streams(app: str | None = None) -> Path | None:
    """Give ``sys.stdout``/``sys.stderr`` (and ``sys.__stdout__``/``__stderr__``, which tqdm and
    some libraries read) a log file where they are None; returns the log's path, or None when
    both streams exist (nothing changed)."""
    if sys.stdout is not None and sys.stderr is not None:
        return None
    path = log_path(app)
    log = _open_log(path)
    if sys.stdout is None:
        sys.stdout = log
        if sys.__stdout__ is None:
            sys.__stdout__ = log  # type: ignore[misc,assignment]
    if sys.stderr is None:
        sys.stderr = log
        if sys.__stderr__ is None:
            sys.__stderr__ = log  # type: ignore[misc,assignment]
    return path
