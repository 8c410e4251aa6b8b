"""bench/gpu_check.py: /proc/self/maps parsing, the JSON report and the usage errors (no GPU needed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
assert _spec is not None and _spec.loader is not None
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check
_spec.loader.exec_module(gpu_check)

MAPS = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 131 /tmp/b/app-selftest
7f0000000000-7f0000200000 r-xp 00000000 fd:01 200 /tmp/b/_internal/nvidia/cu13/lib/libcublas.so.13
7f0000200000-7f0000201000 rw-p 00200000 fd:01 200 /tmp/b/_internal/nvidia/cu13/lib/libcublas.so.13
7f0000300000-7f0000310000 r-xp 00000000 fd:01 201 /tmp/b/_internal/libnvrtc-builtins.so.13.0
7f0000400000-7f0000500000 r-xp 00000000 fd:01 300 /usr/lib/x86_64-linux-gnu/libcuda.so.575.57.08
7f0000500000-7f0000501000 r-xp 00000000 fd:01 301 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000600000-7f0000601000 rw-p 00000000 00:00 0 [heap]
7f0000700000-7f0000701000 rw-s 00000000 00:05 9 /dev/nvidia0
7f0000800000-7f0000810000 r-xp 00000000 fd:01 202 /tmp/b/_internal/torch/_C.cpython-311-x86_64-linux-gnu.so (deleted)
7f0000900000-7f0000901000 r--p 00000000 fd:01 203 /tmp/b/_internal/base_library.zip
"""


def test_parse_maps_keeps_shared_libraries_and_sums_their_mappings():
    libs = {x["path"]: x["bytes"] for x in gpu_check.parse_maps(MAPS)}
    assert libs == {
        "/tmp/b/_internal/nvidia/cu13/lib/libcublas.so.13": 0x201000,
        "/tmp/b/_internal/libnvrtc-builtins.so.13.0": 0x10000,
        "/usr/lib/x86_64-linux-gnu/libcuda.so.575.57.08": 0x100000,
        "/usr/lib/x86_64-linux-gnu/libc.so.6": 0x1000,
        "/tmp/b/_internal/torch/_C.cpython-311-x86_64-linux-gnu.so": 0x10000,
    }


def test_mapped_libraries_are_relative_to_internal_like_prune_globs(tmp_path):
    maps = MAPS.replace("/tmp/b", str(tmp_path / "b"))
    (tmp_path / "b" / "_internal").mkdir(parents=True)
    libs = gpu_check.mapped_libraries(maps, [tmp_path / "b" / "_internal"])
    by_rel = {x["internal_path"]: x for x in libs}
    assert set(by_rel) == {"nvidia/cu13/lib/libcublas.so.13", "libnvrtc-builtins.so.13.0",
                           "torch/_C.cpython-311-x86_64-linux-gnu.so", None}
    assert sum(1 for x in libs if x["internal_path"] is None) == 2  # the driver and glibc: the host's


def test_cosine_min_and_its_errors():
    assert gpu_check.cosine_min([[1, 0], [0, 2]], [[1, 0], [0, 1]]) == pytest.approx(1.0)
    assert gpu_check.cosine_min([[1, 0], [1, 1]], [[1, 0], [1, -1]]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="cannot compare 1 embeddings with 2"):
        gpu_check.cosine_min([[1.0]], [[1.0], [1.0]])


def _checks(ok: bool = True):
    return [{"name": "selftest", "ok": True, "detail": "exit 0", "seconds": 1.0},
            {"name": "nvrtc_compile", "ok": ok, "detail": "compiled", "seconds": 0.5},
            {"name": "clip_embeddings", "ok": True, "detail": "x", "seconds": 2.0, "images_per_s": 310.5,
             "texts_per_s": 900.0, "min_cosine_cpu_vs_device": 0.99999}]


def test_report_shape_and_verdict():
    libs = [{"path": "/b/_internal/libx.so", "internal_path": "libx.so", "bytes": 4_000_000},
            {"path": "/usr/lib/libc.so.6", "internal_path": None, "bytes": 10}]
    report = gpu_check.make_report(mode="bundle", device="cuda", checks=_checks(), libraries=libs, app_texts_per_s=55.0)
    assert report["schema"] == "mlfreeze.gpu-check/1" and report["ok"] is True
    assert report["throughput"] == {"images_per_s": 310.5, "texts_per_s": 900.0, "app_texts_per_s": 55.0}
    assert json.loads(json.dumps(report)) == report
    text = gpu_check.render(report)
    assert "gpu-check (bundle, cuda): ok" in text and "2 (1 shipped), 4 MB" in text
    failed = gpu_check.make_report(mode="lent", device="cuda", checks=_checks(ok=False), libraries=[])
    assert failed["ok"] is False and "FAIL nvrtc_compile" in gpu_check.render(failed)
    assert gpu_check.make_report(mode="lent", device="cuda", checks=[], libraries=[])["ok"] is False


def test_usage_errors_exit_2(tmp_path, capsys):
    assert gpu_check.main(["--bundle", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a onedir bundle" in capsys.readouterr().err
    (tmp_path / "_internal").mkdir()
    assert gpu_check.main(["--bundle", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "has no <app>-selftest" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        gpu_check.main(["--lent", "--device", "tpu"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        gpu_check.main(["--lent", "--bundle", str(tmp_path)])  # one mode at a time
