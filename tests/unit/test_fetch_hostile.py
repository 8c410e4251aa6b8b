"""Servers that drip, lie about TLS, change the file under a resume, compress, loop or answer
with an HTML page: real servers on 127.0.0.1 (threads, ``loopback`` tier). Every case ends with
the pinned bytes, or exit 3 in bounded time with one line that names the cause, and nothing
wrong in the cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from fetch_servers import (
    FaultServer,
    drip,
    drop_after,
    gzip_body,
    gzip_body_no_length,
    html_page,
    redirect,
    write_manifest,
)

from mlfreeze.errors import DownloadError, IntegrityError
from mlfreeze.models.download import AllUrlsFailed, Policy, download
from mlfreeze.models.download.retry import SLOW_RETRIES
from mlfreeze.models.fetch import fetch_set
from mlfreeze.models.manifest import load_manifest

pytestmark = pytest.mark.loopback

FAST = Policy(connect_timeout=2.0, read_timeout=5.0, min_rate=200.0, rate_window=0.6, retries=3, backoff=0.01,
              backoff_max=0.05, retry_after_max=5.0, attempt_deadline=20.0, url_deadline=20.0,
              chunk_size=64 * 1024)
BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


def _fetch(tmp_path: Path, urls: list[str], policy: Policy = FAST, body: bytes = BODY, file: str = "w.bin"):
    art = {"file": file, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "urls": urls}
    manifest = load_manifest(write_manifest(tmp_path / "models.toml", [art]))
    return fetch_set(manifest, "t", cache_dir=tmp_path / "cache", policy=policy, progress=False)


def _ok(tmp_path: Path, urls: list[str], policy: Policy = FAST) -> None:
    path = _fetch(tmp_path, urls, policy)["m"].files["w.bin"]
    assert path.read_bytes() == BODY
    assert not list((tmp_path / "cache" / "tmp").iterdir())  # no partial, no source record left


def _fails(tmp_path: Path, urls: list[str], policy: Policy = FAST, exc: type[DownloadError] = DownloadError,
           body: bytes = BODY) -> str:
    with pytest.raises(exc) as info:
        _fetch(tmp_path, urls, policy, body)
    assert info.value.exit_code == 3 and "\n" not in info.value.message
    assert not list((tmp_path / "cache" / "blobs").iterdir())  # nothing cached
    return info.value.message


# ---- drip: the rate floor, the attempt deadline, the URL deadline ----
def test_drip_under_the_rate_floor_fails_bounded_and_says_bytes_and_rate(server: FaultServer,
                                                                          tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[drip(rate=50)] * 5)  # 50 B/s < FAST.min_rate
    start = time.monotonic()
    msg = _fails(tmp_path, [url])
    took = time.monotonic() - start
    assert took < (1 + SLOW_RETRIES) * FAST.rate_window + 3
    assert len(server.requests_for("/w")) == 1 + SLOW_RETRIES  # not FAST.retries + 1
    m = re.search(r"too slow: (\d+) bytes in the last (\d+)s \(([\d.]+) B/s, under MLFREEZE_FETCH_MIN_RATE 200 "
                  r"B/s\); (\d+) of 300000 bytes received \(gave up after 2 attempts\)", msg)
    assert m, msg
    got = int(m.group(1))
    assert 10 <= got <= 60 and 10 <= float(m.group(3)) <= 100  # every byte read counts, none held back
    assert int(m.group(4)) == got  # the drip ignores Range: the second attempt restarted from zero
    assert url in msg


def test_drip_is_bounded_by_the_url_deadline_inside_an_attempt(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[drip(rate=50)] * 5)
    policy = dataclasses.replace(FAST, min_rate=0.0, url_deadline=1.5, read_timeout=5.0)  # no rate floor
    start = time.monotonic()
    msg = _fails(tmp_path, [url], policy)
    assert time.monotonic() - start < 3.5
    assert "MLFREEZE_FETCH_URL_DEADLINE 1.5s reached" in msg
    m = re.search(r"too slow: (\d+) bytes this attempt in \d+s \(([\d.]+) B/s\)", msg)
    assert m and 30 <= int(m.group(1)) <= 100, msg
    assert len(server.requests_for("/w")) == 1


def test_drip_of_the_headers_is_bounded_too(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[drip(rate=50, headers_too=True)] * 5)
    policy = dataclasses.replace(FAST, attempt_deadline=0.8, url_deadline=2.0)
    start = time.monotonic()
    msg = _fails(tmp_path, [url], policy)
    assert time.monotonic() - start < 4
    assert "no complete answer" in msg and "MLFREEZE_FETCH_" in msg


def test_attempt_deadline_is_retried_and_a_good_answer_then_wins(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", drip(rate=1000, headers_too=True))  # fast enough for the floor, too slow for the deadline
    policy = dataclasses.replace(FAST, min_rate=0.0, attempt_deadline=0.7, url_deadline=10.0)
    _ok(tmp_path, [url], policy)
    assert len(server.requests_for("/w")) == 2


def test_drip_moves_on_to_the_next_mirror(server: FaultServer, tmp_path: Path) -> None:
    slow = server.add("/slow", BODY)
    server.plan("/slow", *[drip(rate=50)] * 5)
    good = server.add("/good", BODY)
    _ok(tmp_path, [slow, good])
    assert server.requests_for("/good")[0].range is None  # the slow mirror's bytes are not resumed here


def test_slow_but_steady_is_not_a_drip(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.rate = 400_000  # ~0.75 s for the file, well above the floor
    _ok(tmp_path, [url])
    assert len(server.requests_for("/w")) == 1


# ---- TLS ----
def test_self_signed_certificate_fails_at_once_naming_the_ca_variables(tls_server: FaultServer, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    url = tls_server.add("/w", BODY)
    start = time.monotonic()
    msg = _fails(tmp_path, [url])
    assert time.monotonic() - start < 2
    assert "TLS certificate of 127.0.0.1 could not be verified" in msg and "not retried" in msg
    assert "REQUESTS_CA_BUNDLE" in msg and "SSL_CERT_FILE" in msg
    assert "retry" not in capsys.readouterr().err  # no "retry 1/5" lines
    assert tls_server.log == []  # the handshake failed: no request was ever sent


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_a_ca_bundle_variable_makes_the_private_mirror_work(tls_server: FaultServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tls_server.cert_file))
    url = tls_server.add("/w", BODY)
    assert url.startswith("https://127.0.0.1:")
    _ok(tmp_path, [url])


# ---- resume only what the same source served ----
def _interrupted_run(server: FaultServer, url: str, path: str, tmp_path: Path, keep: int = 100_000) -> Path:
    """A first run cut after ``keep`` bytes (no retries): its prefix and source stay in tmp/."""
    server.plan(path, drop_after(keep))
    with pytest.raises(DownloadError):
        _fetch(tmp_path, [url], dataclasses.replace(FAST, retries=0))
    part = tmp_path / "cache" / "tmp" / f"{SHA}.part"
    assert 0 < part.stat().st_size <= keep
    return part


def test_source_is_recorded_beside_the_partial_and_resumed_with_if_range(server: FaultServer,
                                                                          tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    part = _interrupted_run(server, url, "/w", tmp_path)
    record = json.loads((part.parent / f"{SHA}.part.source").read_text())
    assert record == {"url": url, "etag": server.etag("/w"), "last_modified": None}
    have = part.stat().st_size
    _ok(tmp_path, [url])
    second = server.requests_for("/w")[1]
    assert (second.range, second.if_range, second.status) == (f"bytes={have}-", server.etag("/w"), 206)
    assert second.sent == len(BODY) - have


def test_bytes_from_one_url_never_start_another(server: FaultServer, tmp_path: Path) -> None:
    a = server.add("/a", BODY)
    b = server.add("/b", BODY)
    _interrupted_run(server, a, "/a", tmp_path)
    _ok(tmp_path, [b, a])
    assert [(r.range, r.status) for r in server.requests_for("/b")] == [(None, 200)]
    assert server.sent_for("/b") == len(BODY)
    assert len(server.requests_for("/a")) == 1  # only the interrupted run


def test_a_changed_file_restarts_instead_of_splicing(server: FaultServer, tmp_path: Path) -> None:
    old = os.urandom(len(BODY))  # what the mirror served before it was updated
    url = server.add("/w", old)
    _interrupted_run(server, url, "/w", tmp_path)
    server.add("/w", BODY)  # now the pinned file, under a new ETag
    _ok(tmp_path, [url])
    second = server.requests_for("/w")[1]
    assert second.if_range is not None and second.if_range != server.etag("/w")
    assert (second.status, second.sent) == (200, len(BODY))  # the whole file, once: no splice, no second go
    assert len(server.requests_for("/w")) == 2


def test_html_error_page_with_200_is_refused_and_never_resumed_from(server: FaultServer, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    bad = server.add("/bad", BODY)
    server.plan("/bad", *[html_page] * 10)
    good = server.add("/good", BODY)
    _ok(tmp_path, [bad, good])
    assert len(server.requests_for("/bad")) == 1  # not retried
    assert [(r.range, r.sent) for r in server.requests_for("/good")] == [(None, len(BODY))]
    (tmp_path / "again").mkdir()
    msg = _fails(tmp_path / "again", [bad])
    assert "HTML page" in msg and "text/html" in msg


def _error_page_then_drop(h, body: bytes) -> None:  # type: ignore[no-untyped-def]
    """A 200 announcing the right length (Range ignored), 25 bytes of an error page, a reset."""
    h.head(200, len(body))
    h.write(b"<html>503 error</html>   ")
    h.reset()


def test_mirror_that_drops_after_a_few_bytes_does_not_seed_the_next(server: FaultServer, tmp_path: Path) -> None:
    bad = server.add("/bad", BODY)
    server.plan("/bad", *[_error_page_then_drop] * 10)
    good = server.add("/good", BODY)
    _ok(tmp_path, [bad, good])
    assert len(server.requests_for("/bad")) == FAST.retries + 1  # no progress: the retries are used up
    assert [r.range for r in server.requests_for("/good")] == [None]
    assert server.sent_for("/good") == len(BODY)  # 1x the bytes, not 2x


# ---- Content-Encoding ----
def test_gzip_with_length_names_the_encoding(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[gzip_body] * 5)
    msg = _fails(tmp_path, [url], exc=IntegrityError)
    assert "server announces" in msg and "Content-Encoding: gzip" in msg
    assert len(server.requests_for("/w")) == 1


def test_gzip_without_length_names_the_encoding_and_is_not_retried(server: FaultServer, tmp_path: Path) -> None:
    body = b"compressible " * 20_000
    url = server.add("/w", body)
    server.plan("/w", *[gzip_body_no_length] * 5)
    msg = _fails(tmp_path, [url], exc=IntegrityError, body=body)
    assert f"expected {len(body)} bytes, received " in msg and "Content-Encoding: gzip" in msg
    assert len(server.requests_for("/w")) == 1
    assert not (tmp_path / "cache" / "tmp" / f"{hashlib.sha256(body).hexdigest()}.part.source").exists()


def test_identity_is_asked_for(server: FaultServer, tmp_path: Path) -> None:
    seen: list[str | None] = []
    url = server.add("/w", BODY)

    def spy(h, body: bytes) -> None:  # type: ignore[no-untyped-def]
        seen.append(h.headers.get("Accept-Encoding"))
        from fetch_servers import serve

        serve(h, body)
    server.plan("/w", spy)
    _ok(tmp_path, [url])
    assert seen == ["identity"]


# ---- redirects ----
def test_redirect_to_itself_is_a_loop(server: FaultServer, tmp_path: Path) -> None:
    server.add("/w", BODY)
    server.plan("/w", *[redirect("/w")] * 10)
    msg = _fails(tmp_path, [server.url("/w")])
    assert "redirect loop" in msg
    assert len(server.requests_for("/w")) == 1  # seen before it is asked for again


def test_two_hop_redirect_loop(server: FaultServer, tmp_path: Path) -> None:
    server.add("/a", BODY)
    server.add("/b", BODY)
    server.plan("/a", *[redirect("/b")] * 10)
    server.plan("/b", *[redirect("/a")] * 10)
    msg = _fails(tmp_path, [server.url("/a")])
    assert "redirect loop" in msg and len(server.log) == 2


def test_redirect_chain_longer_than_the_limit(server: FaultServer, tmp_path: Path) -> None:
    for i in range(10):
        server.add(f"/r{i}", BODY)
        server.plan(f"/r{i}", redirect(f"/r{i + 1}"))
    msg = _fails(tmp_path, [server.url("/r0")])
    assert f"more than {FAST.max_redirects} redirects" in msg
    assert len(server.log) == FAST.max_redirects + 1


# ---- the download() API keeps a prefix only with its source ----
def test_a_failed_url_keeps_its_prefix_and_source_for_the_next_run(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", drop_after(50_000))
    part = tmp_path / "w.part"
    with pytest.raises(AllUrlsFailed):
        download([url], part, name="w", size=len(BODY), sha256=SHA, policy=dataclasses.replace(FAST, retries=0),
                 progress=False, log=lambda _m: None)
    assert 0 < part.stat().st_size <= 50_000
    assert json.loads((tmp_path / "w.part.source").read_text())["url"] == url
    assert download([url], part, name="w", size=len(BODY), sha256=SHA, policy=FAST, progress=False) == url
    assert part.read_bytes() == BODY and not (tmp_path / "w.part.source").exists()


def test_an_unreadable_source_record_means_no_resume(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    part = _interrupted_run(server, url, "/w", tmp_path)
    (part.parent / f"{SHA}.part.source").write_text("{not json")
    _ok(tmp_path, [url])
    assert [(r.range, r.status) for r in server.requests_for("/w")][1:] == [(None, 200)]


def _endless(h, body: bytes) -> None:  # type: ignore[no-untyped-def]
    """A 200 without a length that sends more than the pinned size."""
    h.head(200, 0, {"Content-Length": ""})
    h.write(body + body)


def test_a_body_longer_than_pinned_is_cut_off_and_refused(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[_endless] * 5)
    msg = _fails(tmp_path, [url], exc=IntegrityError)
    assert f"expected {len(BODY)} bytes, server sent more" in msg
    assert len(server.requests_for("/w")) == 1


def _cut_from_zero(n: int):  # type: ignore[no-untyped-def]
    """A 200 that ignores Range, announces the whole body, sends ``n`` bytes, resets."""
    def fault(h, body: bytes) -> None:  # type: ignore[no-untyped-def]
        h.head(200, len(body))
        h.write(body[:n])
        h.reset()
    return fault


def test_random_cuts_from_zero_use_up_the_retries(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[_cut_from_zero(n) for n in (100_000, 50_000) * 20])
    msg = _fails(tmp_path, [url])
    assert f"(gave up after {FAST.retries + 1} attempts)" in msg
    assert len(server.requests_for("/w")) == FAST.retries + 1  # only a new high-water mark resets the count


def test_cached_blob_that_is_not_a_file_is_replaced(server: FaultServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    url = server.add("/w", BODY)
    (tmp_path / "cache" / "blobs" / SHA / "w.bin").mkdir(parents=True)  # a directory where the file belongs
    _ok(tmp_path, [url])
    assert "not a regular file" in capsys.readouterr().err


def test_a_proxy_in_the_environment_is_not_used_for_loopback(server: FaultServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://10.255.255.1:9")  # the loopback guard refuses any connection there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    _ok(tmp_path, [server.add("/w", BODY)])
    assert len(server.requests_for("/w")) == 1
