"""mlfreeze_runtime's pure parts: the models.json schema and reader, the models-folder source, the
app contract (probe and health), the preprocessing/config checks, and the self-test's comparison."""

from __future__ import annotations

import io
import json
import math
import runpy
import sys
from pathlib import Path

import pytest

from mlfreeze_runtime import app, clip, faces, modelindex
from mlfreeze_runtime.modelindex import FROZEN_MARK_ENV, MODELS_ENV

ROOT = Path(__file__).resolve().parents[2]


# ---- models.json: schema and reader ----
def test_docs_schema_is_the_runtime_schema() -> None:
    assert json.loads((ROOT / "docs" / "models-index.schema.json").read_text()) == modelindex.SCHEMA


def _doc(**over: object) -> dict:
    model = {"id": "m", "kind": "clip", "arch": "a", "embed_dim": 8, "files": {"w": "m/w.safetensors"},
             "sha256": {"m/w.safetensors": "ab" * 32}, "roles": {"w": "weights"}, "verify": {}}
    model.update(over)
    return {"schema_version": 1, "set": "s", "expected_providers": ["CPUExecutionProvider"], "models": [model]}


BAD_DOCS = [
    {"models": []},
    {"schema_version": 2, "models": []},
    {"schema_version": 1, "models": {}},
    {"schema_version": 1, "models": [], "expected_providers": [""]},
    _doc(kind="resnet"),
    _doc(embed_dim=0),
    _doc(embed_dim=1.5),
    _doc(embed_dim=True),
    _doc(files={}),
    _doc(files={"w": 3}),
    _doc(sha256={"m/w.safetensors": "xyz"}),
    _doc(id=""),
    _doc(id="../evil"),
    _doc(verify=[]),
    _doc(golden=""),
    [],
]


@pytest.mark.parametrize("doc", BAD_DOCS)
def test_hand_validator_agrees_with_jsonschema_on_bad_documents(doc: object) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert not jsonschema.Draft202012Validator(modelindex.SCHEMA).is_valid(doc)
    assert modelindex.schema_errors(doc)


@pytest.mark.parametrize("doc", [_doc(), _doc(arch=""), {"schema_version": 1, "models": []},
                                 _doc(config="m/c.json", golden="m/golden.json", extra_key=1)])
def test_hand_validator_agrees_with_jsonschema_on_good_documents(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert jsonschema.Draft202012Validator(modelindex.SCHEMA).is_valid(doc)
    assert modelindex.schema_errors(doc) == []


def test_validator_refuses_a_schema_keyword_it_does_not_check() -> None:
    with pytest.raises(ValueError, match="oneOf"):
        modelindex.schema_errors({}, {"oneOf": []})


def test_reader_resolves_paths_and_roles(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.safetensors").write_bytes(b"w")
    (tmp_path / "models.json").write_text(json.dumps(_doc(golden="m/golden.json")))
    index = modelindex.read_models_index(tmp_path)
    (m,) = index.models
    assert index.set_name == "s" and index.expected_providers == ("CPUExecutionProvider",)
    assert m.weights_path() == tmp_path / "m" / "w.safetensors" and m.golden_path() == tmp_path / "m" / "golden.json"
    assert m.config_path() is None


def test_reader_without_file_checks_lists_missing_files_instead(tmp_path: Path) -> None:
    (tmp_path / "models.json").write_text(json.dumps(_doc()))
    with pytest.raises(modelindex.ModelIndexError, match=r"file 'w' \(m/w.safetensors\) is missing .*: reinstall"):
        modelindex.read_models_index(tmp_path)
    (m,) = modelindex.read_models_index(tmp_path, check_files=False).models
    assert m.missing_files() == ["'w' (m/w.safetensors)"]


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "C:/x", "a/../../x", "\\\\server\\x"])
def test_paths_stay_inside_the_models_folder(tmp_path: Path, path: str) -> None:
    (tmp_path / "models.json").write_text(json.dumps(_doc(files={"w": path})))
    with pytest.raises(modelindex.ModelIndexError, match="must be a path inside the models folder"):
        modelindex.read_models_index(tmp_path, check_files=False)


def test_writer_validates_before_writing(tmp_path: Path) -> None:
    bad = {"id": "m", "kind": "resnet", "arch": "a", "embed_dim": 8, "files": {"w": "m/w"}}
    with pytest.raises(modelindex.ModelIndexError, match="kind"):
        modelindex.write_models_index(tmp_path / "out", [bad], set_name="s")
    assert not (tmp_path / "out" / "models.json").exists()
    good = {**bad, "kind": "clip"}
    path = modelindex.write_models_index(tmp_path / "out", [good], set_name="s")
    assert modelindex.read_models_index(path.parent, check_files=False).models[0].kind == "clip"


