"""All HTTP of mlfreeze: streaming, verified, resumable downloads (the only module importing requests).

``download(urls, partial, ...)`` fills ``partial`` with exactly ``size`` bytes whose sha256 is
``sha256``, trying the URLs in order, or raises :class:`AllUrlsFailed` naming every URL and why.

- sha256 is computed while streaming (a resumed prefix is hashed once, from disk);
- resume uses ``Range: bytes=N-`` and accepts only a 206 whose Content-Range is
  ``bytes N-(size-1)/size``; a 200 answer restarts from zero (never appends);
- connection errors, read timeouts, short bodies, 5xx and 429 are retried with exponential
  backoff and jitter (Retry-After honoured), bounded in count and in time; then the next URL;
- ``https://`` and ``file://`` (or a local path) are allowed; ``http://`` only for loopback
  hosts; redirects are followed by hand under the same rule.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import queue
import random
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlparse
from urllib.request import url2pathname

import requests
from mlfreeze.errors import ConfigError, DownloadError

_REDIRECTS = (301, 302, 303, 307, 308)
UNREACHABLE_RETRIES = 2  # a host that refused or timed out connecting 3 times is down: next URL
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


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
    """Timeouts and retry bounds; tests shrink them, ``from_env`` reads MLFREEZE_FETCH_*."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5  # further attempts per URL after the first
    backoff: float = 1.0  # first delay; doubles per retry; equal jitter
    backoff_max: float = 30.0
    retry_after_max: float = 120.0  # a longer Retry-After gives up on that URL
    url_deadline: float = 900.0  # seconds one URL may take, retries included
    chunk_size: int = 1 << 20
    max_redirects: int = 5
    fsync: bool = True  # fsync before publish (MLFREEZE_FETCH_FSYNC=0: page cache only; still re-verified on use)

    @classmethod
    def from_env(cls) -> Policy:
        d = cls()
        return cls(
            connect_timeout=_env_float("MLFREEZE_FETCH_CONNECT_TIMEOUT", d.connect_timeout),
            read_timeout=_env_float("MLFREEZE_FETCH_READ_TIMEOUT", d.read_timeout),
            retries=int(_env_float("MLFREEZE_FETCH_RETRIES", d.retries)),
            backoff=_env_float("MLFREEZE_FETCH_BACKOFF", d.backoff),
            backoff_max=_env_float("MLFREEZE_FETCH_BACKOFF_MAX", d.backoff_max),
            retry_after_max=_env_float("MLFREEZE_FETCH_RETRY_AFTER_MAX", d.retry_after_max),
            url_deadline=_env_float("MLFREEZE_FETCH_URL_DEADLINE", d.url_deadline),
            fsync=os.environ.get("MLFREEZE_FETCH_FSYNC", "1").strip().lower() not in ("0", "false", "no", "off"),
        )

    def delay(self, attempt: int) -> float:
        d = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        return d / 2 + random.uniform(0, d / 2)


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """Why one URL failed. kind: unreachable | refused | http | integrity | transient | missing."""

    url: str
    reason: str
    kind: str


class AllUrlsFailed(DownloadError):
    def __init__(self, name: str, attempts: Sequence[Attempt]) -> None:
        self.name = name
        self.attempts = list(attempts)
        tried = "; ".join(f"{a.url} ({a.reason})" for a in attempts)
        super().__init__(f"{name}: no URL delivered the pinned bytes; tried {tried}")

    @property
    def integrity(self) -> bool:
        return any(a.kind == "integrity" for a in self.attempts)

    @property
    def unreachable(self) -> bool:
        return bool(self.attempts) and all(a.kind == "unreachable" for a in self.attempts)


