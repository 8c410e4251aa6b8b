"""Signed, expiring release metadata, checked with python-tuf's ngclient (TUF 1.0 workflow).

The release repository (written by ``mlfreeze publish``) lies at one stable base URL::

    metadata/1.root.json, 2.root.json, ...   every root version (clients walk the chain)
    metadata/timestamp.json                  short expiry, re-signed by a scheduled job
    metadata/<v>.snapshot.json, <v>.targets.json   consistent snapshots
    targets/<sha256>.index.json              the release index (the one TUF target)
    blobs/<aa>/<sha256>                      content-addressed files the index lists by sha256
    packs/<sha256>.pack                      or packs of them (schema-2 index: [pack, offset, length])

``refresh_index`` runs ngclient's Updater: it walks the root chain from the trusted root
(the one frozen into the bundle, then the newest one persisted under ``<root>/.tuf/``),
and refuses metadata that is badly signed (tampered), expired, older than what this client
has seen (rollback), or inconsistent with snapshot/timestamp (mix-and-match); then it fetches
``index.json`` and checks its length and sha256 against targets. All fetches go through
:mod:`http` (the runtime's one HTTP chokepoint) by :class:`Fetcher`.

``tuf`` (and ``securesystemslib``) are therefore bundle dependencies of ``<app>-update``;
they are imported here only, when a signed update is asked for.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from mlfreeze_runtime.update import http
from mlfreeze_runtime.update.errors import FetchError, UsageError

TRUST_DIR = ".tuf"
ROOT_FILE = "update-root.json"  # the public root of trust, frozen into a bundle at build time
INDEX_TARGET = "index.json"


def bundled_root(bundle: Path | None) -> Path | None:
    """The root of trust a bundle ships (``update-root.json`` next to its executables), if any."""
    if bundle is None:
        return None
    path = bundle / ROOT_FILE
    return path if path.is_file() else None


def has_metadata(base: str) -> bool:
    """Whether ``base`` is a signed repository (has ``metadata/timestamp.json``)."""
    try:
        http.fetch_bytes(http.join(base, "metadata/timestamp.json"), max_bytes=1 << 20)
    except FetchError:
        return False
    return True


def refresh_index(base: str, install_root: Path, *, trust_root: Path | None, target: str = INDEX_TARGET) -> bytes:
    """The verified bytes of the release index (or another ``target``, e.g. ``model-pack.json``)
    at ``base``; FetchError (exit 3) naming the check that refused the metadata, UsageError
    (exit 2) when no root of trust is known."""
    from tuf.api import exceptions
    from tuf.ngclient import FetcherInterface, Updater

    class Fetcher(FetcherInterface):  # type: ignore[misc]
        def _fetch(self, url: str) -> Iterator[bytes]:
            try:
                data = http.fetch_bytes(url, max_bytes=64 << 20)
            except http.NotFound:
                raise exceptions.DownloadHTTPError(f"{url}: not found", 404) from None
            except FetchError as exc:
                raise exceptions.DownloadError(exc.message) from None
            yield data

    meta_dir = install_root / TRUST_DIR
    meta_dir.mkdir(parents=True, exist_ok=True)
    trusted = meta_dir / "root.json"
    if not trusted.is_file():
        if trust_root is None:
            raise UsageError("this install has no root of trust (the bundle was built without "
                             "[tool.mlfreeze] update_root); signed remote updates are refused: pass --trust ROOT.json")
        shutil.copyfile(trust_root, trusted)
    target_dir = meta_dir / "targets"
    shutil.rmtree(target_dir, ignore_errors=True)
    target_dir.mkdir()
    updater = Updater(metadata_dir=str(meta_dir), metadata_base_url=_url(base, "metadata"),
                      target_dir=str(target_dir), target_base_url=_url(base, "targets"),
                      fetcher=Fetcher(), bootstrap=None)
    try:
        updater.refresh()
        info = updater.get_targetinfo(target)
        if info is None:
            raise FetchError(f"{base}: the signed targets hold no {target}; nothing of that kind was published")
        path = updater.download_target(info)
    except exceptions.ExpiredMetadataError as exc:
        raise FetchError(f"{base}: signed metadata expired ({exc}); the publisher must re-sign; refused") from None
    except exceptions.BadVersionNumberError as exc:
        raise FetchError(f"{base}: metadata version went backwards ({exc}): rollback attack or stale mirror; "
                         "refused") from None
    except exceptions.RepositoryError as exc:
        raise FetchError(f"{base}: signed metadata refused ({type(exc).__name__}: {exc}); "
                         "the release is tampered or inconsistent") from None
    except exceptions.DownloadError as exc:
        raise FetchError(f"{base}: cannot fetch signed metadata ({exc})") from None
    return Path(path).read_bytes()


def _url(base: str, sub: str) -> str:
    if http.is_local(base):
        return http.local_path(base).resolve().joinpath(sub).as_uri() + "/"
    return base.rstrip("/") + f"/{sub}/"


def env_trust() -> Path | None:
    value = os.environ.get("MLFREEZE_UPDATE_ROOT")
    return Path(value) if value else None
