"""photo-search with a real (tiny, randomly initialised) open_clip model, FAISS and torch.

The model is a custom architecture registered from a config JSON and saved as
safetensors, described by a models.json exactly as a bundle's models/ dir is. Random
weights are enough for the app's mechanics; the expected ranking is recomputed here
independently of the app's FAISS path.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("faiss")
Image = pytest.importorskip("PIL.Image")

from photo_search import embed  # noqa: E402
from photo_search.cli import main  # noqa: E402
from photo_search.index import PhotoIndex  # noqa: E402
from photo_search.models import MODELS_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARCH = "photo-search-test-tiny"
CONFIG = {"embed_dim": 32,
          "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def make_tiny_clip(root: Path, seed: int, embed_dim: int | None = None, preprocess: dict | None = None) -> Path:
    """A models dir holding one tiny CLIP (weights from ``seed``) and its models.json.

    Default: a plain model config named by models.json's ``config`` key. With ``preprocess``:
    the layout the freeze stage writes (no ``config`` key; the config is one of ``files``, in
    open_clip's ``{"model_cfg", "preprocess_cfg"}`` layout, beside a golden.json).
    """
    d = root / "tiny-clip"
    d.mkdir(parents=True)
    cfg = d / "model_config.json"  # stem != arch: the app must register it under the arch name
    if preprocess is None:
        cfg.write_text(json.dumps(CONFIG))
    else:
        cfg.write_text(json.dumps({"model_cfg": CONFIG, "preprocess_cfg": preprocess}))
        (d / "golden.json").write_text(json.dumps({"not": "a config"}))
    src = root / f"{ARCH}.json"
    src.write_text(json.dumps(CONFIG))
    open_clip.add_model_config(src)
    torch.manual_seed(seed)
    model = open_clip.create_model(ARCH)
    from safetensors.torch import save_file

    weights = d / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    entry = {"id": "tiny-clip", "kind": "clip", "arch": ARCH, "embed_dim": embed_dim or CONFIG["embed_dim"],
             "files": {"open_clip_model.safetensors": "tiny-clip/open_clip_model.safetensors"},
             "sha256": {"tiny-clip/open_clip_model.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()},
             "config": "tiny-clip/model_config.json",
             "provides": ["open_clip:ViT-B-32/openai"]}  # photo_search loads CLIP by this name
    if preprocess is not None:
        del entry["config"]
        entry["files"].update({"golden.json": "tiny-clip/golden.json",
                               "model_config.json": "tiny-clip/model_config.json"})
    (root / "models.json").write_text(json.dumps({"schema_version": 1, "set": "test", "models": [entry]}))
    return root


def make_photos(folder: Path, n: int, seed: int) -> list[Path]:
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(40 + i, 48, 3), dtype=np.uint8)  # different sizes and content
        p = folder / f"photo_{i:02d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p.resolve())
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="module")
def other_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("other-models"), seed=1)


@pytest.fixture
def env(models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(MODELS_ENV, str(models))
    monkeypatch.setenv("FORCE_CPU", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("photo-search must not reach the network (models load from local files only)")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return models


def expected_scores(models: Path, paths: list[Path], text: str, **pre_kwargs: object) -> dict[str, float]:
    """Cosine(text, image) for each path, computed directly with open_clip (not through the app)."""
    open_clip.add_model_config(models / f"{ARCH}.json")
    model, _, pre = open_clip.create_model_and_transforms(
        ARCH, pretrained=str(models / "tiny-clip" / "open_clip_model.safetensors"), **pre_kwargs)
    model.eval()
    with torch.no_grad():
        imgs = torch.stack([pre(Image.open(p).convert("RGB")) for p in paths])
        ie = model.encode_image(imgs)
        te = model.encode_text(open_clip.get_tokenizer(ARCH)([text]))
    ie = ie / ie.norm(dim=-1, keepdim=True)
    te = te / te.norm(dim=-1, keepdim=True)
    return {str(p): float(s) for p, s in zip(paths, (ie @ te.T)[:, 0], strict=True)}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def search(capsys, idx: Path, text: str, k: int) -> list[dict]:
    rc, out, err = run(capsys, "search", text, "-k", str(k), "--index", str(idx), "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["mode"] == "clip"
    return res["results"]


def test_index_then_search_ranks_by_cosine(env: Path, tmp_path: Path, capsys) -> None:
    paths = make_photos(tmp_path / "photos", 7, seed=0)
    (tmp_path / "photos" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "photos" / "notes.txt").write_text("ignored")
    idx = tmp_path / "idx"
    rc, out, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(idx), "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert (summary["mode"], summary["images"], summary["skipped"]) == ("clip", 7, 1)
    assert summary["models"]["clip"]["id"] == "tiny-clip"
    assert "skipped" in err and "broken.png" in err
    assert sorted(p.name for p in idx.iterdir()) == ["images.faiss", "index.json"]

    want = expected_scores(env, paths, "a photo of a dog")
    got = search(capsys, idx, "a photo of a dog", 3)
    assert [r["rank"] for r in got] == [1, 2, 3]
    scores = [r["score"] for r in got]
    assert scores == sorted(scores, reverse=True)
    for r in got:
        assert r["score"] == pytest.approx(want[r["path"]], abs=1e-4)
    best3 = sorted(want.values(), reverse=True)[:3]
    assert scores == pytest.approx(best3, abs=1e-4)
    assert len(search(capsys, idx, "a photo of a dog", 50)) == 7  # k larger than the index

    rc, out, _ = run(capsys, "search", "a photo of a dog", "-k", "2", "--index", str(idx))
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].split("  ", 1)[1] == got[0]["path"]


def test_freeze_layout_config_among_files_with_its_preprocessing(tmp_path_factory: pytest.TempPathFactory,
                                                                  tmp_path: Path, monkeypatch, capsys) -> None:
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear", "resize_mode": "squash"}
    models = make_tiny_clip(tmp_path_factory.mktemp("freeze-layout"), seed=0, preprocess=pre)
    monkeypatch.setenv(MODELS_ENV, str(models))
    paths = make_photos(tmp_path / "photos", 4, seed=8)
    idx = tmp_path / "idx"
    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(idx))
    assert rc == 0, err
    got = {r["path"]: r["score"] for r in search(capsys, idx, "a red square", 4)}
    want = expected_scores(models, paths, "a red square", image_mean=(0.5,) * 3, image_std=(0.25,) * 3,
                           image_interpolation="bilinear", image_resize_mode="squash")
    default = expected_scores(models, paths, "a red square")
    for p in got:
        assert got[p] == pytest.approx(want[p], abs=1e-4)
    # the model's own preprocessing was used, not open_clip's defaults
    assert max(abs(want[p] - default[p]) for p in want) > 1e-3


def test_reindex_replaces_and_second_folder_adds(env: Path, tmp_path: Path, capsys) -> None:
    a = make_photos(tmp_path / "a", 4, seed=1)
    b = make_photos(tmp_path / "b", 2, seed=2)
    idx = tmp_path / "idx"
    assert run(capsys, "index", str(tmp_path / "a"), "--index", str(idx))[0] == 0
    before = {r["path"]: r["score"] for r in search(capsys, idx, "mountains", 10)}
    assert set(before) == {str(p) for p in a}
    assert run(capsys, "index", str(tmp_path / "a"), "--index", str(idx))[0] == 0
    assert run(capsys, "index", str(tmp_path / "b"), "--index", str(idx))[0] == 0
    after = {r["path"]: r["score"] for r in search(capsys, idx, "mountains", 10)}
    assert set(after) == {str(p) for p in a + b}
    for p, s in before.items():  # the vectors carried over are the same vectors
        assert after[p] == pytest.approx(s, abs=1e-6)
    side = PhotoIndex.read_sidecar(idx)
    assert side is not None and len(side.images) == 6


def test_index_built_with_other_models_is_refused(env: Path, other_models: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    make_photos(tmp_path / "photos", 3, seed=3)
    idx = tmp_path / "idx"
    assert run(capsys, "index", str(tmp_path / "photos"), "--index", str(idx))[0] == 0
    sidecar = (idx / "index.json").read_bytes()
    old_sha = json.loads(sidecar)["models"]["clip"]["sha256"]

    monkeypatch.setenv(MODELS_ENV, str(other_models))
    for argv in (["index", str(tmp_path / "photos")], ["search", "cats"]):
        rc, out, err = run(capsys, *argv, "--index", str(idx))
        assert rc == 2 and out == ""
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1
        assert errors[0].startswith(f"photo-search: error: index {idx} was built with clip model tiny-clip "
                                    f"(sha256 {old_sha[:12]}); this run has clip model tiny-clip (sha256 ")
    assert (idx / "index.json").read_bytes() == sidecar

    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(idx), "--rebuild")
    assert rc == 0, err
    new_sha = json.loads((idx / "index.json").read_text())["models"]["clip"]["sha256"]
    assert new_sha != old_sha
    assert len(search(capsys, idx, "cats", 5)) == 3


def test_names_index_is_refused_by_an_ml_run(env: Path, tmp_path: Path, capsys) -> None:
    make_photos(tmp_path / "photos", 2, seed=4)
    idx = tmp_path / "idx"
    PhotoIndex(path=idx, images=[str(tmp_path / "photos" / "photo_00.png")]).save()
    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(idx))
    assert rc == 2 and "was built with no models (file names only); this run has clip model tiny-clip" in err


def test_wrong_embed_dim_in_models_json(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    bad = make_tiny_clip(tmp_path_factory.mktemp("bad-models"), seed=0, embed_dim=64)
    monkeypatch.setenv(MODELS_ENV, str(bad))
    make_photos(tmp_path / "photos", 1, seed=5)
    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(tmp_path / "idx"))
    assert rc == 2 and "gives 32-d embeddings; models.json says embed_dim 64" in err
    assert not (tmp_path / "idx").exists()


def test_corrupt_weights_is_one_line_exit_1(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    bad = make_tiny_clip(tmp_path_factory.mktemp("corrupt-models"), seed=0)
    (bad / "tiny-clip" / "open_clip_model.safetensors").write_bytes(b"\0" * 64)
    monkeypatch.setenv(MODELS_ENV, str(bad))
    make_photos(tmp_path / "photos", 1, seed=6)
    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(tmp_path / "idx"))
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 1 and len(errors) == 1 and "cannot load CLIP model 'tiny-clip'" in errors[0]
    assert "Traceback" not in err


def test_health_reports_the_models_and_ml(env: Path) -> None:
    """The one subprocess here: ``python -m photo_search --health`` with the real ML stack."""
    e = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'examples'}", MODELS_ENV: str(env)}
    r = subprocess.run([sys.executable, "-m", "photo_search", "--health"], capture_output=True, text=True,
                       env=e, timeout=300)
    assert r.returncode == 0, r.stderr
    h = json.loads(r.stdout)
    assert h["ml_available"] is True
    assert h["features"]["clip_search"] == {"available": True, "reason": None}
    assert h["features"]["faces"]["available"] is False
    assert "no insightface model" in h["ml_reason"]
    assert all(v == "ok" for v in h["ml_libraries"].values()), h["ml_libraries"]
    assert [m["id"] for m in h["models"]] == ["tiny-clip"] and h["models"][0]["arch"] == ARCH
    assert h["device"]["device"] == "cpu"  # FORCE_CPU=1 from the fixture; no GPU here either way


def test_import_errors_are_cached_and_reported() -> None:
    assert embed.import_errors(("torch", "open_clip", "faiss")) == {}
    assert "No module named" in embed.import_errors(("photo_search_no_such_module",))["photo_search_no_such_module"]


def scores_with_transform(models: Path, paths: list[Path], text: str, pre_cfg: dict) -> dict[str, float]:
    """Cosine(text, image) with open_clip's own transform for ``pre_cfg`` (independent of the app)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    open_clip.add_model_config(models / f"{ARCH}.json")
    model = open_clip.create_model(ARCH, pretrained=str(models / "tiny-clip" / "open_clip_model.safetensors"))
    model.eval()
    cfg = PreprocessCfg(size=CONFIG["vision_cfg"]["image_size"],
                        **{k: tuple(v) if isinstance(v, list) else v for k, v in pre_cfg.items()})
    pre = image_transform_v2(cfg, is_train=False)
    with torch.no_grad():
        ie = model.encode_image(torch.stack([pre(Image.open(p).convert("RGB")) for p in paths]))
        te = model.encode_text(open_clip.get_tokenizer(ARCH)([text]))
    ie = ie / ie.norm(dim=-1, keepdim=True)
    te = te / te.norm(dim=-1, keepdim=True)
    return {str(p): float(s) for p, s in zip(paths, (ie @ te.T)[:, 0], strict=True)}


def test_fill_color_and_resize_mode_reach_the_app(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                  monkeypatch, capsys) -> None:
    """The app's transform is the runtime's full one: "longest" pads non-square photos with fill_color."""
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "resize_mode": "longest", "fill_color": 255}
    models = make_tiny_clip(tmp_path_factory.mktemp("fill"), seed=0, preprocess=pre)
    monkeypatch.setenv(MODELS_ENV, str(models))
    paths = make_photos(tmp_path / "photos", 4, seed=9)  # 40..43 x 48 pixels: padding is needed
    idx = tmp_path / "idx"
    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(idx))
    assert rc == 0, err
    got = {r["path"]: r["score"] for r in search(capsys, idx, "a blue circle", 4)}
    want = scores_with_transform(models, paths, "a blue circle", pre)
    black = scores_with_transform(models, paths, "a blue circle", {**pre, "fill_color": 0})
    for p in got:
        assert got[p] == pytest.approx(want[p], abs=1e-4)
    assert max(abs(want[p] - black[p]) for p in want) > 1e-3  # the fill colour matters for these photos


