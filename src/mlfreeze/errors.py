"""The one place where failures get their exit codes (README.md "Exit codes").

Every expected failure is raised as one of these and caught once in
``mlfreeze.cli.main``, which prints a single line and exits with ``exit_code``.
The message says what failed and what to do next.
"""

from __future__ import annotations


class MlfreezeError(Exception):
    """An expected failure: one line for the user, a documented exit code."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VerificationError(MlfreezeError):
    """A model or a frozen bundle failed its functional checks."""

    exit_code = 1


class UsageError(MlfreezeError):
    """Bad arguments, bad configuration, or the wrong host for a profile."""

    exit_code = 2


class ConfigError(UsageError):
    """A profile, manifest or ``[tool.mlfreeze]`` table is malformed."""


class WrongHostError(UsageError):
    """A profile was asked to build on a host OS/arch it cannot build on."""


class EnvironmentMismatch(UsageError):
    """The installed environment does not match the profile (``doctor``)."""


class DownloadError(MlfreezeError):
    """A model could not be downloaded, or its bytes are not the pinned bytes."""

    exit_code = 3


class IntegrityError(DownloadError):
    """Size or sha256 mismatch, or a hostile archive."""


class FreezeError(MlfreezeError):
    """PyInstaller (or the steps around it) failed."""

    exit_code = 4


class ExportError(MlfreezeError):
    """A model could not be exported (ONNX): the exporter failed or its process crashed."""

    exit_code = 4


class PackError(MlfreezeError):
    """``mlfreeze publish --packs`` cannot put a file into a pack under the pack limit."""

    exit_code = 4


class BudgetExceeded(MlfreezeError):
    """A bundle is larger than its configured size budget."""

    exit_code = 5


EXIT_CODES = {
    0: "ok",
    1: "verification failed (build or frozen self-test)",
    2: "usage, config or wrong host",
    3: "download or integrity failure",
    4: "the build could not produce its artifacts (PyInstaller, export)",
    5: "size budget exceeded",
}
