"""The agreement record: an ONNX export's proof that it says what the torch model says, kept
beside its two towers so that an environment without torch can still judge them.

``mlfreeze export`` (src/mlfreeze/models/export.py, with torch) measures both towers against the
torch model on the model's probes (:func:`mlfreeze_runtime.verify.onnx_checks.measure`) and writes
``agreement.json``::

    {"schema_version": 1, "model": "demo-clip",
     "derived_from": "demo-clip@<sha256 of the weights>", "weights_sha256": "<64 hex>",
     "towers": {"image": {"sha256": "<64 hex>", "size": 307818}, "text": {...}},
     "agreement": {"image": {"probes": 18, "min_cosine": 1.0, "worst": "...", "top_k": 5,
                             "candidates": 18, "top_k_moved": [], "problem": ""}, "text": {...}},
     "tolerances": {"precision": "fp32", "min_cosine": 0.999999, ...},   # in force when it was made
     "providers": ["CPUExecutionProvider"],
     "versions": {"torch": "...", "open_clip": "...", "onnxruntime": "...", "onnx": "..."},
     "options": {...the export options...}, "probes": {"images": [...], "captions": [...]},
     "created": "2026-12-01T10:00:00Z"}

The manifest pins it like any artifact (``role = "agreement"``); a slim bundle ships it. The check
:func:`check` (``onnx_agreement.record``) passes when the record names exactly the towers given
(sha256 of both), the pinned source (``derived_from``) and measurements that meet the model's
*current* ``[models.<id>.onnx_agreement]`` tolerances; anything else fails. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze_runtime.verify.result import FAIL, PASS, CheckResult

SCHEMA_VERSION = 1
ROLE = "agreement"
FILE_NAME = "agreement.json"
CHECK = "onnx_agreement.record"
TOWERS = ("image", "text")
FIX = "re-run `mlfreeze export` (with torch) for these towers and pin the record it writes (role \"agreement\")"


class RecordError(ValueError):
    """An agreement record is unreadable or malformed (one line)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def document(*, model: str, derived_from: str, image: Path, text: Path, measurements: Mapping[str, Any],
             tolerances: Mapping[str, Any], providers: Sequence[str], versions: Mapping[str, str],
             options: Mapping[str, Any], probe_images: Sequence[str], captions: Sequence[str],
             created: str = "") -> dict[str, Any]:
    """The record of ``image``/``text`` (paths) measured as ``measurements`` (tower -> ``TowerAgreement``
    or its ``as_dict()``)."""
    towers = {"image": Path(image), "text": Path(text)}
    return {
        "schema_version": SCHEMA_VERSION, "model": model, "derived_from": derived_from,
        "weights_sha256": derived_from.rpartition("@")[2],
        "towers": {t: {"sha256": sha256_file(p), "size": p.stat().st_size} for t, p in towers.items()},
        "agreement": {t: (m.as_dict() if hasattr(m, "as_dict") else dict(m)) for t, m in measurements.items()},
        "tolerances": dict(tolerances), "providers": list(providers), "versions": dict(versions),
        "options": dict(options), "probes": {"images": list(probe_images), "captions": list(captions)},
        "created": created,
    }


