"""The runtime's one HTTP chokepoint (urllib): streaming, resumable, verified downloads.

Every attempt follows mlfreeze's one download policy (:mod:`mlfreeze_runtime.fetch_policy`, the
same :class:`Policy`, retry loop and ``MLFREEZE_FETCH_*`` variables as the builder's downloader),
restated for the standard library so a bundle needs no ``requests``:

- sha256 and size are checked before a file is published (``os.replace`` from ``.part``);
- resume uses ``Range: bytes=N-`` and appends only to a 206 whose Content-Range starts at N;
  a 200 answer restarts from zero, and so does a 416 to a resume (the ``.part`` is emptied);
- headers must arrive within ``rate_window``, the body must move at ``min_rate`` over every
  ``rate_window`` (a :class:`~mlfreeze_runtime.fetch_policy.Watchdog` shuts a dripping
  connection down), attempts end at ``attempt_deadline`` and a URL at ``url_deadline``;
- connection errors, short bodies, 5xx and 429 are retried with exponential backoff and
  jitter, at most ``retries`` further attempts (``MLFREEZE_FETCH_RETRIES``), twice for a slow
  server; a TLS certificate that does not verify is reported as such (naming ``SSL_CERT_FILE``)
  and not retried; TLS trusts the machine's store (:mod:`mlfreeze_runtime.tls`);
- ``https://``, ``file://`` and local paths are allowed; ``http://`` only for loopback hosts,
  redirects included;
- a local write that fails (disk full, read-only) removes the ``.part`` and raises the OSError.

Byte ranges of packs (:func:`fetch_range`) ask ``Range: bytes=a-b`` and accept only a 206 whose
Content-Range is exactly ``a-b`` of a pack as long as the index says; resuming a blob asks from
``offset + bytes already in .part``. A 200 (a server that ignores Range and would send the whole
pack) raises :class:`RangeIgnored` without reading the body; the caller decides (``install``
downloads a small pack whole, once, and refuses a big one).

:func:`fetch_bytes` serves small documents (the index, TUF metadata through
``trust.Fetcher``); :func:`fetch_file` serves blobs. ``Counter`` tallies bytes received and
HTTP requests made.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlfreeze_runtime import record, tls
from mlfreeze_runtime.fetch_policy import (
    Policy,
    PolicyError,
    Transient,
    UrlFailed,
    Watchdog,
    retry_after,
    track,
    with_retries,
)
from mlfreeze_runtime.update.errors import FetchError, UsageError

__all__ = ["COUNTER", "Counter", "NotFound", "Policy", "RangeIgnored", "TlsFailure", "check_url", "fetch_bytes",
           "fetch_file", "fetch_range", "is_local", "join", "local_path", "env_policy"]

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
CHUNK = 1 << 20


@dataclass
class Counter:
    """Bytes received over the network (or copied from a local source) and HTTP requests made
    by this process."""

    bytes: int = 0
    requests: int = 0


COUNTER = Counter()


class NotFound(FetchError):
    """404/403/410 from a server, or a local file that does not exist (TUF reads it as "no newer root")."""


class RangeIgnored(FetchError):
    """The server answered a Range request with 200 (the whole resource); nothing was read."""


class TlsFailure(FetchError):
    """The server's certificate did not verify against the trusted CAs (not retried)."""


def env_policy() -> Policy:
    """The policy from ``MLFREEZE_FETCH_*``; UsageError (exit 2) naming a variable that is not a number."""
    try:
        return Policy.from_env()
    except PolicyError as exc:
        raise UsageError(str(exc)) from None


def is_local(source: str) -> bool:
    """True for a filesystem path or a file:// URL."""
    return "://" not in source or source.startswith("file://")


