"""bench/gpu_check.py --lent, run for real on the CPU: the gate, the probes, the JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_lent_mode_on_cpu_writes_the_report(tmp_path: Path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--lent", "--device", "cpu",
                           "--batch", "4", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["schema"] == "mlfreeze.gpu-check/1" and report["mode"] == "lent" and report["device"] == "cpu"
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"verify_gate", "torch", "cudnn_conv", "nvrtc_compile", "onnxruntime", "clip_embeddings"}
    failed = {n: c["detail"] for n, c in checks.items() if not c["ok"]}
    assert failed == {} and report["ok"] is True and done.returncode == 0, (failed, done.stderr[-2000:])
    assert checks["clip_embeddings"]["min_cosine_cpu_vs_device"] >= 0.999999  # cpu against cpu
    assert checks["onnxruntime"]["providers"][0] == "CPUExecutionProvider"
    assert report["throughput"]["images_per_s"] > 0 and report["throughput"]["texts_per_s"] > 0
    assert (tmp_path / "verify-demo-cpu.json").is_file()  # the gate's own report
    # the probe process mapped torch's libraries from site-packages: paths relative like a bundle's _internal/
    shipped = {x["internal_path"] for x in report["mapped_libraries"] if x["internal_path"]}
    assert any(p.startswith("torch/lib/libtorch_cpu.so") for p in shipped), sorted(shipped)[:20]
    assert any(x["internal_path"] is None and "libc.so" in x["path"] for x in report["mapped_libraries"])
    assert "gpu-check (lent, cpu): ok" in done.stdout
