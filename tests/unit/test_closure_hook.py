"""specs/hooks/hook-mlfreeze_runtime.device.py: collects the profile's dlopen'd libraries from beside their loaders."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("PyInstaller")
HOOK = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "hooks" / "hook-mlfreeze_runtime.device.py"


def _run_hook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, entries: list[dict[str, str]] | None) -> list:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"name": "x"} if entries is None else {"name": "x", "dlopen": entries}))
    monkeypatch.setattr(sys, "argv", ["full.spec", str(params)])  # how PyInstaller runs the spec and hooks
    return runpy.run_path(str(HOOK))["binaries"]


def test_collects_each_library_from_beside_its_loader_into_at(monkeypatch, tmp_path):
    site = tmp_path / "site-packages"
    lib = site / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    (lib / "libnvrtc.so.13").write_bytes(b"\x7fELF")
    (lib / "libnvrtc-builtins.so.13.0").write_bytes(b"\x7fELF")
    capi = site / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    (capi / "onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"\x7fELF")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "absent"), str(site), *sys.path])  # first found wins
    entries = [
        {"lib": "libnvrtc-builtins.so.13.0", "by": "nvidia/cu13/lib/libnvrtc.so.13", "at": "."},
        {"lib": "libonnxruntime_providers_cuda.so", "by": "onnxruntime/capi/onnxruntime_pybind11_state*.so",
         "at": "onnxruntime/capi"},
        {"lib": "libnvrtc-builtins.so.12.8", "by": "nvidia/cu13/lib/libnvrtc.so.13", "at": "."},  # not installed
    ]
    assert _run_hook(monkeypatch, tmp_path, entries) == [
        (str(lib / "libnvrtc-builtins.so.13.0"), "."),
        (str(capi / "libonnxruntime_providers_cuda.so"), "onnxruntime/capi"),
    ]


def test_a_spec_without_the_key_collects_nothing(monkeypatch, tmp_path):
    assert _run_hook(monkeypatch, tmp_path, None) == []


def test_a_preload_entry_is_collected_from_at_when_its_user_is_installed(monkeypatch, tmp_path):
    site = tmp_path / "site-packages"
    lib = site / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcublas.so.13").write_bytes(b"\x7fELF")
    entry = {"lib": "libcublas.so.13", "by": "onnxruntime/capi/libonnxruntime_providers_cuda.so",
             "at": "nvidia/cu13/lib", "preload": True}
    import PyInstaller.utils.hooks  # noqa: F401  (imported before sys.path is narrowed to the fake site)

    monkeypatch.setattr(sys, "path", [str(site)])  # this environment's own onnxruntime must not count
    assert _run_hook(monkeypatch, tmp_path, [entry]) == []  # onnxruntime-gpu not installed: nothing to serve
    capi = site / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"\x7fELF")
    assert _run_hook(monkeypatch, tmp_path, [entry]) == [(str(lib / "libcublas.so.13"), "nvidia/cu13/lib")]


def test_a_library_not_beside_its_loader_is_collected_from_at(monkeypatch, tmp_path):
    # cuDNN's runtime-compiled engines find NVRTC through RUNPATH $ORIGIN/../../cu13/lib
    site = tmp_path / "site-packages"
    cudnn, cu13 = site / "nvidia" / "cudnn" / "lib", site / "nvidia" / "cu13" / "lib"
    cudnn.mkdir(parents=True)
    cu13.mkdir(parents=True)
    (cudnn / "libcudnn_engines_runtime_compiled.so.9").write_bytes(b"\x7fELF")
    entry = {"lib": "libnvrtc.so.13", "by": "nvidia/cudnn/lib/libcudnn_engines_runtime_compiled.so.9",
             "at": "nvidia/cu13/lib"}
    import PyInstaller.utils.hooks  # noqa: F401  (imported before sys.path is narrowed to the fake site)

    monkeypatch.setattr(sys, "path", [str(site)])
    assert _run_hook(monkeypatch, tmp_path, [entry]) == []  # nowhere: the audit reports it
    (cu13 / "libnvrtc.so.13").write_bytes(b"\x7fELF")
    assert _run_hook(monkeypatch, tmp_path, [entry]) == [(str(cu13 / "libnvrtc.so.13"), "nvidia/cu13/lib")]
