"""The app's expected failures and their exit codes (documented in README.md).

``cli.main`` catches ``AppError`` once and prints ``photo-search: error: <one line>``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1  # a model failed while running (unexpected, with the reason)
EXIT_USAGE = 2  # bad arguments, missing folder/index, bad models.json, index built with other models
EXIT_UNAVAILABLE = 3  # the feature needs the ML stack or models this installation does not have


class AppError(Exception):
    """An expected failure: one line for the user and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(AppError):
    exit_code = EXIT_USAGE


class ModelsError(AppError):
    """models.json is missing, malformed, or names files that are not there."""

    exit_code = EXIT_USAGE


class IndexMismatch(AppError):
    """The index on disk was built with other models (or none)."""

    exit_code = EXIT_USAGE


class Unavailable(AppError):
    """The ML stack or the models a feature needs are not in this installation."""

    exit_code = EXIT_UNAVAILABLE


class ModelRuntimeError(AppError):
    exit_code = EXIT_RUNTIME


class ModelsNotFound(Unavailable):
    """No models dir is configured, or the configured one does not exist."""
