"""One HTTP attempt into a partial file: the only module importing requests.

``session()`` makes a requests Session whose sockets a per-attempt watchdog can shut down, so
the attempt deadline holds while headers or body trickle in. ``http_attempt`` sends
``Range``/``If-Range`` when the partial came from the same URL, checks the answer (status,
Content-Range, Content-Length, Content-Type, Content-Encoding) and streams the body into the
partial with reads that return whatever has arrived, checking the transfer rate over
``Policy.rate_window`` and the deadline after every read. Failures are Transient (retry) or
UrlFailed (next URL), both from src/mlfreeze/models/download/retry.py.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import urljoin, urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from mlfreeze.models.download.partial import BackgroundHash, Partial, Source, Writeback
from mlfreeze.models.download.retry import Policy, Transient, UrlFailed, Watchdog, retry_after, track
from mlfreeze.models.download.urls import check_url, is_loopback

_REDIRECTS = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
CA_ENV = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


# ---- sockets the attempt's watchdog (mlfreeze_runtime.fetch_policy.Watchdog) can shut down ----
class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return track(super()._new_conn())


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return track(super()._new_conn())


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def session() -> requests.Session:
    """A Session for one download: no connection reuse between attempts (each is watched)."""
    s = requests.Session()
    adapter = _Adapter(max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def ca_bundle() -> str | bool:
    """``verify=`` for requests: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE, else certifi's bundle."""
    for name in CA_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return True


# ---- progress ----
def _columns() -> int:
    cols = shutil.get_terminal_size(fallback=(100, 24)).columns
    return cols if cols > 20 else 100


class _Bar:
    """tqdm with size, rate and ETA on a terminal; silent otherwise (the caller logs one line)."""

    def __init__(self, name: str, total: int, initial: int) -> None:
        self._bar = None
        if name and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=name, file=sys.stderr, leave=False, ncols=_columns())

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ---- one attempt ----
def _rate(n: int, seconds: float) -> str:
    return f"{n / max(seconds, 1e-6):,.1f} B/s"


def _tls_reason(exc: Exception, url: str) -> str | None:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" not in text and "certificate verify failed" not in text \
            and "doesn't match" not in text and "Hostname mismatch" not in text:
        return None
    m = re.search(r"certificate verify failed: ([^(')\]]+)", text)
    detail = m.group(1).strip() if m else "hostname mismatch" if "match" in text else "verify failed"
    return (f"the TLS certificate of {urlparse(url).hostname} could not be verified ({detail}); not retried. "
            f"For a private mirror or a TLS-inspecting proxy set REQUESTS_CA_BUNDLE or SSL_CERT_FILE to its "
            f"CA bundle (PEM)")


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
        return "no answer (read timeout)", False
    return f"connection error ({type(exc).__name__})", False


def _deadline_hit(dog: Watchdog, url_end: float, policy: Policy, what: str) -> Transient:
    return dog.transient(policy, url_end, what)


def _proxies(url: str) -> dict[str, Any] | None:
    """Never send a loopback request through an HTTP(S)_PROXY from the environment."""
    return _NO_PROXY if is_loopback(urlparse(url).hostname) else None


_NO_PROXY: dict[str, Any] = {"http": None, "https": None, "all": None}


def _open(s: requests.Session, url: str, headers: dict[str, str], policy: Policy, dog: Watchdog,
          url_end: float) -> requests.Response:
    current = url
    seen = {url}
    for _ in range(policy.max_redirects + 1):
        try:
            resp = s.get(current, headers=headers, stream=True, allow_redirects=False, verify=ca_bundle(),
                         timeout=(policy.connect_timeout, policy.idle_timeout), proxies=_proxies(current))
        except requests.exceptions.SSLError as exc:
            if dog.fired:
                raise _deadline_hit(dog, url_end, policy, "no complete answer") from None
            reason = _tls_reason(exc, current)
            if reason is not None:
                raise UrlFailed(reason, "tls", wrote=False) from None
            raise Transient(f"TLS error ({exc.__class__.__name__})") from None
        except requests.RequestException as exc:
            if dog.fired:
                raise _deadline_hit(dog, url_end, policy, "no complete answer") from None
            reason, unreachable = _connection_reason(exc)
            raise Transient(reason, unreachable=unreachable) from None
        if resp.status_code not in _REDIRECTS:
            return resp
        location = resp.headers.get("Location")
        resp.close()
        if not location:
            raise UrlFailed(f"HTTP {resp.status_code} without Location", "http", wrote=False)
        target = urljoin(current, location)
        try:
            check_url(target, allow_file=False)
        except UrlFailed as exc:
            raise UrlFailed(f"redirect to {target} refused: {exc.reason}", "refused", wrote=False) from None
        if target in seen:
            raise UrlFailed(f"redirect loop ({current} -> {target})", "http", wrote=False)
        seen.add(target)
        current = target
    raise UrlFailed(f"more than {policy.max_redirects} redirects", "http", wrote=False)


