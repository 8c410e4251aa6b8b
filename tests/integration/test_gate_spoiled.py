"""The spoiled-model catalogue: with goldens REMOVED, the real gate on the demo set must fail each
kind of broken model on the check that names its fault, and pass each kind of good variant.

Every variant is built here from the committed demo models in a temporary copy of src/mlfreeze/specs/models.toml
and src/mlfreeze/specs/demo/ (no goldens/), re-pinned with its own sha256 so only the gate can catch it, and run
through ``verify`` exactly as a user would (``run_gate`` on the fetched set; one case through the CLI).
Each fault is drawn with several seeds/strengths, so the catalogue is a family, not one fixture.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mlfreeze.errors import VerificationError
from mlfreeze.models.verification import run_gate

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "src" / "mlfreeze" / "specs"
CLIP = "demo_clip.safetensors"
CONFIG = "demo_clip_config.json"
REC = "faces/w600k_r50.onnx"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(SPECS / "models.toml", tmp_path / "models.toml")
    shutil.copytree(SPECS / "demo", tmp_path / "demo", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert not (tmp_path / "goldens").exists()  # goldens removed: only the semantic checks stand
    return tmp_path


def repin(workdir: Path, rel: str) -> None:
    data = (workdir / "demo" / rel).read_bytes()
    original = (SPECS / "demo" / rel).read_bytes()
    if data == original:
        return
    old = f'sha256 = "{hashlib.sha256(original).hexdigest()}"\nsize = {len(original)}'
    new = f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}'
    text = (workdir / "models.toml").read_text()
    assert old in text
    (workdir / "models.toml").write_text(text.replace(old, new))


def run(workdir: Path) -> tuple[int, dict[str, str], str]:
    from mlfreeze.models.fetch import fetch_set
    from mlfreeze.models.manifest import load_manifest
    from mlfreeze.models.verification import model_refs

    man = load_manifest(workdir / "models.toml")
    refs = model_refs(man, fetch_set(man, "demo", cache_dir=workdir / "cache"), workdir / "goldens")
    report = workdir / "report.json"
    try:
        rc, msg = run_gate(refs, device="cpu", report=str(report), set_name="demo"), ""
    except VerificationError as exc:
        rc, msg = exc.exit_code, exc.message
    results = json.loads(report.read_text())["results"]
    return rc, {f"{r['model']}:{r['check']}": r["status"] for r in results}, msg


def failed(statuses: dict[str, str]) -> set[str]:
    return {k for k, v in statuses.items() if v == "fail"}


# --- CLIP weights ----------------------------------------------------------------------------

def _state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _save(state: dict, path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)


def spoil_clip(workdir: Path, fn: Callable[[dict], dict]) -> None:
    path = workdir / "demo" / CLIP
    _save(fn(_state(path)), path)
    repin(workdir, CLIP)


def random_init(seed: int) -> Callable[[dict], dict]:
    def fn(state: dict) -> dict:
        import torch

        from mlfreeze_runtime import clip

        torch.manual_seed(seed)
        model = clip.build_architecture("mlfreeze-demo-clip", clip.read_config(SPECS / "demo" / CONFIG))
        return {k: v.detach().to(state[k].dtype) for k, v in model.state_dict().items()}
    return fn


def layer_norms_reset(state: dict) -> dict:
    import torch

    def is_ln(key: str) -> bool:
        parts = key.split(".")
        return len(parts) > 1 and parts[-2].startswith("ln")

    return {k: (torch.ones_like(v) if k.endswith("weight") else torch.zeros_like(v)) if is_ln(k) else v
            for k, v in state.items()}


def perturb(tower: str, fraction: float, seed: int) -> Callable[[dict], dict]:
    """Add Gaussian noise of ``fraction`` x each tensor's standard deviation to one tower."""
    def fn(state: dict) -> dict:
        import torch

        g = torch.Generator().manual_seed(seed)
        out = {}
        for k, v in state.items():
            mine = k.startswith("visual.") == (tower == "visual")
            out[k] = ((v.float() + fraction * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype)
                      if mine and v.numel() > 1 else v)
        return out
    return fn


def spoil_preprocess(workdir: Path, **changes: str) -> None:
    path = workdir / "demo" / CONFIG
    cfg = json.loads(path.read_text())
    cfg["preprocess_cfg"].update(changes)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    repin(workdir, CONFIG)


# --- face recognizer -------------------------------------------------------------------------

