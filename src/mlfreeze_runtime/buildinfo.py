"""The one reader of a bundle's ``BUILD-INFO.json``, validated against its JSON schema (stdlib only).

``SCHEMA`` below is the schema (JSON Schema 2020-12); docs/build-info.schema.json is the same
document, written from it and checked equal by the tests, which also check with the
``jsonschema`` library that this module accepts and refuses exactly what the schema does.
The bundle (its updater, its self-test) reads BUILD-INFO with this module, so it cannot
depend on ``jsonschema`` (and its compiled dependencies): :func:`validate` implements the
handful of keywords the schema uses (type, const, enum, pattern, minimum, minLength,
required, properties, additionalProperties, items, anyOf, $ref), each error naming the key.

Used by ``mlfreeze audit``, ``release``, ``sizes`` and the SBOM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FILE_NAME = "BUILD-INFO.json"
SCHEMA_VERSION = 2
FLAVORS = ("full", "lite", "slim")  # slim: torch-free, CLIP as ONNX on onnxruntime; lite: no ML stack
MODEL_FLAVORS = ("full", "slim")  # the flavors that ship models/ and <app>-selftest

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_STR = {"type": "string", "minLength": 1}
_NSTR = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://mlfreeze.invalid/schemas/build-info/2.json",
    "title": "mlfreeze BUILD-INFO.json",
    "description": "What a bundle is and how it was made; written by `mlfreeze freeze` at the bundle root, "
                   "outside RECORD (it holds RECORD's sha256).",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "app", "version", "platform", "accelerator", "flavor", "archive_format",
                 "python", "torch", "cuda", "onnxruntime", "distributions", "model_set", "models",
                 "unpinned_goldens", "verification", "selftest", "prune", "record", "git_commit",
                 "inputs_sha256", "built_at"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "app": _STR,
        "version": _STR,
        "platform": _STR,
        "accelerator": _STR,
        "flavor": {"enum": list(FLAVORS)},
        "archive_format": {"enum": ["tar.gz", "zip"]},
        "python": _STR,
        "torch": _NSTR,
        "cuda": _NSTR,
        "onnxruntime": _NSTR,
        "distributions": {"type": "object", "additionalProperties": {"type": "string"},
                          "description": "distribution name -> version installed when the bundle was frozen"},
        "model_set": _NSTR,
        "models": {"type": "array", "items": {"$ref": "#/$defs/model"}},
        "unpinned_goldens": {
            "type": "array", "items": _STR,
            "description": "Ids of models this bundle holds without pinned goldens, opted out by name in "
                           "[tool.mlfreeze] unpinned_goldens; `mlfreeze release` refuses any other unpinned model."},
        "verification": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/verified"},
                                   {"$ref": "#/$defs/not_applicable"}],
                         "description": "The functional verification of exactly what this flavor ships; null "
                                        "when none was passed to freeze (audit and release refuse it)."},
        "selftest": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/result"}]},
        "prune": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["rule", "bytes"],
            "properties": {"rule": _STR, "bytes": _COUNT}}},
        "record": {
            "type": "object", "additionalProperties": False, "required": ["sha256", "files", "bytes"],
            "description": "sha256 of the RECORD file's bytes, its number of rows and their total size",
            "properties": {"sha256": {"$ref": "#/$defs/sha256"}, "files": _COUNT, "bytes": _COUNT}},
        "git_commit": {"type": ["string", "null"], "pattern": "^[0-9a-f]{40}$"},
        "inputs_sha256": {"$ref": "#/$defs/sha256"},
        # sha256 of the hash-pinned lock (locks/<profile>.txt) the build environment came from
        "lock_sha256": {"oneOf": [{"$ref": "#/$defs/sha256"}, {"type": "null"}]},
        "update_root": {"oneOf": [{"$ref": "#/$defs/sha256"}, {"type": "null"}],
                        "description": "sha256 of the public root of trust frozen in as update-root.json "
                                       "([tool.mlfreeze] update_root); null: <app>-update refuses remote updates"},
        "cuda_archs": {"type": "array", "items": {"type": "string", "pattern": "^(sm|compute)_[0-9]+[a-z]?$"},
                       "description": "CUDA compute capabilities the variant's runtime has kernels for "
                                      "(full: torch.cuda.get_arch_list(); slim: the profile's declared list); "
                                      "empty for a CPU variant"},
        "glibc": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/glibc"}],
                  "description": "Linux: the newest glibc the bundle's ELF files need (its floor: it runs on glibc >= "
                                 "floor) and the floor its profile allowed; null for macOS and Windows bundles"},
        "signing": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/signing"}],
                    "description": "How the freeze signed the bundle's binaries, before RECORD was written; null: "
                                   "unsigned"},
        "built_at": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"},
    },
    "$defs": {
        "sha256": _SHA256,
        "model": {
            "type": "object", "additionalProperties": False, "required": ["id", "kind", "files", "golden"],
            "properties": {
                "id": _STR, "kind": _STR,
                "files": {"type": "object", "additionalProperties": {"$ref": "#/$defs/sha256"},
                          "description": "path inside models/ (\"<id>/<file>\") -> sha256 at freeze time"},
                "golden": {"type": "boolean", "description": "pinned golden outputs ship in models/<id>/"}}},
        "glibc": {
            "type": "object", "additionalProperties": False,
            "required": ["floor", "file", "glibcxx", "glibcxx_file", "libstdcxx", "allowed", "allowed_by"],
            "properties": {
                "floor": {"type": ["string", "null"], "pattern": r"^2\.\d+$",
                          "description": "the newest GLIBC_ symbol version any ELF file needs"},
                "file": {"type": ["string", "null"], "description": "the bundle-relative file that needs it"},
                "glibcxx": {"type": ["string", "null"], "pattern": r"^3\.\d+(\.\d+)*$",
                            "description": "the newest GLIBCXX_ (libstdc++) symbol version any ELF file needs"},
                "glibcxx_file": _NSTR,
                "libstdcxx": {"enum": ["bundle", "host"],
                              "description": "whether libstdc++.so.6 ships in the bundle or comes from the machine"},
                "allowed": {"type": ["string", "null"], "pattern": r"^2\.\d+$",
                            "description": "the newest floor the build allowed (the profile's glibc_floor, or "
                                           "MLFREEZE_GLIBC_FLOOR for a local build)"},
                "allowed_by": {"type": ["string", "null"], "description": "\"profile <name>\" or "
                                                                         "\"MLFREEZE_GLIBC_FLOOR=<value>\""}}},
        "signing": {
            "type": "object", "additionalProperties": False, "required": ["kind", "tool", "files", "notarized"],
            "properties": {
                "kind": {"enum": ["authenticode", "codesign"]},
                "tool": {"enum": ["signtool", "osslsigncode", "codesign"]},
                "certificate_sha256": {"$ref": "#/$defs/sha256",
                                       "description": "Authenticode: SHA-256 of the signing certificate (DER)"},
                "identity": {"type": "string", "minLength": 1, "description": "codesign: the signing identity"},
                "files": {"type": "array", "items": _STR, "description": "bundle-relative paths this build signed"},
                "notarized": {"type": "boolean"}}},
        "result": {
            "type": "object", "additionalProperties": False, "required": ["passed", "checks", "failed"],
            "properties": {"passed": {"type": "boolean"}, "checks": _COUNT, "failed": _COUNT}},
        "verified": {
            "type": "object", "additionalProperties": False,
            "required": ["applies", "set", "flavor", "platform", "report", "report_sha256", "passed", "checks",
                         "failed", "warnings", "skipped"],
            "description": "The verify report of this flavor's models (dist/reports/verify-<platform>-<flavor>.json"
                           ", copied into the bundle as verify-report.json)",
            "properties": {
                "applies": {"const": True}, "set": _STR, "flavor": {"enum": list(FLAVORS)}, "platform": _STR,
                "report": _STR, "report_sha256": {"$ref": "#/$defs/sha256"}, "passed": {"type": "boolean"},
                "checks": _COUNT, "failed": _COUNT, "warnings": _COUNT, "skipped": _COUNT}},
        "not_applicable": {
            "type": "object", "additionalProperties": False,
            "required": ["applies", "reason", "check", "passed", "checks", "failed"],
            "description": "A flavor that ships no models: the check of its entry run from the frozen bundle "
                           "instead (health: `<app> --health`; serve: its server started, answered its readiness "
                           "URL and stopped; smoke: its smoke command); audit accepts it only when RECORD holds "
                           "no models/ file",
            "properties": {
                "applies": {"const": False}, "reason": _STR, "check": {"enum": ["health", "serve", "smoke"]},
                "passed": {"type": "boolean"}, "checks": _COUNT, "failed": _COUNT}},
    },
}

_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,),
                                       "integer": (int,), "number": (int, float), "boolean": (bool,),
                                       "null": (type(None),)}


class BuildInfoError(ValueError):
    """BUILD-INFO.json is missing, not JSON, or does not match the schema (the message says where)."""


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/$defs/")
    return SCHEMA["$defs"][name]  # type: ignore[no-any-return]


def _errors(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    """Every way ``value`` fails ``schema``; '' means the document's top level."""
    key = f"key '{where}'" if where else "the document"
    if schema.get("$ref") == "#/$defs/sha256" and not (isinstance(value, str) and re.fullmatch("[0-9a-f]{64}", value)):
        return [f"{key} must be a lowercase sha256 hex digest, got {json.dumps(value)}"]
    schema = _resolve(schema)
    if "anyOf" in schema:
        if any(not _errors(value, s, where) for s in schema["anyOf"]):
            return []
        forms = ", ".join(_resolve(s).get("type", "") if "$ref" not in s else s["$ref"].rsplit("/", 1)[1]
                          for s in schema["anyOf"])
        return [f"{key} matches none of its allowed forms ({forms})"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        return [f"{key} must be {json.dumps(schema['const'])}, got {json.dumps(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{key} is {json.dumps(value)}; allowed: {', '.join(map(str, schema['enum']))}"]
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is(value, n) for n in names):
            wanted = " or ".join("a JSON object" if n == "object" else n for n in names)
            return [f"{key} must be {wanted}, got {type(value).__name__}"]
    out: list[str] = []
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{key} must not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{key} is {value!r}, which does not match {schema['pattern']}")
    if _is(value, "number") and "minimum" in schema and value < schema["minimum"]:
        out.append(f"{key} is {value}, below {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"key '{where + '.' if where else ''}{k}' is missing" for k in schema.get("required", ())
                if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            sub = f"{where}.{k}" if where else str(k)
            if k in props:
                out += _errors(v, props[k], sub)
            elif extra is False:
                out.append(f"key '{sub}' is not a known key")
            elif isinstance(extra, dict):
                out += _errors(v, extra, sub)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += _errors(item, schema["items"], f"{where}[{i}]")
    return out


def errors(doc: Any) -> list[str]:
    """Every schema violation of ``doc``, one line each (empty: valid)."""
    return _errors(doc, SCHEMA, "")


def validate(doc: Any, where: str = FILE_NAME) -> dict[str, Any]:
    """``doc`` when it matches the schema, else BuildInfoError('<where>: <first problem> (+N more)')."""
    if isinstance(doc, dict) and doc.get("schema_version") != SCHEMA_VERSION:
        raise BuildInfoError(f"{where}: schema_version is {doc.get('schema_version')!r}; this reader reads "
                             f"{SCHEMA_VERSION}: rebuild the bundle with this mlfreeze")
    found = errors(doc)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise BuildInfoError(f"{where}: {found[0]}{more}")
    return doc  # type: ignore[no-any-return]


def read(bundle: Path) -> dict[str, Any]:
    """The validated BUILD-INFO.json of ``bundle``; BuildInfoError naming the file and key otherwise."""
    path = Path(bundle) / FILE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildInfoError(f"{path}: missing; rebuild the bundle with mlfreeze freeze") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BuildInfoError(f"{path}: not valid JSON ({exc})") from None
    return validate(doc, str(path))


def write(bundle: Path, info: Mapping[str, Any]) -> Path:
    """Validate ``info`` and write it to ``bundle/BUILD-INFO.json`` atomically."""
    path = Path(bundle) / FILE_NAME
    validate(dict(info), str(path))
    tmp = path.with_name(f".{FILE_NAME}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def schema_text() -> str:
    """docs/build-info.schema.json's exact text."""
    return json.dumps(SCHEMA, indent=2) + "\n"
