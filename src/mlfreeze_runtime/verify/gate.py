"""The gate: run every declared check on a list of models and collect the results.

Used by the build stage (``src/mlfreeze/models/verification.py``) and by the frozen self-test; it takes
the device, the onnxruntime providers to request and the providers the profile expects as
parameters, so it imports nothing from ``mlfreeze``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze_runtime.verify import goldens
from mlfreeze_runtime.verify.result import FAIL, PASS, SKIP, CheckResult, ModelRef
from mlfreeze_runtime.verify.spec import ClipSpec, FacesSpec, SpecError, parse

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def runtime_device(requested: str | None = None) -> str:
    """``requested`` if given, else ``platforms.device.get_device()``, else ``cpu``."""
    if requested and requested != "auto":
        return requested
    try:
        from mlfreeze_runtime import device as pdev  # type: ignore[attr-defined]
    except ImportError:
        return "cpu"
    return str(pdev.get_device())


def runtime_providers(device: str) -> list[str]:
    """The providers to request: ``platforms.device.get_onnx_providers()``; CPU only when device is cpu."""
    if device == "cpu":
        return list(DEFAULT_PROVIDERS)
    try:
        from mlfreeze_runtime import device as pdev  # type: ignore[attr-defined]
    except ImportError:
        return list(DEFAULT_PROVIDERS)
    return list(pdev.get_onnx_providers())


@dataclass(kw_only=True)
class GateRun:
    results: list[CheckResult] = field(default_factory=list)
    values: dict[str, goldens.Values] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


EMPTY_SET = "(set)"


CLIP_PATHS = ("torch", "onnx", "auto")


def clip_path_for(ref: ModelRef, requested: str) -> str:
    """``torch`` or ``onnx`` for one CLIP model: ``auto`` is torch when torch and open_clip import
    here and the model lists its weights, else onnx (a slim bundle's self-test)."""
    if requested != "auto":
        return requested
    from mlfreeze_runtime.clip import torch_clip_available

    has_weights = "weights" in ref.roles.values() or any(
        n.endswith((".safetensors", ".bin", ".pt", ".pth")) for n in ref.files)
    return "torch" if has_weights and torch_clip_available() else "onnx"


PROOF_CHECK = "onnx_proof"
PROOFS = ("an agreement record", "pinned goldens", "reference_sims")


def onnx_towers_of(ref: ModelRef) -> tuple[Path, Path] | None:
    """The model's ONNX towers (roles ``image_onnx`` and ``text_onnx``), or None when it lists not both."""
    towers = {r: Path(ref.files[n]) for n, r in ref.roles.items() if r in ("image_onnx", "text_onnx")
              and n in ref.files}
    return (towers["image_onnx"], towers["text_onnx"]) if len(towers) == 2 else None


def record_check(ref: ModelRef, towers: tuple[Path, Path] | None) -> CheckResult | None:
    """``onnx_agreement.record`` of the model's agreement record (role ``agreement``) against its
    towers, or None when it lists no record or no towers."""
    from mlfreeze_runtime.verify import agreement_record

    record = agreement_record.find(ref.files, ref.roles)
    if record is None or towers is None:
        return None
    return agreement_record.check(ref.id, record, image=towers[0], text=towers[1], derived_from=ref.derived_from,
                                  raw_tolerances=ref.onnx_agreement)


def proof(ref: ModelRef, spec: ClipSpec, results: Sequence[CheckResult], *, opted_out: bool) -> CheckResult:
    """``onnx_proof``: the towers a slim bundle ships are backed by at least one reference that
    catches a faulty export without torch: a matching agreement record (``onnx_agreement.record``
    passed), pinned goldens, or declared ``reference_sims``. Else FAIL with the line that says
    which to add, unless the model is opted out (``[tool.mlfreeze] unproven_onnx``): SKIP."""
    expected = f"the ONNX towers backed by {', '.join(PROOFS[:2])} or {PROOFS[2]}"
    have = []
    if any(r.check == "onnx_agreement.record" and r.status == PASS for r in results):
        have.append("a matching agreement record")
    if ref.golden is not None and Path(ref.golden).is_file():
        have.append("pinned goldens")
    if spec.reference_sims:
        have.append(f"{len(spec.reference_sims)} reference_sims")
    if have:
        return CheckResult(model=ref.id, check=PROOF_CHECK, status=PASS, expected=expected, got=", ".join(have))
    if opted_out:
        return CheckResult(model=ref.id, check=PROOF_CHECK, status=SKIP, expected=expected,
                           got="none, opted out by [tool.mlfreeze] unproven_onnx: its towers ship unproven")
    from mlfreeze_runtime.verify.agreement_record import unproven_line

    return CheckResult(model=ref.id, check=PROOF_CHECK, status=FAIL, expected=expected, got=unproven_line(ref.id))


def _agreement_skipped(ref: ModelRef, why: str) -> list[CheckResult]:
    """``onnx_agreement.image``/``.text`` as SKIP: the towers were not compared with torch here, and why."""
    return [CheckResult(model=ref.id, check=f"onnx_agreement.{tower}", status=SKIP, expected="min cosine vs torch",
                        got=why) for tower in ("image", "text")]


def _run_clip(ref: ModelRef, spec: ClipSpec, *, path: str, device: str, providers: Sequence[str],
              probes_dir: Path | None, results: list[CheckResult], requested: str = "auto",
              require_proof: bool = False, opted_out: bool = False) -> Any:
    from mlfreeze_runtime.clip import importable
    from mlfreeze_runtime.verify import clip_checks

    towers = onnx_towers_of(ref)
    values = clip_checks.run(ref, spec, device=device, probes_dir=probes_dir, out=results)[1] \
        if path == "torch" else None
    if towers is not None and path == "torch" and not importable("onnxruntime"):
        # a torch-only environment (a CLIP app built full and lite): no bundle made here ships the
        # towers (full ships the weights), and a slim build's gate, whose lock has onnxruntime, runs them
        results += _agreement_skipped(ref, "onnxruntime is not installed in this environment, and no bundle built "
                                           "in it ships the towers (full ships the torch weights); a slim build's "
                                           "gate checks them")
    elif towers is not None and (path == "torch" or clip_path_for(ref, "auto") == "torch"):
        # the set pins towers beside the torch weights (verify them whenever verify runs), or a slim
        # build where torch is here too: prove the export against torch
        from mlfreeze_runtime.verify import onnx_checks

        results += onnx_checks.run(ref, *towers, raw_tolerances=ref.onnx_agreement, probes_dir=probes_dir,
                                   providers=providers)
    elif path == "onnx" and requested == "onnx":  # a torch-free build's verify: say the agreement did not run here
        results += _agreement_skipped(ref, "torch and open_clip are not installed in this environment (a slim-only "
                                           "build): the agreement record, the goldens and reference_sims stand in "
                                           "for it below")
    record = record_check(ref, towers)  # hashes and numbers: no onnxruntime needed
    if record is not None:
        results.append(record)
    if path == "torch":
        return values
    values = clip_checks.run_onnx(ref, spec, providers=providers, probes_dir=probes_dir, out=results)[1]
    if require_proof:
        results.append(proof(ref, spec, results, opted_out=opted_out))
    return values


def run(models: Sequence[ModelRef], *, device: str = "cpu", providers: Sequence[str] = DEFAULT_PROVIDERS,
        expected_providers: Sequence[str] = (), probes_dir: Path | None = None, clip_path: str = "torch",
        require_proof: bool | None = None, unproven_ok: Sequence[str] = ()) -> GateRun:
    """Every check of every model. A model whose suite raises keeps the results it produced before
    the exception, followed by one ``runtime`` FAIL naming it; an empty model list is one FAIL.

    ``clip_path`` (:data:`CLIP_PATHS`): how CLIP models run. ``torch``: open_clip (full bundles).
    ``onnx``: the exported towers on onnxruntime (slim bundles), every semantic check on that path,
    preceded by ``onnx_agreement.image``/``.text`` against torch when torch and the weights are at
    hand (the build environment). ``auto``: torch when available, else onnx (the frozen self-test).
    On the torch path, a model that also lists ONNX towers gets ``onnx_agreement.*`` (and its
    record checked): pinned towers are verified whenever the gate runs where onnxruntime is
    installed; elsewhere their agreement is SKIP with the reason (no bundle built there ships them)
    and the record is still checked.

    ``require_proof`` (default: when ``clip_path`` is ``onnx``, the build's slim gate): each CLIP
    model on the ONNX path gets ``onnx_proof`` (:func:`proof`), failing towers backed by no
    agreement record, goldens or reference_sims unless the model id is in ``unproven_ok``."""
    if clip_path not in CLIP_PATHS:
        raise ValueError(f"clip_path {clip_path!r}; allowed: {', '.join(CLIP_PATHS)}")
    gate = GateRun()
    install_names(models)
    if not models:
        gate.results.append(CheckResult(model=EMPTY_SET, check="models", status=FAIL,
                                        expected="at least one model to verify", got="the model set is empty"))
        return gate
    for ref in models:
        t = time.perf_counter()
        gate.kinds[ref.id] = ref.kind
        try:
            spec = parse(ref.id, ref.kind, ref.verify)
        except SpecError as exc:
            gate.results.append(CheckResult(model=ref.id, check="verify_spec", status=FAIL,
                                            expected="a valid verify table", got=str(exc)))
            continue
        missing = [n for n, p in ref.files.items() if not Path(p).exists()]
        if missing:
            gate.results.append(CheckResult(model=ref.id, check="files", status=FAIL,
                                            expected="every model file present",
                                            got=f"missing: {', '.join(f'{n} ({ref.files[n]})' for n in missing)}"))
            continue
        gate.results.append(CheckResult(model=ref.id, check="files", status=PASS,
                                        expected="every model file present", got=f"{len(ref.files)} files"))
        results: list[CheckResult] = []  # the suite appends here as it goes, so an exception loses nothing
        values: Any
        try:
            if isinstance(spec, ClipSpec):
                values = _run_clip(ref, spec, path=clip_path_for(ref, clip_path), device=device,
                                   providers=providers, probes_dir=probes_dir, results=results,
                                   requested=clip_path, opted_out=ref.id in set(unproven_ok),
                                   require_proof=clip_path == "onnx" if require_proof is None else require_proof)
            else:
                assert isinstance(spec, FacesSpec)
                from mlfreeze_runtime.verify import face_checks

                _, values = face_checks.run(ref, spec, providers=providers, expected_providers=expected_providers,
                                            probes_dir=probes_dir, out=results)
        except Exception as exc:  # a broken runtime (e.g. a file missing from a bundle) fails, never crashes
            values = None
            results.append(CheckResult(model=ref.id, check="runtime", status=FAIL,
                                       expected="the model's checks run to completion",
                                       got=(f"{type(exc).__name__}: {exc}".splitlines() or [""])[0]))
        if values is not None and ref.provides:  # the app's by-name loads give what was just verified
            results += by_name(ref, spec, clip_path=clip_path_for(ref, clip_path) if ref.kind == "clip" else "",
                               providers=providers, probes_dir=probes_dir)
        gate.results += results
        if values is not None:
            gate.values[ref.id] = values
        gate.seconds[ref.id] = time.perf_counter() - t
    return gate


def install_names(models: Sequence[ModelRef]) -> None:
    """By-name loads in this process resolve to ``models`` (:func:`mlfreeze_runtime.names.install`):
    the hub offline (forced), the hub cache laid out from their files, the libraries' downloads refused."""
    from mlfreeze_runtime import names

    names.install([names.Model(id=r.id, kind=r.kind, arch=r.arch, files=dict(r.files), roles=dict(r.roles),
                               verify=dict(r.verify), provides=tuple(r.provides), revision=r.revision)
                   for r in models], where="the verified models")


def by_name(ref: ModelRef, spec: Any, *, clip_path: str, providers: Sequence[str],
            probes_dir: Path | None) -> list[CheckResult]:
    """``by_name[<name>]`` per provided name (:mod:`mlfreeze_runtime.verify.byname_checks`)."""
    from mlfreeze_runtime.verify import byname_checks

    try:
        if isinstance(spec, ClipSpec):
            if clip_path != "torch":
                return [CheckResult(model=ref.id, check=f"by_name[{n}]", status=SKIP, expected="the app's load",
                                    got="CLIP runs as ONNX towers here: no torch for open_clip or clip.load")
                        for n in ref.provides]
            return byname_checks.clip_names(ref, spec, probes_dir=probes_dir)
        return byname_checks.face_names(ref, spec, providers=providers, probes_dir=probes_dir)
    except Exception as exc:  # the reference side broke: one failure, never a traceback
        return [CheckResult(model=ref.id, check="by_name", status=FAIL, expected="the by-name loads checked",
                            got=(f"{type(exc).__name__}: {exc}".splitlines() or [""])[0])]


def recorded_on(device: str = "cpu") -> dict[str, str]:
    import platform

    info = {"device": device, "python": platform.python_version(), "machine": platform.machine()}
    for mod in ("torch", "onnxruntime", "open_clip", "insightface"):
        with contextlib.suppress(Exception):  # an absent package just isn't recorded
            info[mod] = str(__import__(mod).__version__)
    return info


def pin(gate: GateRun, goldens_dir: Path, *, device: str = "cpu",
        models: Sequence[ModelRef] = ()) -> list[Path]:
    """Write ``<goldens_dir>/<id>.json`` for every model whose values were computed.

    With ``models`` (the refs the gate ran on), each model's ``golden`` result is then re-judged
    against the file just written, in place, without running the models a second time."""
    written = []
    tolerances = {}
    for ref in models:
        with contextlib.suppress(SpecError):
            tolerances[ref.id] = parse(ref.id, ref.kind, ref.verify).golden_tolerance
    for mid, values in gate.values.items():
        path = Path(goldens_dir) / f"{mid}.json"
        goldens.write(path, goldens.document(mid, gate.kinds[mid], values, recorded_on(device)))
        written.append(path)
        if mid in tolerances:
            fresh = goldens.check(mid, path, values, tolerance=tolerances[mid])
            gate.results = [fresh if (r.model, r.check) == (mid, "golden") else r for r in gate.results]
    return written
