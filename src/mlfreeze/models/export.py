"""``mlfreeze export``: each CLIP model's image and text towers to ONNX, isolated and cached.

Per CLIP model of the set:

1. **Pinned exports win.** A model whose manifest lists artifacts with roles ``image_onnx`` and
   ``text_onnx`` and ``derived_from = "<model id>@<weights sha256>"`` (the demo set) uses those
   fetched, sha256-checked files: no export runs and torch is not needed.
2. **Else the cache.** Exports are derived artifacts, content-addressed by :func:`export_key`:
   the sha256 of the source artifacts, the exporter's library versions (torch, onnx,
   open-clip-torch), :data:`EXPORT_FORMAT`, the :class:`ExportOptions` and the model's probes.
   They live under ``<cache>/derived/<key>/`` (``image.onnx``, ``text.onnx``, ``agreement.json``,
   ``export.json``), published by one rename of a complete staged directory and re-hashed on every
   use; a second run reuses them.
3. **Else a child process exports.** ``python child.py REQUEST.json`` (in the staging dir) loads the model through the
   runtime's one CLIP loader (``mlfreeze_runtime.clip.load_clip``, strict) and runs
   :func:`export_towers`. An exporter error or a crash of the child (a signal, an abort in a
   native library) is one line and exit 4 (:class:`~mlfreeze.errors.ExportError`), and nothing is
   published.

**Every pair of towers carries its proof.** The child that exports also measures both towers
against the torch model on the model's probes and writes the agreement record
(``agreement.json``, :mod:`mlfreeze_runtime.verify.agreement_record`: min cosines and top-k
rankings, torch/open_clip/onnxruntime versions, the export options, the sha256 of both towers
and of the source weights). Pinned towers use the pinned record (``role = "agreement"``); without
one, and with torch installed, a child measures them and the record is cached under
``<cache>/derived/<key>/`` like an export (``mlfreeze export`` prints the manifest entry that pins
it). Without torch and without a pinned record, pinned towers have no record (the slim gate then
needs goldens or reference_sims, ``onnx_proof``).

ONNX choices: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), which needs no
onnxscript; opset :data:`OPSET` = 17, the first with a native ``LayerNormalization`` (CLIP has
one per block), run by every onnxruntime the profiles install (>= 1.14; cu118's 1.18 included);
a dynamic batch axis; fp32. Why: docs/architecture.md ("Torch-free CLIP").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlfreeze.errors import ExportError

OPSET = 17
EXPORT_FORMAT = 2  # bump when export_towers writes different graphs for the same inputs (2: + agreement.json)
ROLE_IMAGE, ROLE_TEXT, ROLE_AGREEMENT = "image_onnx", "text_onnx", "agreement"
EXPORT_RECORD = "export.json"
AGREEMENT = "agreement.json"
FILES = {"image": "image.onnx", "text": "text.onnx"}
_LIBRARIES = ("torch", "onnx", "open-clip-torch")
_BOOT = "import sys\nfrom mlfreeze.models.export import child_main\nraise SystemExit(child_main(sys.argv[1]))\n"


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What changes the exported bytes besides the sources and the libraries."""

    opset: int = OPSET
    dynamic_batch: bool = True
    precision: str = "fp32"
    exporter: str = "torchscript"
    fp16_storage: bool = True  # store fp32 weights that are exactly fp16 values as fp16 (lossless)