def test_one_line_errors_for_missing_folder_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(modelindex.ModelsDirMissing, match="does not exist: reinstall the bundle"):
        modelindex.read_models_index(tmp_path / "nope")
    (tmp_path / "models.json").write_text("{oops")
    with pytest.raises(modelindex.ModelIndexError) as err:
        modelindex.read_models_index(tmp_path)
    assert "is not valid JSON" in str(err.value) and "\n" not in str(err.value)


# ---- where the models folder comes from ----
def test_models_dir_source_frozen_only_when_the_hook_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(FROZEN_MARK_ENV, str(tmp_path / "models"))
    assert modelindex.find_models_dir() == ((tmp_path / "models").resolve(), "frozen")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "mine"))  # the user's own choice, the mark is stale
    assert modelindex.find_models_dir() == ((tmp_path / "mine").resolve(), MODELS_ENV)
    monkeypatch.delenv(FROZEN_MARK_ENV)
    assert modelindex.find_models_dir()[1] == MODELS_ENV
    assert modelindex.find_models_dir(tmp_path / "x") == ((tmp_path / "x").resolve(), "argument")


def test_runtime_hook_marks_what_it_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = ROOT / "src" / "mlfreeze" / "specs" / "hooks" / "rthook_models_dir.py"
    (tmp_path / "models").mkdir()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "photo-search"))
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.delenv(FROZEN_MARK_ENV, raising=False)
    runpy.run_path(str(hook))
    import os

    assert os.environ[MODELS_ENV] == os.environ[FROZEN_MARK_ENV] == str(tmp_path / "models")
    assert modelindex.find_models_dir()[1] == "frozen"
    # a user's own folder is left alone and not marked
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "mine"))
    monkeypatch.delenv(FROZEN_MARK_ENV)
    runpy.run_path(str(hook))
    assert os.environ[MODELS_ENV] == str(tmp_path / "mine") and FROZEN_MARK_ENV not in os.environ


# ---- the probe ----
def _probe(tmp_path: Path, request: object, **fns: object) -> tuple[int | None, str, str]:
    req = tmp_path / "req.json"
    req.write_text(json.dumps(request))
    out, err = io.StringIO(), io.StringIO()
    code = app.handle_probe(["--mlfreeze-probe", str(req)], prog="x", out=out, err=err, **fns)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def _unit(n: int, d: int = 3) -> list[list[float]]:
    return [[1.0 if j == i % d else 0.0 for j in range(d)] for i in range(n)]


def test_probe_answers_each_part_in_order(tmp_path: Path) -> None:
    seen: dict[str, list] = {}

    def texts(xs: list[str]) -> list[list[float]]:
        seen["texts"] = xs
        return _unit(len(xs))

    def faces_fn(ps: list[Path]) -> list:
        seen["faces"] = ps
        return [None, [0.0, 0.6, 0.8]]

    code, out, err = _probe(tmp_path, {"texts": ["a", "b"], "faces": ["/p/1.png", "/p/2.png"]},
                            embed_texts=texts, embed_faces=faces_fn)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"text": _unit(2), "face": [None, [0.0, 0.6, 0.8]]}
    assert seen == {"texts": ["a", "b"], "faces": [Path("/p/1.png"), Path("/p/2.png")]}


def test_probe_flag_absent_is_none_and_equals_form_works(tmp_path: Path) -> None:
    assert app.handle_probe(["search", "cat"], embed_texts=lambda xs: []) is None
    req = tmp_path / "r.json"
    req.write_text('{"texts": ["q"]}')
    out = io.StringIO()
    assert app.handle_probe([f"--mlfreeze-probe={req}"], embed_texts=lambda xs: _unit(1), out=out) == 0
    assert json.loads(out.getvalue()) == {"text": _unit(1)}


@pytest.mark.parametrize(("request_doc", "message"), [
    ({"texts": "a"}, "texts must be a list of strings"),
    ({"pictures": []}, "unknown key(s) pictures"),
    ([1], "expected a JSON object"),
])
def test_bad_requests_are_exit_2_one_line(tmp_path: Path, request_doc: object, message: str) -> None:
    code, out, err = _probe(tmp_path, request_doc, embed_texts=lambda xs: _unit(len(xs)))
    assert code == 2 and out == "" and message in err and err.count("\n") == 1 and err.startswith("x: error: ")


def test_missing_request_and_missing_value(tmp_path: Path) -> None:
    err = io.StringIO()
    assert app.handle_probe(["--mlfreeze-probe", str(tmp_path / "no.json")], embed_texts=len, err=err) == 2
    assert "does not exist" in err.getvalue()
    assert app.handle_probe(["--mlfreeze-probe"], embed_texts=len, err=io.StringIO()) == 2


