"""The face check suite: insightface ``FaceAnalysis`` (detection + recognition) from a folder.

Faces must be found where the manifest declares them (count, score, boxes inside the image),
none where it declares none; embeddings have the declared size, are finite and unit norm;
the same face flipped or rescaled stays close; different faces stay apart; the sessions run
on the providers the platform profile expects.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze_runtime.faces import load_face_analysis
from mlfreeze_runtime.verify import checks, goldens
from mlfreeze_runtime.verify.probes import load_bgr
from mlfreeze_runtime.verify.result import FAIL, PASS, SKIP, WARN, CheckResult, ModelRef
from mlfreeze_runtime.verify.spec import FacesSpec

ACCELERATOR_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "CoreMLExecutionProvider",
                         "DmlExecutionProvider", "ROCMExecutionProvider")


def assemble_folder(files: Mapping[str, Path], tmp: Path) -> Path:
    """A folder holding the model's ``.onnx`` files under their artifact names (links or copies)."""
    onnx = {Path(name).name: Path(p) for name, p in files.items() if str(name).endswith(".onnx")}
    if not onnx:
        raise FileNotFoundError(f"no .onnx files among {sorted(files)}")
    parents = {p.parent for p in onnx.values()}
    if len(parents) == 1 and all(p.name == n for n, p in onnx.items()):
        folder = next(iter(parents))
        if sorted(q.name for q in folder.glob("*.onnx")) == sorted(onnx):
            return folder
    for name, path in onnx.items():
        if not path.is_file():
            raise FileNotFoundError(f"model file {name} is missing ({path})")
        try:
            os.symlink(path, tmp / name)
        except OSError:
            import shutil

            shutil.copyfile(path, tmp / name)
    return tmp


def load_app(folder: Path, providers: Sequence[str], spec: FacesSpec) -> Any:
    return load_face_analysis(folder, providers=providers, det_size=spec.det_size, det_thresh=spec.det_thresh)


def session_providers(app: Any) -> dict[str, list[str]]:
    return {task: list(m.session.get_providers()) for task, m in app.models.items()}


def providers_check(model: str, app: Any, *, expected: Sequence[str], requested: Sequence[str]) -> CheckResult:
    """Expected providers exist in this onnxruntime build, and the sessions use the accelerator ones
    wherever this host can run them (``requested`` holds an accelerator only when its device exists)."""
    import onnxruntime

    available = list(onnxruntime.get_available_providers())
    missing = [p for p in expected if p not in available]
    used = session_providers(app)
    exp = f"providers {list(expected)} available and used by the face sessions"
    if missing:
        return CheckResult(model=model, check="providers", status=FAIL, expected=exp,
                           got=f"{', '.join(missing)} missing; onnxruntime offers {available}")
    silent = [f"{task} runs on {ps}" for task, ps in used.items()
              for p in expected if p in ACCELERATOR_PROVIDERS and p in requested and p not in ps]
    if silent:
        return CheckResult(model=model, check="providers", status=FAIL, expected=exp,
                           got=f"silently on CPU: {'; '.join(silent)}")
    idle = [p for p in expected if p in ACCELERATOR_PROVIDERS and p not in requested]
    got = f"sessions use {sorted({p for ps in used.values() for p in ps})}"
    if idle:
        got += f"; {', '.join(idle)} built in but no device on this host (session use not checked)"
    return CheckResult(model=model, check="providers", status=PASS, expected=exp, got=got)


def _faces(app: Any, img: Any) -> list[tuple[Any, float, Any, Any]]:
    return [(f.bbox.astype(float), float(f.det_score), f.embedding, f.normed_embedding) for f in app.get(img)]


def _match(a: list, b: list, mapping: Any) -> list[tuple[int, int]]:
    """Pair faces of ``a`` with faces of ``b`` whose box centre, mapped into ``a``'s frame, is nearest."""
    import numpy as np

    pairs = []
    for j, fb in enumerate(b):
        cb = mapping(fb[0])
        ds = [float(np.hypot(*(((fa[0][:2] + fa[0][2:4]) / 2) - cb))) for fa in a]
        if ds:
            pairs.append((int(np.argmin(ds)), j))
    return pairs


def _stability(model: str, name: str, app: Any, img: Any, base: list, transformed: Any, mapping: Any,
               min_cos: float | None, what: str) -> CheckResult:
    if min_cos is None:
        return CheckResult(model=model, check=name, status=SKIP, got="not declared for this model")
    other = _faces(app, transformed)
    if len(other) != len(base):
        return CheckResult(model=model, check=name, status=FAIL, expected=f"{len(base)} faces after {what}",
                           got=f"{len(other)} faces")
    cos = [float(base[i][3] @ other[j][3]) for i, j in _match(base, other, mapping)]
    worst = min(cos) if cos else float("nan")
    return CheckResult(model=model, check=name, status=PASS if worst >= min_cos else FAIL,
                       expected=f"cosine(face, face after {what}) >= {min_cos:g}", got=f"min {worst:.4f}")


