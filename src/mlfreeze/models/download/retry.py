"""The downloader's retry policy: mlfreeze's one download policy, which lives in the runtime
(:mod:`mlfreeze_runtime.fetch_policy`: timeouts, transfer-rate floor, deadlines, backoff, the loop
that retries one URL, the watchdog of one attempt), so the builder and every bundle's updater
give up on a slow or broken server the same way. This module re-exports it for the builder and
turns a bad ``MLFREEZE_FETCH_*`` variable into a ConfigError (exit 2).

Every bound is a field of :class:`Policy`, settable as ``MLFREEZE_FETCH_<FIELD>``:
``CONNECT_TIMEOUT``/``READ_TIMEOUT`` (s), ``MIN_RATE`` (bytes/s) over ``RATE_WINDOW`` (s),
``ATTEMPT_DEADLINE`` (s, one connection), ``URL_DEADLINE`` (s, one URL with its retries, transfer
time included), ``RETRIES``, ``BACKOFF``/``BACKOFF_MAX`` (s), ``RETRY_AFTER_MAX`` (s), ``FSYNC``.
"""

from __future__ import annotations

from mlfreeze.errors import ConfigError
from mlfreeze_runtime.fetch_policy import (
    SLOW_RETRIES,
    UNREACHABLE_RETRIES,
    Policy,
    PolicyError,
    RateMeter,
    Transient,
    UrlFailed,
    Watchdog,
    retry_after,
    track,
    with_retries,
)

__all__ = ["SLOW_RETRIES", "UNREACHABLE_RETRIES", "Policy", "RateMeter", "Transient", "UrlFailed", "Watchdog",
           "policy_from_env", "retry_after", "track", "with_retries"]


def policy_from_env() -> Policy:
    """:meth:`Policy.from_env`; ConfigError (exit 2) naming a variable that is not a number."""
    try:
        return Policy.from_env()
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