@pytest.mark.parametrize(("result", "message"), [
    (lambda xs: _unit(len(xs) + 1), "text: 3 rows for 2 inputs"),
    (lambda xs: [[math.nan, 0, 0]] * len(xs), "text[0] is empty or not finite"),
    (lambda xs: [None] * len(xs), "text[0] is null"),
])
def test_wrong_app_answers_are_exit_1(tmp_path: Path, result: object, message: str) -> None:
    code, out, err = _probe(tmp_path, {"texts": ["a", "b"]}, embed_texts=result)
    assert code == 1 and out == "" and message in err


def test_an_app_error_is_exit_1_one_line(tmp_path: Path) -> None:
    def boom(xs: list[str]) -> None:
        raise RuntimeError("model exploded\nsecond line")

    code, _, err = _probe(tmp_path, {"texts": ["a"]}, embed_texts=boom)
    assert code == 1 and err == "x: error: probe failed: RuntimeError: model exploded\n"
    code, _, err = _probe(tmp_path, {"texts": ["a"]})
    assert code == 1 and "embeds nothing" in err


# ---- --health ----
def test_health_keys_and_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 request: pytest.FixtureRequest) -> None:
    from mlfreeze_runtime import device

    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.setattr(device, "_torch", lambda: None)  # importing torch starts a subprocess: not here
    monkeypatch.setattr(device, "_onnxruntime", lambda: None)
    monkeypatch.delenv("DEVICE", raising=False)
    device.reset()
    request.addfinalizer(device.reset)  # forget the stand-in answers after this test
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.safetensors").write_bytes(b"w")
    (tmp_path / "models.json").write_text(json.dumps(_doc()))
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    monkeypatch.setenv(FROZEN_MARK_ENV, str(tmp_path))
    h = app.health(app="demo", version="1.2")
    assert {"app", "version", "ml_available", "models_dir", "models_dir_source", "device"} <= set(h)
    assert h["models_dir_source"] == "frozen" and h["ml_available"] is True and h["ml_reason"] is None
    assert h["model_set"] == "s" and [m["id"] for m in h["models"]] == ["m"]
    assert h["device"]["device"] == "cpu" and h["device"]["onnx_provider_options"] == [{}]

    features = {"names": {"available": True, "reason": None}, "clip": {"available": False, "reason": "no torch"}}
    h = app.health(app="demo", version="1", features=features, ml_features=["clip"])
    assert h["ml_available"] is False and h["ml_reason"] == "clip: no torch"

    monkeypatch.delenv(FROZEN_MARK_ENV)
    (tmp_path / "models.json").write_text("{}")
    h = app.health(app="demo", version="1")
    assert h["models_dir_source"] == MODELS_ENV and h["ml_available"] is False
    assert "missing key 'schema_version'" in h["models_error"] and h["models"] == []


