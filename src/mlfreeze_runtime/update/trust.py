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

Trust is checked before it is saved: a root of trust (``--trust``, ``MLFREEZE_UPDATE_ROOT`` or
the bundle's ``update-root.json``) must be TUF root metadata (``_type`` root, a spec version this
client reads, a version >= 1) signed by a threshold of its own root keys before it is copied to
``<root>/.tuf/root.json``; the file it came from is remembered as ``.tuf/anchor.json`` (its
sha256). Once an install trusts a root, a ``--trust`` (or ``MLFREEZE_UPDATE_ROOT``) whose bytes
are neither the anchor nor the saved root is refused (exit 2) naming the saved root;
``--reset-trust`` replaces the saved root (and the metadata seen so far) by the one given, after
checking it. A root rotated by the publisher (``2.root.json``...) is walked to from the anchor by
ngclient as usual and does not count as differing.

``tuf`` (and ``securesystemslib``) are therefore bundle dependencies of ``<app>-update``;
they are imported here only, when a signed update is asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlfreeze_runtime.update import http
from mlfreeze_runtime.update.errors import FetchError, UsageError

TRUST_DIR = ".tuf"
ROOT_FILE = "update-root.json"  # the public root of trust, frozen into a bundle at build time
INDEX_TARGET = "index.json"
ANCHOR_FILE = "anchor.json"
RESET_FLAG = "--reset-trust"


@dataclass(frozen=True, kw_only=True)
class TrustRoot:
    """A checked root of trust: its bytes, where they came from, its version and sha256 (hex)."""

    path: Path
    data: bytes
    version: int
    sha256: str
    explicit: bool  # given by --trust / MLFREEZE_UPDATE_ROOT (a bundle's own root is not)


