"""The updater's HTTP client against a real server on 127.0.0.1 (a thread of this process): how a
transfer that the download policy ends is reported."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fetch_servers import FaultServer, drip, serving

from mlfreeze_runtime.fetch_policy import Policy
from mlfreeze_runtime.update import http
from mlfreeze_runtime.update.errors import FetchError

pytestmark = pytest.mark.loopback

BODY = os.urandom(50_000)
# an attempt deadline far inside the read timeout and the rate window: the watchdog (which shuts
# the socket down, so the blocked read sees an orderly end) ends each attempt, never the socket's timeout
POLICY = Policy(attempt_deadline=0.8, rate_window=30.0, read_timeout=30.0, backoff=0.01, backoff_max=0.02,
                retries=1)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    yield from serving()


@pytest.mark.parametrize("fetch", ["file", "bytes"])
def test_a_drip_the_watchdog_ends_is_reported_as_too_slow_never_as_a_short_body(
        server: FaultServer, tmp_path: Path, fetch: str) -> None:
    url = server.add("/blob", BODY)
    server.plan("/blob", *[drip(rate=1 / 3)] * 4)  # headers, then one byte every 3 s
    with pytest.raises(FetchError) as caught:
        if fetch == "file":
            http.fetch_file(url, tmp_path / "blob", sha256=hashlib.sha256(BODY).hexdigest(), size=len(BODY),
                            policy=POLICY)
        else:
            http.fetch_bytes(url, policy=POLICY)
    text = str(caught.value)
    assert "ATTEMPT_DEADLINE" in text and "short body" not in text, text
    assert not (tmp_path / "blob").exists()