def _encoding(resp: requests.Response) -> str | None:
    value = resp.headers.get("Content-Encoding", "").strip().lower()
    return value if value and value != "identity" else None


def _encoding_note(encoding: str | None) -> str:
    if not encoding:
        return ""
    return (f" (the server sent Content-Encoding: {encoding} although identity was asked for: those are "
            f"compressed bytes, not the file; use another mirror or turn its compression off)")


def http_attempt(s: requests.Session, url: str, part: Partial, policy: Policy, *, file_name: str,
                 bar: str, say: Callable[[str], None], deadline: float, url_end: float) -> None:
    """One GET of ``url`` into ``part``, resuming only what ``url`` itself served."""
    part.sync()
    src = part.resumable_from(url)
    headers = {"Accept-Encoding": "identity", "Connection": "close"}
    if src is not None:
        headers["Range"] = f"bytes={part.have}-"
        if src.if_range:
            headers["If-Range"] = src.if_range
    with Watchdog(deadline, policy) as dog:
        resp = _open(s, url, headers, policy, dog, url_end)
        with resp:
            if dog.fired:  # headers cut short by the deadline can parse as a (wrong) answer
                raise _deadline_hit(dog, url_end, policy, "no complete answer")
            _answer(resp, url, part, src, policy, file_name=file_name, bar=bar, say=say, dog=dog,
                    deadline=deadline, url_end=url_end)


def _answer(resp: requests.Response, url: str, part: Partial, src: Source | None, policy: Policy, *,
            file_name: str, bar: str, say: Callable[[str], None], dog: Watchdog, deadline: float,
            url_end: float) -> None:
    status = resp.status_code
    encoding = _encoding(resp)
    if status == 429 or status >= 500:
        raise Transient(f"HTTP {status}", retry_after=retry_after(resp.headers.get("Retry-After")))
    if status == 416:
        part.restart()
        raise Transient("HTTP 416 for the resume range; restarting from zero")
    fresh = Source(url=url, etag=resp.headers.get("ETag"), last_modified=resp.headers.get("Last-Modified"))
    if status == 206 and src is not None:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        want = (part.have, part.size - 1, str(part.size))
        if not m or (int(m.group(1)), int(m.group(2)), m.group(3)) != want:
            part.restart()
            raise Transient(f"Content-Range {resp.headers.get('Content-Range')!r} does not continue "
                            f"byte {want[0]}; restarting from zero")
        if src.etag and fresh.etag and fresh.etag != src.etag:
            part.restart()
            raise Transient(f"ETag changed from {src.etag} to {fresh.etag}; restarting from zero")
        mode = "ab"
    elif status == 200:
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) != part.size:
            raise UrlFailed(f"expected {part.size} bytes, server announces {length}{_encoding_note(encoding)}",
                            "integrity", wrote=False)
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "text/html" and length is None and not file_name.lower().endswith((".html", ".htm")):
            raise UrlFailed("answered HTTP 200 with an HTML page (Content-Type text/html, no length), not the "
                            "file: a login, error or rate-limit page?", "http", wrote=False)
        if part.have:
            if src is not None:
                say(f"  {url}: the file changed or the server ignored the Range request; restarting from zero")
            part.restart()
        mode = "wb"
    else:
        raise UrlFailed(f"HTTP {status}", "http", wrote=False)
    if encoding:
        part.forget_source()  # encoded bytes are never a resume point
    elif mode == "wb" or fresh.etag or fresh.last_modified:
        part.record_source(fresh)
    _stream(resp, part, mode, policy, bar=bar, dog=dog, deadline=deadline, url_end=url_end, encoding=encoding)


