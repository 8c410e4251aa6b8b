"""The fetch stage: every model byte that reaches a bundle is the byte that was pinned.

``fetch_set(manifest, set_name)`` returns, per model id, the verified local paths of its
artifacts inside the content-addressed cache (src/mlfreeze/models/cache.py). Per artifact, under its
inter-process lock: re-verify the cache entry (a corrupt one is removed and fetched again);
else download (src/mlfreeze/models/download/__init__.py: mirror first, then the pinned URLs) into ``tmp/``,
verify, publish atomically. Offline (``--offline``/MLFREEZE_OFFLINE=1) means no network: only
``file://`` URLs (relative paths, mirror directories) are used. Archives are extracted member
by member (src/mlfreeze/models/extract.py) into a staged tree that is published atomically too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

from mlfreeze.errors import DownloadError, IntegrityError
from mlfreeze.models.cache import Cache, default_cache_dir
from mlfreeze.models.download import AllUrlsFailed, Policy, download, is_local, policy_from_env
from mlfreeze.models.extract import check_free_space, extract
from mlfreeze.models.manifest import ArtifactSpec, Manifest, ModelSpec, check_set, load_manifest
from mlfreeze.project.config import default_model_set, project_manifest

MIRROR_ENV = "MLFREEZE_MODEL_MIRROR"
OFFLINE_ENV = "MLFREEZE_OFFLINE"


@dataclass(frozen=True, kw_only=True)
class FetchedModel:
    """A model's verified files: ``files`` every artifact (archives: every member), name -> path;
    ``bundle_files`` only what goes into a bundle's ``models/<id>/``."""

    model: ModelSpec
    files: dict[str, Path]
    bundle_files: dict[str, Path]

    def role(self, role: str) -> Path | None:
        """The path of the (non-archive) artifact with this ``role`` ("weights", "config", ...)."""
        for art in self.model.artifacts:
            if art.role == role and not art.extract:
                return self.files.get(art.file)
        return None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def env_offline(env: Mapping[str, str] | None = None) -> bool:
    """$MLFREEZE_OFFLINE set to 1/true/yes/on (``env``: os.environ when None)."""
    return (os.environ if env is None else env).get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def mirror_urls(art: ArtifactSpec) -> list[str]:
    """``$MLFREEZE_MODEL_MIRROR/<file>``: the mirror is a base URL or a local directory."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return []
    if urlparse(mirror).scheme in ("http", "https", "file"):
        return [mirror.rstrip("/") + "/" + quote(art.file)]
    return [(Path(mirror).expanduser() / art.file).resolve().as_uri()]


def candidate_urls(manifest: Manifest, art: ArtifactSpec) -> list[str]:
    return mirror_urls(art) + [manifest.resolve_url(u) for u in art.urls]


class _Missing(Exception):
    pass


def _describe(model: ModelSpec, art: ArtifactSpec) -> str:
    return f"{model.id}/{art.file}"


def fetch_artifact(cache: Cache, manifest: Manifest, model: ModelSpec, art: ArtifactSpec, *,
                   offline: bool = False, policy: Policy | None = None, progress: bool = True) -> dict[str, Path]:
    """Verified local paths for one artifact (archives: its members), fetching what is missing."""
    name = _describe(model, art)
    with cache.lock(art):
        if art.extract:
            tree = cache.verify_tree(art)
            if tree is not None:
                _log(f"  {name}: cached, {len(tree)} members verified")
                return tree
        blob = cache.verify_blob(art)
        if blob is None:
            urls = candidate_urls(manifest, art)
            if offline:
                urls = [u for u in urls if is_local(u)]  # no network; local files still count
                if not urls:
                    raise _Missing(name)
            partial = cache.partial_path(art)
            have = partial.stat().st_size if partial.exists() else 0
            check_free_space(cache.tmp, max(0, art.size - have), f"downloading {name}")
            start = time.monotonic()
            try:
                url = download(urls, partial, name=name, size=art.size,
                               sha256=art.sha256, policy=policy, progress=progress, log=_log)
            except AllUrlsFailed as exc:
                if exc.integrity:
                    raise IntegrityError(exc.message) from None
                if offline and exc.missing:
                    raise _Missing(name) from None
                raise
            blob = cache.publish_blob(art, partial)
            took = max(time.monotonic() - start, 1e-6)
            _log(f"  {name}: fetched {art.size:,} bytes in {took:.1f}s ({art.size / took / 1e6:.1f} MB/s) from {url}")
        elif not art.extract:
            _log(f"  {name}: cached, verified")
        if not art.extract:
            return {art.file: blob}
        stage = cache.stage_dir(art)
        try:
            index = extract(blob, stage, art)
            files = cache.publish_tree(art, stage, index)
        finally:
            if stage.exists():
                cache.remove(stage)
        _log(f"  {name}: extracted {len(files)} members, verified")
        return files


def fetch_set(manifest: Manifest, set_name: str, cache_dir: Path | None = None, offline: bool = False, *,
              policy: Policy | None = None, progress: bool = True) -> dict[str, FetchedModel]:
    """Every model of ``set_name``, verified in the cache. ``offline`` (or MLFREEZE_OFFLINE=1): no
    network: the cache, ``file://`` URLs, paths relative to the manifest and a mirror directory.

    Raises UsageError (unknown set), ConfigError (set names an unknown model), DownloadError or
    IntegrityError (exit 3) naming the artifact, the URLs tried and expected versus received.
    """
    models = check_set(manifest, set_name)
    offline = offline or env_offline()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache = Cache(root, log=_log)
    except OSError as exc:
        raise DownloadError(f"cannot use the model cache {root}: {exc.strerror}; "
                            "point --cache or MLFREEZE_CACHE at a writable directory") from None
    policy = policy or policy_from_env()
    result: dict[str, FetchedModel] = {}
    missing: list[str] = []
    unreachable: list[tuple[ArtifactSpec, AllUrlsFailed]] = []
    for model in models:
        files: dict[str, Path] = {}
        bundle: dict[str, Path] = {}
        complete = True
        for art in model.artifacts:
            try:
                got = fetch_artifact(cache, manifest, model, art, offline=offline, policy=policy, progress=progress)
            except OSError as exc:
                raise DownloadError(f"{_describe(model, art)}: cannot write to the cache {cache.root}: "
                                    f"{exc.strerror or exc}; check free space and permissions") from None
            except _Missing:
                missing.append(f"{_describe(model, art)} ({art.size:,} bytes)")
                complete = False
                continue
            except AllUrlsFailed as exc:
                if not exc.unreachable:
                    raise
                unreachable.append((art, exc))
                complete = False
                continue
            files.update(got)
            if art.extract:
                bundle.update({m.name: got[m.name] for m in art.members if m.bundle})
            elif art.bundle:
                bundle.update(got)
        if complete:
            result[model.id] = FetchedModel(model=model, files=files, bundle_files=bundle)
    if missing:
        raise DownloadError(f"offline: {len(missing)} artifact(s) of set {set_name!r} are neither in the cache "
                            f"{cache.root} nor in a local file: {', '.join(missing)}; run `mlfreeze fetch "
                            f"--set {set_name}` with network, or set {MIRROR_ENV} to a directory holding them")
    if unreachable:
        raise DownloadError(_unreachable_message(set_name, unreachable))
    return result


def _unreachable_message(set_name: str, failures: list[tuple[ArtifactSpec, AllUrlsFailed]]) -> str:
    hosts = sorted({urlparse(a.url).hostname or a.url for _, exc in failures for a in exc.attempts})
    files = ", ".join(art.file for art, _ in failures)
    tried = "; ".join(f"{a.url} ({a.reason})" for _, exc in failures for a in exc.attempts)
    hint = "" if set_name == "demo" else "use `--set demo` (small models committed in the repo, no network) or "
    return (f"model hosts unreachable ({', '.join(hosts)}): cannot fetch {files} of set {set_name!r}; "
            f"{hint}set {MIRROR_ENV} to a URL or directory holding {files}; tried {tried}")


def main(args: argparse.Namespace) -> int:
    manifest = load_manifest(project_manifest(args.manifest))
    set_name = args.model_set or default_model_set()
    cache_dir = Path(args.cache) if args.cache else None
    offline = bool(args.offline) or env_offline()
    _log(f"fetch: set {set_name!r} from {manifest.path}{' (offline)' if offline else ''}")
    fetched = fetch_set(manifest, set_name, cache_dir=cache_dir, offline=offline)
    for model_id, fm in fetched.items():
        size = sum(p.stat().st_size for p in fm.bundle_files.values())
        print(f"ok {model_id}: {len(fm.files)} files verified, {len(fm.bundle_files)} for the bundle "
              f"({size / 1e6:.1f} MB)")
    return 0
