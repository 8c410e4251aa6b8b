"""Release fragments: a ``release/`` folder made on one build runner, merged into the release.

Each matrix job of release.yml runs ``mlfreeze release dist`` on its own runner (so the disk
of one runner only ever holds one platform's bundles) and uploads ``dist/release/`` as the
artifact ``release-<platform>``. The release job downloads them all into ``dist/`` and runs
``mlfreeze release dist`` again: the folders that hold a ``release-manifest.json`` are
fragments, merged here. Before anything is merged every file a fragment lists is hashed and
compared with its ``SHA256SUMS``, and every file its manifest names must be listed there.
Files are hard-linked into the new release (copied across file systems), so a fragment is
never changed and gigabytes are not copied twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError, IntegrityError
from mlfreeze.release import archives

MANIFEST = "release-manifest.json"
SUMS = "SHA256SUMS"
_ASSET_STRINGS = ("bundle", "version", "platform", "flavor", "archive", "sha256", "sbom")
_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64}) [ *](?P<name>[^/\\]+)$")


@dataclass(frozen=True, kw_only=True)
class Fragment:
    path: Path
    manifest: dict[str, Any]
    sums: dict[str, str]  # file name -> sha256, as listed (and checked)

    @property
    def assets(self) -> list[dict[str, Any]]:
        return list(self.manifest["assets"])


def is_fragment(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def asset_files(asset: dict[str, Any]) -> list[str]:
    """The files of one manifest asset: archive or parts (+ whole checksum), and the SBOM."""
    parts = [p["file"] for p in asset["parts"]]
    files = [*parts, f"{asset['archive']}.sha256"] if parts else [asset["archive"]]
    image = asset.get("image")
    return [*files, asset["sbom"], *([image["sbom"]] if isinstance(image, dict) and "sbom" in image else [])]


def read_sums(path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _LINE.match(line)
        if not match:
            raise ConfigError(f"{path}:{n}: not a `<sha256>  <file>` line; the fragment is damaged, rebuild it")
        sums[match["name"]] = match["digest"]
    return sums


def load_fragment(path: Path, schema_version: int) -> Fragment:
    """Read and check one fragment folder; every listed file is hashed."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path / MANIFEST}: not valid JSON ({exc}); rebuild the fragment") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != schema_version \
            or not isinstance(manifest.get("assets"), list):
        raise ConfigError(f"{path / MANIFEST}: not a schema_version {schema_version} release manifest; "
                          "rebuild the fragment with this mlfreeze")
    if not (path / SUMS).is_file():
        raise ConfigError(f"{path}: release fragment without {SUMS}; rebuild it")
    sums = read_sums(path / SUMS)
    for asset in manifest["assets"]:
        if not isinstance(asset, dict) or not all(isinstance(asset.get(k), str) for k in _ASSET_STRINGS) \
                or not isinstance(asset.get("parts"), list) \
                or not all(isinstance(p, dict) and isinstance(p.get("file"), str) for p in asset["parts"]):
            raise ConfigError(f"{path / MANIFEST}: an asset lacks one of {', '.join(_ASSET_STRINGS)} or parts; "
                              "rebuild the fragment")
        names = asset_files(asset)
        for name in names:
            if name not in sums:
                raise ConfigError(f"{path}: {name} is in the manifest but not in {SUMS}; rebuild the fragment")
    for name, digest in sorted(sums.items()):
        file = path / name
        if not file.is_file():
            raise IntegrityError(f"{file}: listed in {SUMS} but missing; download the artifact again")
        if archives.sha256_file(file) != digest:
            raise IntegrityError(f"{file}: sha256 differs from {SUMS}; the artifact is damaged, download or "
                                 "build it again")
    return Fragment(path=path, manifest=manifest, sums=sums)


def link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
