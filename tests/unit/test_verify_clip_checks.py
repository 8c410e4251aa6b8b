"""CLIP checks that need torch / PIL but no model file: the full preprocessing against the
declared one, LayerNorms at init, similarity statistics and reference cosines, each against an
input built to fail it and at its threshold's edge."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tomllib

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

from mlfreeze_runtime.verify import clip_checks, spec  # noqa: E402

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "models.toml"


@pytest.fixture(scope="module")
def demo_spec() -> spec.ClipSpec:
    table = tomllib.loads(MANIFEST.read_text())["models"]["demo-clip"]["verify"]
    return spec.parse_clip("demo-clip", table)


def _edges(v: float) -> tuple[float, float, float]:
    return float(np.nextafter(v, -np.inf)), float(v), float(np.nextafter(v, np.inf))


def _transform(interpolation: str, resize_mode: str, s: spec.ClipSpec, size: int = 32):
    pytest.importorskip("open_clip")
    from mlfreeze_runtime.clip import preprocess_for

    return preprocess_for({"mean": list(s.mean), "std": list(s.std), "interpolation": interpolation,
                           "resize_mode": resize_mode}, size)


def test_preprocess_matches_open_clips_own_transform(demo_spec: spec.ClipSpec) -> None:
    r = clip_checks.preprocess_check("m", _transform("bicubic", "shortest", demo_spec), demo_spec, 32)
    assert r.status == "pass", r.got
    sq = dataclasses.replace(demo_spec, resize_mode="squash", interpolation="bilinear")
    assert clip_checks.preprocess_check("m", _transform("bilinear", "squash", demo_spec), sq, 32).status == "pass"


@pytest.mark.parametrize(("interpolation", "resize_mode"), [("bilinear", "shortest"), ("bicubic", "squash"),
                                                            ("bilinear", "squash"), ("bicubic", "longest")])
def test_preprocess_fails_another_interpolation_or_resize_mode(demo_spec: spec.ClipSpec, interpolation: str,
                                                               resize_mode: str) -> None:
    r = clip_checks.preprocess_check("m", _transform(interpolation, resize_mode, demo_spec), demo_spec, 32)
    assert r.status == "fail" and "max |pixel delta|" in r.got


def test_preprocess_fails_wrong_normalisation_and_size(demo_spec: spec.ClipSpec) -> None:
    pytest.importorskip("open_clip")
    from mlfreeze_runtime.clip import preprocess_for

    half = preprocess_for({"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}, 32)
    assert clip_checks.preprocess_check("m", half, demo_spec, 32).status == "fail"
    r = clip_checks.preprocess_check("m", _transform("bicubic", "shortest", demo_spec, size=48), demo_spec, 32)
    assert r.status == "fail" and "shape" in r.got


def test_edges_preprocess_tolerance(demo_spec: spec.ClipSpec) -> None:
    want = clip_checks.reference_preprocess(clip_checks.preprocess_probe(), size=32, interpolation="bicubic",
                                            resize_mode="shortest", mean=demo_spec.mean, std=demo_spec.std)
    shifted = want.copy()
    shifted[1, 3, 4] += np.float32(0.25)
    v = float(np.max(np.abs(shifted - want)))
    statuses = [clip_checks.preprocess_check("m", lambda _im: shifted,
                                             dataclasses.replace(demo_spec, preprocess_tolerance=t), 32).status
                for t in _edges(v)]
    assert statuses == ["fail", "pass", "pass"]


def test_layer_norms_at_init_fail_and_trained_pass() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.LayerNorm(4))
    r = clip_checks.layer_norms("m", net)
    assert r.status == "fail" and "2 of 2 at init" in r.got
    with torch.no_grad():
        net[1].weight.add_(0.01)
    r = clip_checks.layer_norms("m", net)
    assert r.status == "fail" and "1 of 2 at init: 2" in r.got  # one reset LayerNorm is enough
    with torch.no_grad():
        net[2].bias.add_(0.01)
    assert clip_checks.layer_norms("m", net).status == "pass"
    assert clip_checks.layer_norms("m", torch.nn.Linear(2, 2)).status == "fail"  # nothing to judge is no pass


def _sims(diag: list[float], off: float) -> np.ndarray:
    s = np.full((len(diag), len(diag)), off)
    np.fill_diagonal(s, diag)
    return s


def test_similarity_bands_and_reference(demo_spec: spec.ClipSpec) -> None:
    n = len(demo_spec.zero_shot)
    good = _sims(list(demo_spec.reference_sims), -0.04)
    assert {r.check: r.status for r in clip_checks.similarity_checks("m", good, demo_spec)} == \
        {"sims_matched": "pass", "sims_unmatched": "pass", "reference_sims": "pass"}
    random_like = _sims([0.0] * n, 0.0)  # a random CLIP: every image as near every caption
    bad = {r.check: r.status for r in clip_checks.similarity_checks("m", random_like, demo_spec)}
    assert bad == {"sims_matched": "fail", "sims_unmatched": "pass", "reference_sims": "fail"}
    undeclared = dataclasses.replace(demo_spec, matched_cosine=None, unmatched_cosine=None, reference_sims=())
    assert {r.status for r in clip_checks.similarity_checks("m", random_like, undeclared)} == {"skip"}


def test_edges_reference_tolerance(demo_spec: spec.ClipSpec) -> None:
    diag = list(demo_spec.reference_sims)
    diag[3] += 0.004
    s = _sims(diag, -0.04)
    v = float(np.max(np.abs(np.diag(s) - np.array(demo_spec.reference_sims))))
    statuses = [next(r.status for r in clip_checks.similarity_checks(
        "m", s, dataclasses.replace(demo_spec, reference_tolerance=t)) if r.check == "reference_sims")
        for t in _edges(v)]
    assert statuses == ["fail", "pass", "pass"]
