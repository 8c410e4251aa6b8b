"""Classification and exact totals on bundles built by hand with files of known sizes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from release_bundles import build_info

from mlfreeze.sizes.report import bundle_report
from mlfreeze.sizes.scan import package_classifier, scan

# path -> size; DUP marks the two identical files
KNOWN = {
    "_internal/torch/lib/libtorch_cpu.so": 3_000_000,
    "_internal/torch/__init__.py": 1_000,
    "_internal/nvidia/cudnn/lib/libcudnn.so.9": 2_000_000,
    "_internal/nvidia/cu13/lib/libcublas.so.13": 1_500_000,
    "_internal/triton/_C/libtriton.so": 700_000,
    "_internal/libpython3.11.so.1.0": 400_000,
    "_internal/base_library.zip": 100_000,
    "_internal/onnxruntime/capi/libonnxruntime.so.1": 250_000,
    "_internal/cv2/cv2.abi3.so": 120_000,
    "_internal/faiss/_swigfaiss.so": 90_000,
    "_internal/numpy.libs/libopenblas.so": 200_000,
    "_internal/scipy.libs/libopenblas2.so": 200_000,
    "_internal/yaml/_yaml.so": 30_000,
    "models/demo-clip/model.safetensors": 900_000,
    "models/demo-face/det.onnx": 300_000,
    "models/demo-face/2d106det.onnx": 50_000,
    "photo-search": 50_000,
    "photo-search-selftest": 60_000,
}
DUP = ("_internal/numpy.libs/libopenblas.so", "_internal/scipy.libs/libopenblas2.so")
EXPECTED = {
    "torch": 3_001_000, "cuda/cudnn": 2_000_000, "cuda/cublas": 1_500_000, "triton": 700_000,
    "python": 500_000, "onnxruntime": 250_000, "opencv": 120_000, "faiss": 90_000,
    "numpy/scipy": 400_000, "other third-party": 30_000, "model:demo-clip": 900_000,
    "model:demo-face": 350_000,
}


def make_bundle(root: Path, *, flavor: str = "full", accelerator: str = "cuda", sizes: dict[str, int] | None = None,
                models_json: bool = True) -> Path:
    bundle = root / f"photo-search-0.1.0-linux-cuda-{flavor}"
    for i, (rel, size) in enumerate(sorted((sizes or KNOWN).items())):
        path = bundle / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = 0 if rel in DUP else i + 1
        path.write_bytes(random.Random(seed).randbytes(size))
    info = build_info("linux-cuda", flavor, accelerator=accelerator, archive_format="tar.gz")
    (bundle / "BUILD-INFO.json").write_text(json.dumps(info))
    if models_json:
        doc = {"schema_version": 1, "models": [
            {"id": "demo-clip", "kind": "clip", "arch": "a", "embed_dim": 8,
             "files": {"weights": "demo-clip/model.safetensors"}},
            {"id": "demo-face", "kind": "insightface", "embed_dim": 8, "files": {"detection": "demo-face/det.onnx"}}]}
        (bundle / "models" / "models.json").write_text(json.dumps(doc))
    return bundle


def meta_bytes(bundle: Path) -> int:
    return sum((bundle / p).stat().st_size for p in ("BUILD-INFO.json", "models/models.json")
               if (bundle / p).exists())


def test_every_component_total_and_the_grand_total_are_exact(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    doc = bundle_report(bundle)
    got = {c["name"]: c["disk_bytes"] for c in doc["components"]}
    app = got.pop("app")
    assert got == EXPECTED
    assert app == 110_000 + meta_bytes(bundle)
    assert doc["disk_bytes"] == sum(KNOWN.values()) + meta_bytes(bundle)
    assert doc["files"] == len(KNOWN) + 2
    assert sum(c["files"] for c in doc["components"]) == doc["files"]
    kinds = {k["name"]: k["disk_bytes"] for k in doc["kinds"]}
    assert kinds["models"] == 1_250_000
    assert kinds["bytecode and sources"] == 1_000 + 100_000 + 110_000
    assert sum(kinds.values()) == doc["disk_bytes"]
    assert doc["models"] == ["demo-clip", "demo-face"]


def test_model_ids_fall_back_to_folder_names(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, models_json=False)
    assert scan(bundle).model_ids == ("demo-clip", "demo-face")


@pytest.mark.parametrize(("path", "component"), [
    ("nvidia/cu13/lib/libcublasLt.so.13", "cuda/cublas"),
    ("nvidia/cu13/lib/libcusparseLt.so.0", "cuda/cusparselt"),
    ("nvidia/cu13/lib/libcusparse.so.12", "cuda/cusparse"),
    ("nvidia/cu13/lib/libnvJitLink.so.13", "cuda/nvjitlink"),
    ("nvidia/cu13/include/cuda.h", "cuda/other"),
    ("nvidia/nccl/lib/libnccl.so.2", "cuda/nccl"),
    ("nvidia/cuda_runtime/lib/libcudart.so.12", "cuda/cuda_runtime"),
    ("nvidia_cudnn_cu13-9.10.dist-info/RECORD", "cuda/cudnn"),
    ("torch/lib/cudnn_graph64_9.dll", "cuda/cudnn"),
    ("torch/lib/libtorch_cuda.so", "torch"),
    ("torch-2.14.1.dist-info/METADATA", "torch"),
    ("torchvision/_C.so", "torchvision"),
    ("triton/backends/nvidia/bin/ptxas", "triton"),
    ("opencv_python_headless.libs/libavcodec.so", "opencv"),
    ("faiss_cpu.libs/libgomp.so", "faiss"),
    ("python3.11/lib-dynload/_ssl.so", "python"),
    ("photo_search/data/x.txt", "app"),
    ("PIL/_imaging.so", "other third-party"),
])
def test_classification_table(path: str, component: str) -> None:
    assert package_classifier(["photo_search"]).component(path) == component


def test_a_venv_is_classified_under_site_packages(tmp_path: Path) -> None:
    sp = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    for rel, size in {"torch/lib/libc10.so": 1234, "triton/x.py": 10, "photo_search/__init__.py": 5}.items():
        (sp / rel).parent.mkdir(parents=True, exist_ok=True)
        (sp / rel).write_bytes(b"x" * size)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    doc = bundle_report(tmp_path / "venv", venv=True, app="photo-search")
    got = {c["name"]: c["disk_bytes"] for c in doc["components"]}
    assert got == {"torch": 1234, "triton": 10, "app": 5, "python": len("home = /usr\n")}
    assert doc["source"] == "venv" and doc["models"] == []
