"""Export planning without torch: manifest pins of exports, cache keys, pinned-tower checks, tolerances."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError, ExportError
from mlfreeze.models.export import ExportOptions, _pinned, export_key
from mlfreeze.models.fetch import FetchedModel
from mlfreeze.models.manifest import load_manifest
from mlfreeze_runtime.verify.onnx_checks import AgreementSpecError, tolerances

W = "a" * 64
MANIFEST = f"""
[sets]
s = ["m"]

[models.m]
kind = "clip"
arch = "ViT-B-32-quickgelu"
embed_dim = 512
license = "MIT"

[[models.m.artifacts]]
file = "w.safetensors"
role = "weights"
sha256 = "{W}"
size = 1
urls = ["w.safetensors"]

[[models.m.artifacts]]
file = "image.onnx"
role = "image_onnx"
derived_from = "m@{W}"
sha256 = "{'b' * 64}"
size = 1
urls = ["image.onnx"]

[[models.m.artifacts]]
file = "text.onnx"
role = "text_onnx"
derived_from = "m@{W}"
sha256 = "{'c' * 64}"
size = 1
urls = ["text.onnx"]

[models.m.onnx_agreement]
precision = "fp32"
"""


def _load(tmp_path: Path, text: str = MANIFEST):
    path = tmp_path / "models.toml"
    path.write_text(text)
    return load_manifest(path)


def test_exports_load_with_their_source(tmp_path: Path) -> None:
    model = _load(tmp_path).models["m"]
    roles = {a.role: a.derived_from for a in model.artifacts}
    assert roles == {"weights": "", "image_onnx": f"m@{W}", "text_onnx": f"m@{W}"}
    assert dict(model.onnx_agreement) == {"precision": "fp32"}


@pytest.mark.parametrize(("old", "new", "match"), [
    (f'derived_from = "m@{W}"\nsha256 = "{"b" * 64}"', f'sha256 = "{"b" * 64}"',
     r"artifacts\[1\]\.derived_from.*must be"),
    (f'derived_from = "m@{W}"\nsha256 = "{"b" * 64}"', f'derived_from = "m@abc"\nsha256 = "{"b" * 64}"', "must be"),
    (f'derived_from = "m@{W}"\nsha256 = "{"b" * 64}"', f'derived_from = "x@{W}"\nsha256 = "{"b" * 64}"',
     "names another model"),
    ('role = "weights"\n', f'role = "weights"\nderived_from = "m@{W}"\n', "only allowed with role"),
])
def test_bad_derived_from_is_refused(tmp_path: Path, old: str, new: str, match: str) -> None:
    assert old in MANIFEST
    with pytest.raises(ConfigError, match=match):
        _load(tmp_path, MANIFEST.replace(old, new, 1))


def test_key_changes_with_every_input() -> None:
    sources, versions = {"w.safetensors": W}, {"torch": "2.14.1", "onnx": "1.23.2", "open-clip-torch": "3.3.0"}
    base = export_key(sources, versions, ExportOptions())
    assert base == export_key(dict(sources), dict(versions), ExportOptions())
    assert len({base,
                export_key({"w.safetensors": "b" * 64}, versions, ExportOptions()),
                export_key(sources, {**versions, "torch": "2.15.0"}, ExportOptions()),
                export_key(sources, versions, ExportOptions(opset=18)),
                export_key(sources, versions, ExportOptions(dynamic_batch=False))}) == 5


def test_pinned_towers_must_come_from_the_pinned_weights(tmp_path: Path) -> None:
    model = _load(tmp_path).models["m"]
    files = {a.file: tmp_path / a.file for a in model.artifacts}
    got = _pinned(FetchedModel(model=model, files=files, bundle_files=files))
    assert got is not None and got.origin == "pinned" and got.image == tmp_path / "image.onnx"
    moved = _load(tmp_path, MANIFEST.replace(f'sha256 = "{W}"', f'sha256 = "{"d" * 64}"', 1)).models["m"]
    with pytest.raises(ExportError, match="not from the pinned weights"):
        _pinned(FetchedModel(model=moved, files=files, bundle_files=files))
    one = _load(tmp_path, MANIFEST.replace('role = "text_onnx"', 'role = "other"').replace(
        f'derived_from = "m@{W}"\nsha256 = "{"c" * 64}"', f'sha256 = "{"c" * 64}"')).models["m"]
    with pytest.raises(ExportError, match="only one ONNX tower"):
        _pinned(FetchedModel(model=one, files=files, bundle_files=files))


def test_tolerances() -> None:
    assert tolerances({}).min_cosine == 0.999999  # what faithful fp32 exports measure on the CPU
    assert tolerances({"precision": "fp16", "min_cosine": 0.9995, "top_k": 3}).top_k == 3
    for raw, match in [({"min_cosine": 0.999}, "looser than fp32"), ({"precision": "bf8"}, "precision must be"),
                       ({"top_k": 0}, "top_k"), ({"min_cos": 1.0}, "min_cos is not a known key"),
                       ({"min_cosine": 1.5}, r"\(0, 1\]")]:
        with pytest.raises(AgreementSpecError, match=match):
            tolerances(raw)


def test_fp16_storage_is_lossless() -> None:
    np = pytest.importorskip("numpy")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from mlfreeze.models.export import store_exact_fp16

    rng = np.random.default_rng(0)
    exact = rng.standard_normal((64, 32)).astype(np.float16).astype(np.float32)
    inexact = exact.copy()
    inexact[3, 4] += 1e-6  # one value off the fp16 grid: this tensor must stay fp32
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "a"], ["y0"]), helper.make_node("MatMul", ["y0", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])],
        [numpy_helper.from_array(exact, "a"), numpy_helper.from_array(inexact.T.copy(), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert store_exact_fp16(model) == 1
    onnx.checker.check_model(model)
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert kinds == {"a__fp16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(before, after)