def write(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` to ``path`` atomically (a temporary file renamed over it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(path: Path) -> dict[str, Any]:
    """The record at ``path``, its structure checked (RecordError otherwise)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"{Path(path).name} is not a readable agreement record ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(f"{Path(path).name} is not an agreement record of schema_version {SCHEMA_VERSION}")
    try:
        for tower in TOWERS:
            if not isinstance(doc["towers"][tower]["sha256"], str) or not isinstance(doc["agreement"][tower], dict):
                raise TypeError(tower)
        if not isinstance(doc["derived_from"], str) or not isinstance(doc["model"], str):
            raise TypeError("model/derived_from")
    except (KeyError, TypeError) as exc:
        raise RecordError(f"{Path(path).name} lacks {exc} (towers.<tower>.sha256, agreement.<tower>, model, "
                          "derived_from)") from None
    return doc


def find(files: Mapping[str, Path], roles: Mapping[str, str]) -> Path | None:
    """The model's agreement record (the file with role ``agreement``), or None."""
    named = [files[n] for n, r in roles.items() if r == ROLE and n in files]
    return Path(named[0]) if named else None


def check(model: str, record: Path, *, image: Path, text: Path, derived_from: str, raw_tolerances: Mapping[str, Any],
          ) -> CheckResult:
    """``onnx_agreement.record``: the record names these towers and this source, and its
    measurements meet the model's tolerances (``raw_tolerances``: its ``[onnx_agreement]`` table)."""
    from mlfreeze_runtime.verify import onnx_checks

    expected = "an agreement record made with torch for exactly these towers, within the onnx_agreement tolerances"

    def fail(got: str) -> CheckResult:
        return CheckResult(model=model, check=CHECK, status=FAIL, expected=expected, got=got)

    try:
        doc = read(record)
        tol = onnx_checks.tolerances(raw_tolerances, f"models.{model}.onnx_agreement")
    except (RecordError, onnx_checks.AgreementSpecError) as exc:
        return fail(str(exc))
    if doc["model"] != model:
        return fail(f"{record.name} is the record of model {doc['model']!r}; {FIX}")
    for tower, path in (("image", image), ("text", text)):
        got = sha256_file(path)
        want = str(doc["towers"][tower]["sha256"])
        if got != want:
            return fail(f"{record.name} was made for another {tower} tower (sha256 {want[:12]}..., this one is "
                        f"{got[:12]}...): the towers are not the ones that were compared with torch; {FIX}")
    if derived_from and doc["derived_from"] != derived_from:
        return fail(f"{record.name} records source {doc['derived_from']!r}, the manifest pins {derived_from!r}; {FIX}")
    providers = [str(p) for p in doc.get("providers", [])]
    parts = []
    for tower in TOWERS:
        try:
            m = onnx_checks.TowerAgreement.from_dict(tower, doc["agreement"][tower])
        except (KeyError, TypeError, ValueError) as exc:
            return fail(f"{record.name}: agreement.{tower} is malformed ({exc}); {FIX}")
        ok, got = m.verdict(tol, providers)
        if not ok:
            return fail(f"the record shows the {tower} tower disagreeing with torch "
                        f"(bar {tol.bar(providers):g}): {got}")
        parts.append(f"{tower} min cosine {m.min_cosine:.7f}")
    versions = doc.get("versions", {})
    made = ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("torch", "open_clip", "onnxruntime"))
    return CheckResult(model=model, check=CHECK, status=PASS, expected=expected,
                       got=f"{record.name} matches both towers (sha256): {', '.join(parts)}, top-{tol.top_k} "
                           f"identical" + (f" (made with {made})" if made else ""))


def unproven_line(model: str) -> str:
    """The one line that refuses a model's unproven ONNX towers and says which proof to add
    (the slim gate's ``onnx_proof`` and ``mlfreeze release``)."""
    return (f"model {model}: its ONNX towers are unproven (no agreement record, no pinned goldens, no "
            "reference_sims), so a faulty export would pass: add an agreement record (`mlfreeze export` with "
            "torch writes it; pin it with role \"agreement\"), pin goldens (`nox -s pin-goldens` / `mlfreeze "
            "verify --pin-goldens`, which also writes reference_sims), or opt out with [tool.mlfreeze] "
            f"unproven_onnx = [\"{model}\"]")


def backs_towers(doc: Mapping[str, Any], tower_sha256: Mapping[str, str]) -> bool:
    """Whether a read record names exactly these towers (``{"image": hex, "text": hex}``)."""
    try:
        return all(str(doc["towers"][t]["sha256"]) == tower_sha256.get(t) for t in TOWERS)
    except (KeyError, TypeError):
        return False