@dataclass(frozen=True, kw_only=True)
class ExportedClip:
    """One model's two towers; ``origin`` is "pinned", "cache" or "exported"."""

    model_id: str
    image: Path
    text: Path
    derived_from: str
    origin: str
    key: str = ""
    agreement: Path | None = None  # the agreement record (pinned, cached or written now); None: none here


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def library_versions() -> dict[str, str]:
    """Installed versions of the exporter's libraries (metadata only: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def export_key(sources: dict[str, str], versions: dict[str, str], options: ExportOptions,
               extra: dict[str, Any] | None = None) -> str:
    """sha256 of the canonical JSON of what determines an export (file name -> sha256, versions, options,
    and ``extra``: the probes its agreement record is measured on)."""
    blob = json.dumps({"format": EXPORT_FORMAT, "sources": sources, "versions": versions,
                       "options": asdict(options), **({"extra": extra} if extra else {})},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def derived_from(model_id: str, weights_sha256: str) -> str:
    return f"{model_id}@{weights_sha256}"


# ---- the export itself (runs in the child; tests and bench call it in-process) ----

def export_towers(model: Any, out_dir: Path, *, image_size: int, preprocess_cfg: dict[str, Any],
                  context_length: int, embed_dim: int, source: str,
                  options: ExportOptions | None = None) -> dict[str, Path]:
    """Write ``image.onnx`` and ``text.onnx`` for an open_clip ``CLIP`` ``model`` into ``out_dir``.

    The image tower is ``model.encode_image`` (``pixels`` ``(N, 3, S, S)`` float32 -> ``embedding``
    ``(N, D)``), the text tower ``model.encode_text`` (``input_ids`` ``(N, context_length)`` int64 ->
    ``(N, D)``), both un-normalised, batch axis dynamic. Each file carries the metadata
    ``mlfreeze_runtime.onnx_clip`` reads. Returns tower -> path.
    """
    import onnx
    import torch

    from mlfreeze_runtime import onnx_clip as oc

    options = options or ExportOptions()
    if options.precision != "fp32" or options.exporter != "torchscript":
        raise ValueError(f"unsupported export options {options}")

    class Image(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, pixels: Any) -> Any:
            return self.clip.encode_image(pixels)

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, input_ids: Any) -> Any:
            return self.clip.encode_text(input_ids)

    model.eval()
    # the fused "fast path" of nn.MultiheadAttention (aten::_native_multi_head_attention) has no
    # ONNX symbolic; the unfused path computes the same attention
    torch.backends.mha.set_fastpath_enabled(False)
    dummy_ids = torch.zeros((2, context_length), dtype=torch.long)
    dummy_ids[:, 0], dummy_ids[:, 1] = 49406, 49407
    towers = {"image": (Image(), torch.zeros((2, 3, image_size, image_size)), oc.IMAGE_INPUT),
              "text": (Text(), dummy_ids, oc.TEXT_INPUT)}
    meta = {oc.META_IMAGE_SIZE: str(image_size), oc.META_PREPROCESS: json.dumps(preprocess_cfg, sort_keys=True),
            oc.META_CONTEXT: str(context_length), oc.META_EMBED_DIM: str(embed_dim), oc.META_SOURCE: source}
    out: dict[str, Path] = {}
    import warnings

    for tower, (module, dummy, input_name) in towers.items():
        path = Path(out_dir) / FILES[tower]
        axes = {input_name: {0: "batch"}, oc.OUTPUT: {0: "batch"}} if options.dynamic_batch else None
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=options.opset,
                              input_names=[input_name], output_names=[oc.OUTPUT], dynamic_axes=axes,
                              do_constant_folding=True)
        proto = onnx.load(str(path))
        if options.fp16_storage:
            store_exact_fp16(proto)
        for key, value in {**meta, oc.META_TOWER: tower}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        out[tower] = path
    return out


def store_exact_fp16(proto: Any, min_elements: int = 1024) -> int:
    """Store every fp32 initializer whose values are all exactly fp16 values as fp16 + a ``Cast``.

    Lossless by construction (each tensor is compared after the round trip; one differing value
    keeps the tensor fp32). CLIP checkpoints are usually fp16 values held in fp32 (OpenAI's
    weights, the demo's), so this halves the file; onnxruntime folds the ``Cast`` of a constant
    when the session is created, so inference runs the same fp32 graph. Returns the tensors changed.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts, changed = [], 0
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_elements:
            continue
        with np.errstate(over="ignore"):
            half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr):
            continue
        name = init.name
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(half, name=f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT,
                                      name=f"{name}__cast"))
        changed += 1
    for node in reversed(casts):
        graph.node.insert(0, node)
    return changed


