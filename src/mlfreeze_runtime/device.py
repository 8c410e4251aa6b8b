"""Runtime device selection, frozen into every bundle.

``get_device()``: ``DEVICE`` (auto|cpu|cuda|cuda:N|mps; ``MODEL_DEVICE`` is read when ``DEVICE`` is
unset, the name server deployments use) > ``FORCE_CPU=1`` > CUDA > MPS > CPU.
``get_onnx_providers()``: ``ONNX_PROVIDERS`` (comma list) or CUDA > CoreML > CPU, filtered by
what onnxruntime reports. ``onnx_provider_options(providers, device)``: the options that make
onnxruntime use the same GPU as torch (``DEVICE=cuda:N`` -> ``CUDAExecutionProvider`` with
``device_id=N``); ``get_onnx_session_config()`` returns both for this process.
``get_device_info()``: what a bug report needs.

Importable without torch or onnxruntime. Without torch (slim bundles) CUDA devices are counted
through the CUDA driver (libcuda's ``cuDeviceGetCount``), and choosing the CUDA provider preloads
the CUDA libraries it needs (:func:`preload_cuda_libraries`). Results are cached per process;
``reset()`` clears the cache (tests, or after changing the environment).
"""

from __future__ import annotations

import copy
import os
import platform
import re
import sys
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

ALLOWED_DEVICES = "auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps"
PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")
_TRUE = {"1", "true", "yes", "on"}
_CUDA_N = re.compile(r"^cuda:(\d+)$")


def _torch() -> Any | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _onnxruntime() -> Any | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def _cuda_count(torch: Any | None) -> int:
    if torch is None:
        return _driver_cuda_count()
    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # a broken driver reads as "no CUDA", never as a crash
        return 0


CUDA_DRIVER_NAMES = {"linux": ("libcuda.so.1",), "win32": ("nvcuda.dll",)}


def _driver_cuda_count() -> int:
    """CUDA devices the driver reports (``cuInit`` + ``cuDeviceGetCount`` of libcuda / nvcuda,
    the library onnxruntime's CUDA provider itself uses; ``CUDA_VISIBLE_DEVICES`` applies): how a
    torch-free (slim) bundle finds its GPU. 0 without a driver or on any error."""
    import ctypes

    names = CUDA_DRIVER_NAMES.get("win32" if sys.platform == "win32" else sys.platform.rstrip("0123456789"), ())
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            count = ctypes.c_int(0)
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return max(0, int(count.value))
        except (AttributeError, OSError):
            return 0
    return 0


def _driver_device_names(count: int) -> list[str]:
    """``cuDeviceGetName`` of devices 0..count-1 (after :func:`_driver_cuda_count` found them)."""
    import ctypes

    lib = ctypes.CDLL(CUDA_DRIVER_NAMES["win32" if sys.platform == "win32" else "linux"][0])
    names = []
    for i in range(count):
        dev = ctypes.c_int(0)
        buf = ctypes.create_string_buffer(256)
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0 or lib.cuDeviceGetName(buf, 256, dev) != 0:
            names.append("unreadable")
        else:
            names.append(buf.value.decode(errors="replace"))
    return names


def _mps_available(torch: Any | None) -> bool:
    backend = getattr(getattr(torch, "backends", None), "mps", None)
    try:
        return bool(backend is not None and backend.is_available())
    except Exception:
        return False


def requested_device() -> str:
    """The raw device request: ``DEVICE``, else ``MODEL_DEVICE``, else ``auto``."""
    return os.environ.get("DEVICE") or os.environ.get("MODEL_DEVICE") or "auto"


def _parse_requested(value: str) -> str:
    """Normalise a DEVICE value or raise ValueError naming the allowed forms."""
    v = value.strip().lower()
    if v in ("", "auto"):
        return "auto"
    if v in ("cpu", "cuda", "mps") or _CUDA_N.match(v):
        return v
    raise ValueError(f"DEVICE={value!r} is not a device; allowed: {ALLOWED_DEVICES}")


@lru_cache(maxsize=1)
def get_device() -> str:
    """The torch device string this process should use."""
    requested = _parse_requested(requested_device())
    if _forced_cpu(requested):
        return "cpu"
    torch = _torch()
    count = _cuda_count(torch)
    if requested == "auto":
        if count:
            return "cuda"
        return "mps" if _mps_available(torch) else "cpu"
    if requested == "mps":
        if not _mps_available(torch):
            raise ValueError("DEVICE=mps but MPS is not available here (needs Apple silicon and a torch "
                             "build with MPS); use DEVICE=auto or DEVICE=cpu")
        return "mps"
    # cuda or cuda:N
    if count == 0:
        raise ValueError(f"DEVICE={requested} but no CUDA device is available "
                         f"(torch {'not installed' if torch is None else getattr(torch, '__version__', '?')}); "
                         "use DEVICE=auto or DEVICE=cpu")
    match = _CUDA_N.match(requested)
    if match and int(match.group(1)) >= count:
        raise ValueError(f"DEVICE={requested} but only {count} CUDA device(s) exist "
                         f"(cuda:0 to cuda:{count - 1})")
    return requested


def _available_providers() -> list[str]:
    ort = _onnxruntime()
    if ort is None:
        return []
    return list(ort.get_available_providers())


def get_onnx_providers() -> list[str]:
    """onnxruntime providers in preference order, each one onnxruntime reports available.

    ``ONNX_PROVIDERS`` (comma list) overrides the preference; a name onnxruntime does not
    offer is a ValueError. CUDA is chosen only when a CUDA device is present and the torch
    device is not forced to the CPU: onnxruntime-gpu lists CUDAExecutionProvider even on
    machines without a GPU and then falls back with a warning. ``FORCE_CPU=1`` or
    ``DEVICE=cpu`` keep onnxruntime on the CPU as well.
    """
    return list(_onnx_providers())


