"""``mlfreeze publish``: a release's update repository, signed with python-tuf.

Writes into ``REPO`` (the directory served at the stable update URL):

- ``blobs/<aa>/<sha256>``: every file of every bundle once, named by its sha256 (shared
  across variants and releases, so a directory that keeps growing across tags stores each
  distinct file once); or, with ``--packs``, ``packs/<sha256>.pack`` instead: the files no
  earlier pack holds, concatenated into packs under the release-asset limit (src/mlfreeze/release/packs.py),
  with the index (schema 2) giving ``[pack, offset, length]`` per blob;
- ``index.json`` and ``targets/<sha256>.index.json``: per variant what it needs (OS, arch,
  accelerator, minimum driver, CUDA arch list) and its files (RECORD rows + RECORD +
  BUILD-INFO.json), from ``mlfreeze_runtime.update.index``;
- ``metadata/``: TUF root (``<v>.root.json``, every version kept), targets, snapshot
  (consistent snapshots, ``<v>.<role>.json``) and ``timestamp.json``.

Versions: each role's version is the previous one read from ``REPO/metadata`` plus one
(the publish job first syncs the stable repository down, so "previous" is what clients saw).
Expiry: ``SOURCE_DATE_EPOCH`` + the role's validity (:class:`Validity`); ``resign`` (the
scheduled job) re-signs snapshot and timestamp from the current time. Keys: Ed25519 PEM
(PKCS#8) private keys, one per role, from ``--keys DIR`` (``root.pem``, ``targets.pem``,
``snapshot.pem``, ``timestamp.pem``) or ``MLFREEZE_TUF_KEY_<ROLE>`` (a path or the PEM
text); never in the repository. ``rotate`` replaces a role's key with a new root version
signed by the old and the new root keys.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlfreeze.errors import ConfigError, IntegrityError, UsageError
from mlfreeze.release import packs as packs_mod
from mlfreeze_runtime import buildinfo
from mlfreeze_runtime.update import index

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

ROLES = ("root", "targets", "snapshot", "timestamp")
KEY_ENV = "MLFREEZE_TUF_KEY_{}"
# Minimum NVIDIA driver for a CUDA toolkit major version (CUDA Toolkit release notes, "CUDA Toolkit and
# Minimum Required Driver Version for CUDA Minor Version Compatibility"): (linux, windows).
CUDA_MIN_DRIVER = {"11": ("450.80.02", "452.39"), "12": ("525.60.13", "527.41"), "13": ("580.65.06", "580.88")}


@dataclass(frozen=True, kw_only=True)
class Validity:
    """Days each role stays valid after its signing time (SOURCE_DATE_EPOCH, or now for resign)."""

    root: int = 365
    targets: int = 90
    snapshot: int = 14
    timestamp: int = 7


def load_signers(keys_dir: Path | None, env: dict[str, str] | None = None,
                 roles: tuple[str, ...] = ROLES) -> dict[str, CryptoSigner]:
    """{role: signer} from ``keys_dir/<role>.pem`` or ``MLFREEZE_TUF_KEY_<ROLE>``; ConfigError naming
    the role when a key is missing or not a PEM private key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    env = dict(os.environ) if env is None else env
    out = {}
    for role in roles:
        value = env.get(KEY_ENV.format(role.upper()))
        if value and "-----BEGIN" in value:
            pem, where = value.encode(), KEY_ENV.format(role.upper())
        else:
            path = Path(value) if value else (keys_dir / f"{role}.pem" if keys_dir else None)
            if path is None or not path.is_file():
                raise ConfigError(f"no {role} key: pass --keys DIR holding {role}.pem or set "
                                  f"{KEY_ENV.format(role.upper())} (path or PEM); keys never go in the repository")
            pem, where = path.read_bytes(), str(path)
        try:
            out[role] = CryptoSigner(load_pem_private_key(pem, password=None))  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    return out