def runtime_versions() -> dict[str, str]:
    """The versions an agreement record names: torch, open_clip, onnxruntime, onnx (as imported)."""
    import importlib

    out = {}
    for name in ("torch", "open_clip", "onnxruntime", "onnx"):
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except Exception:  # an absent or broken package is recorded as such
            out[name] = "absent"
    return out


def write_agreement(loaded: Any, image: Path, text: Path, out: Path, *, model_id: str, source: str,
                    verify: dict[str, Any], raw_tolerances: dict[str, Any], options: dict[str, Any]) -> Path:
    """Measure ``image``/``text`` (ONNX towers) against ``loaded`` (``mlfreeze_runtime.clip.load_clip``'s
    result) on the probes of ``verify`` (the model's verify table), on the CPU, and write the
    agreement record to ``out``. Returns ``out``. Raises ``OnnxClipError`` when the towers do not load."""
    from datetime import datetime, timezone

    from mlfreeze_runtime.clip import ClipEmbedder
    from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder
    from mlfreeze_runtime.verify import agreement_record, onnx_checks
    from mlfreeze_runtime.verify.probes import load_rgb

    try:
        tol = onnx_checks.tolerances(raw_tolerances, f"models.{model_id}.onnx_agreement")
    except onnx_checks.AgreementSpecError:
        tol = onnx_checks.Tolerances()  # the gate reports the bad table; the record keeps the raw numbers
    names, captions = onnx_checks.probes(verify)
    onnx_emb = OnnxClipEmbedder(image, text, providers=[onnx_checks.CPU_PROVIDER])
    img, txt, _ = onnx_checks.measure(ClipEmbedder(loaded, "cpu"), onnx_emb, [load_rgb(n) for n in names], names,
                                      captions, tol.top_k)
    doc = agreement_record.document(
        model=model_id, derived_from=source, image=image, text=text, measurements={"image": img, "text": txt},
        tolerances=asdict(tol), providers=onnx_emb.providers, versions=runtime_versions(), options=options,
        probe_images=names, captions=captions,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return agreement_record.write(out, doc)


def onnx_options(image: Path, text: Path) -> dict[str, Any]:
    """What the ONNX files say of how they were made (pinned towers: mlfreeze did not export them)."""
    out: dict[str, Any] = {"exporter": "pinned towers (not exported here)"}
    try:
        import onnx

        for tower, path in (("image", image), ("text", text)):
            proto = onnx.load(str(path), load_external_data=False)
            out[f"{tower}_opsets"] = {o.domain or "ai.onnx": int(o.version) for o in proto.opset_import}
            out[f"{tower}_producer"] = f"{proto.producer_name} {proto.producer_version}".strip()
    except Exception as exc:  # the record stays useful without these details
        out["note"] = f"opsets not read ({type(exc).__name__})"
    return out


def child_main(request_path: str) -> int:
    """The child process: load strictly through the runtime's CLIP loader, export (unless the request
    names towers to measure), write the agreement record; exit 0 (or 1, one line)."""
    req = json.loads(Path(request_path).read_text())
    try:
        from mlfreeze_runtime.clip import load_clip

        loaded = load_clip(arch=req["arch"], weights=Path(req["weights"]),
                           config=Path(req["config"]) if req.get("config") else None,
                           declared_quick_gelu=bool(req["quick_gelu"]))
        out = Path(req["out"])
        if req.get("towers"):  # pinned towers: only their agreement record
            image, text = Path(req["towers"]["image"]), Path(req["towers"]["text"])
            options = onnx_options(image, text)
        else:
            context_length = int(loaded.tokenizer.context_length)
            paths = export_towers(loaded.model, out, image_size=loaded.image_size,
                                  preprocess_cfg=dict(loaded.preprocess_cfg), context_length=context_length,
                                  embed_dim=int(req["embed_dim"]), source=req["derived_from"],
                                  options=ExportOptions(**req["options"]))
            image, text, options = paths["image"], paths["text"], dict(req["options"])
        write_agreement(loaded, image, text, out / AGREEMENT, model_id=req["model_id"], source=req["derived_from"],
                        verify=dict(req["verify"]), raw_tolerances=dict(req["onnx_agreement"]), options=options)
    except Exception as exc:  # one line for the parent; the parent turns it into exit 4
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"export error: {type(exc).__name__}: {first}", file=sys.stderr, flush=True)
        return 1
    return 0


