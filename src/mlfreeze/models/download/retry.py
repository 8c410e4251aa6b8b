"""Retry policy of the downloader: timeouts, transfer-rate floor, deadlines, backoff, and the
loop that retries one URL (no HTTP here; src/mlfreeze/models/download/transfer.py does one attempt).

Every bound is a field of :class:`Policy`, settable as ``MLFREEZE_FETCH_<FIELD>``:
``CONNECT_TIMEOUT``/``READ_TIMEOUT`` (s), ``MIN_RATE`` (bytes/s) over ``RATE_WINDOW`` (s),
``ATTEMPT_DEADLINE`` (s, one connection), ``URL_DEADLINE`` (s, one URL with its retries, transfer
time included), ``RETRIES``, ``BACKOFF``/``BACKOFF_MAX`` (s), ``RETRY_AFTER_MAX`` (s), ``FSYNC``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from mlfreeze.errors import ConfigError

UNREACHABLE_RETRIES = 2  # a host that refused or timed out connecting 3 times is down: next URL
SLOW_RETRIES = 1  # a URL below the rate floor twice in a row is given up (a drip is not a hiccup)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not a number") from None


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Timeouts, rate floor, deadlines and retry bounds; tests shrink them, ``from_env`` reads
    MLFREEZE_FETCH_*. Units: seconds, bytes and bytes per second.

    With the defaults a server that drips (any rate under ``min_rate`` for ``rate_window``) is
    given up after ``(1 + SLOW_RETRIES) * rate_window`` plus one backoff, about 62 s.
    """

    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # no byte at all for this long ends the attempt (capped by rate_window)
    min_rate: float = 1024.0  # bytes/s averaged over rate_window; below it the attempt ends
    rate_window: float = 30.0
    attempt_deadline: float = 1800.0  # one connection, headers and body
    url_deadline: float = 3600.0  # one URL, every attempt, transfer and waits included
    retries: int = 5  # further attempts per URL after the first
    backoff: float = 1.0  # first delay; doubles per retry; equal jitter
    backoff_max: float = 30.0
    retry_after_max: float = 120.0  # a longer Retry-After gives up on that URL
    chunk_size: int = 1 << 20  # the most one read returns; a read returns whatever has arrived
    max_redirects: int = 5
    fsync: bool = True  # fsync before publish (MLFREEZE_FETCH_FSYNC=0: page cache only; still re-verified on use)

    @classmethod
    def from_env(cls) -> Policy:
        d = cls()
        return cls(
            connect_timeout=_env_float("MLFREEZE_FETCH_CONNECT_TIMEOUT", d.connect_timeout),
            read_timeout=_env_float("MLFREEZE_FETCH_READ_TIMEOUT", d.read_timeout),
            min_rate=_env_float("MLFREEZE_FETCH_MIN_RATE", d.min_rate),
            rate_window=_env_float("MLFREEZE_FETCH_RATE_WINDOW", d.rate_window),
            attempt_deadline=_env_float("MLFREEZE_FETCH_ATTEMPT_DEADLINE", d.attempt_deadline),
            url_deadline=_env_float("MLFREEZE_FETCH_URL_DEADLINE", d.url_deadline),
            retries=int(_env_float("MLFREEZE_FETCH_RETRIES", d.retries)),
            backoff=_env_float("MLFREEZE_FETCH_BACKOFF", d.backoff),
            backoff_max=_env_float("MLFREEZE_FETCH_BACKOFF_MAX", d.backoff_max),
            retry_after_max=_env_float("MLFREEZE_FETCH_RETRY_AFTER_MAX", d.retry_after_max),
            fsync=os.environ.get("MLFREEZE_FETCH_FSYNC", "1").strip().lower() not in ("0", "false", "no", "off"),
        )

    def delay(self, attempt: int) -> float:
        d = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        return float(d / 2 + random.uniform(0, d / 2))

    @property
    def idle_timeout(self) -> float:
        """The socket read timeout: no byte for this long ends the attempt."""
        return max(0.001, min(self.read_timeout, self.rate_window))


class UrlFailed(Exception):
    """This URL is done (not retried). kind: unreachable | refused | http | tls | integrity |
    transient | slow | missing. ``wrote``: whether it wrote bytes into the partial (they are dropped)."""

    def __init__(self, reason: str, kind: str, wrote: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.wrote = wrote


class Transient(Exception):
    """One attempt failed in a way a retry may fix. ``slow``: under the rate floor or silent."""

    def __init__(self, reason: str, retry_after: float | None = None, unreachable: bool = False,
                 slow: bool = False, url_deadline: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.slow = slow
        self.url_deadline = url_deadline


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def with_retries(attempt: Callable[[float, float], None], *, url: str, policy: Policy,
                 progress: Callable[[], int], say: Callable[[str], None]) -> None:
    """Run ``attempt(deadline, url_end)`` (monotonic seconds) until it returns, retrying Transient.

    ``progress()`` is the byte count of the partial. An attempt that took the partial past its
    longest so far, at no less than ``policy.min_rate``, resets the retry count (a dropped link
    that keeps making progress is not a dead one; a server that restarts and cuts at random
    points is); time does not reset: ``url_deadline`` bounds the whole URL. Raises UrlFailed
    when the URL is given up.
    """
    url_end = time.monotonic() + policy.url_deadline
    best = progress()
    count = 0
    while True:
        count += 1
        began, had = time.monotonic(), progress()
        deadline = min(began + policy.attempt_deadline, url_end)
        try:
            attempt(deadline, url_end)
            return
        except Transient as exc:
            now_have, took = progress(), max(time.monotonic() - began, 1e-6)
            if now_have > best and not exc.slow and (now_have - had) / took >= policy.min_rate:
                count, best = 1, now_have
            kind = "unreachable" if exc.unreachable else "slow" if exc.slow else "transient"
            if exc.url_deadline:
                raise UrlFailed(exc.reason, kind) from None
            if exc.unreachable and "resolve" in exc.reason:
                raise UrlFailed(exc.reason, kind) from None  # a name that does not resolve will not in 2 s
            limit = policy.retries
            if exc.unreachable:
                limit = min(limit, UNREACHABLE_RETRIES)
            elif exc.slow:
                limit = min(limit, SLOW_RETRIES)
            if count > limit:
                raise UrlFailed(f"{exc.reason} (gave up after {count} attempts)", kind) from None
            if exc.retry_after is not None:
                if exc.retry_after > policy.retry_after_max:
                    raise UrlFailed(f"{exc.reason}; Retry-After {exc.retry_after:.0f}s is too long", kind) from None
                delay = exc.retry_after
            else:
                delay = policy.delay(count)
            if time.monotonic() + delay >= url_end:
                raise UrlFailed(f"{exc.reason} (gave up: MLFREEZE_FETCH_URL_DEADLINE "
                                f"{policy.url_deadline:g}s reached)", kind) from None
            say(f"  {url}: {exc.reason}; retry {count}/{limit} in {delay:.1f}s")
            time.sleep(delay)