def generate_keys(keys_dir: Path) -> dict[str, Path]:
    """Write a fresh Ed25519 key per role to ``keys_dir`` (mode 0600); refuses to overwrite."""
    from securesystemslib.signer import CryptoSigner

    keys_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for role in ROLES:
        path = keys_dir / f"{role}.pem"
        if path.exists():
            raise UsageError(f"{path}: exists; move it away to generate a new key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(CryptoSigner.generate_ed25519().private_bytes)
        out[role] = path
    return out


def _expiry(base: int, days: int, now: float) -> datetime:
    exp = datetime.fromtimestamp(base, tz=timezone.utc) + timedelta(days=days)
    if exp.timestamp() <= now:
        raise ConfigError(f"expiry {exp:%Y-%m-%dT%H:%M:%SZ} (SOURCE_DATE_EPOCH {base} + {days} days) is already "
                          "past: raise the validity or use a recent SOURCE_DATE_EPOCH")
    return exp.replace(microsecond=0)


def _latest(meta: Path, role: str) -> Any | None:
    from tuf.api.metadata import Metadata

    if role == "timestamp":
        path = meta / "timestamp.json"
        return Metadata.from_file(str(path)) if path.is_file() else None
    versions = sorted(int(p.name.split(".")[0]) for p in meta.glob(f"*.{role}.json") if p.name.split(".")[0].isdigit())
    return Metadata.from_file(str(meta / f"{versions[-1]}.{role}.json")) if versions else None


def _write(md: Any, path: Path) -> None:
    from tuf.api.serialization.json import JSONSerializer

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(md.to_bytes(JSONSerializer(compact=False)))
    os.replace(tmp, path)


def variant_needs(info: dict[str, Any], cuda_archs: dict[str, list[str]]) -> dict[str, Any]:
    """OS, arch, accelerator, minimum driver and CUDA arch list of a bundle, from its profile and
    BUILD-INFO (``cuda_archs``, recorded by freeze); ``cuda_archs`` (platform -> list) overrides."""
    from mlfreeze.platforms.profiles import load_profile

    profile = load_profile(info["platform"])
    needs: dict[str, Any] = {"os_name": profile.host_os, "arch": profile.host_arch,
                             "accelerator": profile.accelerator, "min_driver": None, "cuda_archs": []}
    if info.get("flavor") == "lite":  # no ML stack: runs on any machine of its OS and arch
        needs["accelerator"] = "cpu"
    elif profile.accelerator == "cuda":
        major = (info.get("cuda") or profile.torch.cuda or "").split(".")[0]
        drivers = CUDA_MIN_DRIVER.get(major)
        if drivers is None:
            raise ConfigError(f"{info['platform']}: no minimum driver known for CUDA {major!r}; add it to "
                              "CUDA_MIN_DRIVER in src/mlfreeze/release/publish.py")
        needs["min_driver"] = drivers[1] if profile.host_os == "windows" else drivers[0]
        archs = cuda_archs.get(info["platform"]) or info.get("cuda_archs")  # --cuda-archs overrides BUILD-INFO
        if not archs:
            raise ConfigError(f"{info['platform']}: a CUDA variant must say which GPUs it has kernels for and its "
                              "BUILD-INFO records none (frozen before cuda_archs was recorded?): freeze it again, "
                              f"or pass --cuda-archs {info['platform']}=sm_75,sm_80,...")
        needs["cuda_archs"] = archs
    return needs


def variant_glibc(bundle: Path, info: dict[str, Any]) -> str | None:
    """The glibc a Linux variant needs (its floor: BUILD-INFO's ``glibc.floor``, read from the ELF
    files for a bundle frozen before it was recorded); None for macOS and Windows variants."""
    from mlfreeze.bundle import glibc
    from mlfreeze.platforms.profiles import load_profile

    if load_profile(info["platform"]).host_os != "linux":
        return None
    recorded = info.get("glibc")
    if recorded is not None:
        floor: str | None = recorded.get("floor")
        return floor
    return glibc.bundle_floor(bundle).glibc


def unpack_release(release_dir: Path, dest: Path) -> list[Path]:
    """The bundle folders of a ``mlfreeze release`` directory (release-manifest.json, archives,
    parts), unpacked under ``dest``: each archive rejoined from its parts if split, checked against
    the manifest's sha256 (IntegrityError, exit 3), extracted with mode bits and symlinks (tar:
    the ``data`` filter refuses members outside ``dest``). What the merge job signs."""
    import hashlib
    import stat
    import tarfile
    import zipfile

    manifest_path = release_dir / "release-manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{manifest_path}: not a release directory ({exc}); run `mlfreeze release dist` first") \
            from None
    out = []
    for asset in manifest["assets"]:
        pieces = [release_dir / p["file"] for p in asset["parts"]] or [release_dir / asset["archive"]]
        archive = dest / asset["archive"]
        h = hashlib.sha256()
        with archive.open("wb") as f:
            for piece in pieces:
                with piece.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        f.write(chunk)
        if h.hexdigest() != asset["sha256"]:
            raise IntegrityError(f"{asset['archive']}: sha256 {h.hexdigest()[:16]}... is not the manifest's "
                                 f"{asset['sha256'][:16]}...; the release directory is damaged")
        if asset["archive_format"] == "tar.gz":
            with tarfile.open(archive, "r:gz") as tf:
                tf.extractall(dest, filter="data")
        else:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    mode = info.external_attr >> 16
                    target = dest / info.filename
                    if not target.resolve().is_relative_to(dest.resolve()):
                        raise IntegrityError(f"{asset['archive']}: member {info.filename} escapes the folder")
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif stat.S_ISLNK(mode):
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.symlink(zf.read(info).decode(), target)
                    else:
                        zf.extract(info, dest)
                        if mode & 0o777:
                            os.chmod(target, mode & 0o777)
        archive.unlink()
        out.append(dest / asset["bundle"])
    return out