# ---- the parent: pins, cache, child ----

def _pinned(fetched: Any) -> ExportedClip | None:
    model = fetched.model
    image, text = fetched.role(ROLE_IMAGE), fetched.role(ROLE_TEXT)
    record = fetched.role(ROLE_AGREEMENT)
    if image is None and text is None:
        if record is not None:
            raise ExportError(f"model {model.id}: the manifest pins an agreement record but no ONNX towers; "
                              f"pin both towers (roles {ROLE_IMAGE}, {ROLE_TEXT}) with it, or drop it")
        return None
    if image is None or text is None:
        raise ExportError(f"model {model.id}: the manifest pins only one ONNX tower; "
                          f"list both roles {ROLE_IMAGE} and {ROLE_TEXT}, or neither")
    weights = next(a for a in model.artifacts if a.role == "weights")
    want = derived_from(model.id, weights.sha256)
    for art in model.artifacts:
        if art.role in (ROLE_IMAGE, ROLE_TEXT, ROLE_AGREEMENT) and art.derived_from != want:
            raise ExportError(f"model {model.id}: {art.file} is derived_from {art.derived_from!r}, "
                              f"not from the pinned weights ({want}); re-export and re-pin it")
    return ExportedClip(model_id=model.id, image=image, text=text, derived_from=want, origin="pinned",
                        agreement=record)


def _sha(path: Path) -> str:
    from mlfreeze.models.cache import hash_file

    return hash_file(path)[1]


def _cached(entry: Path) -> dict[str, Any] | None:
    """The record of a complete, intact cache entry, else None (a damaged entry is reported)."""
    try:
        record = json.loads((entry / EXPORT_RECORD).read_text())
        if not record["files"]:
            raise ValueError("it lists no files")
        for name, facts in record["files"].items():
            if _sha(entry / name) != facts["sha256"]:
                raise ValueError(f"{name} differs from its record")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        _log(f"  export cache: {entry} is damaged ({exc}); exporting again")
        return None
    return dict(record)


def export_clips(fetched: Mapping[str, Any], cache_dir: Path | None = None) -> dict[str, ExportedClip]:
    """The ONNX towers of every CLIP model of ``fetched`` (fetch_set()'s result), ``{model id: ExportedClip}``:
    pinned exports as fetched (no torch), others from the derived-artifact cache or a child export."""
    from mlfreeze.models.cache import Cache, default_cache_dir

    cache = Cache(cache_dir or default_cache_dir(), log=_log)
    exports: dict[str, ExportedClip] = {}
    for mid, fm in fetched.items():
        if fm.model.kind == "clip":
            exports[mid] = export_model(cache, fm)
            _log(f"export: {mid}: {exports[mid].origin} ONNX towers, derived from {exports[mid].derived_from}")
    return exports


def _cached_record(cache: Any, pinned: ExportedClip) -> Path | None:
    """An intact cached agreement record of exactly these pinned towers (made earlier where torch was
    installed, with the same cache), else None."""
    want = {"image": _sha(pinned.image), "text": _sha(pinned.text)}
    for meta in sorted((cache.root / "derived").glob(f"*/{EXPORT_RECORD}")):
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("towers") == want and doc.get("derived_from") == pinned.derived_from \
                and _cached(meta.parent) is not None:
            return Path(meta.parent / AGREEMENT)
    return None


def _torch_here() -> bool:
    from mlfreeze_runtime.clip import torch_clip_available

    return torch_clip_available()


