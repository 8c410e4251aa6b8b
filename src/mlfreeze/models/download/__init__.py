"""Verified, resumable downloads: ``download(urls, partial, ...)`` fills ``partial`` with exactly
``size`` bytes whose sha256 is ``sha256``, trying the URLs in order, or raises
:class:`AllUrlsFailed` naming every URL and why.

The parts (modules of this package): urls (which URLs are allowed), retry (the Policy: timeouts, rate
floor, deadlines, backoff, the retry loop and the attempt watchdog, from mlfreeze_runtime.fetch_policy,
the one download policy the bundles' updater follows too), transfer (one HTTP attempt; the only
module importing requests), partial (the partial file and the source that served it).

- sha256 is computed while streaming (a resumed prefix is hashed once, from disk);
- a prefix is resumed only from the URL that served it (recorded beside the partial), with
  ``Range: bytes=N-`` and ``If-Range``; only a 206 whose Content-Range is
  ``bytes N-(size-1)/size`` is appended to; a 200 answer restarts from zero (never appends);
- connection errors, read timeouts, short bodies, 5xx and 429 are retried with exponential
  backoff and jitter (Retry-After honoured), bounded in count and in time; a transfer under the
  rate floor, a TLS certificate that does not verify, 4xx and wrong bytes are not; then the next URL;
- ``https://`` and ``file://`` (or a local path) are allowed; ``http://`` only for loopback
  hosts; redirects are followed by hand under the same rule.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlfreeze.errors import DownloadError
from mlfreeze.models.download.partial import Partial
from mlfreeze.models.download.retry import Policy, UrlFailed, policy_from_env, with_retries
from mlfreeze.models.download.transfer import http_attempt, session
from mlfreeze.models.download.urls import check_url, is_local, is_loopback

__all__ = ["AllUrlsFailed", "Attempt", "Policy", "check_url", "download", "is_local", "is_loopback", "policy_from_env"]


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """Why one URL failed. kind: unreachable | refused | http | tls | integrity | transient | slow | missing."""

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

    @property
    def missing(self) -> bool:
        """Every URL was a local file that does not exist."""
        return bool(self.attempts) and all(a.kind == "missing" for a in self.attempts)


def download(urls: Sequence[str], partial: Path, *, name: str, size: int, sha256: str,
             policy: Policy | None = None, progress: bool = True,
             log: Callable[[str], None] | None = None) -> str:
    """Fill ``partial`` with the pinned bytes from the first URL that has them; return that URL.

    ``progress``: a tqdm bar when stderr is a terminal; ``log`` gets retry notes.
    A partial file left by an earlier (killed or failed) run is resumed from the URL that
    served it; bytes that a URL got wrong are dropped. ``partial`` is never a cache entry: the
    caller publishes it.
    """
    policy = policy or policy_from_env()
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    attempts: list[Attempt] = []
    part = Partial(path=partial, size=size)
    partial.parent.mkdir(parents=True, exist_ok=True)
    part.sync()
    if part.have == size:  # a complete leftover: keep it if it is right
        if part.hasher.hexdigest() == sha256:
            part.forget_source()
            return "(a complete earlier download)"
        part.restart()
    file_name = Path(name).name
    with session() as s:
        for url in urls:
            for _ in range(2):  # a second go, from zero, only when a resumed prefix proved wrong
                resumed = part.resumable_from(url) is not None
                try:
                    check_url(url)
                    if is_local(url):
                        _copy_file(url, part, policy)
                    else:
                        def attempt(deadline: float, url_end: float, url: str = url) -> None:
                            http_attempt(s, url, part, policy, file_name=file_name, bar=name if progress else "",
                                         say=say, deadline=deadline, url_end=url_end)

                        with_retries(attempt, url=url, policy=policy, progress=lambda: part.have, say=say)
                    _check_digest(part, sha256, policy.fsync)
                    part.forget_source()
                    return url
                except UrlFailed as exc:
                    if exc.kind == "integrity" and exc.wrote:
                        part.restart()  # never resume from bytes that proved wrong
                        if resumed:
                            say(f"  {url}: {exc.reason} after resuming; downloading again from zero")
                            continue
                    attempts.append(Attempt(url=url, reason=exc.reason, kind=exc.kind))
                    break
    if partial.exists() and partial.stat().st_size == 0:
        partial.unlink()
        part.forget_source()
    # a non-empty prefix stays in tmp/ with its source: the next run resumes it from that URL only
    raise AllUrlsFailed(name, attempts)


def _check_digest(part: Partial, sha256: str, fsync: bool = True) -> None:
    if part.have != part.size:
        raise UrlFailed(f"expected {part.size} bytes, received {part.have}", "integrity")
    got = part.hasher.hexdigest()
    if got != sha256:
        raise UrlFailed(f"expected sha256 {sha256}, received {got} ({part.size} bytes)", "integrity")
    if fsync:
        with open(part.path, "rb+") as f:
            os.fsync(f.fileno())


def _copy_file(url: str, part: Partial, policy: Policy) -> None:
    parts = urlparse(url)
    source = Path(url2pathname(parts.path))
    if parts.netloc not in ("", "localhost"):
        raise UrlFailed(f"file URL with host {parts.netloc!r} refused", "refused", wrote=False)
    try:
        actual = source.stat().st_size
    except OSError as exc:
        raise UrlFailed(f"not found: {exc.strerror}", "missing", wrote=False) from None
    if actual != part.size:
        raise UrlFailed(f"expected {part.size} bytes, the file has {actual}", "integrity", wrote=False)
    try:
        src = open(source, "rb")  # noqa: SIM115 - closed below; only the source's errors are this URL's
    except OSError as exc:
        raise UrlFailed(f"cannot read {source}: {exc.strerror}", "missing", wrote=False) from None
    part.restart()
    with src, open(part.path, "wb") as dst:
        while True:
            try:
                chunk = src.read(policy.chunk_size)
            except OSError as exc:
                raise UrlFailed(f"cannot read {source}: {exc.strerror}", "missing") from None
            if not chunk:
                break
            dst.write(chunk)
            part.hasher.update(chunk)
            part.have += len(chunk)
