"""``mlfreeze release DIST_DIR [--version V]``: archives, SHA256SUMS, manifest and SBOMs.

Finds the bundles in ``DIST_DIR`` (folders holding ``BUILD-INFO.json``), audits each one
(src/mlfreeze/bundle/audit.py: RECORD, model pins, shared-library closure, verification; a bundle that
fails is refused with the audit's exit code, naming the file), refuses a bundle holding a
model whose goldens are not pinned unless BUILD-INFO records the project's opt-out
(``[tool.mlfreeze] unpinned_goldens``), and writes ``DIST_DIR/release/``, the exact set of
files a GitHub release publishes:

    <bundle>.tar.gz | <bundle>.zip        one reproducible archive per bundle (profile's format)
    <bundle>.<ext>.part001 ...            instead of the archive when it is above the split limit
    <bundle>.<ext>.sha256                 the whole archive's checksum, only when it was split
    <bundle>.cdx.json                     CycloneDX SBOM of the bundle's environment
    <bundle>.image.cdx.json               CycloneDX SBOM of the bundle's OCI image (digest, Debian base packages),
                                          when ``DIST_DIR/image/<bundle>/image.json`` exists (``mlfreeze image``)
    release-manifest.json                 docs/release-manifest.schema.json (model hashes re-read from the
                                          files by the audit, never copied from BUILD-INFO)
    SHA256SUMS                            every file above; ``sha256sum -c SHA256SUMS`` passes

Folders of ``DIST_DIR`` that hold a ``release-manifest.json`` are release fragments made
by the same command on a build runner (release.yml uploads one per platform); they are
checked file by file and merged (src/mlfreeze/release/fragments.py). Releasing on each runner and merging
gives the same bytes as releasing every bundle at once.

The folder is built under a temporary name and renamed into place, so a failure leaves
the previous ``release/`` (or none) and no half-written one. Same bundles + same
``SOURCE_DATE_EPOCH`` -> byte-identical files. The incremental stamp ``.mlfreeze-stamp`` is
never archived.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlfreeze import __version__
from mlfreeze.bundle import audit
from mlfreeze.errors import ConfigError, UsageError, VerificationError
from mlfreeze.release import archives, fragments, sbom
from mlfreeze.units import GITHUB_ASSET_LIMIT, format_exact, format_size, parse_size
from mlfreeze_runtime import buildinfo as _buildinfo
from mlfreeze_runtime.record import STAMP_NAME

BUILD_INFO = "BUILD-INFO.json"
RELEASE_DIR = "release"
MANIFEST = "release-manifest.json"
SUMS = "SHA256SUMS"
MANIFEST_SCHEMA_VERSION = 2
NOT_ARCHIVED = (STAMP_NAME,)  # at the bundle root: the incremental stamp is the builder's, not the user's
DEFAULT_SPLIT_LIMIT = GITHUB_ASSET_LIMIT - 16 * 2**20
SPLIT_LIMIT_ENV = "MLFREEZE_SPLIT_LIMIT"
EPOCH_ENV = "SOURCE_DATE_EPOCH"
IMAGE_DIR = "image"  # dist/image/<bundle>/image.json: written by `mlfreeze image` (mlfreeze.release.image)
NOT_BUNDLES = ("reports", RELEASE_DIR, IMAGE_DIR)
FORMATS = ("tar.gz", "zip")


@dataclass(frozen=True, kw_only=True)
class Bundle:
    path: Path
    info: Mapping[str, Any]
    archive_format: str
    accelerator: str
    mtime: int
    audit: audit.AuditResult | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def archive_name(self) -> str:
        return f"{self.name}.{self.archive_format}"


@dataclass(frozen=True, kw_only=True)
class ReleaseResult:
    directory: Path
    manifest: dict[str, Any]
    files: tuple[str, ...]
    messages: tuple[str, ...] = field(default=())


# --- reading and checking the input ---------------------------------------------------------

def _bad(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: {what}; rebuild the bundle (nox -s build-<platform>) or fix the file")


def _profile_fact(platform: str, attr: str) -> str | None:
    from mlfreeze.platforms.profiles import all_profiles

    profile = all_profiles().get(platform)
    return getattr(profile, attr) if profile else None


def _epoch(env: Mapping[str, str], info: Mapping[str, Any], path: Path) -> int:
    """``SOURCE_DATE_EPOCH``, else the bundle's ``built_at``, else 1980-01-01 (zip's first day)."""
    raw = env.get(EPOCH_ENV, "").strip()
    if raw:
        if not raw.isdigit():
            raise UsageError(f"{EPOCH_ENV}={raw!r} is not a whole number of seconds since 1970; unset or fix it")
        return max(int(raw), archives.ZIP_EPOCH)
    built_at = info.get("built_at")
    if built_at:
        try:
            stamp = datetime.fromisoformat(built_at.replace("Z", "+00:00"))
        except ValueError:
            raise _bad(path, f"key 'built_at' {built_at!r} is not an ISO-8601 time") from None
        if stamp.tzinfo is None:
            raise _bad(path, f"key 'built_at' {built_at!r} has no time zone")
        return max(int(stamp.timestamp()), archives.ZIP_EPOCH)
    return archives.ZIP_EPOCH


def _looks_like_bundle(path: Path) -> bool:
    return (path / BUILD_INFO).exists() or (path / "_internal").is_dir() or path.name.endswith(("-full", "-lite"))


def find_bundles(dist: Path, env: Mapping[str, str] | None = None) -> list[Bundle]:
    """Every bundle folder directly in ``dist``, sorted by name, each with a checked BUILD-INFO."""
    env = os.environ if env is None else env
    if not dist.is_dir():
        raise UsageError(f"{dist}: not a folder; pass the dist folder that holds the bundles")
    bundles = []
    for path in sorted(dist.iterdir()):
        if not path.is_dir() or path.is_symlink() or path.name.startswith(".") or path.name in NOT_BUNDLES:
            continue
        if fragments.is_fragment(path) or not _looks_like_bundle(path):
            continue
        info_path = path / BUILD_INFO
        if not info_path.is_file():
            raise UsageError(f"{path}: bundle without {BUILD_INFO}; rebuild it with nox -s build-<platform> "
                             f"or move it out of {dist}")
        try:
            info = _buildinfo.read(path)
        except _buildinfo.BuildInfoError as exc:
            raise ConfigError(f"{exc}; rebuild the bundle (nox -s build-<platform>) or fix the file") from None
        fmt = info.get("archive_format") or _profile_fact(info["platform"], "archive_format")
        if fmt not in FORMATS:
            raise _bad(info_path, f"no usable archive_format ({fmt!r}) and no profile {info['platform']!r} to "
                                  "take it from")
        accelerator = info.get("accelerator") or _profile_fact(info["platform"], "accelerator") or "unknown"
        bundles.append(Bundle(path=path, info=info, archive_format=fmt, accelerator=accelerator,
                              mtime=_epoch(env, info, info_path)))
    return bundles


def find_fragments(dist: Path) -> list[fragments.Fragment]:
    """Release folders made on build runners (``dist/release-<platform>/``), checked file by file."""
    return [fragments.load_fragment(path, MANIFEST_SCHEMA_VERSION) for path in sorted(dist.iterdir())
            if path.is_dir() and not path.name.startswith(".") and path.name != RELEASE_DIR
            and fragments.is_fragment(path)]


def split_limit(env: Mapping[str, str] | None = None) -> int:
    """``$MLFREEZE_SPLIT_LIMIT`` in bytes, read with the one size grammar of src/mlfreeze/units.py
    ("1 GiB" == "1073741824", "1 GB" == 10^9), or 2 GiB - 16 MiB; exit 2 when malformed, 0 or not
    below GitHub's 2 GiB per-asset limit."""
    env = os.environ if env is None else env
    raw = env.get(SPLIT_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_SPLIT_LIMIT
    try:
        limit = parse_size(raw)
    except ValueError as exc:
        raise UsageError(f"{SPLIT_LIMIT_ENV}: {exc}; fix or unset it") from None
    if limit <= 0:
        raise UsageError(f"{SPLIT_LIMIT_ENV}={raw!r} is not a positive size like 1900 MiB; fix or unset it")
    if limit >= GITHUB_ASSET_LIMIT:
        raise UsageError(f"{SPLIT_LIMIT_ENV}={raw!r} ({format_exact(limit)}) is not below GitHub's "
                         f"{format_size(GITHUB_ASSET_LIMIT)} per-asset limit; lower it")
    return limit


def release_version(found: Mapping[str, str], requested: str | None) -> str:
    """The release's version: ``--version`` (a tag's leading ``v`` dropped), checked against ``{bundle: version}``."""
    versions = sorted(set(found.values()))
    if requested:
        wanted = requested[1:] if requested[:1] == "v" and requested[1:2].isdigit() else requested
        wrong = [name for name, v in found.items() if v != wanted]
        if wrong:
            raise UsageError(f"--version {requested} but {', '.join(wrong)} is version "
                             f"{', '.join(versions)}; tag the version the bundles were built as")
        return wanted
    if len(versions) > 1:
        raise UsageError(f"the bundles disagree on version ({', '.join(versions)}); release one version at a time")
    return versions[0]


def audit_bundles(bundles: list[Bundle], log: Callable[[str], None] | None) -> list[Bundle]:
    """Audit every bundle (src/mlfreeze/bundle/audit.py); refuse the release when one fails (exit 3 or 1), or when one
    holds a model without pinned goldens that BUILD-INFO does not record as opted out, or ONNX towers
    backed by no agreement record, goldens or reference_sims and not opted out (exit 1)."""
    results = [audit.audit_bundle(b.path) for b in bundles]
    for result in results:
        for line in result.notices:
            (log or print)(f"release: note: {line}")
        for line in result.lines():
            (log or print)(f"release: refused: {line}")
    error = audit.refusal(results)
    if error is not None:
        raise type(error)(f"audit: {error.message}")
    for result in results:
        unpinned = audit.unpinned_models(result)
        if unpinned:
            raise VerificationError(
                f"{result.bundle.name}: model {', '.join(unpinned)} ships without pinned goldens, so the gate ran "
                "without its golden check; pin them (nox -s pin-goldens -- --set <set>) or opt out by name in "
                f"[tool.mlfreeze] unpinned_goldens = [{', '.join(repr(u) for u in unpinned)}] and rebuild")
        unproven = audit.unproven_onnx_models(result)
        if unproven:
            from mlfreeze_runtime.verify.agreement_record import unproven_line

            raise VerificationError(f"{result.bundle.name}: {unproven_line(unproven[0])}, and rebuild")
    return [Bundle(path=b.path, info=b.info, archive_format=b.archive_format, accelerator=b.accelerator,
                   mtime=b.mtime, audit=r) for b, r in zip(bundles, results, strict=True)]


def _check_verified(name: str, facts: Mapping[str, Any]) -> None:
    for key in ("verification", "selftest"):
        result = facts.get(key)
        if isinstance(result, dict) and result.get("passed") is False:
            raise VerificationError(f"{name}: its {key} failed ({result.get('failed', '?')} checks); "
                                    "a failed bundle is never released: fix it and rebuild")


# --- writing --------------------------------------------------------------------------------

def _dump(data: Any, path: Path) -> str:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8", newline="\n")
    return archives.sha256_file(path)


def _asset(bundle: Bundle, out: Path, limit: int, messages: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Archive + SBOM for one bundle; returns its manifest entry and ``{file: sha256}``."""
    info = bundle.info
    assert bundle.audit is not None, "bundles are audited before they are archived"
    hashes = bundle.audit.hashes  # re-read from the files, every one checked against RECORD
    archive = out / bundle.archive_name
    try:
        made = archives.write_archive(bundle.path, archive, fmt=bundle.archive_format, arcroot=bundle.name,
                                      mtime=bundle.mtime, exclude=NOT_ARCHIVED)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sums: dict[str, str] = {}
    parts = archives.split_file(archive, limit)
    if parts:
        whole = out / f"{bundle.archive_name}.sha256"
        whole.write_text(f"{made.sha256}  {bundle.archive_name}\n", encoding="utf-8", newline="\n")
        sums[whole.name] = archives.sha256_file(whole)
        sums.update({p.path.name: p.sha256 for p in parts})
        messages.append(
            f"release: {bundle.archive_name} is {format_size(made.size)}; GitHub refuses release assets of 2 GiB "
            f"or more, so it was split into {len(parts)} parts of at most {format_size(limit)} "
            f"({parts[0].path.name} .. {parts[-1].path.name}); rejoin with: cat {bundle.archive_name}.part* > "
            f"{bundle.archive_name} && sha256sum -c {whole.name}")
    else:
        sums[archive.name] = made.sha256
    sbom_name = f"{bundle.name}.cdx.json"
    sums[sbom_name] = _dump(sbom.sbom(info, bundle.path, epoch=bundle.mtime, hashes=hashes), out / sbom_name)
    entry = {
        "bundle": bundle.name,
        "app": info["app"],
        "version": info["version"],
        "platform": info["platform"],
        "accelerator": bundle.accelerator,
        "flavor": info["flavor"],
        "archive_format": bundle.archive_format,
        "archive": bundle.archive_name,
        "sha256": made.sha256,
        "size": {"on_disk": made.content_bytes, "compressed": made.size, "entries": made.entries},
        "parts": [{"file": p.path.name, "size": p.size, "sha256": p.sha256} for p in parts],
        "versions": {key: info.get(key) for key in ("python", "torch", "cuda", "onnxruntime")},
        "model_set": info.get("model_set"),
        "models": [{"id": m["id"], "kind": m.get("kind"),
                    "sha256": {rel: hashes[f"models/{rel}"] for rel in sorted(m["files"])}}
                   for m in info.get("models") or []],
        "unpinned_goldens": list(info["unpinned_goldens"]),
        "record_sha256": bundle.audit.record_sha256,
        "verification": info.get("verification"),
        "selftest": info.get("selftest"),
        "sbom": sbom_name,
        "git_commit": info.get("git_commit"),
        "built_at": info.get("built_at"),
        "mtime": bundle.mtime,
    }
    messages.append(f"release: {bundle.archive_name}: {format_size(made.content_bytes)} on disk -> "
                    f"{format_size(made.size)} {bundle.archive_format}, sha256 {made.sha256[:16]}...")
    return entry, sums


def image_entry(dist: Path, asset: Mapping[str, Any], out: Path, epoch: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The manifest's ``image`` of one asset from ``dist/image/<bundle>/image.json`` (``mlfreeze
    image``; ``--push`` adds where it went) and its SBOM written into ``out``; ({}, {}) without one.
    ConfigError when the record is for another bundle."""
    from mlfreeze.release import image as _image

    folder = dist / IMAGE_DIR / str(asset["bundle"])
    if not (folder / _image.IMAGE_JSON).is_file():
        return {}, {}
    record = _image.read_record(folder)
    if record.get("bundle") != asset["bundle"] or str(record.get("version")) != str(asset["version"]):
        raise ConfigError(f"{folder / _image.IMAGE_JSON}: records bundle {record.get('bundle')!r} "
                          f"{record.get('version')!r}, not {asset['bundle']!r}; run `mlfreeze image` on this bundle")
    name = f"{asset['bundle']}.image.cdx.json"
    sha = _dump(sbom.image_sbom(record, epoch=epoch, bundle_sbom=str(asset["sbom"])), out / name)
    entry = {"tag": record["tag"], "digest": record["digest"], "architecture": record["architecture"],
             "size": dict(record["size"]), "base": {"suite": record["base"]["suite"],
                                                   "packages": dict(record["base"]["packages"])},
             "pushed": list(record.get("pushed") or []), "sbom": name}
    return entry, {name: sha}


def _swap_into_place(tmp: Path, final: Path) -> None:
    if final.exists() and not final.is_dir():
        raise UsageError(f"{final}: exists and is not a folder; move it away")
    old = final.with_name(f".{final.name}-old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


class _Messages(list[str]):
    """Lines for the user: kept for the result and, when ``log`` is given, shown at once."""

    def __init__(self, log: Callable[[str], None] | None) -> None:
        super().__init__()
        self._log = log

    def append(self, line: str) -> None:
        super().append(line)
        if self._log:
            self._log(line)


def release(dist: Path, *, version: str | None = None, limit: int | None = None,
            env: Mapping[str, str] | None = None, log: Callable[[str], None] | None = None) -> ReleaseResult:
    """Write ``dist/release/`` for every bundle in ``dist``; see the module docstring."""
    env = os.environ if env is None else env
    bundles = find_bundles(dist, env)
    merged = find_fragments(dist)
    if not bundles and not merged:
        raise UsageError(f"{dist}: no bundles (folders with {BUILD_INFO}) and no release fragments; build one "
                         "first (nox -s build-<platform>)")
    limit = split_limit(env) if limit is None else limit
    if limit <= 0:
        raise UsageError(f"split limit must be positive, got {limit}")
    found: dict[str, str] = {}
    for name, facts, where in [*((b.name, b.info, b.path) for b in bundles),
                               *((a["bundle"], a, f.path) for f in merged for a in f.assets)]:
        if name in found:
            raise UsageError(f"{where}: bundle {name} is in {dist} twice; keep one")
        found[name] = str(facts["version"])
        _check_verified(name, facts)
    rel_version = release_version(found, version)
    bundles = audit_bundles(bundles, log)
    final = dist / RELEASE_DIR
    tmp = dist / f".{RELEASE_DIR}-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    messages = _Messages(log)
    unsigned = [b.name for b in bundles if b.info.get("signing") is None]
    if unsigned:  # once for the release, not once per bundle
        messages.append(f"release: note: {len(unsigned)} of {len(bundles)} bundle(s) are unsigned "
                        f"({', '.join(unsigned)}): no [tool.mlfreeze.signing] table for their OS, or its "
                        "secrets were not set when they were frozen; Windows SmartScreen and macOS Gatekeeper "
                        "warn about unsigned binaries")
    try:
        assets, sums = [], {}
        for bundle in bundles:
            messages.append(f"release: archiving {bundle.name} as {bundle.archive_format} ...")
            entry, files = _asset(bundle, tmp, limit, messages)
            assets.append(entry)
            sums.update(files)
        for fragment in merged:
            for asset in fragment.assets:
                for name in fragments.asset_files(asset):
                    fragments.link_or_copy(fragment.path / name, tmp / name)
                    sums[name] = fragment.sums[name]
                assets.append(asset)
                if asset["parts"]:
                    messages.append(f"release: {asset['archive']} comes in {len(asset['parts'])} parts: GitHub "
                                    "refuses release assets of 2 GiB or more")
            messages.append(f"release: merged {len(fragment.assets)} assets from {fragment.path.name}/ "
                            "(every file checked against its SHA256SUMS)")
        assets.sort(key=lambda a: str(a["bundle"]))
        epoch = env.get(EPOCH_ENV, "").strip()
        for asset in (a for a in assets if "image" not in a):  # a fragment's own image stays as it is
            image, files = image_entry(dist, asset, tmp, int(asset.get("mtime") or archives.ZIP_EPOCH))
            if image:
                asset["image"] = image
                sums.update(files)
                messages.append(f"release: {asset['bundle']}: image {image['digest']} ({image['tag']}"
                                f"{', pushed to ' + image['pushed'][-1]['ref'] if image['pushed'] else ''})")
        manifest = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "version": rel_version,
            "generator": f"mlfreeze {__version__}",
            "source_date_epoch": int(epoch) if epoch.isdigit() else None,
            "split_limit": limit,
            "github_asset_limit": GITHUB_ASSET_LIMIT,
            "assets": assets,
        }
        sums[MANIFEST] = _dump(manifest, tmp / MANIFEST)
        (tmp / SUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())),
                                encoding="utf-8", newline="\n")
        _swap_into_place(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"could not write {final}: {exc}; check free space and permissions") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    written = tuple(sorted([*sums, SUMS]))
    messages.append(f"release: wrote {final} ({len(assets)} assets, {len(written)} files); "
                    f"check with: cd {final} && sha256sum -c {SUMS}")
    return ReleaseResult(directory=final, manifest=manifest, files=written, messages=tuple(messages))


