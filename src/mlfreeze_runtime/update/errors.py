"""The updater's failures, each with the project's exit code (0 ok, 1 verification failed,
2 usage/config, 3 download/integrity). ``cli.main`` catches :class:`UpdateError` once and
prints its one-line message. The same shape as the builder's ``mlfreeze.errors``, kept apart on
purpose: the runtime is frozen into bundles that do not carry the builder."""

from __future__ import annotations


class UpdateError(Exception):
    """An expected failure: one line naming what failed and what to do; ``exit_code``."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(UpdateError):
    """Bad arguments, no variant for this machine, no previous version to roll back to."""

    exit_code = 2


class VerificationFailed(UpdateError):
    """The staged version failed its RECORD audit, acceptance check or post-switch health check."""

    exit_code = 1


class FetchError(UpdateError):
    """A download failed after its retries, or bytes/metadata do not match what was signed."""

    exit_code = 3
