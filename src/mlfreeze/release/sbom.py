"""A CycloneDX (JSON, specVersion 1.5) bill of materials for one bundle.

Components come from two places, merged by normalised name:

1. ``BUILD-INFO.json``'s ``distributions`` map (what was installed when the bundle was frozen);
2. the ``*.dist-info`` folders PyInstaller copied into the bundle's ``_internal/``
   (what actually ships); a version found here wins over the map.

Each Python distribution is a ``library`` with a ``pkg:pypi/<name>@<version>`` purl; each
model file is a ``machine-learning-model`` component with its SHA-256, re-read from the
file by the audit (``hashes``), never copied from BUILD-INFO. The document holds no
clock time and no random serial: the serial number is a UUIDv5 of the bundle's identity,
and the timestamp is the release's ``SOURCE_DATE_EPOCH``, so the SBOM is reproducible too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from email.parser import HeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlfreeze import __version__

SPEC_VERSION = "1.5"
_NAMESPACE = uuid.UUID("6f1c1f3e-5d0a-4f43-9a38-2f0b1e6a8c11")  # mlfreeze's, fixed forever
_DIST_INFO = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.dist-info$")


def normalize(name: str) -> str:
    """PEP 503 name normalisation (also what the pypi purl type asks for)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def purl(name: str, version: str) -> str:
    """``pkg:pypi/<name>@<version>`` with the version percent-encoded (``+`` -> ``%2B``)."""
    return f"pkg:pypi/{normalize(name)}@{quote(version, safe='.-_~!')}"


def _read_metadata(dist_info: Path) -> tuple[str, str] | None:
    meta = dist_info / "METADATA"
    if meta.is_file():
        headers = HeaderParser().parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        if headers.get("Name") and headers.get("Version"):
            return str(headers["Name"]), str(headers["Version"])
    match = _DIST_INFO.match(dist_info.name)
    return (match["name"], match["version"]) if match else None


def bundled_distributions(bundle: Path) -> dict[str, tuple[str, str]]:
    """``{normalised name: (name, version)}`` from ``*.dist-info`` under ``_internal/``."""
    found: dict[str, tuple[str, str]] = {}
    internal = bundle / "_internal"
    if not internal.is_dir():
        return found
    for dist_info in sorted(internal.rglob("*.dist-info")):
        if dist_info.is_dir() and (nv := _read_metadata(dist_info)):
            found[normalize(nv[0])] = nv
    return found


def distributions(info: Mapping[str, Any], bundle: Path | None) -> dict[str, tuple[str, str]]:
    """The merged view: BUILD-INFO's map, overridden by what the bundle really holds."""
    merged: dict[str, tuple[str, str]] = {}
    for name, version in sorted((info.get("distributions") or {}).items()):
        merged[normalize(name)] = (name, str(version))
    if bundle is not None:
        merged.update(bundled_distributions(bundle))
    return dict(sorted(merged.items()))


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _model_components(info: Mapping[str, Any], hashes: Mapping[str, str]) -> list[dict[str, Any]]:
    components = []
    for model in info.get("models") or []:
        for relpath in sorted(model.get("files") or {}):  # relpath: "<id>/<file>" inside models/
            digest = hashes[f"models/{relpath}"]
            components.append({
                "type": "machine-learning-model",
                "bom-ref": f"model:{relpath}",
                "name": relpath,
                "group": str(model.get("id")),
                "hashes": [{"alg": "SHA-256", "content": str(digest)}],
                "properties": [{"name": "mlfreeze:model-kind", "value": str(model.get("kind", ""))}],
            })
    return components