class _UrlFailed(Exception):
    """``wrote``: whether this URL wrote bytes into the partial file (if so, they are dropped)."""

    def __init__(self, reason: str, kind: str, wrote: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.wrote = wrote


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_file: bool = True) -> None:
    """Refuse what may not be fetched: plain http to a non-loopback host, unknown schemes."""
    parts = urlparse(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http":
        if is_loopback(parts.hostname):
            return
        raise _UrlFailed(f"plain http:// refused for non-loopback host {parts.hostname}; use https", "refused")
    if parts.scheme == "file" and allow_file:
        return
    raise _UrlFailed(f"scheme {parts.scheme or '(none)'!r} refused", "refused")


@dataclass(kw_only=True)
class _State:
    """The partial file and a hash of its bytes, carried across attempts in this process."""

    path: Path
    size: int
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    have: int = 0

    def sync(self) -> None:
        """Make ``hasher``/``have`` describe the partial file on disk (hash a resumed prefix once)."""
        on_disk = self.path.stat().st_size if self.path.exists() else 0
        if on_disk == self.have:
            return
        if on_disk > self.size:
            self.restart()
            return
        self.hasher, self.have = hashlib.sha256(), 0
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                self.hasher.update(chunk)
                self.have += len(chunk)

    def restart(self) -> None:
        with open(self.path, "wb"):
            pass
        self.hasher, self.have = hashlib.sha256(), 0


def _columns() -> int:
    cols = shutil.get_terminal_size(fallback=(100, 24)).columns
    return cols if cols > 20 else 100


class _Bar:
    """tqdm with size, rate and ETA on a terminal; silent otherwise (the caller logs one line)."""

    def __init__(self, name: str, total: int, initial: int, enabled: bool) -> None:
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=name, file=sys.stderr, leave=False, ncols=_columns())

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def download(urls: Sequence[str], partial: Path, *, name: str, size: int, sha256: str,
             policy: Policy | None = None, progress: bool = True,
             log: Callable[[str], None] | None = None) -> str:
    """Fill ``partial`` with the pinned bytes from the first URL that has them; return that URL.

    ``progress``: a tqdm bar when stderr is a terminal; ``log`` gets retry notes.
    A partial file left by an earlier (killed or failed) run is resumed; bytes that a URL got
    wrong are dropped. ``partial`` is never a cache entry: the caller publishes it.
    """
    policy = policy or Policy.from_env()
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    attempts: list[Attempt] = []
    state = _State(path=partial, size=size)
    partial.parent.mkdir(parents=True, exist_ok=True)
    state.sync()
    if state.have == size:  # a complete leftover: keep it if it is right
        if state.hasher.hexdigest() == sha256:
            return "(a complete earlier download)"
        state.restart()
    with requests.Session() as session:
        for url in urls:
            for _ in range(2):  # a second go, from zero, only when a resumed prefix proved wrong
                resumed = state.have > 0 and urlparse(url).scheme != "file"  # a file copy starts at zero
                try:
                    check_url(url)
                    if urlparse(url).scheme == "file":
                        _copy_file(url, state, policy)
                    else:
                        _http_with_retries(session, url, state, policy, name if progress else "", say)
                    _check_digest(state, sha256, policy.fsync)
                    return url
                except _UrlFailed as exc:
                    if exc.kind == "integrity" and exc.wrote:
                        state.restart()  # never resume from bytes that proved wrong
                        if resumed:
                            say(f"  {url}: {exc.reason} after resuming; downloading again from zero")
                            continue
                    attempts.append(Attempt(url=url, reason=exc.reason, kind=exc.kind))
                    break
    if partial.exists() and partial.stat().st_size == 0:
        partial.unlink()  # a verified-so-far prefix stays in tmp/ for the next run to resume
    raise AllUrlsFailed(name, attempts)


def _check_digest(state: _State, sha256: str, fsync: bool = True) -> None:
    if state.have != state.size:
        raise _UrlFailed(f"expected {state.size} bytes, received {state.have}", "integrity")
    got = state.hasher.hexdigest()
    if got != sha256:
        raise _UrlFailed(f"expected sha256 {sha256}, received {got} ({state.size} bytes)", "integrity")
    if fsync:
        with open(state.path, "rb+") as f:
            os.fsync(f.fileno())