def test_an_unsupported_interpolation_is_one_line(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                  monkeypatch, capsys) -> None:
    models = make_tiny_clip(tmp_path_factory.mktemp("interp"), seed=0, preprocess={"interpolation": "lanczos"})
    monkeypatch.setenv(MODELS_ENV, str(models))
    make_photos(tmp_path / "photos", 1, seed=1)
    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(tmp_path / "idx"))
    assert rc == 1
    (line,) = [x for x in err.splitlines() if "error:" in x]  # one error line (beside a note about faces)
    assert "AssertionError" not in err
    assert "preprocess_cfg.interpolation is 'lanczos'; supported: bicubic, bilinear" in line


def test_a_config_naming_a_hub_tokenizer_is_refused(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                    monkeypatch, capsys) -> None:
    models = make_tiny_clip(tmp_path_factory.mktemp("hubtok"), seed=0)
    cfg = models / "tiny-clip" / "model_config.json"
    data = json.loads(cfg.read_text())
    data["text_cfg"]["hf_tokenizer_name"] = "someone/tokenizer"
    cfg.write_text(json.dumps(data))
    monkeypatch.setenv(MODELS_ENV, str(models))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a hub download would land here
    make_photos(tmp_path / "photos", 1, seed=1)
    rc, _, err = run(capsys, "index", str(tmp_path / "photos"), "--index", str(tmp_path / "idx"))
    assert rc == 1 and "hf_tokenizer_name='someone/tokenizer'" in err and "nothing pins" in err
    assert not (tmp_path / "home").exists()