def sbom(info: Mapping[str, Any], bundle: Path | None, *, epoch: int, hashes: Mapping[str, str]) -> dict[str, Any]:
    """The CycloneDX document for one bundle.

    ``info``: its BUILD-INFO.json as ``mlfreeze_runtime.buildinfo.read`` returns it; ``hashes``:
    ``{bundle relpath: sha256 hex}`` re-read from the files (``audit.AuditResult.hashes``), the
    source of every model component's hash. KeyError when a model file was not hashed.
    """
    identity = f"{info['app']}@{info['version']}/{info['platform']}/{info['flavor']}"
    app_ref = f"app:{identity}"
    libraries = [
        {"type": "library", "bom-ref": purl(name, version), "name": name, "version": version,
         "purl": purl(name, version)}
        for name, version in distributions(info, bundle).values()
    ]
    components = libraries + _model_components(info, hashes)
    properties = [{"name": f"mlfreeze:{key}", "value": str(info[key])}
                  for key in ("platform", "accelerator", "flavor", "python", "torch", "cuda", "onnxruntime",
                              "model_set", "git_commit")
                  if info.get(key) not in (None, "")]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(_NAMESPACE, identity)}",
        "version": 1,
        "metadata": {
            "timestamp": _iso(epoch),
            "tools": {"components": [{"type": "application", "name": "mlfreeze", "version": __version__}]},
            "component": {"type": "application", "bom-ref": app_ref, "name": str(info["app"]),
                          "version": str(info["version"]), "properties": properties},
        },
        "components": components,
        "dependencies": [{"ref": app_ref, "dependsOn": [c["bom-ref"] for c in components]}],
    }


def deb_purl(name: str, version: str, *, arch: str, suite: str) -> str:
    """``pkg:deb/debian/<name>@<version>?arch=<arch>&distro=debian-<suite>`` (version percent-encoded)."""
    return f"pkg:deb/debian/{quote(name, safe='.-_~+')}@{quote(version, safe='.-_~')}?arch={arch}&distro=debian-{suite}"


def oci_purl(record: Mapping[str, Any]) -> str:
    """``pkg:oci/<app>@sha256%3A<hex>?arch=...`` plus ``repository_url`` of the first push, if any."""
    out = f"pkg:oci/{quote(str(record['app']).lower(), safe='.-_~')}@{quote(str(record['digest']), safe='')}" \
          f"?arch={record['architecture']}"
    pushed = record.get("pushed") or []
    if pushed:
        repository = str(pushed[0]["ref"]).split("://")[-1].rsplit("@", 1)[0].rsplit(":", 1)[0]
        out += f"&repository_url={quote(repository, safe='/.-_~')}&tag={quote(str(record['tag']), safe='.-_~')}"
    return out


def image_sbom(record: Mapping[str, Any], *, epoch: int, bundle_sbom: str) -> dict[str, Any]:
    """The CycloneDX document of one container image (``image.json`` of ``mlfreeze image``): the
    image by digest, the Debian packages of its base, and the bundle (whose own SBOM,
    ``bundle_sbom``, lists its Python distributions and models)."""
    identity = f"{record['app']}@{record['version']}/{record['platform']}/{record['flavor']}/image"
    image_ref = f"image:{record['digest']}"
    base = record.get("base") or {}
    suite, arch = str(base.get("suite", "")), str(record["architecture"])
    debs = [{"type": "library", "bom-ref": deb_purl(n, v, arch=arch, suite=suite), "name": n, "version": v,
             "purl": deb_purl(n, v, arch=arch, suite=suite)} for n, v in sorted((base.get("packages") or {}).items())]
    bundle = {"type": "application", "bom-ref": f"app:{record['bundle']}", "name": str(record["bundle"]),
              "version": str(record["version"]),
              "externalReferences": [{"type": "bom", "url": bundle_sbom}]}
    components = [*debs, bundle]
    properties = [{"name": "mlfreeze:image-tag", "value": str(record["tag"])},
                  {"name": "mlfreeze:base", "value": f"debian {suite}"},
                  *({"name": "mlfreeze:pushed", "value": f"{p['ref']}@{p['digest']}"}
                    for p in record.get("pushed", []))]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(_NAMESPACE, identity + str(record['digest']))}",
        "version": 1,
        "metadata": {
            "timestamp": _iso(epoch),
            "tools": {"components": [{"type": "application", "name": "mlfreeze", "version": __version__}]},
            "component": {"type": "container", "bom-ref": image_ref, "name": str(record["app"]),
                          "version": str(record["digest"]), "purl": oci_purl(record),
                          "hashes": [{"alg": "SHA-256", "content": str(record["digest"]).split(":", 1)[1]}],
                          "properties": properties},
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": [c["bom-ref"] for c in components]}],
    }