def _copy_file(url: str, state: _State, policy: Policy) -> None:
    parts = urlparse(url)
    source = Path(url2pathname(parts.path))
    if parts.netloc not in ("", "localhost"):
        raise _UrlFailed(f"file URL with host {parts.netloc!r} refused", "refused")
    try:
        actual = source.stat().st_size
    except OSError as exc:
        raise _UrlFailed(f"not found: {exc.strerror}", "missing") from None
    if actual != state.size:
        raise _UrlFailed(f"expected {state.size} bytes, the file has {actual}", "integrity", wrote=False)
    state.restart()
    try:
        src = open(source, "rb")  # noqa: SIM115 - closed below; only the source's errors are this URL's
    except OSError as exc:
        raise _UrlFailed(f"cannot read {source}: {exc.strerror}", "missing") from None
    with src, open(state.path, "wb") as dst:
        while True:
            try:
                chunk = src.read(policy.chunk_size)
            except OSError as exc:
                raise _UrlFailed(f"cannot read {source}: {exc.strerror}", "missing") from None
            if not chunk:
                break
            dst.write(chunk)
            state.hasher.update(chunk)
            state.have += len(chunk)


def _http_with_retries(session: requests.Session, url: str, state: _State, policy: Policy,
                       bar: str, say: Callable[[str], None]) -> None:
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        had = state.have
        try:
            _http_attempt(session, url, state, policy, bar, say)
            return
        except _Transient as exc:
            if state.have > had:  # this attempt made progress: a slow link is not a dead one
                start, attempt = time.monotonic(), 1
            kind = "unreachable" if exc.unreachable else "transient"
            if exc.unreachable and "resolve" in exc.reason:
                raise _UrlFailed(exc.reason, kind) from None  # a name that does not resolve will not in 2 s
            limit = min(policy.retries, UNREACHABLE_RETRIES) if exc.unreachable else policy.retries
            if attempt > limit:
                raise _UrlFailed(f"{exc.reason} (gave up after {attempt} attempts)", kind) from None
            if exc.retry_after is not None:
                if exc.retry_after > policy.retry_after_max:
                    raise _UrlFailed(f"{exc.reason}; Retry-After {exc.retry_after:.0f}s is too long", kind) from None
                delay = exc.retry_after
            else:
                delay = policy.delay(attempt)
            if time.monotonic() - start + delay > policy.url_deadline:
                raise _UrlFailed(f"{exc.reason} (gave up after {policy.url_deadline:.0f}s)", kind) from None
            say(f"  {url}: {exc.reason}; retry {attempt}/{limit} in {delay:.1f}s")
            time.sleep(delay)


def _retry_after(value: str | None) -> float | None:
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


def _connection_reason(exc: Exception) -> tuple[str, bool]:
    text = str(exc)
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text \
            or "Temporary failure in name resolution" in text:
        return "cannot resolve host", True
    if "Connection refused" in text:
        return "connection refused", True
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout", True
    if isinstance(exc, requests.ReadTimeout):
        return "read timeout", False
    return f"connection error ({type(exc).__name__})", False


def _open(session: requests.Session, url: str, headers: dict[str, str], policy: Policy) -> requests.Response:
    current = url
    for _ in range(policy.max_redirects + 1):
        try:
            resp = session.get(current, headers=headers, stream=True, allow_redirects=False,
                               timeout=(policy.connect_timeout, policy.read_timeout))
        except requests.RequestException as exc:
            reason, unreachable = _connection_reason(exc)
            raise _Transient(reason, unreachable=unreachable) from None
        if resp.status_code not in _REDIRECTS:
            return resp
        location = resp.headers.get("Location")
        resp.close()
        if not location:
            raise _UrlFailed(f"HTTP {resp.status_code} without Location", "http")
        target = urljoin(current, location)
        try:
            check_url(target, allow_file=False)
        except _UrlFailed as exc:
            raise _UrlFailed(f"redirect to {target} refused: {exc.reason}", "refused") from None
        current = target
    raise _UrlFailed(f"more than {policy.max_redirects} redirects", "http")


