"""The in-process half of bench/gpu_check.py: torch/CUDA probes that print one JSON object.

Runs in a child process, in one of two environments:

- inside a built bundle (``--internal DIR --pyz EXE?OFFSET --pyz-reader FILE``): started with
  ``python -I -S`` (standard library only), it imports the bundle's own modules from its PYZ
  archive (read with PyInstaller's own reader, ``pyimod01_archive.py``) and its extension
  modules and shared libraries from ``_internal/``, with ``LD_LIBRARY_PATH`` set to
  ``_internal/`` as PyInstaller's bootloader does. What loads is what the bundle ships.
- on a machine's own Python and torch (``--lent``): the same probes with what is installed.

Probes: torch and CUDA facts; a cuDNN convolution compared with the CPU result; an NVRTC
compile (torch's jiterator compiles its kernel with NVRTC, which loads libnvrtc-builtins);
an onnxruntime session on the requested provider; the demo CLIP model's embeddings on the
CPU and on the device with their throughput (``--clip-weights``/``--clip-config``); and the
shared libraries this process mapped (/proc/self/maps). Only the standard library is imported
at module level, so the bundle's modules are the ones that load.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import json
import os
import sys
import time
import traceback
from typing import Any


def install_pyz(internal: str, pyz: str, reader_file: str) -> None:
    """Import the bundle's pure-Python modules from its PYZ, as PyInstaller's bootloader does."""
    spec = importlib.util.spec_from_file_location("_mlfreeze_pyimod01_archive", reader_file)
    assert spec is not None and spec.loader is not None
    archive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(archive)
    reader = archive.ZlibArchiveReader(pyz)
    packages = (archive.PYZ_ITEM_PKG, archive.PYZ_ITEM_NSPKG)

    class Loader(importlib.abc.Loader):
        def __init__(self, name: str, origin: str) -> None:
            self.name, self.origin = name, origin

        def create_module(self, spec: Any) -> None:
            return None

        def exec_module(self, module: Any) -> None:
            code = reader.extract(self.name)
            module.__file__ = self.origin
            if code is not None:
                exec(code, module.__dict__)

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            entry = reader.toc.get(name)
            if entry is None:
                return None
            is_pkg = entry[0] in packages
            base = os.path.join(internal, *name.split("."))
            origin = os.path.join(base, "__init__.py") if is_pkg else base + ".py"
            found = importlib.util.spec_from_loader(name, Loader(name, origin), origin=origin, is_package=is_pkg)
            assert found is not None
            found.has_location = True
            if is_pkg:
                found.submodule_search_locations = [base]
            return found

    sys.meta_path.insert(0, Finder())
    # the bundle's stdlib extension modules first (those the probe's own start-up imported stay the host's)
    dynload = os.path.join(internal, f"python{sys.version_info[0]}.{sys.version_info[1]}", "lib-dynload")
    sys.path[:0] = [internal, dynload]
    sys.frozen = True  # type: ignore[attr-defined]  # as in the frozen app
    sys._MEIPASS = internal  # type: ignore[attr-defined]


def _run(name: str, func: Any, *args: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = func(*args)
        result.setdefault("ok", True)
    except Exception as exc:  # a probe that fails is a finding, recorded with its cause
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = {"ok": False, "detail": last}
    result["name"] = name
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def probe_torch(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available()}
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return {**info, "ok": False, "detail": "torch.cuda.is_available() is False"}
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["cudnn"] = torch.backends.cudnn.version()
    info["detail"] = f"torch {torch.__version__} on {device}"
    return info


def probe_conv(device: str) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 32, 32), torch.randn(8, 3, 3, 3)
    want = torch.nn.functional.conv2d(x, w, padding=1)
    if device == "cpu":
        return {"ok": True, "detail": "cpu: reference only (cuDNN needs a CUDA device)", "cudnn": False}
    torch.backends.cudnn.enabled = True
    got = torch.nn.functional.conv2d(x.to(device), w.to(device), padding=1).cpu()
    err = float((got - want).abs().max())
    return {"ok": err < 1e-3, "max_abs_error": err, "cudnn": torch.backends.cudnn.is_available(),
            "detail": f"cuDNN {torch.backends.cudnn.version()} convolution, max |cuda - cpu| = {err:.2e}"}


def probe_nvrtc(device: str) -> dict[str, Any]:
    import torch

    if device == "cpu":
        return {"ok": True, "detail": "cpu: NVRTC needs a CUDA device", "compiled": False}
    code = "template <typename T> T mlfreeze_twice(T x) { return x * T(2) + T(1); }"
    fn = torch.cuda.jiterator._create_jit_fn(code)  # compiled by NVRTC at first call
    x = torch.arange(8, dtype=torch.float32, device=device)
    got = fn(x).cpu()
    ok = bool(torch.equal(got, torch.arange(8, dtype=torch.float32) * 2 + 1))
    return {"ok": ok, "compiled": True, "detail": "jiterator kernel compiled with NVRTC and ran"}


def probe_onnxruntime(device: str) -> dict[str, Any]:
    import onnxruntime
    from onnx import TensorProto, helper

    provider = "CUDAExecutionProvider" if device.startswith("cuda") else "CPUExecutionProvider"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what every onnxruntime since 1.15 reads
    options: list[Any] = [provider]
    if provider == "CUDAExecutionProvider" and ":" in device:
        options = [(provider, {"device_id": int(device.split(":")[1]) or 0})]
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=options)
    used = session.get_providers()
    return {"ok": used[0] == provider, "providers": used, "available": onnxruntime.get_available_providers(),
            "detail": f"a session asked for {provider} runs on {used[0]}"}


def probe_clip(device: str, weights: str, config: str, batch: int) -> dict[str, Any]:
    """The demo CLIP through the runtime package's loader: CPU vs device embeddings, throughput."""
    import numpy as np
    import torch

    from mlfreeze_runtime.clip import ClipEmbedder, load_clip

    with open(config, encoding="utf-8") as f:
        data = json.load(f)
    arch = data.get("name", "mlfreeze-demo-clip")
    loaded = load_clip(arch=arch, weights=weights, config=config,
                       declared_quick_gelu=bool(data.get("model_cfg", {}).get("quick_gelu", False)))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(batch)]
    texts = [f"a photo of object number {i}" for i in range(batch)]
    cpu = ClipEmbedder(loaded, "cpu")
    dev = cpu.to(device) if device != "cpu" else cpu
    ref_i, ref_t = cpu.images(images), cpu.texts(texts)
    got_i, got_t = dev.images(images), dev.texts(texts)  # also the warm-up
    cos = float(min((ref_i * got_i).sum(-1).min(), (ref_t * got_t).sum(-1).min()))

    def rate(call: Any, items: list[Any]) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(3):
            call(items)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return round(3 * len(items) / (time.perf_counter() - started), 1)

    return {"ok": cos >= 0.999, "min_cosine_cpu_vs_device": round(cos, 6),
            "images_per_s": rate(dev.images, images), "texts_per_s": rate(dev.texts, texts), "batch": batch,
            "detail": f"demo CLIP: min cosine cpu vs {device} = {cos:.6f}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--internal", help="the bundle's _internal/ (bundle mode)")
    ap.add_argument("--pyz", help="EXE?OFFSET of the bundle's PYZ archive (bundle mode)")
    ap.add_argument("--pyz-reader", help="PyInstaller's loader/pyimod01_archive.py (bundle mode)")
    ap.add_argument("--clip-weights")
    ap.add_argument("--clip-config")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    if args.internal:
        install_pyz(args.internal, args.pyz, args.pyz_reader)
    probes = [_run("torch", probe_torch, args.device), _run("cudnn_conv", probe_conv, args.device),
              _run("nvrtc_compile", probe_nvrtc, args.device), _run("onnxruntime", probe_onnxruntime, args.device)]
    if args.clip_weights:
        probes.append(_run("clip_embeddings", probe_clip, args.device, args.clip_weights, args.clip_config,
                           args.batch))
    with open("/proc/self/maps", encoding="utf-8") if os.path.exists("/proc/self/maps") else _empty() as f:
        maps = f.read()
    paths = [p for p in sys.path if p and os.path.isdir(p)]  # where this process imported from
    print(json.dumps({"probes": probes, "maps": maps, "sys_path": paths}))
    return 0


class _empty:
    def __enter__(self) -> _empty:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> str:
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