def _child(cache: Any, model: Any, request: dict[str, Any], key: str, outputs: tuple[str, ...], what: str,
           timeout: float | None) -> Path:
    """Run the export child for ``request`` into a staged dir and publish it as ``derived/<key>/``
    (holding ``outputs`` + export.json); returns the entry (ExportError, exit 4, on any failure)."""
    from mlfreeze import _proc as proc

    entry: Path = cache.root / "derived" / key
    if entry.exists():
        cache.remove(entry)
    stage = cache.tmp / f"export-{key}-{uuid.uuid4().hex}"
    stage.mkdir(parents=True)
    try:
        (stage / "request.json").write_text(json.dumps({**request, "out": str(stage)}))
        (stage / "child.py").write_text(_BOOT)
        _log(f"  {model.id}: {what} in a child process")
        try:
            rc = proc.run([sys.executable, stage / "child.py", stage / "request.json"], check=False, timeout=timeout)
        except Exception as exc:  # subprocess.TimeoutExpired, OSError
            raise ExportError(f"model {model.id}: the ONNX export process failed ({exc}); "
                              "see the lines above") from None
        if rc != 0:
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise ExportError(f"model {model.id}: the ONNX export process {how}; see the 'export error' "
                              "line above, fix it, or pin exported towers in models.toml")
        missing = [n for n in outputs if not (stage / n).is_file()]
        if missing:
            raise ExportError(f"model {model.id}: the export process wrote no {', '.join(missing)}")
        (stage / "request.json").unlink()
        (stage / "child.py").unlink()
        record = {"key": key, "derived_from": request["derived_from"], "versions": library_versions(),
                  "towers": {t: _sha(Path(p)) for t, p in request.get("towers", {}).items()},
                  "options": request["options"], "format": EXPORT_FORMAT,
                  "files": {n: {"sha256": _sha(stage / n), "size": (stage / n).stat().st_size} for n in outputs}}
        (stage / EXPORT_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))
        entry.parent.mkdir(parents=True, exist_ok=True)
        os.rename(stage, entry)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return entry


def export_model(cache: Any, fetched: Any, options: ExportOptions | None = None, *,
                 timeout: float | None = None) -> ExportedClip:
    """One CLIP model's towers and their agreement record: pinned, cached or made now (raises
    ExportError, exit 4). Pinned towers without a pinned record get one when torch is here."""
    from dataclasses import replace

    from filelock import FileLock

    from mlfreeze_runtime.verify.onnx_checks import probes

    options = options or ExportOptions()
    pinned = _pinned(fetched)
    model = fetched.model
    if pinned is not None and pinned.agreement is not None:
        return pinned
    if pinned is not None and not _torch_here():
        found = _cached_record(cache, pinned)
        if found is not None:
            _log(f"  {model.id}: agreement record of the pinned ONNX towers from the cache ({found})")
            return replace(pinned, agreement=found)
        _log(f"  {model.id}: pinned ONNX towers without an agreement record (role {ROLE_AGREEMENT!r}); torch is "
             "not installed here to make one")
        return pinned
    weights, config = fetched.role("weights"), fetched.role("config")
    weights_art = next((a for a in model.artifacts if a.role == "weights"), None)
    if weights is None or weights_art is None:
        raise ExportError(f"model {model.id}: no artifact with role 'weights' to export from")
    sources = {a.file: a.sha256 for a in model.artifacts if a.role in ("weights", "config")}
    source = derived_from(model.id, weights_art.sha256)
    verify = dict(model.verify or {})
    extra = {"probes": list(probes(verify)), "onnx_agreement": dict(model.onnx_agreement or {})}
    request = {"model_id": model.id, "arch": model.arch, "weights": str(weights),
               "config": str(config) if config else None, "quick_gelu": bool(verify.get("quick_gelu", False)),
               "embed_dim": model.embed_dim, "derived_from": source, "options": asdict(options), "verify": verify,
               "onnx_agreement": dict(model.onnx_agreement or {})}
    if pinned is not None:  # pinned towers, torch here: measure them and cache their record
        towers = {"image": str(pinned.image), "text": str(pinned.text)}
        key = export_key({**sources, "image.onnx": _sha(pinned.image), "text.onnx": _sha(pinned.text)},
                         library_versions(), options, {**extra, "kind": "agreement of pinned towers"})
        with FileLock(str(cache.locks / f"export-{key}.lock")):
            entry = cache.root / "derived" / key
            if _cached(entry) is None:
                entry = _child(cache, model, {**request, "towers": towers}, key, (AGREEMENT,),
                               "measuring the pinned ONNX towers against torch (agreement record)", timeout)
        return replace(pinned, agreement=entry / AGREEMENT, key=key)
    key = export_key(sources, library_versions(), options, extra)
    entry = cache.root / "derived" / key
    with FileLock(str(cache.locks / f"export-{key}.lock")):
        if _cached(entry) is not None:
            _log(f"  {model.id}: ONNX towers from the cache ({entry})")
            origin = "cache"
        else:
            _child(cache, model, request, key, (*FILES.values(), AGREEMENT),
                   f"exporting image and text towers to ONNX (opset {options.opset}) and measuring them "
                   "against torch", timeout)
            origin = "exported"
    return ExportedClip(model_id=model.id, image=entry / FILES["image"], text=entry / FILES["text"],
                        derived_from=source, origin=origin, key=key, agreement=entry / AGREEMENT)


