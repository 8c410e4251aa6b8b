"""ONNX CLIP against torch CLIP: the torch-free embedder, the agreement checks, and held-out export faults.

The demo CLIP (src/mlfreeze/specs/demo) is exported with the same function ``mlfreeze export`` runs
(``export_towers``); the faults are exported the same way from a deliberately altered copy:
GELU instead of QuickGELU, the final LayerNorm of a tower dropped, the image projection dropped.
Each must fail ``onnx_agreement`` for the tower it touches, while the faithful export passes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from mlfreeze.models.export import export_towers  # noqa: E402
from mlfreeze.models.manifest import load_manifest  # noqa: E402
from mlfreeze_runtime.clip import ClipEmbedder, load_clip  # noqa: E402
from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder, OnnxClipError  # noqa: E402
from mlfreeze_runtime.verify import onnx_checks  # noqa: E402
from mlfreeze_runtime.verify.probes import load_rgb  # noqa: E402
from mlfreeze_runtime.verify.result import FAIL, PASS, ModelRef  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "mlfreeze" / "specs" / "demo"
CPU = ["CPUExecutionProvider"]
_DEMO_CLIP = load_manifest().models["demo-clip"]
DIM = _DEMO_CLIP.embed_dim  # 512: ViT-B/32's interface
WEIGHTS_SHA = next(a.sha256 for a in _DEMO_CLIP.artifacts if a.role == "weights")


@pytest.fixture(scope="module")
def loaded():
    return load_clip(arch="mlfreeze-demo-clip", weights=DEMO / "demo_clip.safetensors",
                     config=DEMO / "demo_clip_config.json", declared_quick_gelu=True)


@pytest.fixture(scope="module")
def spec():
    return load_manifest().models["demo-clip"]


@pytest.fixture(scope="module")
def probe_set(spec):
    names, captions = onnx_checks.probes(spec.verify)
    return names, [load_rgb(n) for n in names], captions


def _export(loaded, model, out: Path) -> OnnxClipEmbedder:
    out.mkdir(parents=True, exist_ok=True)
    paths = export_towers(model, out, image_size=loaded.image_size, preprocess_cfg=dict(loaded.preprocess_cfg),
                          context_length=int(loaded.tokenizer.context_length), embed_dim=DIM, source="demo-clip@x")
    return OnnxClipEmbedder(paths["image"], paths["text"], providers=CPU)


def _checks(loaded, onnx_emb, probe_set, tol=None):
    """The agreement checks at the demo's declared tolerances (its [models.demo-clip.onnx_agreement])."""
    names, images, captions = probe_set
    tol = tol or onnx_checks.tolerances(_DEMO_CLIP.onnx_agreement)
    res = onnx_checks.agreement("demo-clip", ClipEmbedder(loaded, "cpu"), onnx_emb, images, names, captions, tol)
    return {r.check: r for r in res}


def test_pinned_demo_export_passes_through_the_gate_entry(spec) -> None:
    ref = ModelRef(id=spec.id, kind=spec.kind, arch=spec.arch, embed_dim=spec.embed_dim,
                   files={a.file: DEMO / a.file for a in spec.artifacts}, verify=spec.verify,
                   roles={a.file: a.role for a in spec.artifacts})
    res = onnx_checks.run(ref, DEMO / "demo_clip_image.onnx", DEMO / "demo_clip_text.onnx",
                          raw_tolerances=spec.onnx_agreement, providers=CPU)
    assert [(r.check, r.status) for r in res] == [("onnx_agreement.image", PASS), ("onnx_agreement.text", PASS)]
    assert all(float(r.got.split("min cosine ")[1].split()[0]) >= 0.99999 for r in res)


def test_onnx_embedder_matches_torch_interface(loaded, probe_set) -> None:
    names, images, captions = probe_set
    onnx_emb = OnnxClipEmbedder(DEMO / "demo_clip_image.onnx", DEMO / "demo_clip_text.onnx", providers=CPU)
    torch_emb = ClipEmbedder(loaded, "cpu")
    oi, ti = onnx_emb.images(images), torch_emb.images(images)
    ot, tt = onnx_emb.embed_texts(captions), torch_emb.texts(captions)
    assert oi.shape == ti.shape == (len(images), DIM) and oi.dtype == np.float32
    assert ot.shape == tt.shape == (len(captions), DIM) and ot.dtype == np.float32
    assert np.allclose(np.linalg.norm(oi, axis=1), 1, atol=1e-5)
    assert np.abs(oi - ti).max() < 1e-4 and np.abs(ot - tt).max() < 1e-4
    # PIL input, batches larger than the session batch, and un-normalised output
    small = OnnxClipEmbedder(DEMO / "demo_clip_image.onnx", DEMO / "demo_clip_text.onnx", providers=CPU, batch_size=5)
    pil = [Image.fromarray(im) for im in images]
    assert np.abs(small.embed_images(pil) - oi).max() < 1e-5
    raw = small.texts(captions, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)
    assert onnx_emb.derived_from.startswith(f"demo-clip@{WEIGHTS_SHA[:8]}")


def test_towers_are_checked_for_what_they_are() -> None:
    with pytest.raises(OnnxClipError, match="is not an mlfreeze image tower"):
        OnnxClipEmbedder(DEMO / "demo_clip_text.onnx", DEMO / "demo_clip_text.onnx", providers=CPU)
    with pytest.raises(OnnxClipError, match="is missing"):
        OnnxClipEmbedder(DEMO / "nothing.onnx", DEMO / "demo_clip_text.onnx", providers=CPU)


def _swap_quickgelu(model):
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "QuickGELU":
                setattr(parent, name, torch.nn.GELU())
    return model


def _drop(attr: str):
    def fault(model):
        obj, _, leaf = attr.rpartition(".")
        target = model.get_submodule(obj) if obj else model
        setattr(target, leaf, None if leaf == "proj" else torch.nn.Identity())
        return model
    return fault


@pytest.mark.parametrize(("fault", "failing"), [
    (_swap_quickgelu, {"onnx_agreement.image", "onnx_agreement.text"}),
    (_drop("visual.ln_post"), {"onnx_agreement.image"}),
    (_drop("ln_final"), {"onnx_agreement.text"}),
    (_drop("visual.proj"), {"onnx_agreement.image"}),
], ids=["gelu-for-quickgelu", "no-ln_post", "no-ln_final", "no-image-projection"])
def test_export_faults_fail(loaded, probe_set, tmp_path: Path, fault, failing: set[str]) -> None:
    bad = fault(copy.deepcopy(loaded.model))
    res = _checks(loaded, _export(loaded, bad, tmp_path), probe_set)
    assert {c for c, r in res.items() if r.status == FAIL} == failing, {c: r.got for c, r in res.items()}


def test_faithful_fresh_export_passes(loaded, probe_set, tmp_path: Path) -> None:
    res = _checks(loaded, _export(loaded, copy.deepcopy(loaded.model), tmp_path), probe_set)
    assert {r.status for r in res.values()} == {PASS}