def _stream(resp: requests.Response, part: Partial, mode: str, policy: Policy, *, bar: str, dog: Watchdog,
            deadline: float, url_end: float, encoding: str | None) -> None:
    tick = _Bar(bar, part.size, part.have)
    dog.body(lambda: part.have, part.size)
    digest = BackgroundHash(part.hasher)
    try:
        with open(part.path, mode, buffering=0) as f:  # unbuffered: a kill keeps every byte received
            flusher = Writeback(f.fileno()) if policy.fsync else None
            try:
                _receive(resp.raw, f, part, digest, flusher, tick, policy, dog=dog, deadline=deadline,
                         url_end=url_end, encoding=encoding)
            finally:
                if flusher is not None:
                    flusher.close()
    finally:
        digest.close()  # after this, part.hasher covers exactly the part.have bytes written
        tick.close()
    if part.have < part.size:
        if encoding:
            raise UrlFailed(f"expected {part.size} bytes, received {part.have}{_encoding_note(encoding)}",
                            "integrity")
        raise Transient(f"short body: {part.have} of {part.size} bytes")


def _write_all(f: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        view = view[n or 0:]


def _receive(raw: Any, f: IO[bytes], part: Partial, digest: BackgroundHash, flusher: Writeback | None,
             tick: _Bar, policy: Policy, *, dog: Watchdog, deadline: float, url_end: float,
             encoding: str | None) -> None:
    began = window = time.monotonic()
    start_have = window_have = part.have
    while True:
        try:
            chunk = raw.read1(policy.chunk_size, decode_content=False)  # whatever has arrived, not a full chunk
        except Exception as exc:  # urllib3 ProtocolError / ReadTimeoutError / IncompleteRead
            if part.have == part.size:
                break  # every byte is in; a deadline that fired on the way out changes nothing
            got = part.have - start_have
            took = time.monotonic() - began
            where = f"{got} bytes this attempt in {took:.0f}s ({_rate(got, took)}), {part.have} of {part.size}"
            text = repr(exc)
            if dog.fired:
                raise _deadline_hit(dog, url_end, policy, f"too slow: {where}") from None
            if "timed out" in text.lower():
                raise Transient(f"no data for {policy.idle_timeout:g}s after {where}", slow=True) from None
            if "IncompleteRead" in text:
                raise Transient(f"short body: {part.have} of {part.size} bytes") from None
            raise Transient(f"connection dropped after {part.have} of {part.size} bytes") from None
        if not chunk:
            if dog.fired and part.have < part.size:
                got, took = part.have - start_have, time.monotonic() - began
                raise _deadline_hit(dog, url_end, policy, f"too slow: {got} bytes this attempt in {took:.0f}s "
                                    f"({_rate(got, took)}), {part.have} of {part.size}")
            break
        if part.have + len(chunk) > part.size:
            raise UrlFailed(f"expected {part.size} bytes, server sent more{_encoding_note(encoding)}", "integrity")
        _write_all(f, chunk)
        digest.update(chunk)
        part.have += len(chunk)
        if flusher is not None:
            flusher.wrote(len(chunk))
        tick.update(len(chunk))
        now = time.monotonic()
        if now >= deadline and part.have < part.size:
            got = part.have - start_have
            raise _deadline_hit(dog, url_end, policy, f"too slow: {got} bytes this attempt in {now - began:.0f}s "
                                f"({_rate(got, now - began)}), {part.have} of {part.size}")
        if now - window >= policy.rate_window:
            moved = part.have - window_have
            if moved / (now - window) < policy.min_rate:
                raise Transient(f"too slow: {moved} bytes in the last {now - window:.0f}s ({_rate(moved, now - window)}"
                                f", under MLFREEZE_FETCH_MIN_RATE {policy.min_rate:g} B/s); {part.have} of "
                                f"{part.size} bytes received", slow=True)
            window, window_have = now, part.have