def export_set(manifest: Any, set_name: str, cache_dir: Path | None = None,
               options: ExportOptions | None = None) -> dict[str, ExportedClip]:
    """The ONNX towers of every CLIP model of ``set_name`` (fetching the sources first, exit 3 on failure)."""
    from mlfreeze.models.cache import Cache, default_cache_dir
    from mlfreeze.models.fetch import fetch_set

    fetched = fetch_set(manifest, set_name, cache_dir=cache_dir, progress=False)
    cache = Cache(Path(cache_dir) if cache_dir is not None else default_cache_dir(), log=_log)
    return {mid: export_model(cache, fm, options) for mid, fm in fetched.items() if fm.model.kind == "clip"}


def main(args: argparse.Namespace) -> int:
    from mlfreeze.models.manifest import load_manifest
    from mlfreeze.project.config import default_model_set, project_manifest

    # the project's manifest through the one config loader, as fetch and verify read it
    manifest = load_manifest(project_manifest(args.manifest))
    set_name = args.model_set or default_model_set()
    cache_dir = Path(args.cache) if args.cache else None
    _log(f"export: set {set_name!r} from {manifest.path}")
    done = export_set(manifest, set_name, cache_dir=cache_dir)
    if not done:
        print(f"ok: set {set_name!r} has no CLIP model; nothing to export")
    for mid, ex in done.items():
        print(f"ok {mid}: {ex.origin} ONNX towers, derived from {ex.derived_from}: {ex.image}, {ex.text}")
        if ex.agreement is None:
            print(f"note {mid}: no agreement record (pinned towers, no torch here); a slim build then needs pinned "
                  "goldens or reference_sims, or run `mlfreeze export` where torch is installed")
        elif ex.origin == "pinned" and ex.key:
            print(pin_lines(mid, ex.agreement, ex.derived_from))
        else:
            print(f"ok {mid}: agreement record {ex.agreement}")
    return 0


def pin_lines(model_id: str, record: Path, source: str) -> str:
    """The manifest entry that pins an agreement record (copy the file beside the manifest first)."""
    name = f"{model_id}_agreement.json"
    return (f"ok {model_id}: agreement record {record}; to pin it, copy it beside your models.toml as "
            f"{name} and add:\n[[models.{model_id}.artifacts]]\nfile = \"{name}\"\n"
            f"role = \"{ROLE_AGREEMENT}\"\nderived_from = \"{source}\"\nsha256 = \"{_sha(record)}\"\n"
            f"size = {record.stat().st_size}\nurls = [\"{name}\"]")
