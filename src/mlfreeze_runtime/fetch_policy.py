"""The one download policy of mlfreeze: timeouts, transfer-rate floor, deadlines, backoff, and the
loop that retries one URL. Standard library only; no HTTP here.

The builder's downloader (``mlfreeze.models.download``, requests) and the bundle's updater
(``mlfreeze_runtime.update.http``, urllib) both do their attempts under this policy, so a model
fetched at build time and a blob fetched in the field end the same way. The runtime never imports
the builder; the builder imports this module.

Every bound is a field of :class:`Policy`, settable as ``MLFREEZE_FETCH_<FIELD>``:
``CONNECT_TIMEOUT``/``READ_TIMEOUT`` (s), ``MIN_RATE`` (bytes/s) over ``RATE_WINDOW`` (s),
``ATTEMPT_DEADLINE`` (s, one connection), ``URL_DEADLINE`` (s, one URL with its retries, transfer
time included), ``RETRIES``, ``BACKOFF``/``BACKOFF_MAX`` (s), ``RETRY_AFTER_MAX`` (s), ``FSYNC``.

The rules an attempt follows (both HTTP stacks):

- the status line and headers must arrive within ``rate_window`` (a server that trickles its
  headers is slow, not busy); the body must move at ``min_rate`` or more over every
  ``rate_window``; no byte at all for :attr:`Policy.idle_timeout` ends the attempt;
- a resume asks ``Range: bytes=N-`` and appends only to a 206 whose Content-Range starts at N;
  a 200 restarts from zero; a 416 to a resume empties the partial and restarts from zero;
- connection errors, short bodies, 5xx and 429 are retried with exponential backoff and equal
  jitter (Retry-After honoured up to ``retry_after_max``); a host unreachable 3 times, a transfer
  under the rate floor twice, a TLS certificate that does not verify, 4xx and wrong bytes are
  not retried.

A :class:`Watchdog` thread enforces the header bound, the rate floor and the attempt deadline by
shutting the attempt's sockets down, so a read blocked on a server that sends one byte every few
seconds returns at once. Bound on a slow drip (any rate under ``min_rate``, e.g. one byte every
3 s, on the headers or on the body): two attempts of ``rate_window`` each plus one backoff
(:meth:`Policy.slow_bound`: about 61 s with the defaults), and never more than ``url_deadline``
for one URL.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

UNREACHABLE_RETRIES = 2  # a host that refused or timed out connecting 3 times is down: next URL
SLOW_RETRIES = 1  # a URL below the rate floor twice in a row is given up (a drip is not a hiccup)
ENV_PREFIX = "MLFREEZE_FETCH_"


class PolicyError(ValueError):
    """An ``MLFREEZE_FETCH_*`` variable that is not a number (the message names it)."""


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        out = float(value)
    except ValueError:
        raise PolicyError(f"environment variable {name}={value!r} is not a number; fix or unset it") from None
    if out < 0:
        raise PolicyError(f"environment variable {name}={value!r} is negative; fix or unset it")
    return out


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
        """The defaults overridden by ``MLFREEZE_FETCH_*``; PolicyError for a value that is not a
        non-negative number."""
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
        """Seconds to wait before retry ``attempt`` (1-based): exponential, capped, equal jitter."""
        d = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        return float(d / 2 + random.uniform(0, d / 2))

    @property
    def idle_timeout(self) -> float:
        """The socket read timeout: no byte for this long ends the attempt."""
        return max(0.001, min(self.read_timeout, self.rate_window))

    @property
    def header_timeout(self) -> float:
        """The most the status line and headers of one answer may take (a trickle of headers is slow)."""
        return max(0.001, min(self.rate_window, self.attempt_deadline))

    def slow_bound(self) -> float:
        """Seconds within which a URL that drips (under ``min_rate``) is given up, retries and
        backoff included (plus the watchdog's tick, well under a second)."""
        tries = min(SLOW_RETRIES, self.retries)
        waits = sum(min(self.backoff_max, self.backoff * 2.0 ** i) for i in range(tries))
        return float(min(self.url_deadline, (1 + tries) * self.rate_window + waits))


class UrlFailed(Exception):
    """This URL is done (not retried). kind: unreachable | refused | http | tls | integrity |
    transient | slow | missing | disk. ``wrote``: whether it wrote bytes into the partial (they are dropped)."""

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


class RateMeter:
    """The rate floor of one attempt's body: call :meth:`moved` after every read; it raises a slow
    :class:`Transient` once a whole ``rate_window`` passed under ``min_rate``."""

    def __init__(self, policy: Policy, have: int, total: int | None = None) -> None:
        self.policy = policy
        self.window = time.monotonic()
        self.window_have = have
        self.total = total

    def moved(self, have: int) -> None:
        now = time.monotonic()
        if now - self.window < self.policy.rate_window:
            return
        moved = have - self.window_have
        if moved / (now - self.window) < self.policy.min_rate:
            of = f" of {self.total}" if self.total is not None else ""
            raise Transient(f"too slow: {moved} bytes in the last {now - self.window:.0f}s "
                            f"({moved / max(now - self.window, 1e-6):,.1f} B/s, under MLFREEZE_FETCH_MIN_RATE "
                            f"{self.policy.min_rate:g} B/s); {have}{of} bytes received", slow=True)
        self.window, self.window_have = now, have


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


# ---- the watchdog of one attempt ----
class _Current(threading.local):
    dog: Watchdog | None = None


_current = _Current()


def track(sock: socket.socket) -> socket.socket:
    """Put ``sock`` under the watchdog of the attempt this thread is running (if any); returns it.
    The HTTP stacks call it for every connection they open."""
    dog = _current.dog
    if dog is not None:
        dog.sockets.append(sock)
    return sock


class Watchdog:
    """Ends one attempt when it runs past a bound, by shutting down every socket this thread
    opened inside the ``with`` block (a blocked read then returns with an error at once).

    Bounds: ``deadline`` (monotonic s) always; until :meth:`body` is called, the answer's
    headers must arrive within ``policy.header_timeout``; after it, the body must move at
    ``policy.min_rate`` over every ``policy.rate_window`` (both only when ``min_rate`` > 0).
    ``why`` says which bound fired (``deadline``, ``headers`` or ``slow``) and :meth:`transient`
    turns it into the attempt's failure."""

    def __init__(self, deadline: float, policy: Policy | None = None) -> None:
        self.deadline = deadline
        self.policy = policy
        self.fired = False
        self.why = ""
        self.detail = ""
        self.sockets: list[socket.socket] = []
        self._began = time.monotonic()
        self._headers_end = self._began + policy.header_timeout if policy is not None and policy.min_rate > 0 \
            else None
        self._meter: RateMeter | None = None
        self._have: Callable[[], int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watchdog:
        _current.dog = self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        _current.dog = None
        self._thread.join()

    def body(self, have: Callable[[], int], total: int | None = None) -> None:
        """The headers are in: from now on watch the rate of ``have()`` (bytes received) when the
        policy has a rate floor."""
        self._headers_end = None
        if self.policy is not None and self.policy.min_rate > 0:
            self._meter = RateMeter(self.policy, have(), total)
            self._have = have

    def _tick(self) -> float:
        window = self.policy.rate_window if self.policy is not None else 1.0
        return max(0.005, min(0.25, window / 8, max(0.0, self.deadline - time.monotonic())))

    def _run(self) -> None:
        while not self._stop.wait(self._tick()):
            now = time.monotonic()
            if now >= self.deadline:
                return self._fire("deadline", "")
            if self._headers_end is not None and now >= self._headers_end:
                return self._fire("headers", f"no complete answer (status and headers) within "
                                             f"{now - self._began:.0f}s")
            if self._meter is not None and self._have is not None:
                try:
                    self._meter.moved(self._have())
                except Transient as exc:
                    return self._fire("slow", exc.reason)

    def _fire(self, why: str, detail: str) -> None:
        self.fired, self.why, self.detail = True, why, detail
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def transient(self, policy: Policy, url_end: float, what: str) -> Transient:
        """The failure of an attempt this watchdog ended (``what``: where the transfer stood)."""
        if self.why == "slow":
            return Transient(self.detail, slow=True)
        if self.why == "headers":
            return Transient(f"{self.detail} (MLFREEZE_FETCH_RATE_WINDOW {policy.rate_window:g}s)", slow=True)
        if time.monotonic() >= url_end - 0.05:
            return Transient(f"{what}; MLFREEZE_FETCH_URL_DEADLINE {policy.url_deadline:g}s reached",
                             slow=True, url_deadline=True)
        return Transient(f"{what}; MLFREEZE_FETCH_ATTEMPT_DEADLINE {policy.attempt_deadline:g}s reached", slow=True)
