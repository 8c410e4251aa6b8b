"""Which URLs the downloader may fetch: https anywhere, http only on loopback, file:// locally."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

from mlfreeze.models.download.retry import UrlFailed


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_local(url: str) -> bool:
    """A URL read from this machine's file system (no network): ``file://``."""
    return urlparse(url).scheme == "file"


def check_url(url: str, *, allow_file: bool = True) -> None:
    """Refuse what may not be fetched: plain http to a non-loopback host, unknown schemes.

    Raises UrlFailed (kind ``refused``)."""
    parts = urlparse(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http":
        if is_loopback(parts.hostname):
            return
        raise UrlFailed(f"plain http:// refused for non-loopback host {parts.hostname}; use https", "refused")
    if parts.scheme == "file" and allow_file:
        return
    raise UrlFailed(f"scheme {parts.scheme or '(none)'!r} refused", "refused")
