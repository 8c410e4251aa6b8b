"""The gate on the real demo models: passes on the good ones, fails (naming the check) on each
bad artifact. Every bad artifact is built here from the good one and pinned in a temporary
manifest with its own new sha256, so the checksum passes and only the gate can catch it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlfreeze.errors import VerificationError
from mlfreeze.models.verification import run_gate

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "src" / "mlfreeze" / "specs"


def refs_for(manifest: Path, set_name: str, cache: Path) -> list:
    """The set's models as the gate sees them: fetched (sha256-pinned) through builder.fetch."""
    from mlfreeze.models.fetch import fetch_set
    from mlfreeze.models.manifest import load_manifest
    from mlfreeze.models.verification import model_refs

    man = load_manifest(manifest)
    return model_refs(man, fetch_set(man, set_name, cache_dir=cache), manifest.parent / "goldens")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of src/mlfreeze/specs/models.toml, src/mlfreeze/specs/demo/ and src/mlfreeze/specs/goldens/ to spoil."""
    shutil.copy(SPECS / "models.toml", tmp_path / "models.toml")
    shutil.copytree(SPECS / "demo", tmp_path / "demo", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copytree(SPECS / "goldens", tmp_path / "goldens")
    return tmp_path


def repin(workdir: Path, rel: str) -> None:
    """Give the (spoiled) artifact at demo/<rel> its own sha256 and size in the temp manifest."""
    data = (workdir / "demo" / rel).read_bytes()
    original = (SPECS / "demo" / rel).read_bytes()
    old = f'sha256 = "{hashlib.sha256(original).hexdigest()}"\nsize = {len(original)}'
    new = f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}'
    text = (workdir / "models.toml").read_text()
    assert old in text
    (workdir / "models.toml").write_text(text.replace(old, new))


def gate(workdir: Path, **kw: object) -> tuple[int, dict, str]:
    report, junit = workdir / "r.json", workdir / "r.xml"
    refs = refs_for(workdir / "models.toml", "demo", workdir / "cache")
    try:
        rc = run_gate(refs, device="cpu", report=str(report), junit=str(junit), set_name="demo", **kw)
    except VerificationError as exc:
        rc, msg = exc.exit_code, exc.message
    else:
        msg = ""
    return rc, json.loads(report.read_text()), msg


def failed(doc: dict) -> set[str]:
    return {r["check"] for r in doc["results"] if r["status"] == "fail"}


# --- weights -------------------------------------------------------------------------------

def _state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _save(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def _random_state() -> dict:
    import torch

    from mlfreeze_runtime import clip

    torch.manual_seed(123)
    cfg = clip.read_config(SPECS / "demo" / "demo_clip_config.json")
    model = clip.build_architecture("mlfreeze-demo-clip", cfg)
    return {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}


def spoil_random(state: dict) -> dict:
    return _random_state()


def spoil_noise(state: dict) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    return {k: (v.float() + 0.05 * v.float().std() * torch.randn(v.shape, generator=g)).half()
            if v.numel() > 1 else v for k, v in state.items()}


def spoil_nan(state: dict) -> dict:
    import torch

    state["visual.transformer.resblocks.0.mlp.c_fc.bias"] = torch.full_like(
        state["visual.transformer.resblocks.0.mlp.c_fc.bias"], float("nan"))
    return state


def spoil_zero_layer(state: dict) -> dict:
    import torch

    key = "visual.transformer.resblocks.1.attn.out_proj.weight"
    state[key] = torch.zeros_like(state[key])
    return state


def spoil_mixed_towers(state: dict) -> dict:
    other = _random_state()  # a different checkpoint of the same architecture
    return {k: (v if k.startswith("visual.") else other[k]) for k, v in state.items()}


def spoil_bgr(state: dict) -> dict:
    # Swapping the patch embedding's input channels is exactly the model seeing BGR instead of RGB.
    state["visual.conv1.weight"] = state["visual.conv1.weight"][:, [2, 1, 0]].clone()
    return state


@pytest.mark.parametrize(("spoil", "must_fail"), [
    (spoil_random, {"zero_shot_top1", "golden"}),
    (spoil_noise, {"golden"}),
    (spoil_nan, {"finite.image"}),
    (spoil_zero_layer, {"golden"}),
    (spoil_mixed_towers, {"zero_shot_top1"}),
    (spoil_bgr, {"golden"}),
], ids=["random-init", "noise", "nan-tensor", "zeroed-layer", "mixed-towers", "rgb-bgr-swap"])
def test_gate_fails_on_spoiled_clip_weights(workdir: Path, spoil, must_fail: set[str]) -> None:
    path = workdir / "demo" / "demo_clip.safetensors"
    _save(spoil(_state(path)), path)
    repin(workdir, "demo_clip.safetensors")
    rc, doc, msg = gate(workdir)
    assert rc == 1
    assert must_fail <= failed(doc), failed(doc)
    assert doc["passed"] is False
    assert "demo-clip:" in msg  # the one line names the model and a failing check


def test_gate_fails_on_wrong_normalisation(workdir: Path) -> None:
    path = workdir / "demo" / "demo_clip_config.json"
    cfg = json.loads(path.read_text())
    cfg["preprocess_cfg"]["mean"] = [0.5, 0.5, 0.5]
    cfg["preprocess_cfg"]["std"] = [0.5, 0.5, 0.5]
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    repin(workdir, "demo_clip_config.json")
    rc, doc, _ = gate(workdir)
    assert rc == 1
    assert {"preprocess_config", "golden"} <= failed(doc)


def test_gate_fails_on_wrong_declared_embed_size(workdir: Path) -> None:
    toml = workdir / "models.toml"
    text = toml.read_text()
    toml.write_text(re.sub(r'(arch = "mlfreeze-demo-clip".*\n)embed_dim = 512', r"\1embed_dim = 96", text))
    rc, doc, _ = gate(workdir)
    assert rc == 1
    bad = [r for r in doc["results"] if r["check"] == "shape_dtype.image"]
    assert bad and bad[0]["status"] == "fail" and "96" in bad[0]["expected"] and "512" in bad[0]["got"]


def test_gate_fails_when_detector_finds_no_faces(workdir: Path) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    path = workdir / "demo" / "faces" / "det_10g.onnx"
    model = onnx.load(str(path))
    for i, init in enumerate(model.graph.initializer):
        if init.name == "t":  # brightness threshold above anything an image can reach
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array(5.0, np.float32), "t"))
    onnx.save(model, str(path))
    repin(workdir, "faces/det_10g.onnx")
    rc, doc, msg = gate(workdir)
    assert rc == 1
    assert "faces_found[synthetic:faces/3]" in failed(doc)
    assert "demo-faces" in msg


def test_gate_fails_when_expected_providers_are_missing(workdir: Path) -> None:
    # mac-arm64 expects CoreMLExecutionProvider, which no Linux onnxruntime build has
    rc, doc, _ = gate(workdir, platform="mac-arm64")
    assert rc == 1
    line = next(r for r in doc["results"] if r["check"] == "providers")
    assert line["status"] == "fail" and "CoreMLExecutionProvider" in line["got"]


def test_demo_set_passes_and_reports(workdir: Path) -> None:
    rc, doc, _ = gate(workdir, platform="linux-cpu")
    assert rc == 0, failed(doc)
    assert doc["passed"] and doc["summary"]["failed"] == 0 and doc["summary"]["warnings"] == 0
    checks = {(r["model"], r["check"]) for r in doc["results"] if r["status"] == "pass"}
    assert {("demo-clip", "zero_shot_top1"), ("demo-clip", "golden"), ("demo-faces", "golden"),
            ("demo-faces", "faces_found[synthetic:faces/3]"), ("demo-faces", "providers")} <= checks
    suites = ET.parse(workdir / "r.xml").getroot()
    assert {s.get("name") for s in suites} == {"demo-clip", "demo-faces"}
    assert all(s.get("failures") == "0" for s in suites)


def test_unpinned_goldens_warn_and_fail_under_strict(workdir: Path) -> None:
    shutil.rmtree(workdir / "goldens")
    rc, doc, _ = gate(workdir)
    assert rc == 0
    assert [r["status"] for r in doc["results"] if r["check"] == "golden"] == ["warn", "warn"]
    rc, doc, msg = gate(workdir, strict=True)
    assert rc == 1 and "goldens not pinned" in msg


def test_pin_goldens_records_then_detects_drift(workdir: Path) -> None:
    shutil.rmtree(workdir / "goldens")
    refs = refs_for(workdir / "models.toml", "demo", workdir / "cache")
    import io

    buf = io.StringIO()
    assert run_gate(refs, pin_goldens=workdir / "goldens", report=str(workdir / "pin.json"), set_name="demo",
                    out=buf) == 0
    # the measured reference cosines are printed for the verify table, and equal the declared ones
    line = next(x for x in buf.getvalue().splitlines() if x.startswith("[models.demo-clip.verify] reference_sims"))
    measured = [float(v) for v in line.split("[", 2)[2].rstrip("]").split(",")]
    declared = next(r for r in refs if r.id == "demo-clip").verify["reference_sims"]
    assert max(abs(a - b) for a, b in zip(measured, declared, strict=True)) < 1e-3
    pinned = json.loads((workdir / "pin.json").read_text())
    assert [r["status"] for r in pinned["results"] if r["check"] == "golden"] == ["pass", "pass"]
    doc = json.loads((workdir / "goldens" / "demo-clip.json").read_text())
    assert doc["model"] == "demo-clip" and doc["recorded_on"]["device"] == "cpu"
    assert (workdir / "goldens" / "demo-clip.json").stat().st_size < 64_000
    # the freshly pinned values equal the committed ones (within tolerance): training is not re-run
    committed = json.loads((SPECS / "goldens" / "demo-clip.json").read_text())
    from mlfreeze_runtime.verify.goldens import compare

    assert compare(committed["values"], doc["values"])[0] <= 2e-3
    # now spoil the weights a little (0.5% of each tensor's spread: zero-shot, paraphrases and the
    # similarity bands do not notice) under a new pin: the goldens just written must catch it
    import torch

    path = workdir / "demo" / "demo_clip.safetensors"
    g = torch.Generator().manual_seed(7)
    _save({k: (v.float() + 0.005 * v.float().std() * torch.randn(v.shape, generator=g)).half()
           if v.numel() > 1 else v for k, v in _state(path).items()}, path)
    repin(workdir, "demo_clip.safetensors")
    rc, doc2, msg = gate(workdir)
    assert rc == 1 and "demo-clip" in msg and "golden" in failed(doc2)
    line = next(r for r in doc2["results"] if (r["model"], r["check"]) == ("demo-clip", "golden"))
    assert line["status"] == "fail" and "max |delta|" in line["got"]
    assert next(r for r in doc2["results"] if (r["model"], r["check"]) == ("demo-faces", "golden"))["status"] == "pass"


def test_demo_artifacts_are_small() -> None:
    total = sum(p.stat().st_size for p in (SPECS / "demo").rglob("*") if p.is_file() and p.suffix != ".py")
    assert total < 10 * 1024 * 1024, total


@pytest.mark.skipif(sys.platform != "linux", reason="CLI smoke test on the build host")
def test_cli_verify_demo_offline(tmp_path: Path) -> None:
    pytest.importorskip("mlfreeze.models.fetch", reason="needs the fetch stage (branch fetch)")
    from mlfreeze import _proc as proc

    cp = proc.capture([sys.executable, "-m", "mlfreeze", "verify", "--set", "demo", "--cache", str(tmp_path / "c"),
                       "--report", str(tmp_path / "r.json")], cwd=ROOT)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True


@pytest.mark.parametrize(("noise", "status"), [(0.0, "pass"), (0.5, "fail")])
def test_cross_device_compares_cpu_with_the_accelerator(monkeypatch: pytest.MonkeyPatch, workdir: Path,
                                                        noise: float, status: str) -> None:
    """The accelerator is stood in for by a CPU copy (no GPU here); a perturbed copy must disagree."""
    import copy

    import torch

    from mlfreeze_runtime.clip import ClipEmbedder
    from mlfreeze_runtime.verify import clip_checks, spec

    def fake_to(self: ClipEmbedder, device: str) -> ClipEmbedder:
        loaded = copy.deepcopy(self.loaded)
        with torch.no_grad():
            for p in loaded.model.parameters():
                p.add_(noise * p.std() * torch.randn_like(p) if p.numel() > 1 else 0)
        return ClipEmbedder(loaded, "cpu")

    monkeypatch.setattr(ClipEmbedder, "to", fake_to)
    ref = next(r for r in refs_for(workdir / "models.toml", "demo", workdir / "cache") if r.kind == "clip")
    results, _ = clip_checks.run(ref, spec.parse_clip(ref.id, ref.verify), device="cuda")
    line = next(r for r in results if r.check == "cross_device")
    assert line.status == status and "cuda" in line.expected


def test_compare_devices_on_cpu_tensors() -> None:
    import torch

    from mlfreeze_runtime.verify.checks import compare_devices

    g = torch.Generator().manual_seed(0)
    cpu = torch.nn.functional.normalize(torch.randn(4, 32, generator=g), dim=-1)
    fp16 = cpu.half().float()  # what an accelerator in half precision returns
    ok, worst, _ = compare_devices(cpu.numpy(), fp16.numpy(), min_cosine=0.999)
    assert ok and worst > 0.999
    ok, _, idx = compare_devices(cpu.numpy(), cpu.flip(0).numpy(), min_cosine=0.999)
    assert not ok and idx in range(4)