def release_model_pack(dist: Path, set_name: str, repo: Path, signers: Mapping[str, Any], *,
                       version: str | None = None, env: Mapping[str, str] | None = None,
                       log: Callable[[str], None] | None = None) -> dict[str, int]:
    """Publish model set ``set_name`` on its own: the ``models/`` of the bundle in ``dist`` that ships
    it (audited first, like any release), as blobs plus a signed ``model-pack.json`` in the update
    repository ``repo`` (mlfreeze.release.publish.publish_model_pack), for ``<app>-update models``.

    ``version``: the pack's version (default: the bundle's). Expiry derives from SOURCE_DATE_EPOCH.
    {role: metadata version written}. UsageError (exit 2) when no bundle ships the set."""
    from mlfreeze.release import publish

    env = os.environ if env is None else env
    epoch = env.get(EPOCH_ENV, "").strip()
    if not epoch.isdigit():
        raise ConfigError(f"{EPOCH_ENV} is not set to an integer: the signed metadata's expiry derives from it")
    shipping = [b for b in find_bundles(dist, env) if b.info.get("model_set") == set_name
                and (b.path / "models" / "models.json").is_file()]
    if not shipping:
        raise UsageError(f"{dist}: no bundle ships model set {set_name!r} (BUILD-INFO model_set); build a full or "
                         f"slim bundle with --set {set_name} first")
    bundle = audit_bundles(shipping[:1], log)[0]
    written = publish.publish_model_pack(bundle.path / "models", repo, dict(signers), app=bundle.info["app"],
                                         set_name=set_name, version=version or bundle.info["version"],
                                         source_date_epoch=int(epoch))
    (log or print)(f"release: model pack {set_name} from {bundle.name} signed into {repo} ({written})")
    return written


def main(args: argparse.Namespace) -> int:
    if args.model_pack:
        from mlfreeze.release import publish

        if not args.repo:
            raise UsageError("--model-pack needs --repo DIR (the update repository to sign it into)")
        signers = publish.load_signers(Path(args.keys) if args.keys else None)
        print(json.dumps(release_model_pack(Path(args.dist), args.model_pack, Path(args.repo), signers,
                                            version=args.release_version,
                                            log=lambda line: print(line, flush=True))))
        return 0
    release(Path(args.dist), version=args.release_version,
            log=lambda line: print(line, flush=True))
    return 0