def _http_attempt(session: requests.Session, url: str, state: _State, policy: Policy,
                  bar: str, say: Callable[[str], None]) -> None:
    state.sync()
    headers = {"Accept-Encoding": "identity"}
    if state.have:
        headers["Range"] = f"bytes={state.have}-"
    resp = _open(session, url, headers, policy)
    with resp:
        status = resp.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}", retry_after=_retry_after(resp.headers.get("Retry-After")))
        if status == 416:
            state.restart()
            raise _Transient("HTTP 416 for the resume range; restarting from zero")
        if status == 206 and state.have:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            want = (state.have, state.size - 1, str(state.size))
            if not m or (int(m.group(1)), int(m.group(2)), m.group(3)) != want:
                state.restart()
                raise _Transient(f"Content-Range {resp.headers.get('Content-Range')!r} does not continue "
                                 f"byte {want[0]}; restarting from zero")
            mode = "ab"
        elif status == 200:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != state.size:
                raise _UrlFailed(f"expected {state.size} bytes, server announces {length}", "integrity",
                                 wrote=False)
            if state.have:
                say(f"  {url}: server ignored the Range request; restarting from zero")
                state.restart()
            mode = "wb"
        else:
            raise _UrlFailed(f"HTTP {status}", "http")
        _stream(resp, state, mode, policy, bar)


class _BackgroundHash:
    """sha256 on a second thread while this one receives and writes (hashlib releases the GIL),
    so hashing while streaming costs no wall time on a machine with two cores."""

    def __init__(self, hasher: hashlib._Hash) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, args=(hasher,), daemon=True)
        self._thread.start()

    def _run(self, hasher: hashlib._Hash) -> None:
        while (chunk := self._queue.get()) is not None:
            hasher.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class _Writeback:
    """Flush written bytes to disk on a helper thread every ``every`` bytes, so the fsync before
    the atomic publish overlaps the transfer instead of following it."""

    def __init__(self, fd: int, every: int = 64 << 20) -> None:
        self._fd, self._every, self._pending = fd, every, 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                sync(self._fd)
            except OSError:
                return  # the final fsync reports real trouble

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._pending >= self._every:
            self._pending = 0
            self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()


def _stream(resp: requests.Response, state: _State, mode: str, policy: Policy, bar: str) -> None:
    tick = _Bar(bar, state.size, state.have, enabled=bool(bar))
    raw = resp.raw
    digest = _BackgroundHash(state.hasher)
    try:
        with open(state.path, mode) as f:
            flusher = _Writeback(f.fileno()) if policy.fsync else None
            try:
                _copy_stream(raw, f, state, digest, flusher, tick, policy)
            finally:
                if flusher is not None:
                    flusher.close()
    finally:
        digest.close()  # after this, state.hasher covers exactly the state.have bytes written
        tick.close()
    if state.have < state.size:
        raise _Transient(f"short body: {state.have} of {state.size} bytes")


def _copy_stream(raw: Any, f: IO[bytes], state: _State, digest: _BackgroundHash, flusher: _Writeback | None,
                 tick: _Bar, policy: Policy) -> None:
    while True:
        try:
            chunk = raw.read(policy.chunk_size, decode_content=False)
        except Exception as exc:  # urllib3 ProtocolError / ReadTimeoutError / IncompleteRead
            f.flush()
            text = repr(exc)
            if "timed out" in text.lower():
                reason = f"read timeout after {state.have} of {state.size} bytes"
            elif "IncompleteRead" in text:
                reason = f"short body: {state.have} of {state.size} bytes"
            else:
                reason = f"connection dropped after {state.have} of {state.size} bytes"
            raise _Transient(reason) from None
        if not chunk:
            break
        if state.have + len(chunk) > state.size:
            raise _UrlFailed(f"expected {state.size} bytes, server sent more", "integrity")
        f.write(chunk)
        digest.update(chunk)
        state.have += len(chunk)
        if flusher is not None:
            flusher.wrote(len(chunk))
        tick.update(len(chunk))
