"""``mlfreeze verify``: fetch a model set (cache first) and run the functional gate on it.

Exit 0 when every check passes (warnings allowed unless ``--strict``), else a
:class:`VerificationError` (exit 1) raised after the table, ``--report`` JSON and ``--junit``
XML are written, naming the failing checks. ``--pin-goldens`` records reference outputs on
the CPU into ``<manifest dir>/goldens/<id>.json`` (src/mlfreeze/specs/goldens/ for the project manifest).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError, UsageError, VerificationError
from mlfreeze.project.config import default_model_set, project_manifest


def goldens_dir_for(manifest_path: Path) -> Path:
    """Goldens live beside the manifest: ``goldens/`` next to the ``models.toml`` in use."""
    return manifest_path.resolve().parent / "goldens"


def summary_of(report: Mapping[str, Any]) -> dict[str, Any]:
    """What BUILD-INFO records of a verify report (verify.report.document): passed + the counts."""
    return {"passed": report["passed"], **report["summary"]}


def expected_providers(platform: str | None) -> list[str]:
    if not platform:
        return []
    from mlfreeze.platforms.profiles import load_profile

    return list(load_profile(platform).onnxruntime.providers)


def _local_files(fetched: Any) -> dict[str, Path]:
    """Artifact names -> paths; archive members when the fetch extracted an archive."""
    files = dict(getattr(fetched, "bundle_files", None) or {}) or dict(fetched.files)
    out: dict[str, Path] = {}
    for name, path in files.items():
        p = Path(path)
        if p.is_dir():
            for member in sorted(p.rglob("*")):
                if member.is_file():
                    out[member.relative_to(p).as_posix()] = member
        else:
            out[name] = p
    return out


def model_refs(manifest: Any, fetched: Mapping[str, Any], goldens_dir: Path,
               exports: Mapping[str, Any] | None = None) -> list[Any]:
    """Turn the fetch stage's result into the plain :class:`verify.result.ModelRef` the gate takes.

    ``exports`` (the export stage's ``{id: ExportedClip}``) adds a model's ONNX towers, with roles
    ``image_onnx`` / ``text_onnx``, when the manifest does not pin them."""
    from mlfreeze_runtime.verify.result import ModelRef

    refs = []
    for mid, item in fetched.items():
        spec = item.model
        roles = {a.file: getattr(a, "role", "") or "" for a in spec.artifacts}
        files = _local_files(item)
        ex = (exports or {}).get(mid)
        if ex is not None and "image_onnx" not in roles.values():
            files |= {f"{mid}_image.onnx": Path(ex.image), f"{mid}_text.onnx": Path(ex.text)}
            roles |= {f"{mid}_image.onnx": "image_onnx", f"{mid}_text.onnx": "text_onnx"}
        refs.append(ModelRef(id=mid, kind=spec.kind, arch=spec.arch, embed_dim=spec.embed_dim,
                             files=files, verify=dict(spec.verify or {}),
                             golden=goldens_dir / f"{mid}.json", roles=roles,
                             onnx_agreement=dict(getattr(spec, "onnx_agreement", {}) or {}),
                             provides=tuple(getattr(spec, "provides", ()) or ()),
                             revision=str(getattr(spec, "revision", "") or "")))
    return refs


def check_specs(manifest: Any, set_name: str) -> None:
    """Validate every ``[models.<id>.verify]`` table of the set before anything is fetched or run:
    a malformed one is a configuration error (exit 2, one line naming the dotted key)."""
    from mlfreeze_runtime.verify.spec import SpecError, parse

    for mid in manifest.sets[set_name]:
        model = manifest.models[mid]
        try:
            parse(mid, model.kind, dict(model.verify or {}))
        except SpecError as exc:
            raise ConfigError(f"{manifest.path}: {exc}") from None


def reference_sims_lines(refs: Sequence[Any], values: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    """For each CLIP model, the ``reference_sims`` line measured in this run (cosine of each
    zero-shot image with its own caption, in declared order), to paste into its verify table."""
    lines = []
    for ref in refs:
        vals = values.get(ref.id)
        shots = (ref.verify or {}).get("zero_shot") or []
        if ref.kind != "clip" or not vals or not shots:
            continue
        try:
            sims = [float(vals[f"sims/{z['image']}"][i]) for i, z in enumerate(shots)]
        except (KeyError, IndexError, TypeError):
            continue
        lines.append(f"[models.{ref.id}.verify] reference_sims = [{', '.join(f'{v:.4f}' for v in sims)}]")
    return lines


def run_gate(refs: Sequence[Any], *, device: str | None = None, platform: str | None = None,
             report: str | None = None, junit: str | None = None, strict: bool = False,
             pin_goldens: Path | None = None, set_name: str = "", flavor: str | None = None,
             out: Any = None, clip_path: str = "torch") -> int:
    """Run the gate on ``refs``, print the table, write reports; raise VerificationError on failure.

    ``clip_path``: ``torch`` (full), ``onnx`` (slim: every CLIP check on the ONNX towers, plus
    ``onnx_agreement.*`` against torch when torch is installed) or ``auto`` (see verify.gate.run)."""
    from mlfreeze_runtime.verify import gate
    from mlfreeze_runtime.verify import report as vreport
    from mlfreeze_runtime.verify.result import summarize

    out = out or sys.stdout
    try:
        dev = "cpu" if pin_goldens is not None else gate.runtime_device(device)
        providers = gate.runtime_providers(dev)
    except ValueError as exc:  # DEVICE / ONNX_PROVIDERS name something this machine does not have
        raise UsageError(str(exc)) from None
    expected = expected_providers(platform)
    run = gate.run(refs, device=dev, providers=providers, expected_providers=expected, clip_path=clip_path)
    if pin_goldens is not None:
        # the golden results are re-judged against the files just written; the models run once
        for path in gate.pin(run, pin_goldens, device=dev, models=refs):
            print(f"pinned {path}", file=out)
        for line in reference_sims_lines(refs, run.values):
            print(line, file=out)
    results = run.results
    print(vreport.table(results), file=out)
    context = {"set": set_name, "device": dev, "providers": providers, "expected_providers": expected,
               "platform": platform, "flavor": flavor, "seconds": run.seconds, "clip_path": clip_path}
    if report:
        vreport.write_json(Path(report), results, strict=strict, context=context)
    if junit:
        vreport.write_junit(Path(junit), results, strict=strict)
    s = summarize(results, strict=strict)
    print(f"verify: {s.checks} checks, {s.failed} failed, {s.warnings} warnings, {s.skipped} skipped"
          f"{' (strict)' if strict else ''}", file=out)
    if not s.passed:
        lines = vreport.failure_lines(results, strict=strict)
        for line in lines:
            print(f"FAILED {line}", file=sys.stderr)
        raise VerificationError(f"{len(lines)} check(s) failed, first: {lines[0]}; "
                                "fix the model or its declared thresholds in the models manifest "
                                "([models.<id>.verify])")
    return 0


def main(args: argparse.Namespace) -> int:
    from mlfreeze.models.fetch import env_offline, fetch_set
    from mlfreeze.models.manifest import load_manifest

    manifest = load_manifest(project_manifest(args.manifest))
    set_name = args.model_set or default_model_set()
    if set_name not in manifest.sets:
        raise UsageError(f"model set {set_name!r} is not in {manifest.path}; sets: {', '.join(sorted(manifest.sets))}")
    if not manifest.sets[set_name]:
        raise UsageError(f"model set {set_name!r} in {manifest.path} is empty: nothing to verify; "
                         "list its models under [sets] or choose another set with --set")
    check_specs(manifest, set_name)
    fetched = fetch_set(manifest, set_name, cache_dir=Path(args.cache) if args.cache else None, offline=env_offline())
    goldens_dir = goldens_dir_for(manifest.path)
    flavor = args.flavor
    exports = None
    if flavor == "slim":  # the slim bundle's CLIP is the ONNX export: verify that (mlfreeze.models.export)
        from mlfreeze.models.cache import Cache, default_cache_dir
        from mlfreeze.models.export import _log, export_model

        cache = Cache(Path(args.cache) if args.cache else default_cache_dir(), log=_log)
        exports = {mid: export_model(cache, fm) for mid, fm in fetched.items() if fm.model.kind == "clip"}
    refs = model_refs(manifest, fetched, goldens_dir, exports=exports)
    return run_gate(refs, device=args.device, platform=args.platform,
                    report=args.report, junit=args.junit, strict=args.strict,
                    pin_goldens=goldens_dir if args.pin_goldens else None, set_name=set_name,
                    flavor=flavor, clip_path="onnx" if flavor == "slim" else "torch")