def publish(bundles: list[Path], repo: Path, signers: dict[str, CryptoSigner], *, source_date_epoch: int,
            validity: Validity = Validity(), cuda_archs: dict[str, list[str]] | None = None,
            now: float | None = None, packs: bool = False, pack_limit: int = packs_mod.DEFAULT_LIMIT,
            pack_url: str | None = None) -> dict[str, int]:
    """Add ``bundles`` (one release, all variants) to ``repo`` and sign; {role: new version}.

    ``packs``: write the files no earlier pack of ``repo`` holds as packs of at most
    ``pack_limit`` bytes (``pack_url``: a ``{name}`` template recorded as their download URL)
    instead of loose blobs, and a schema-2 index; PackError (exit 4) before anything is
    written when one file is larger than the limit."""
    now = time.time() if now is None else now
    if not bundles:
        raise UsageError("publish needs at least one bundle directory")
    entries, versions, apps = [], set(), set()
    for bundle in bundles:
        try:
            info = buildinfo.read(bundle)
            entry = index.variant_entry(bundle, **variant_needs(info, cuda_archs or {}))
            entry["glibc"] = variant_glibc(bundle, info)  # the updater refuses it on an older glibc
        except buildinfo.BuildInfoError as exc:
            raise ConfigError(str(exc)) from None
        except ValueError as exc:
            raise IntegrityError(str(exc)) from None
        entries.append((bundle, entry))
        versions.add(info["version"])
        apps.add(info["app"])
    if len(versions) != 1 or len(apps) != 1:
        raise UsageError(f"one release per publish: got app(s) {sorted(apps)} version(s) {sorted(versions)}")
    if packs:
        catalog = _write_packs(entries, repo, pack_limit, pack_url)
        data = index.render(apps.pop(), versions.pop(), [e for _, e in entries], packs=catalog.packs,
                            blobs=catalog.blobs)
    else:
        for bundle, entry in entries:
            for path, sha, _size, _mode in entry["files"]:
                _add_blob(repo, sha, bundle / path)
        data = index.render(apps.pop(), versions.pop(), [e for _, e in entries])
    return sign_release(repo, data, signers, source_date_epoch=source_date_epoch, validity=validity, now=now)


def _write_packs(entries: list[tuple[Path, dict[str, Any]]], repo: Path, limit: int,
                 url: str | None) -> packs_mod.Catalog:
    """Pack what the repository's earlier packs lack; the catalog this release's index needs."""
    blobs = [packs_mod.Blob(sha256=sha, size=size, source=bundle / path, label=f"{bundle.name}/{path}")
             for bundle, entry in entries for path, sha, size, _mode in entry["files"]]
    have = packs_mod.known(repo)
    have.add(packs_mod.write(packs_mod.plan(blobs, have=have, limit=limit), repo, url=url))
    return have.for_files({b.sha256 for b in blobs if b.size > 0})


def init_root(repo: Path, signers: dict[str, CryptoSigner], *, source_date_epoch: int,
              validity: Validity = Validity(), now: float | None = None) -> Path:
    """Write ``metadata/1.root.json`` (one key per role, signed by root) and return it: the public
    root of trust a project names in ``[tool.mlfreeze] update_root`` before its first release.
    UsageError when ``repo`` already has a root."""
    from tuf.api.metadata import Metadata, Root

    now = time.time() if now is None else now
    meta = repo / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    if _latest(meta, "root") is not None:
        raise UsageError(f"{repo}: already has a root; rotate keys with publish.rotate instead")
    root = Root(expires=_expiry(source_date_epoch, validity.root, now), consistent_snapshot=True)
    for role in ROLES:
        root.add_key(signers[role].public_key, role)
    root_md = Metadata(root)
    root_md.sign(signers["root"])
    _write(root_md, meta / "1.root.json")
    return meta / "1.root.json"