def load_root(path: Path, *, explicit: bool = True) -> TrustRoot:
    """``path`` checked as a TUF root: UsageError (exit 2) naming the file unless it is root metadata
    (``_type`` root, readable spec version, version >= 1) signed by a threshold of its own root keys."""
    from tuf.api import exceptions
    from tuf.api.metadata import Metadata, Root

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the root of trust ({exc.strerror or exc}); pass --trust ROOT.json") \
            from None
    what = f"{path}: not a root of trust"
    try:
        kind = json.loads(data).get("signed", {}).get("_type")
    except (ValueError, AttributeError):
        raise UsageError(f"{what} (not JSON TUF metadata); pass the release's metadata/1.root.json") from None
    if kind != Root.type:
        raise UsageError(f"{what} (it is {kind!r} metadata, not root); pass the release's metadata/1.root.json")
    try:
        md = Metadata.from_bytes(data)
        root = md.signed
        assert isinstance(root, Root)
        root.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except exceptions.UnsignedMetadataError as exc:
        raise UsageError(f"{what}: not signed by a threshold of its own root keys ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - tuf raises DeserializationError, ValueError, KeyError, TypeError
        raise UsageError(f"{what} ({type(exc).__name__}: {exc})") from None
    return TrustRoot(path=path, data=data, version=int(root.version), sha256=hashlib.sha256(data).hexdigest(),
                     explicit=explicit)


def _anchor(meta_dir: Path) -> dict[str, object]:
    try:
        doc = json.loads((meta_dir / ANCHOR_FILE).read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(meta_dir: Path, given: TrustRoot) -> None:
    """Write the checked root as ``.tuf/root.json`` and remember where it came from (temp files, renames)."""
    meta_dir.mkdir(parents=True, exist_ok=True)
    for name, data in (("root.json", given.data),
                       (ANCHOR_FILE, json.dumps({"sha256": given.sha256, "source": str(given.path),
                                                 "version": given.version}).encode())):
        tmp = meta_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, meta_dir / name)


def establish(install_root: Path, given: TrustRoot | None, *, reset: bool = False) -> Path:
    """The install's ``.tuf`` folder, holding a trusted root: the saved one, or ``given`` (checked)
    when none is saved or ``reset``. UsageError (exit 2) when none is known, or when an explicit
    ``given`` differs from the saved root (naming it and :data:`RESET_FLAG`)."""
    meta_dir = install_root / TRUST_DIR
    trusted = meta_dir / "root.json"
    if reset:
        if given is None:
            raise UsageError(f"{RESET_FLAG} needs the new root of trust: pass --trust ROOT.json")
        shutil.rmtree(meta_dir, ignore_errors=True)  # given was checked before anything is removed
    if trusted.is_file():
        if given is not None and given.explicit:
            saved = trusted.read_bytes()
            anchor = _anchor(meta_dir)
            if given.sha256 not in (hashlib.sha256(saved).hexdigest(), anchor.get("sha256")):
                try:
                    version = json.loads(saved)["signed"]["version"]
                except (ValueError, KeyError, TypeError):
                    version = "?"
                first = f", first trusted from {anchor['source']}" if anchor.get("source") else ""
                raise UsageError(f"{given.path} (root version {given.version}) differs from the root of trust this "
                                 f"install saved at {trusted} (version {version}{first}); to trust the new one, "
                                 f"pass {RESET_FLAG} with --trust {given.path}")
        return meta_dir
    if given is None:
        raise UsageError("this install has no root of trust (the bundle was built without "
                         "[tool.mlfreeze] update_root); signed remote updates are refused: pass --trust ROOT.json")
    _save(meta_dir, given)
    return meta_dir


def bundled_root(bundle: Path | None) -> Path | None:
    """The root of trust a bundle ships (``update-root.json`` next to its executables), if any."""
    if bundle is None:
        return None
    path = bundle / ROOT_FILE
    return path if path.is_file() else None


def has_metadata(base: str) -> bool:
    """Whether ``base`` is a signed repository (has ``metadata/timestamp.json``): False only when
    the server or folder says it is not there (404/403/410, no file); any other failure to fetch
    it (TLS, timeouts, a slow drip, 5xx) is raised as the FetchError it is."""
    try:
        http.fetch_bytes(http.join(base, "metadata/timestamp.json"), max_bytes=1 << 20)
    except http.NotFound:
        return False
    return True


def trust_root_for(trust_file: Path | None, bundled: Path | None) -> TrustRoot | None:
    """The root of trust a run was given, checked: ``--trust``, else MLFREEZE_UPDATE_ROOT (both
    explicit), else the bundle's own (checked only when it is to be used)."""
    explicit = trust_file or env_trust()
    if explicit is not None:
        return load_root(explicit)
    return None if bundled is None else TrustRoot(path=bundled, data=b"", version=0, sha256="", explicit=False)


def refresh_index(base: str, install_root: Path, *, trust_root: Path | TrustRoot | None, target: str = INDEX_TARGET,
                  reset: bool = False) -> bytes:
    """The verified bytes of the release index (or another ``target``, e.g. ``model-pack.json``)
    at ``base``; FetchError (exit 3) naming the check that refused the metadata or the fetch that
    failed, UsageError (exit 2) when no root of trust is known, the given one is not a valid root,
    or it differs from the saved one (see :func:`establish`)."""
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

    given = load_root(trust_root) if isinstance(trust_root, Path) else trust_root
    if given is not None and not given.data and (reset or not (install_root / TRUST_DIR / "root.json").is_file()):
        given = load_root(given.path, explicit=False)  # the bundle's own root, about to be saved: check it
    meta_dir = establish(install_root, given, reset=reset)
    target_dir = meta_dir / "targets"
    shutil.rmtree(target_dir, ignore_errors=True)
    target_dir.mkdir()
    try:
        updater = Updater(metadata_dir=str(meta_dir), metadata_base_url=_url(base, "metadata"),
                          target_dir=str(target_dir), target_base_url=_url(base, "targets"),
                          fetcher=Fetcher(), bootstrap=None)
    except (exceptions.RepositoryError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{meta_dir / 'root.json'}: the saved root of trust is damaged ({type(exc).__name__}); "
                         f"pass --trust ROOT.json {RESET_FLAG}") from None
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
