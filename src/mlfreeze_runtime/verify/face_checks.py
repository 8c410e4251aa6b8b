"""The face check suite: insightface ``FaceAnalysis`` (detection + recognition) from a folder.

Faces must be found where the manifest declares them (count, score, boxes inside the image),
none where it declares none; raw embeddings have the declared size and dtype, are finite and
not (near) zero; the same face flipped, relit, gamma-curved, blurred or rescaled stays close
while distinct people stay apart (random recognizer weights cannot do both); a batch equals one
crop at a time and a second session equals the first; the sessions run on the providers the
platform profile expects.
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
            os.symlink(path.absolute(), tmp / name)  # a relative target would resolve inside tmp
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


def augmentations(img: Any) -> list[tuple[str, Any, Any]]:
    """(name, augmented BGR image, box-centre mapping into the original's frame): a real horizontal
    flip, a brightness/contrast change, a gamma curve and a slight Gaussian blur. A recognizer
    must keep each face close to itself; none of these changes who is in the picture."""
    import cv2
    import numpy as np

    w = img.shape[1]

    def same(b: Any) -> Any:
        return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])

    def mirrored(b: Any) -> Any:
        return np.array([w - (b[0] + b[2]) / 2, (b[1] + b[3]) / 2])

    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** 0.8, 0, 255).astype(np.uint8)
    return [
        ("flip", np.ascontiguousarray(img[:, ::-1]), mirrored),
        ("brightness/contrast", np.clip(img.astype(np.float32) * 0.9 + 12, 0, 255).astype(np.uint8), same),
        ("gamma 0.8", cv2.LUT(img, lut), same),
        ("blur", cv2.GaussianBlur(img, (5, 5), 1.0), same),
    ]


def augment_stable(model: str, app: Any, images: dict[str, Any], found: dict[str, list], *,
                   min_cos: float) -> CheckResult:
    """Every face, augmented (:func:`augmentations`), stays at cosine >= ``min_cos`` of itself."""
    import numpy as np

    worst, where, problems = float("inf"), "", []
    for name, img in images.items():
        base = found[name]
        for what, aug, mapping in augmentations(img):
            other = _faces(app, aug)
            # each original face is paired with the augmented face whose mapped box centre is
            # nearest; one with none within half its box width was lost (an extra face is ignored)
            for i, fa in enumerate(base):
                centre = (fa[0][:2] + fa[0][2:4]) / 2
                dists = [float(np.hypot(*(mapping(fb[0]) - centre))) for fb in other]
                j = int(np.argmin(dists)) if dists else -1
                if j < 0 or dists[j] > (fa[0][2] - fa[0][0]) / 2:
                    problems.append(f"{name}#{i} not found after {what}")
                    continue
                c = float(fa[3] @ other[j][3])
                if not c >= worst:
                    worst, where = c, f"{name}#{i} after {what}"
    exp = f"cosine(face, same face after flip/brightness/gamma/blur) >= {min_cos:g}"
    if problems:
        return CheckResult(model=model, check="augment_stable", status=FAIL, expected=exp, got="; ".join(problems[:2]))
    ok = worst >= min_cos
    return CheckResult(model=model, check="augment_stable", status=PASS if ok else FAIL, expected=exp,
                       got=f"min {worst:.4f} ({where})")


def rescale_stable(model: str, app: Any, img: Any, base: list, spec: FacesSpec) -> CheckResult:
    import cv2
    import numpy as np

    if spec.rescale is None or spec.rescale_min_cosine is None:
        return CheckResult(model=model, check="rescale_stable", status=SKIP, got="not declared for this model")
    s = spec.rescale
    small = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    other = _faces(app, small)
    exp = f"cosine(face, face after rescaling by {s:g}) >= {spec.rescale_min_cosine:g}"
    if len(other) != len(base):
        return CheckResult(model=model, check="rescale_stable", status=FAIL, expected=exp,
                           got=f"{len(other)} faces instead of {len(base)}")
    cos = [float(base[i][3] @ other[j][3])
           for i, j in _match(base, other, lambda b: np.array([(b[0] + b[2]) / 2 / s, (b[1] + b[3]) / 2 / s]))]
    worst = min(cos) if cos else float("nan")
    return CheckResult(model=model, check="rescale_stable", status=PASS if worst >= spec.rescale_min_cosine else FAIL,
                       expected=exp, got=f"min {worst:.4f}")


def batch_consistency(model: str, app: Any, images: dict[str, Any], *, tolerance: float) -> CheckResult:
    """The recognizer on every aligned face crop as one batch vs one crop at a time."""
    import numpy as np
    from insightface.utils import face_align

    rec = app.models["recognition"]
    crops = [face_align.norm_crop(img, landmark=face.kps, image_size=rec.input_size[0])
             for img in images.values() for face in app.get(img)]
    if not crops:
        return CheckResult(model=model, check="determinism.batch", status=FAIL, expected="faces to embed",
                           got="no faces found")
    batch = np.asarray(rec.get_feat(crops), dtype=np.float64)
    single = np.concatenate([np.asarray(rec.get_feat([c]), dtype=np.float64) for c in crops])
    return checks.determinism(model, batch / _scale(single), single / _scale(single), tolerance=tolerance,
                              check="determinism.batch", what="batch - one crop at a time (relative)")


ACCELERATOR_DETERMINISM_TOLERANCE = 1e-3


def determinism_tolerance(spec: FacesSpec, providers: Sequence[str]) -> float:
    """The declared tolerance on the CPU; at least 1e-3 (relative) when an accelerator provider runs
    the sessions: CUDA picks convolution algorithms per batch size and uses TF32 by default, which
    moves outputs by ~1e-4..1e-3 without anything being wrong."""
    if any(p in ACCELERATOR_PROVIDERS for p in providers):
        return max(spec.determinism_tolerance, ACCELERATOR_DETERMINISM_TOLERANCE)
    return spec.determinism_tolerance


def _scale(a: Any) -> float:
    import numpy as np

    m = float(np.max(np.abs(a))) if np.size(a) else 1.0
    return m if np.isfinite(m) and m > 0 else 1.0


def run(ref: ModelRef, spec: FacesSpec, *, providers: Sequence[str], expected_providers: Sequence[str],
        probes_dir: Path | None = None, out: list[CheckResult] | None = None,
        ) -> tuple[list[CheckResult], goldens.Values | None]:
    """All face checks for one model, appended to ``out`` as they are produced (see clip_checks.run)."""
    import numpy as np

    mid = ref.id
    out = [] if out is None else out
    with tempfile.TemporaryDirectory(prefix=f"mlfreeze-{mid}-") as tmp:
        t0 = time.perf_counter()
        try:
            folder = assemble_folder(ref.files, Path(tmp))
            app = load_app(folder, providers, spec)
        except (FileNotFoundError, RuntimeError, AssertionError, ValueError) as exc:
            out.append(CheckResult(model=mid, check="load", status=FAIL, expected="detection + recognition models",
                                   got=str(exc) or type(exc).__name__, seconds=time.perf_counter() - t0))
            return out, None
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
                checks.raw_norm(mid, raw, min_norm=spec.raw_norm_min)]
        if len(all_faces) > 1:
            out.append(checks.non_collapse(mid, normed, labels, check="distinct_faces",
                                           max_cosine=spec.distinct_max_cosine))
        else:
            out.append(CheckResult(model=mid, check="distinct_faces", status=SKIP, got="only one face declared"))
        out.append(augment_stable(mid, app, images, found, min_cos=spec.augment_min_cosine))
        first = spec.faces[0].image
        out.append(rescale_stable(mid, app, images[first], found[first], spec))
        out.append(batch_consistency(mid, app, images, tolerance=determinism_tolerance(spec, providers)))
        out.append(_reload(mid, folder, providers, spec, images, found, raw))

        values = goldens.face_values({n: [(f[0], f[1], f[3]) for f in fs] for n, fs in found.items()}, widths)
        out.append(goldens.check(mid, ref.golden, values, tolerance=spec.golden_tolerance))
        out.append(_cross_device(mid, folder, spec, providers, images, normed))
        return out, values


def _reload(mid: str, folder: Path, providers: Sequence[str], spec: FacesSpec, images: dict[str, Any],
            found: dict[str, list], raw: Any) -> CheckResult:
    """A second FaceAnalysis session from the same files gives the same raw embeddings."""
    import numpy as np

    try:
        again_app = load_app(folder, providers, spec)
    except (RuntimeError, AssertionError, ValueError) as exc:
        return CheckResult(model=mid, check="determinism.reload", status=FAIL, expected="a second load", got=str(exc))
    rerun = {name: _faces(again_app, images[name]) for name in found}
    if not all(len(rerun[n]) == len(found[n]) for n in found):
        return CheckResult(model=mid, check="determinism.reload", status=FAIL,
                           expected="the same faces in a second session",
                           got=", ".join(f"{n}: {len(rerun[n])} vs {len(found[n])}" for n in found))
    again = np.stack([np.asarray(f[2]) for fs in rerun.values() for f in fs])
    return checks.determinism(mid, raw / _scale(raw), again / _scale(raw),
                              tolerance=determinism_tolerance(spec, providers),
                              check="determinism.reload", what="first session - second session (relative)")


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