def sign_release(repo: Path, index_bytes: bytes, signers: dict[str, CryptoSigner], *, source_date_epoch: int,
                 validity: Validity = Validity(), now: float | None = None,
                 name: str = index.INDEX_NAME) -> dict[str, int]:
    """Write ``index_bytes`` as target ``name`` (other targets already signed are kept) and sign
    new targets, snapshot and timestamp (and root v1 when ``repo`` has none). {role: version}."""
    from tuf.api.metadata import Metadata, TargetFile, Targets

    now = time.time() if now is None else now
    meta = repo / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    (repo / "targets").mkdir(exist_ok=True)
    target = TargetFile.from_data(name, index_bytes, ["sha256"])
    digest = target.hashes["sha256"]
    (repo / "targets" / f"{digest}.{name}").write_bytes(index_bytes)
    tmp = repo / f".{name}.tmp"
    tmp.write_bytes(index_bytes)
    os.replace(tmp, repo / name)
    written: dict[str, int] = {}

    root_md = _latest(meta, "root")
    if root_md is None:
        init_root(repo, signers, source_date_epoch=source_date_epoch, validity=validity, now=now)
        root_md = _latest(meta, "root")
        assert root_md is not None
        written["root"] = 1
    for role in ("targets", "snapshot", "timestamp"):
        keyids = root_md.signed.roles[role].keyids
        if signers[role].public_key.keyid not in keyids:
            raise ConfigError(f"the {role} key given is not the one root names for {role}; rotate it with "
                              "`mlfreeze publish --rotate` or pass the right key")

    prev_t = _latest(meta, "targets")
    kept = dict(prev_t.signed.targets) if prev_t else {}
    targets = Targets(version=(prev_t.signed.version + 1) if prev_t else 1,
                      expires=_expiry(source_date_epoch, validity.targets, now), targets={**kept, name: target})
    t_md = Metadata(targets)
    t_md.sign(signers["targets"])
    _write(t_md, meta / f"{targets.version}.targets.json")
    written["targets"] = targets.version
    written.update(_snapshot_and_timestamp(meta, signers, targets.version, source_date_epoch, validity, now))
    return written


def _snapshot_and_timestamp(meta: Path, signers: dict[str, CryptoSigner], targets_version: int, base: int,
                            validity: Validity, now: float) -> dict[str, int]:
    from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp

    prev_s = _latest(meta, "snapshot")
    snap = Snapshot(version=(prev_s.signed.version + 1) if prev_s else 1,
                    expires=_expiry(base, validity.snapshot, now), meta={"targets.json": MetaFile(targets_version)})
    s_md = Metadata(snap)
    s_md.sign(signers["snapshot"])
    _write(s_md, meta / f"{snap.version}.snapshot.json")
    prev_ts = _latest(meta, "timestamp")
    ts = Timestamp(version=(prev_ts.signed.version + 1) if prev_ts else 1,
                   expires=_expiry(base, validity.timestamp, now), snapshot_meta=MetaFile(snap.version))
    ts_md = Metadata(ts)
    ts_md.sign(signers["timestamp"])
    _write(ts_md, meta / "timestamp.json")
    return {"snapshot": snap.version, "timestamp": ts.version}


def _add_blob(repo: Path, sha256: str, src: Path) -> None:
    """Copy ``src`` to ``blobs/<aa>/<sha256>`` unless it is there (temp file, then rename)."""
    dest = repo / index.blob_path(sha256)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def publish_model_pack(models_dir: Path, repo: Path, signers: dict[str, CryptoSigner], *, app: str, set_name: str,
                       version: str, source_date_epoch: int, validity: Validity = Validity(),
                       now: float | None = None) -> dict[str, int]:
    """A model set on its own (``models.json``, files, goldens, probes) as blobs plus a signed
    ``model-pack.json`` target, for ``<app>-update models``; {role: version written}."""
    from mlfreeze_runtime.update import models

    if not (models_dir / "models.json").is_file():
        raise ConfigError(f"{models_dir}: no models.json; pass a bundle's models/ folder")
    data, files = models.pack_document(models_dir, app=app, set_name=set_name, version=version)
    for rel, sha in files:
        _add_blob(repo, sha, models_dir / rel)
    return sign_release(repo, data, signers, source_date_epoch=source_date_epoch, validity=validity, now=now,
                        name=models.PACK_NAME)