def local_path(source: str) -> Path:
    return Path(url2pathname(urlparse(source).path)) if source.startswith("file://") else Path(source)


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """UsageError unless ``url`` is https, file, a path, or http to a loopback host."""
    if is_local(url):
        return
    p = urlparse(url)
    if p.scheme == "https":
        return
    if p.scheme == "http":
        if _loopback(p.hostname or ""):
            return
        raise UsageError(f"{url}: plain http is allowed only for loopback hosts; use https")
    raise UsageError(f"{url}: unsupported scheme {p.scheme!r} (https, file or a local path)")


def join(base: str, rel: str) -> str:
    """``base`` (URL or directory) + a POSIX relative path."""
    if is_local(base):
        return str(local_path(base) / rel)
    return base.rstrip("/") + "/" + rel


# ---- urllib, with every socket under the attempt's watchdog ----
class _HTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        track(self.sock)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        track(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """HTTPS with the context of :func:`tls.ssl_context`, made on the first https request (so a
    CA variable naming nothing matters only when TLS is used: UsageError, exit 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.ctx: Any = None
        self.trusted = "(no TLS context yet)"

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if self.ctx is None:
            try:
                self.ctx, self.trusted = tls.ssl_context()
            except tls.CaConfigError as exc:
                raise UsageError(str(exc)) from None
        return self.do_open(_HTTPSConnection, req, context=self.ctx)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a URL this module may fetch (no https -> http downgrade)."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        p = urlparse(newurl)
        if p.scheme not in ("http", "https") or (p.scheme == "http" and not _loopback(p.hostname or "")):
            raise UrlFailed(f"redirected to {newurl}, which may not be fetched (https, or http on loopback only)",
                            "refused", wrote=False)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER: tuple[urllib.request.OpenerDirector, _HTTPSHandler] | None = None


def _opener() -> tuple[urllib.request.OpenerDirector, _HTTPSHandler]:
    """The process's opener (every socket under the attempt's watchdog) and its HTTPS handler."""
    global _OPENER
    if _OPENER is None:
        https = _HTTPSHandler()
        _OPENER = (urllib.request.build_opener(_HTTPHandler(), https, _Redirects()), https)
    return _OPENER


def _say(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def _get(url: str, headers: dict[str, str], pol: Policy, dog: Watchdog, url_end: float, *,
         on_416: Callable[[], Exception] | None = None) -> http.client.HTTPResponse:
    """The response to a GET of ``url``: Transient for what a retry may cure, UrlFailed else."""
    opener, https = _opener()
    req = urllib.request.Request(url, headers={"Accept-Encoding": "identity", "Connection": "close", **headers})
    COUNTER.requests += 1
    try:
        resp: http.client.HTTPResponse = opener.open(req, timeout=pol.idle_timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and on_416 is not None:
            raise on_416() from None
        if exc.code in (403, 404, 410):
            raise UrlFailed(f"HTTP {exc.code} {exc.reason}; check the release URL", "missing", wrote=False) from None
        if exc.code >= 500 or exc.code == 429:
            raise Transient(f"HTTP {exc.code}", retry_after=retry_after(exc.headers.get("Retry-After"))) from None
        raise UrlFailed(f"HTTP {exc.code} {exc.reason}; check the release URL", "http", wrote=False) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if dog.fired:
            raise dog.transient(pol, url_end, "no complete answer") from None
        if tls.is_tls_error(exc):
            raise UrlFailed(tls.failure(exc, url, https.trusted), "tls", wrote=False) from None
        reason = getattr(exc, "reason", exc)
        text = str(reason)
        if isinstance(reason, ConnectionRefusedError) or "refused" in text.lower():
            raise Transient("connection refused", unreachable=True) from None
        if "Name or service not known" in text or "resolution" in text or "getaddrinfo" in text:
            raise Transient(f"cannot resolve host ({text})", unreachable=True) from None
        if "timed out" in text.lower():
            raise Transient(f"no answer for {pol.idle_timeout:g}s", slow=True) from None
        raise Transient(f"connection error ({text or type(exc).__name__})") from None
    dog.body(lambda: 0)  # the headers are in; the caller re-arms the rate floor with its own count
    return resp


def _read(resp: http.client.HTTPResponse, dog: Watchdog, pol: Policy, url_end: float, where: str) -> bytes:
    """Whatever has arrived of the body (b"" at its end); Transient when the connection fails.

    A watchdog that fires shuts the socket down, and a read blocked on it may return b"" (an
    orderly end) instead of raising: that end is the watchdog's, not the server's."""
    try:
        chunk = resp.read1(CHUNK)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if dog.fired:
            raise dog.transient(pol, url_end, f"too slow: {where}") from None
        if "timed out" in str(exc).lower():
            raise Transient(f"no data for {pol.idle_timeout:g}s after {where}", slow=True) from None
        raise Transient(f"connection dropped after {where}") from None
    if not chunk and dog.fired:
        raise dog.transient(pol, url_end, f"too slow: {where}")
    return chunk


def _write(f: IO[bytes], chunk: bytes) -> None:
    """Write to a local file; a failure (disk full) is a LocalWrite, never retried as transient."""
    try:
        f.write(chunk)
    except OSError as exc:
        raise _LocalWrite(exc) from None


class _LocalWrite(Exception):
    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _run(where: str, pol: Policy, attempt: Callable[[float, float], None], progress: Callable[[], int],
         part: Path | None) -> None:
    """``attempt`` under the policy's retries; FetchError (NotFound, TlsFailure) when the URL is
    given up, the OSError of a local write (``part`` removed first) when the disk refuses."""
    try:
        with_retries(attempt, url=where, policy=pol, progress=progress, say=_say)
    except UrlFailed as exc:
        if exc.kind == "missing":
            raise NotFound(f"{where}: {exc.reason}") from None
        if exc.kind == "tls":
            raise TlsFailure(f"{where}: {exc.reason}") from None
        if exc.kind == "integrity" and part is not None:
            part.unlink(missing_ok=True)
        raise FetchError(f"{where}: {exc.reason}; try again later" if exc.kind in ("slow", "transient", "unreachable")
                         else f"{where}: {exc.reason}") from None
    except _LocalWrite as exc:
        if part is not None:
            part.unlink(missing_ok=True)
        raise exc.err from None


def check_content_range(header: str | None, first: int, last: int, total: int) -> str | None:
    """Why a 206's Content-Range is not ``bytes first-last/total`` (None when it is).

    Returns ``"total"`` when the server's resource has another length than ``total`` (the pack
    is not the one the index signed: not worth a retry), ``"range"`` for any other mismatch."""
    m = _CONTENT_RANGE.match(header or "")
    if not m:
        return "range"
    if m.group(3) != "*" and int(m.group(3)) != total:
        return "total"
    return None if (int(m.group(1)), int(m.group(2))) == (first, last) else "range"


def fetch_file(source: str, dest: Path, *, sha256: str, size: int, policy: Policy | None = None) -> Path:
    """Write ``source``'s bytes to ``dest`` when they are exactly ``size`` bytes with ``sha256``.

    Resumes from ``dest.part`` when one is left over; raises FetchError (exit 3) naming the URL
    once the policy gives it up (NotFound for 404/403/410, TlsFailure for a certificate that does
    not verify), or at once on a digest mismatch of a complete download (the ``.part`` is removed,
    so the next run starts clean). A local write that fails removes the ``.part`` and raises its OSError.
    """
    pol = policy or env_policy()
    part = dest.with_name(dest.name + ".part")
    if is_local(source):
        path = local_path(source)
        if not path.is_file():
            raise NotFound(f"{path}: missing from the release directory")
        try:
            shutil.copyfile(path, part)
        except OSError:
            part.unlink(missing_ok=True)
            raise
        COUNTER.bytes += size
        return _publish(source, part, dest, sha256, size)
    check_url(source)

    def restart() -> Transient:
        part.unlink(missing_ok=True)
        return Transient("HTTP 416 for the resume range; restarting from zero")

    def attempt(deadline: float, url_end: float) -> None:
        start = _size(part)
        if start > size:
            part.unlink()
            start = 0
        if start == size:
            return
        with Watchdog(deadline, pol) as dog:
            resp = _get(source, {"Range": f"bytes={start}-"} if start else {}, pol, dog, url_end,
                        on_416=restart if start else None)
            with contextlib.closing(resp):
                appended = False
                if start and resp.status == 206:
                    m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != start or m.group(3) not in ("*", str(size)):
                        part.unlink(missing_ok=True)
                        raise Transient(f"Content-Range {resp.headers.get('Content-Range')!r} does not continue "
                                        f"byte {start} of {size}; restarting from zero")
                    appended = True
                elif resp.status != 200:
                    raise UrlFailed(f"HTTP {resp.status} to a GET", "http", wrote=False)
                with open(part, "ab" if appended else "wb") as f:
                    have = start if appended else 0
                    dog.body(lambda: have, size)
                    while chunk := _read(resp, dog, pol, url_end, f"{have} of {size} bytes"):
                        if have + len(chunk) > size:
                            raise UrlFailed(f"more than the {size} bytes the release says", "integrity")
                        _write(f, chunk)
                        have += len(chunk)
                        COUNTER.bytes += len(chunk)
        if _size(part) != size:
            raise Transient(f"short body: {_size(part)} of {size} bytes")

    _run(source, pol, attempt, lambda: _size(part), part)
    return _publish(source, part, dest, sha256, size)


def fetch_range(source: str, dest: Path, *, offset: int, sha256: str | None, size: int, total: int,
                policy: Policy | None = None, count: bool = True) -> Path:
    """Write bytes ``offset`` .. ``offset + size - 1`` of ``source`` (a pack of ``total`` bytes) to
    ``dest`` when they are ``size`` bytes with ``sha256`` (None: a run of several blobs, whose
    digests the caller checks when it splits the run).

    A local pack is read directly (FetchError when it is not ``total`` bytes long). Over HTTP:
    ``Range: bytes=a-b``, resumed from ``dest.part`` (``a = offset + bytes already there``),
    retried under the policy as :func:`fetch_file`. Only a 206 whose Content-Range is exactly
    ``a-b/total`` is accepted; another total is a damaged release (FetchError, no retry); a 416 to
    a resumed range empties the ``.part`` and asks again from ``offset``, a 416 to the whole range
    is a damaged release; a 200 raises :class:`RangeIgnored` before reading the body. ``size``
    must be > 0. ``count=False``: a local read that is not a download (a slice of a run or of a
    pack already fetched whole) is left out of :data:`COUNTER`.
    """
    pol = policy or env_policy()
    part = dest.with_name(dest.name + ".part")
    last = offset + size - 1
    if is_local(source):
        path = local_path(source)
        try:
            with open(path, "rb") as f:
                have = os.fstat(f.fileno()).st_size
                if have != total:
                    raise FetchError(f"{path}: {have} bytes, the release index says {total}; the pack is damaged "
                                     "or not the signed one: not installed")
                f.seek(offset)
                with open(part, "wb") as out:
                    out.write(f.read(size))
        except FileNotFoundError:
            raise NotFound(f"{path}: missing from the release directory") from None
        except OSError:
            part.unlink(missing_ok=True)
            raise
        COUNTER.bytes += size if count else 0
        return _publish(f"{source} bytes {offset}-{last}", part, dest, sha256, size)
    check_url(source)
    where = f"{source} bytes {offset}-{last}"

    def attempt(deadline: float, url_end: float) -> None:
        have = _size(part)
        if have > size:
            part.unlink()
            have = 0
        if have == size:
            return
        first = offset + have

        def on_416() -> Exception:
            if have:
                part.unlink(missing_ok=True)
                return Transient("HTTP 416 for the resume range; restarting from zero")
            return UrlFailed(f"range not satisfiable (HTTP 416): the pack is shorter than the {total} bytes the "
                             "release index says; damaged: not installed", "integrity", wrote=False)

        with Watchdog(deadline, pol) as dog:
            resp = _get(source, {"Range": f"bytes={first}-{last}"}, pol, dog, url_end, on_416=on_416)
            with contextlib.closing(resp):
                if resp.status != 206:
                    raise _Ignored(f"{source}: HTTP {resp.status} to a Range request (the server ignores Range)")
                why = check_content_range(resp.headers.get("Content-Range"), first, last, total)
                if why is not None:
                    got = resp.headers.get("Content-Range")
                    if why == "total":
                        raise UrlFailed(f"the server's pack is {got!r}, the release index says {total} bytes; "
                                        "the pack is damaged or not the signed one: not installed", "integrity",
                                        wrote=False)
                    raise Transient(f"206 with Content-Range {got!r}, asked bytes {first}-{last}")
                with open(part, "ab") as f:
                    dog.body(lambda: have, size)
                    while chunk := _read(resp, dog, pol, url_end, f"{have} of {size} bytes"):
                        if have + len(chunk) > size:
                            raise Transient(f"more bytes than the {last - first + 1} asked")
                        _write(f, chunk)
                        have += len(chunk)
                        COUNTER.bytes += len(chunk)
        if _size(part) != size:
            raise Transient(f"got {_size(part)} of {size} bytes")

    try:
        _run(where, pol, attempt, lambda: _size(part), part)
    except _Ignored as exc:
        raise RangeIgnored(str(exc)) from None
    return _publish(where, part, dest, sha256, size)


class _Ignored(Exception):
    """A 200 to a Range request (not retried; the caller may fetch the whole pack)."""


def _publish(source: str, part: Path, dest: Path, sha256: str | None, size: int) -> Path:
    digest, n = record.hash_file(part)
    if n != size or (sha256 is not None and digest != sha256):
        part.unlink(missing_ok=True)
        raise FetchError(f"{source}: {n} bytes with sha256 {digest[:16]}..., the release says {size} "
                         f"bytes {(sha256 or '(any)')[:16]}...; the release is damaged or tampered: not installed")
    os.replace(part, dest)
    return dest


def fetch_bytes(source: str, *, max_bytes: int = 64 << 20, policy: Policy | None = None) -> bytes:
    """A small document (index, metadata) whole, under the same policy as a blob (a server that
    drips it is given up within :meth:`Policy.slow_bound`); NotFound when missing, FetchError
    when given up or over ``max_bytes``."""
    pol = policy or env_policy()
    if is_local(source):
        path = local_path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path}: missing") from None
        except OSError as exc:
            raise FetchError(f"{path}: cannot read ({exc.strerror})") from None
        COUNTER.bytes += len(data)
        return data
    check_url(source)
    out = bytearray()

    def attempt(deadline: float, url_end: float) -> None:
        out.clear()
        with Watchdog(deadline, pol) as dog:
            resp = _get(source, {}, pol, dog, url_end)
            with contextlib.closing(resp):
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > max_bytes:
                    raise UrlFailed(f"{length} bytes, larger than {max_bytes}; refused", "integrity", wrote=False)
                dog.body(lambda: len(out), int(length) if length and length.isdigit() else None)
                while chunk := _read(resp, dog, pol, url_end, f"{len(out)} bytes"):
                    out.extend(chunk)
                    if len(out) > max_bytes:
                        raise UrlFailed(f"larger than {max_bytes} bytes; refused", "integrity", wrote=False)
                if length is not None and length.isdigit() and len(out) != int(length):
                    raise Transient(f"short body: {len(out)} of {length} bytes")

    _run(source, pol, attempt, lambda: len(out), None)
    COUNTER.bytes += len(out)
    return bytes(out)
