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
    ``image_onnx`` / ``text_onnx``, when the manifest does not pin them, and their agreement record
    (role ``agreement``) when the manifest pins none. ``derived_from`` is the towers' pinned source."""
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
        record = getattr(ex, "agreement", None)
        if record is not None and "agreement" not in roles.values():
            files[f"{mid}_agreement.json"], roles[f"{mid}_agreement.json"] = Path(record), "agreement"
        source = next((a.derived_from for a in spec.artifacts if getattr(a, "derived_from", "")), "")
        refs.append(ModelRef(id=mid, kind=spec.kind, arch=spec.arch, embed_dim=spec.embed_dim,
                             files=files, verify=dict(spec.verify or {}),
                             golden=goldens_dir / f"{mid}.json", roles=roles,
                             onnx_agreement=dict(getattr(spec, "onnx_agreement", {}) or {}),
                             provides=tuple(getattr(spec, "provides", ()) or ()),
                             revision=str(getattr(spec, "revision", "") or ""),
                             derived_from=source or (ex.derived_from if ex is not None else "")))
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


def measured_reference_sims(refs: Sequence[Any], values: Mapping[str, Mapping[str, Sequence[float]]],
                            ) -> dict[str, list[float]]:
    """For each CLIP model, the ``reference_sims`` measured in this run: the cosine of each
    zero-shot image with its own caption, in declared order (from the golden values)."""
    out = {}
    for ref in refs:
        vals = values.get(ref.id)
        shots = (ref.verify or {}).get("zero_shot") or []
        if ref.kind != "clip" or not vals or not shots:
            continue
        try:
            out[ref.id] = [float(vals[f"sims/{z['image']}"][i]) for i, z in enumerate(shots)]
        except (KeyError, IndexError, TypeError):
            continue
    return out


def _sims_text(sims: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.6f}" for v in sims) + "]"


def reference_sims_lines(refs: Sequence[Any], values: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    """For each CLIP model, the ``reference_sims`` line measured in this run (6 decimals), to paste
    into its verify table."""
    return [f"[models.{mid}.verify] reference_sims = {_sims_text(sims)}"
            for mid, sims in measured_reference_sims(refs, values).items()]


def write_reference_sims(manifest_path: Path, sims: Mapping[str, Sequence[float]]) -> list[str]:
    """Add ``reference_sims = [...]`` to the ``[models.<id>.verify]`` table of every model in ``sims``
    that declares none, in ``manifest_path`` (the text is edited in place: comments and order stay;
    written atomically, then read back). Returns the ids written; ConfigError when a table cannot
    be found as a plain ``[models.<id>.verify]`` header (the caller prints the line to paste)."""
    import re

    from mlfreeze.schema import read_toml

    path = Path(manifest_path)
    text = path.read_text(encoding="utf-8")
    models = read_toml(path).get("models", {})
    written = []
    for mid, values in sims.items():
        table = (models.get(mid) or {}).get("verify") or {}
        if "reference_sims" in table:
            continue
        header = re.compile(r'^\[\s*models\s*\.\s*"?' + re.escape(mid) + r'"?\s*\.\s*verify\s*\][ \t]*(#.*)?$',
                            re.MULTILINE)
        found = list(header.finditer(text))
        if len(found) != 1:
            raise ConfigError(f"{path}: found no single [models.{mid}.verify] header to add reference_sims to; "
                              "paste the reference_sims line printed above into it")
        at = found[0].end()
        line = (f"\n# cos(image, its caption) per zero_shot probe, measured on the CPU by --pin-goldens\n"
                f"reference_sims = {_sims_text(values)}")
        text = text[:at] + line + text[at:]
        written.append(mid)
    if not written:
        return []
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        import tomllib

        check = tomllib.loads(text)["models"]
        if any(len(check[m]["verify"]["reference_sims"]) != len(sims[m]) for m in written):
            raise ValueError("reference_sims did not read back")
    except (ValueError, KeyError) as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: adding reference_sims would break it ({exc}); paste the lines printed "
                          "above by hand") from None
    tmp.replace(path)
    return written


def run_gate(refs: Sequence[Any], *, device: str | None = None, platform: str | None = None,
             report: str | None = None, junit: str | None = None, strict: bool = False,
             pin_goldens: Path | None = None, set_name: str = "", flavor: str | None = None,
             out: Any = None, clip_path: str = "torch", unproven_ok: Sequence[str] = (),
             manifest: Path | None = None) -> int:
    """Run the gate on ``refs``, print the table, write reports; raise VerificationError on failure.

    ``clip_path``: ``torch`` (full), ``onnx`` (slim: every CLIP check on the ONNX towers, plus
    ``onnx_agreement.*`` against torch when torch is installed, the agreement record, and
    ``onnx_proof``, which refuses towers backed by no record, goldens or reference_sims unless
    their model is in ``unproven_ok``) or ``auto`` (see verify.gate.run). With ``pin_goldens``,
    the reference_sims measured are also written into ``manifest`` for models that declare none."""
    from mlfreeze_runtime.verify import gate
    from mlfreeze_runtime.verify import report as vreport
    from mlfreeze_runtime.verify.result import FAIL, summarize

    out = out or sys.stdout
    try:
        dev = "cpu" if pin_goldens is not None else gate.runtime_device(device)
        providers = gate.runtime_providers(dev)
    except ValueError as exc:  # DEVICE / ONNX_PROVIDERS name something this machine does not have
        raise UsageError(str(exc)) from None
    expected = expected_providers(platform)
    run = gate.run(refs, device=dev, providers=providers, expected_providers=expected, clip_path=clip_path,
                   unproven_ok=unproven_ok)
    if pin_goldens is not None:
        # the golden results are re-judged against the files just written; the models run once
        for path in gate.pin(run, pin_goldens, device=dev, models=refs):
            print(f"pinned {path}", file=out)
        for line in reference_sims_lines(refs, run.values):
            print(line, file=out)
        if manifest is not None:
            sims = measured_reference_sims(refs, run.values)
            for mid in write_reference_sims(manifest, sims):
                print(f"pinned reference_sims of {mid} into [models.{mid}.verify] of {manifest}", file=out)
    results = run.results
    print(vreport.table(results), file=out)
    context = {"set": set_name, "device": dev, "providers": providers, "expected_providers": expected,
               "platform": platform, "flavor": flavor, "seconds": run.seconds, "clip_path": clip_path,
               "unproven_onnx": sorted(set(unproven_ok))}
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
        unproven = [r for r in results if r.check == gate.PROOF_CHECK and r.status == FAIL]
        if unproven:  # the one line that says which proof to add
            others = len(lines) - len(unproven)
            raise VerificationError(unproven[0].got + (f" ({others} other check(s) failed too)" if others else ""))
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
                    flavor=flavor, clip_path="onnx" if flavor == "slim" else "torch",
                    unproven_ok=project_unproven_onnx(), manifest=manifest.path)


def project_unproven_onnx() -> tuple[str, ...]:
    """``[tool.mlfreeze] unproven_onnx`` of the project, () outside a project (``--manifest`` runs)."""
    from mlfreeze.project.config import load_config

    try:
        return load_config().unproven_onnx
    except ConfigError:
        return ()