@lru_cache(maxsize=1)
def _onnx_providers() -> tuple[str, ...]:
    available = _available_providers()
    override = os.environ.get("ONNX_PROVIDERS", "").strip()
    if override:
        wanted = [p.strip() for p in override.split(",") if p.strip()]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise ValueError(f"ONNX_PROVIDERS names {', '.join(missing)}, which onnxruntime does not offer here; "
                             f"available: {', '.join(available) or 'none (onnxruntime not installed)'}")
        if "CUDAExecutionProvider" in wanted:
            preload_cuda_libraries()
        return tuple(wanted)
    device = get_device()
    forced_cpu = _forced_cpu(_parse_requested(requested_device()))
    chosen = []
    for provider in PROVIDER_PREFERENCE:
        if provider not in available:
            continue
        if provider == "CUDAExecutionProvider" and not device.startswith("cuda"):
            continue
        if provider != "CPUExecutionProvider" and forced_cpu:
            continue
        chosen.append(provider)
    if "CUDAExecutionProvider" in chosen:
        preload_cuda_libraries()
    return tuple(chosen) if chosen else ("CPUExecutionProvider",)


_preloaded = False


def preload_cuda_libraries() -> None:
    """Make onnxruntime's CUDA provider loadable in a process that has not imported torch.

    ``libonnxruntime_providers_cuda`` has no RUNPATH: it finds cuBLAS, cuBLASLt, cuRAND, the CUDA
    runtime and cuDNN only when they are already loaded. ``import torch`` loads them (full
    bundles); without torch (slim) this calls ``onnxruntime.preload_dlls()``, which loads them by
    path from ``nvidia/`` beside the onnxruntime package (``_internal/nvidia/...`` in a bundle,
    where the profile's ``[closure] dlopen`` entries with ``preload = true`` put them). Its
    messages go to stderr so stdout stays the app's JSON. Once per process; a no-op with torch
    imported or without onnxruntime.
    """
    global _preloaded
    if _preloaded or "torch" in sys.modules:
        return
    _preloaded = True
    ort = _onnxruntime()
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        try:
            preload(cuda=True, cudnn=True, directory="")
        except Exception as exc:  # onnxruntime then reports the missing library at session creation
            print(f"mlfreeze_runtime.device: preloading the CUDA libraries failed: {exc}", file=sys.stderr)


def cuda_index(device: str) -> int:
    """The CUDA ordinal of a torch device string: ``cuda`` -> 0, ``cuda:N`` -> N; ValueError otherwise."""
    if device == "cuda":
        return 0
    match = _CUDA_N.match(device)
    if not match:
        raise ValueError(f"{device!r} is not a CUDA device (cuda or cuda:N)")
    return int(match.group(1))


GPU_ORDINAL_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def onnx_provider_options(providers: Sequence[str], device: str) -> list[dict[str, str]]:
    """One onnxruntime provider-options dict per provider, in the same order (pure).

    On a CUDA ``device`` the CUDA and TensorRT providers get ``{"device_id": "N"}`` so
    onnxruntime runs on the GPU torch uses (without it onnxruntime always takes GPU 0); every
    other provider, and every provider on a non-CUDA device, gets ``{}``. Pass the result as
    ``InferenceSession(..., providers=providers, provider_options=options)``.
    """
    ordinal = cuda_index(device) if device.startswith("cuda") else None
    return [{"device_id": str(ordinal)} if ordinal is not None and p in GPU_ORDINAL_PROVIDERS else {}
            for p in providers]


def get_onnx_session_config() -> tuple[list[str], list[dict[str, str]]]:
    """``(providers, provider_options)`` for this process's device (see :func:`onnx_provider_options`)."""
    providers = get_onnx_providers()
    return providers, onnx_provider_options(providers, get_device())


def _forced_cpu(requested: str) -> bool:
    """DEVICE=cpu, or FORCE_CPU=1 when DEVICE does not name a device (DEVICE beats FORCE_CPU)."""
    return requested == "cpu" or (requested == "auto" and os.environ.get("FORCE_CPU", "").strip().lower() in _TRUE)


def get_device_info() -> dict[str, Any]:
    """Platform, versions, accelerators and the selected device, as plain JSON-able data."""
    return copy.deepcopy(_device_info())


@lru_cache(maxsize=1)
def _device_info() -> dict[str, Any]:
    torch = _torch()
    ort = _onnxruntime()
    count = _cuda_count(torch)
    info: dict[str, Any] = {
        "platform": sys.platform,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "torch": getattr(torch, "__version__", None),
        "torch_cuda": getattr(getattr(torch, "version", None), "cuda", None),
        "cuda_available": count > 0,
        "cuda_devices": [],
        "mps_available": _mps_available(torch),
        "onnxruntime": getattr(ort, "__version__", None),
        "onnx_available_providers": _available_providers(),
    }
    if count:
        try:
            info["cuda_devices"] = ([torch.cuda.get_device_name(i) for i in range(count)] if torch is not None
                                    else _driver_device_names(count))
        except Exception as exc:
            info["cuda_devices"] = [f"unreadable: {exc}"]
    try:
        info["device"] = get_device()
        info["onnx_providers"] = list(get_onnx_providers())
        info["onnx_provider_options"] = onnx_provider_options(info["onnx_providers"], info["device"])
    except ValueError as exc:
        info["device"] = None
        info["onnx_providers"] = []
        info["onnx_provider_options"] = []
        info["error"] = str(exc)
    return info


def reset() -> None:
    """Forget cached answers (after changing DEVICE, FORCE_CPU or ONNX_PROVIDERS)."""
    get_device.cache_clear()
    _onnx_providers.cache_clear()
    _device_info.cache_clear()