def run(ref: ModelRef, spec: FacesSpec, *, providers: Sequence[str], expected_providers: Sequence[str],
        probes_dir: Path | None = None) -> tuple[list[CheckResult], goldens.Values | None]:
    import cv2
    import numpy as np

    mid = ref.id
    out: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix=f"mlfreeze-{mid}-") as tmp:
        t0 = time.perf_counter()
        try:
            folder = assemble_folder(ref.files, Path(tmp))
            app = load_app(folder, providers, spec)
        except (FileNotFoundError, RuntimeError, AssertionError, ValueError) as exc:
            return [CheckResult(model=mid, check="load", status=FAIL, expected="detection + recognition models",
                                got=str(exc) or type(exc).__name__, seconds=time.perf_counter() - t0)], None
        out.append(CheckResult(model=mid, check="load", status=PASS, expected="detection + recognition models",
                               got=", ".join(f"{t}={Path(m.model_file).name}" for t, m in app.models.items()),
                               seconds=time.perf_counter() - t0))
        out.append(providers_check(mid, app, expected=expected_providers, requested=providers))

        found: dict[str, list] = {}
        widths: dict[str, int] = {}
        images: dict[str, Any] = {}
        for probe in spec.faces:
            img = images[probe.image] = load_bgr(probe.image, probes_dir)
            faces = found[probe.image] = _faces(app, img)
            widths[probe.image] = img.shape[1]
            h, w = img.shape[:2]
            scores = [f[1] for f in faces]
            outside = [f[0].round(1).tolist() for f in faces
                       if f[0][0] < -0.05 * w or f[0][1] < -0.05 * h or f[0][2] > 1.05 * w or f[0][3] > 1.05 * h]
            ok = len(faces) == probe.count and all(s >= probe.min_score for s in scores) and not outside
            got = f"{len(faces)} faces, min score {min(scores) if scores else float('nan'):.3f}"
            if outside:
                got += f", boxes outside the image: {outside[:2]}"
            out.append(CheckResult(model=mid, check=f"faces_found[{probe.image}]", status=PASS if ok else FAIL,
                                   expected=f"{probe.count} faces with score >= {probe.min_score:g}, boxes inside",
                                   got=got))
        for name in spec.no_face:
            n = len(_faces(app, load_bgr(name, probes_dir)))
            out.append(CheckResult(model=mid, check=f"no_face[{name}]", status=PASS if n == 0 else FAIL,
                                   expected="0 faces", got=f"{n} faces"))

        all_faces = [f for fs in found.values() for f in fs]
        labels = [f"{name}#{i}" for name, fs in found.items() for i in range(len(fs))]
        if not all_faces:
            out.append(CheckResult(model=mid, check="embeddings", status=FAIL,
                                   expected="faces to embed on the declared face probes", got="no faces found"))
            return out, None
        raw = np.stack([np.asarray(f[2]) for f in all_faces])
        normed = np.stack([np.asarray(f[3]) for f in all_faces]).astype(np.float32)
        out += [checks.shape_dtype(mid, raw, rows=len(all_faces), dim=ref.embed_dim),
                checks.finite(mid, raw),
                checks.unit_norm(mid, normed, tolerance=spec.norm_tolerance)]
        if len(all_faces) > 1:
            out.append(checks.non_collapse(mid, normed, labels, check="distinct_faces",
                                           max_cosine=spec.distinct_max_cosine or spec.max_pairwise_cosine))
        first = spec.faces[0].image
        img, base = images[first], found[first]
        w = img.shape[1]
        out.append(_stability(mid, "flip_stable", app, img, base, np.ascontiguousarray(img[:, ::-1]),
                              lambda b: np.array([w - (b[0] + b[2]) / 2, (b[1] + b[3]) / 2]),
                              spec.flip_min_cosine, "a horizontal flip"))
        if spec.rescale is not None:
            s = spec.rescale
            small = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            out.append(_stability(mid, "rescale_stable", app, img, base, small,
                                  lambda b: np.array([(b[0] + b[2]) / 2 / s, (b[1] + b[3]) / 2 / s]),
                                  spec.rescale_min_cosine, f"rescaling by {s:g}"))
        else:
            out.append(CheckResult(model=mid, check="rescale_stable", status=SKIP, got="not declared for this model"))
        rerun = {name: _faces(app, images[name]) for name in found}
        again = np.stack([np.asarray(f[2]) for fs in rerun.values() for f in fs]) \
            if all(len(rerun[n]) == len(found[n]) for n in found) else np.zeros((0,))
        out.append(checks.determinism(mid, raw, again, tolerance=spec.determinism_tolerance))

        values = goldens.face_values({n: [(f[0], f[1], f[3]) for f in fs] for n, fs in found.items()}, widths)
        out.append(goldens.check(mid, ref.golden, values, tolerance=spec.golden_tolerance))
        out.append(_cross_device(mid, folder, spec, providers, images, normed))
        return out, values


def _cross_device(mid: str, folder: Path, spec: FacesSpec, providers: Sequence[str], images: dict[str, Any],
                  reference: Any) -> CheckResult:
    import numpy as np

    accel = [p for p in providers if p in ACCELERATOR_PROVIDERS]
    if not accel:
        return CheckResult(model=mid, check="cross_device", status=SKIP, got="no accelerator provider requested")
    cpu_app = load_app(folder, ["CPUExecutionProvider"], spec)
    cpu = [f[3] for name in images for f in _faces(cpu_app, images[name])]
    if len(cpu) != len(reference):
        return CheckResult(model=mid, check="cross_device", status=FAIL,
                           expected=f"{len(reference)} faces on CPU as on {accel[0]}", got=f"{len(cpu)}")
    res = checks.cross_device(mid, np.stack(cpu), reference, device=accel[0],
                              min_cosine=spec.cross_device_min_cosine)
    return res if res.status == PASS else CheckResult(**{**res.__dict__, "status": FAIL})


__all__ = ["run", "providers_check", "assemble_folder", "WARN"]