def spoil_recognizer(workdir: Path, draw: Callable[[object, object], object], names: tuple[str, ...] = ()) -> None:
    """Replace the recognizer's weight initializers (all of them, or ``names``) by ``draw(rng, array)``."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    path = workdir / "demo" / REC
    model = onnx.load(str(path))
    rng = np.random.default_rng(len(names) + 17)
    for i, init in enumerate(model.graph.initializer):
        a = numpy_helper.to_array(init)
        if a.size > 1 and (not names or init.name in names):
            new = np.asarray(draw(rng, a), dtype=a.dtype).reshape(a.shape)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(new, init.name))
    onnx.save(model, str(path))
    repin(workdir, REC)


FAULTS = {
    "clip-random-init-1": (lambda w: spoil_clip(w, random_init(1)), "demo-clip:zero_shot_top1"),
    "clip-random-init-2": (lambda w: spoil_clip(w, random_init(2)), "demo-clip:layer_norms"),
    "clip-layernorms-reset": (lambda w: spoil_clip(w, layer_norms_reset), "demo-clip:layer_norms"),
    "clip-text-2pct": (lambda w: spoil_clip(w, perturb("text", 0.02, 3)), "demo-clip:reference_sims"),
    "clip-text-3pct": (lambda w: spoil_clip(w, perturb("text", 0.03, 4)), "demo-clip:reference_sims"),
    "clip-text-5pct": (lambda w: spoil_clip(w, perturb("text", 0.05, 5)), "demo-clip:reference_sims"),
    "clip-visual-3pct": (lambda w: spoil_clip(w, perturb("visual", 0.03, 6)), "demo-clip:reference_sims"),
    "clip-bilinear": (lambda w: spoil_preprocess(w, interpolation="bilinear"), "demo-clip:preprocess"),
    "clip-squash": (lambda w: spoil_preprocess(w, resize_mode="squash"), "demo-clip:preprocess"),
    "clip-bilinear-squash": (lambda w: spoil_preprocess(w, interpolation="bilinear", resize_mode="squash"),
                             "demo-clip:preprocess"),
    "faces-random-normal": (lambda w: spoil_recognizer(w, lambda rng, a: rng.standard_normal(a.shape) * a.std()),
                            "demo-faces:distinct_faces"),
    "faces-random-uniform": (lambda w: spoil_recognizer(w, lambda rng, a: rng.uniform(-1, 1, a.shape)),
                             "demo-faces:distinct_faces"),
    "faces-random-weight-only": (lambda w: spoil_recognizer(
        w, lambda rng, a: rng.standard_normal(a.shape) / (a.shape[0] ** 0.5), names=("W",)),
        "demo-faces:distinct_faces"),
}


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_spoiled_model_fails_on_its_check(workdir: Path, case: str) -> None:
    make, check = FAULTS[case]
    make(workdir)
    rc, statuses, msg = run(workdir)
    assert rc == 1, statuses
    assert check in failed(statuses), sorted(failed(statuses))
    assert check.split(":")[0] in msg
    assert statuses[f"{check.split(':')[0]}:golden"] == "warn"  # really without goldens


def fp32_resave(state: dict) -> dict:
    return {k: v.float() for k, v in state.items()}  # the fp16 file re-saved in fp32: same values


def fp16_roundtrip(state: dict) -> dict:
    return {k: v.float().half().float() for k, v in state.items()}


def logit_scale_changed(state: dict) -> dict:
    return {**state, "logit_scale": state["logit_scale"] * 0 + 2.0}  # only scales logits, never cosines


def resaved_tensors(state: dict) -> dict:
    return {k: v.clone() for k, v in reversed(list(state.items()))}


GOOD = {
    "clip-fp32-resave": lambda w: spoil_clip(w, fp32_resave),
    "clip-fp16-roundtrip": lambda w: spoil_clip(w, fp16_roundtrip),
    "clip-logit-scale": lambda w: spoil_clip(w, logit_scale_changed),
    "clip-resaved-tensors": lambda w: spoil_clip(w, resaved_tensors),
    "faces-resaved-onnx": lambda w: spoil_recognizer(w, lambda rng, a: a.copy()),
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_variant_passes(workdir: Path, case: str) -> None:
    GOOD[case](workdir)
    rc, statuses, _ = run(workdir)
    assert rc == 0 and not failed(statuses), sorted(failed(statuses))


def test_good_variant_bytes_really_differ(workdir: Path) -> None:
    """The re-saved variants are other files (new sha256), not the committed ones."""
    spoil_clip(workdir, resaved_tensors)
    assert (workdir / "demo" / CLIP).read_bytes() != (SPECS / "demo" / CLIP).read_bytes()


@pytest.mark.skipif(sys.platform != "linux", reason="CLI run on the build host")
def test_cli_catches_a_random_face_recognizer(workdir: Path) -> None:
    from mlfreeze import _proc as proc

    spoil_recognizer(workdir, lambda rng, a: rng.standard_normal(a.shape) * a.std())
    cp = proc.capture([sys.executable, "-m", "mlfreeze", "verify", "--manifest", str(workdir / "models.toml"),
                       "--set", "demo", "--cache", str(workdir / "cache")], cwd=ROOT)
    assert cp.returncode == 1
    assert "demo-faces: distinct_faces: FAIL" in cp.stderr