def resign(repo: Path, signers: dict[str, CryptoSigner], *, validity: Validity = Validity(),
           now: float | None = None) -> dict[str, int]:
    """The scheduled job: new snapshot and timestamp (same targets) valid from ``now``."""
    now = time.time() if now is None else now
    meta = repo / "metadata"
    prev_t = _latest(meta, "targets")
    if prev_t is None:
        raise UsageError(f"{repo}: no signed targets to re-sign; publish a release first")
    return _snapshot_and_timestamp(meta, signers, prev_t.signed.version, int(now), validity, now)


def rotate(repo: Path, role: str, new_key: CryptoSigner, old_root: CryptoSigner, *,
           new_root: CryptoSigner | None = None, validity: Validity = Validity(), now: float | None = None) -> int:
    """Replace ``role``'s key: root version N+1 names ``new_key``, signed by the old root key and,
    when the root key itself changes, by the new one too (clients walk N -> N+1). Returns N+1."""
    now = time.time() if now is None else now
    meta = repo / "metadata"
    root_md = _latest(meta, "root")
    if root_md is None:
        raise UsageError(f"{repo}: no root metadata to rotate")
    root = root_md.signed
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    root.add_key(new_key.public_key, role)
    root.version += 1
    root.expires = _expiry(int(now), validity.root, now)
    root_md.signatures.clear()
    root_md.sign(old_root, append=True)
    if new_root is not None and role == "root":
        root_md.sign(new_root, append=True)
    _write(root_md, meta / f"{root.version}.root.json")
    return int(root.version)


def main(args: Any) -> int:
    """``mlfreeze publish``: sign a release's bundles into an update repository."""
    import importlib.util

    missing = [m for m in ("tuf", "securesystemslib", "cryptography") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"mlfreeze publish needs {' and '.join(missing)} to sign, which plain mlfreeze does "
                         "not install: "
                         "pip install 'mlfreeze[update]' (from a checkout: pip install '.[update]')")
    repo = Path(args.repo)
    if args.generate_keys:
        for role, path in generate_keys(Path(args.generate_keys)).items():
            print(f"{role}: {path}")
        return 0
    keys = Path(args.keys) if args.keys else None
    if args.init_root:
        print(init_root(repo, load_signers(keys), source_date_epoch=int(time.time())))
        return 0
    if args.resign:  # the scheduled job holds only the online keys
        print(json.dumps(resign(repo, load_signers(keys, roles=("snapshot", "timestamp")))))
        return 0
    # root signs only the first publish (and rotations): afterwards its key stays offline
    signers = load_signers(keys, roles=ROLES if _latest(repo / "metadata", "root") is None else ROLES[1:])
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if not sde or not sde.isdigit():
        raise ConfigError("SOURCE_DATE_EPOCH is not set to an integer: expiry derives from it (the release "
                          "workflow sets it to the tagged commit's time)")
    if args.model_pack:
        if not (args.pack_app and args.pack_set and args.pack_version):
            raise UsageError("--model-pack needs --app NAME --set SET --pack-version V")
        written = publish_model_pack(Path(args.model_pack), repo, signers, app=args.pack_app, set_name=args.pack_set,
                                     version=args.pack_version, source_date_epoch=int(sde))
        print(json.dumps(written))
        return 0
    archs = {}
    for item in args.cuda_archs or []:
        platform, _, value = item.partition("=")
        archs[platform] = [a for a in value.replace(",", " ").split() if a]
    use_packs = bool(args.packs)
    if not use_packs and (args.pack_limit or args.pack_url):
        raise UsageError("--pack-limit and --pack-url go with --packs")
    pack_url = args.pack_url
    packs_mod.check_url_template(pack_url)
    pack_limit = packs_mod.parse_limit(args.pack_limit)
    if args.release:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mlfreeze-publish-") as tmp:
            bundles = unpack_release(Path(args.release), Path(tmp)) + [Path(b) for b in args.bundles]
            written = publish(bundles, repo, signers, source_date_epoch=int(sde), cuda_archs=archs,
                              packs=use_packs, pack_limit=pack_limit, pack_url=pack_url)
    else:
        written = publish([Path(b) for b in args.bundles], repo, signers, source_date_epoch=int(sde),
                          cuda_archs=archs, packs=use_packs, pack_limit=pack_limit, pack_url=pack_url)
    print(json.dumps(written))
    return 0
