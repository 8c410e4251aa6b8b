"""The gate on the ONNX path (the slim flavor): every CLIP check on the exported towers, the
torch-vs-ONNX agreement first when torch is at hand, and a held-out export fault failing it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")

from mlfreeze.errors import VerificationError  # noqa: E402
from mlfreeze.models.export import export_towers  # noqa: E402
from mlfreeze.models.manifest import load_manifest  # noqa: E402
from mlfreeze.models.verification import run_gate  # noqa: E402
from mlfreeze_runtime import clip as rclip  # noqa: E402
from mlfreeze_runtime.verify import gate  # noqa: E402
from mlfreeze_runtime.verify.result import FAIL, PASS, ModelRef  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "mlfreeze" / "specs" / "demo"
_DEMO_CLIP = load_manifest().models["demo-clip"]
DIM = _DEMO_CLIP.embed_dim  # 512: ViT-B/32's interface
WEIGHTS_SHA = next(a.sha256 for a in _DEMO_CLIP.artifacts if a.role == "weights")


def _ref(files: dict[str, Path] | None = None) -> ModelRef:
    spec = load_manifest().models["demo-clip"]
    return ModelRef(id=spec.id, kind=spec.kind, arch=spec.arch, embed_dim=spec.embed_dim,
                    files=files or {a.file: DEMO / a.file for a in spec.artifacts}, verify=spec.verify,
                    roles={a.file: a.role for a in spec.artifacts},
                    golden=ROOT / "src" / "mlfreeze" / "specs" / "goldens" / "demo-clip.json",
                    onnx_agreement=dict(spec.onnx_agreement))


def test_onnx_path_runs_every_semantic_check_and_the_agreement() -> None:
    run = gate.run([_ref()], clip_path="onnx")
    status = {r.check: r.status for r in run.results}
    for check in ("onnx_agreement.image", "onnx_agreement.text", "zero_shot_top1", "zero_shot_margin",
                  "text_paraphrase", "reference_sims", "non_collapse.image", "non_collapse.text", "golden", "unit_norm",
                  "preprocess", "determinism.reload"):
        assert status.get(check) == PASS, (check, [(r.check, r.status, r.got) for r in run.results])
    assert "layer_norms" not in status  # torch-only
    load = next(r for r in run.results if r.check == "load")
    assert f"ONNX towers derived from demo-clip@{WEIGHTS_SHA[:8]}" in load.got
    assert {r.status for r in run.results} <= {PASS, "skip", "warn"}


def test_auto_path_without_torch_is_onnx_and_skips_the_agreement(monkeypatch) -> None:
    monkeypatch.setattr(rclip, "torch_clip_available", lambda: False)
    run = gate.run([_ref()], clip_path="auto")
    checks = {r.check for r in run.results}
    assert "onnx_agreement.image" not in checks and "layer_norms" not in checks
    assert next(r for r in run.results if r.check == "zero_shot_top1").status == PASS


def test_held_out_export_fault_fails_the_gate(tmp_path: Path) -> None:
    loaded = rclip.load_clip(arch="mlfreeze-demo-clip", weights=DEMO / "demo_clip.safetensors",
                             config=DEMO / "demo_clip_config.json", declared_quick_gelu=True)
    bad = copy.deepcopy(loaded.model)
    bad.ln_final = torch.nn.Identity()  # a dropped normalization in the text tower
    paths = export_towers(bad, tmp_path, image_size=loaded.image_size, preprocess_cfg=dict(loaded.preprocess_cfg),
                          context_length=int(loaded.tokenizer.context_length), embed_dim=DIM,
                          source=f"demo-clip@{WEIGHTS_SHA}")
    spec = load_manifest().models["demo-clip"]
    files = {a.file: DEMO / a.file for a in spec.artifacts} | {"demo_clip_text.onnx": Path(paths["text"])}
    report = tmp_path / "verify-linux-cpu-slim.json"
    with pytest.raises(VerificationError):
        run_gate([_ref(files)], report=str(report), flavor="slim", clip_path="onnx", set_name="demo")
    doc = json.loads(report.read_text())
    failed = {r["check"] for r in doc["results"] if r["status"] == FAIL}
    assert "onnx_agreement.text" in failed and "onnx_agreement.image" not in failed
    assert doc["context"]["clip_path"] == "onnx"


def test_a_torch_free_build_says_the_agreement_did_not_run(monkeypatch) -> None:
    # a slim-only build's verify (clip_path "onnx", no torch): two SKIP rows saying why, not silence
    monkeypatch.setattr(rclip, "torch_clip_available", lambda: False)
    run = gate.run([_ref()], clip_path="onnx")
    skipped = {r.check: r for r in run.results if r.check.startswith("onnx_agreement.") and r.status == "skip"}
    assert set(skipped) == {"onnx_agreement.image", "onnx_agreement.text"}
    assert all("not installed in this environment" in r.got for r in skipped.values())
    # the agreement record made where the towers were made stands in for it
    record = next(r for r in run.results if r.check == "onnx_agreement.record")
    assert record.status == PASS and "matches both towers" in record.got
    assert next(r for r in run.results if r.check == "zero_shot_top1").status == PASS