# ---- CLIP configuration: refused or pinned inputs, the full preprocessing ----
@pytest.mark.parametrize(("cfg", "message"), [
    ({"interpolation": "lanczos"}, "interpolation is 'lanczos'; supported: bicubic, bilinear"),
    ({"resize_mode": "crop"}, "resize_mode is 'crop'; supported: shortest, longest, squash"),
    ({"fill_color": 300}, "fill_color is 300"),
    ({"fill_color": [1, 2, 3]}, "fill_color is (1, 2, 3)"),
    ({"mean": [0.5, 0.5]}, "mean is [0.5, 0.5]; expected 3 numbers"),
    ({"std": [0.5, 0, 0.5]}, "every value must be > 0"),
])
def test_preprocess_values_open_clip_cannot_use_are_one_line(cfg: dict, message: str) -> None:
    with pytest.raises(clip.ClipLoadError, match="^preprocess_cfg") as err:
        clip.check_preprocess_cfg(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_preprocess_keeps_every_transform_key() -> None:
    cfg = {"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1], "interpolation": "bilinear", "resize_mode": "longest",
           "fill_color": 255, "size": 99}
    assert clip.check_preprocess_cfg(cfg) == {"mean": (0.1, 0.2, 0.3), "std": (1, 1, 1), "interpolation": "bilinear",
                                              "resize_mode": "longest", "fill_color": 255}


@pytest.mark.parametrize(("arch", "text_cfg", "message"), [
    ("local-dir:/models/x", {}, "names a local folder"),
    ("tiny", {"hf_tokenizer_name": "org/tok"}, "hf_tokenizer_name='org/tok'"),
    ("tiny", {"tokenizer_kwargs": {"bpe_path": "/tmp/vocab.gz"}}, "bpe_path='/tmp/vocab.gz'"),
    ("ViT-B-16-SigLIP", {}, "uses a hub tokenizer"),
])
def test_configs_pulling_in_unpinned_inputs_are_refused(arch: str, text_cfg: dict, message: str) -> None:
    with pytest.raises(clip.ClipLoadError) as err:
        clip.refuse_unpinned_inputs(arch, {"text_cfg": text_cfg})
    assert message in str(err.value)


def test_plain_config_is_accepted() -> None:
    clip.refuse_unpinned_inputs("tiny", {"text_cfg": {"tokenizer_kwargs": {"clean": "lower"}}})


def test_hub_tokenizers_are_accepted_with_their_pinned_files() -> None:
    cfg = {"text_cfg": {"hf_tokenizer_name": "timm/ViT-B-16-SigLIP-i18n-256", "tokenizer_mode": "i18n"}}
    clip.refuse_unpinned_inputs("hf-hub:timm/ViT-B-16-SigLIP-i18n-256", cfg, tokenizer_files=True)
    with pytest.raises(clip.ClipLoadError, match='role = "tokenizer"'):
        clip.refuse_unpinned_inputs("hf-hub:timm/ViT-B-16-SigLIP-i18n-256", cfg)


def test_hub_arch_without_config_is_refused_before_open_clip_is_asked(tmp_path: Path, monkeypatch) -> None:
    """No config artifact: one line, and open_clip (which would fetch from the hub) is never imported."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(clip, "_import_open_clip", lambda: pytest.fail("open_clip was asked"))
    with pytest.raises(clip.ClipLoadError, match="no config artifact"):
        clip.load_clip(arch="hf-hub:timm/ViT-B-16-SigLIP-i18n-256", weights=tmp_path / "w.safetensors", config=None,
                       declared_quick_gelu=None)
    assert clip.local_arch("hf-hub:timm/x") == "hf-hub--timm--x"


def test_vocabulary_is_pinned(tmp_path: Path) -> None:
    wrong = tmp_path / clip.TOKENIZER_VOCAB
    wrong.write_bytes(b"not the vocabulary")
    with pytest.raises(clip.ClipLoadError, match="not the pinned"):
        clip.check_vocab(wrong)
    with pytest.raises(clip.ClipLoadError, match="is missing"):
        clip.check_vocab(tmp_path / "absent.txt.gz")


# ---- faces: detector parameters from models.json ----
def test_detector_params_from_the_verify_table() -> None:
    assert faces.detector_params({}) == ((640, 640), 0.5)
    assert faces.detector_params({"det_size": [320, 256], "det_thresh": 0.3}) == ((320, 256), 0.3)
    with pytest.raises(ValueError, match="det_size"):
        faces.detector_params({"det_size": [0, 640]})
    with pytest.raises(ValueError, match="det_thresh"):
        faces.detector_params({"det_thresh": 2})


@pytest.mark.parametrize(("providers", "options", "ctx"), [
    (["CPUExecutionProvider"], None, -1),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], [{"device_id": "2"}, {}], 2),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], None, 0),
    (["CoreMLExecutionProvider", "CPUExecutionProvider"], [{}, {}], 0),
])
def test_insightface_ctx_id_matches_the_provider_device(providers: list[str], options: list | None,
                                                        ctx: int) -> None:
    assert faces.ctx_id_for(providers, options) == ctx


def test_assemble_folder_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(faces.FaceLoadError, match=r"det.onnx is missing .*reinstall the bundle"):
        faces.assemble_folder({"det.onnx": tmp_path / "det.onnx"}, tmp_path / "t")


def test_each_model_library_is_loaded_in_one_runtime_module() -> None:
    """App, gate and self-test share the loaders of files; by-name loads are the apps' (and the gate's
    check of them)."""
    calls = {"FaceAnalysis(": set(), "open_clip.create_model": set()}
    skip = ("tests", "bench", "build", "dist", ".git", ".nox")
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        # hidden folders hold environments (.nox, .venv-ci, examples/*/.nox), not the project's code
        demo = rel.parts[:4] == ("src", "mlfreeze", "specs", "demo")  # the demo models' training scripts
        if rel.parts[0] in skip or demo or any(p.startswith(".") for p in rel.parts):
            continue
        text = path.read_text(encoding="utf-8")
        for needle, where in calls.items():
            if needle in text.replace('``FaceAnalysis(...)``', "").replace("``open_clip.create_model``", ""):
                where.add(rel.as_posix())
    # the runtime's loaders of files: faces.py and clip.py. Apps load by name (the examples), the
    # gate makes the same by-name calls to prove they resolve to the verified files (byname_checks),
    # and names.py documents the calls it resolves.
    by_name = {"src/mlfreeze_runtime/verify/byname_checks.py", "src/mlfreeze_runtime/names.py"}
    server = "examples/search_server/src/search_server/models.py"  # the server example's one model module
    assert calls == {"FaceAnalysis(": {"src/mlfreeze_runtime/faces.py", "examples/photo_search/embed.py", server,
                                       *by_name},
                     "open_clip.create_model": {"src/mlfreeze_runtime/clip.py", "examples/photo_search/embed.py",
                                                "examples/clip_only/clip_only.py", server, *by_name}}
