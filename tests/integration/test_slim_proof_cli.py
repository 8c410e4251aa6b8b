"""`mlfreeze verify` as a user runs it: in a slim-only environment (torch and open_clip not importable,
no goldens, no reference_sims) the demo CLIP's pinned towers pass with their pinned agreement record
and are refused in one line without it; a plain `mlfreeze verify` (no --flavor) of a set that pins
towers checks them against torch; a relative --cache works (the face models' links included)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="CLI runs on the build host")

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "src" / "mlfreeze" / "specs"
BLOCK_TORCH = '''import sys


class _NoTorch:
    """A slim-only environment: torch, torchvision and open_clip are not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "open_clip"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
'''


def _workdir(tmp_path: Path, *, record: bool) -> Path:
    """models.toml + demo/ copied, no goldens/ beside it, no reference_sims; the record kept or dropped."""
    shutil.copytree(SPECS / "demo", tmp_path / "demo", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (SPECS / "models.toml").read_text()
    text = re.sub(r"\nreference_sims = \[[^\]]*\]", "", text)
    if not record:
        record_entry = r'\n\[\[models\.demo-clip\.artifacts\]\]\nfile = "demo_clip_agreement\.json"\n(?:[^\n]+\n)+'
        text = re.sub(record_entry, "\n", text)
        assert "demo_clip_agreement.json" not in text
    (tmp_path / "models.toml").write_text(text)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_TORCH)
    return tmp_path


def _verify(workdir: Path, *args: str, no_torch: bool = True, cwd: Path | None = None, manifest: Path | None = None):
    import os

    from mlfreeze import _proc as proc

    env = {**os.environ, "PYTHONPATH": str(workdir / "site")} if no_torch else None
    manifest = manifest or workdir / "models.toml"
    command = [sys.executable, "-m", "mlfreeze", "verify", "--manifest", str(manifest), "--set", "demo", *args]
    return proc.capture(command, cwd=cwd or ROOT, env=env)


def test_a_slim_only_verify_checks_the_record_and_refuses_unproven_towers(tmp_path: Path) -> None:
    proven = _workdir(tmp_path / "a", record=True)
    cp = _verify(proven, "--flavor", "slim", "--cache", str(tmp_path / "cache"), "--report", str(tmp_path / "r.json"))
    assert cp.returncode == 0, cp.stderr[-2000:]
    rows = {r["check"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]
            if r["model"] == "demo-clip"}
    assert rows["onnx_agreement.record"]["status"] == "pass" and rows["onnx_proof"]["status"] == "pass"
    assert rows["onnx_agreement.image"]["status"] == "skip"  # really without torch
    assert rows["golden"]["status"] == "warn" and rows["reference_sims"]["status"] == "skip"

    unproven = _workdir(tmp_path / "b", record=False)
    cp = _verify(unproven, "--flavor", "slim", "--cache", str(tmp_path / "cache"))
    assert cp.returncode == 1
    last = cp.stderr.strip().splitlines()[-1]
    assert last.startswith("mlfreeze verify: error: model demo-clip: its ONNX towers are unproven")
    assert "agreement record" in last and "pin-goldens" in last and "unproven_onnx" in last

    # `mlfreeze export` where torch is installed measures the pinned towers and caches their record;
    # the slim-only verify sharing that cache then finds it
    from mlfreeze import _proc as proc

    cp = proc.capture([sys.executable, "-m", "mlfreeze", "export", "--manifest", str(unproven / "models.toml"),
                       "--set", "demo", "--cache", str(tmp_path / "cache")], cwd=ROOT)
    assert cp.returncode == 0 and 'role = "agreement"' in cp.stdout, cp.stderr[-2000:]
    cp = _verify(unproven, "--flavor", "slim", "--cache", str(tmp_path / "cache"))
    assert cp.returncode == 0 and "agreement record of the pinned ONNX towers from the cache" in cp.stderr


def test_plain_verify_checks_pinned_towers_and_a_relative_cache_works(tmp_path: Path) -> None:
    work = _workdir(tmp_path, record=True)
    cp = _verify(work, "--cache", "rel-cache", "--report", "r.json", no_torch=False, cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr[-2000:]
    rows = {(r["model"], r["check"]): r["status"] for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    for check in ("onnx_agreement.image", "onnx_agreement.text", "onnx_agreement.record"):
        assert rows[("demo-clip", check)] == "pass", check
    assert rows[("demo-faces", "load")] == "pass" and rows[("demo-faces", "faces_found[synthetic:faces/3]")] == "pass"
    assert (tmp_path / "rel-cache" / "blobs").is_dir()


def test_plain_verify_without_onnxruntime_skips_the_towers_no_bundle_of_it_ships(tmp_path: Path) -> None:
    """A CLIP app built full and lite (examples/clip_only) has no onnxruntime in its lock, and its set
    pins the demo towers: its verify says why the towers' agreement is not measured, and passes."""
    (tmp_path / "site").mkdir()
    # as if not installed: the import fails, importlib.util.find_spec (which libraries probe with) says None
    (tmp_path / "site" / "sitecustomize.py").write_text('import sys\nsys.modules["onnxruntime"] = None\n')
    cp = _verify(tmp_path, "--cache", str(tmp_path / "cache"), "--report", str(tmp_path / "r.json"),
                 manifest=ROOT / "examples" / "clip_only" / "models.toml")
    assert cp.returncode == 0, cp.stderr[-2000:]
    rows = {r["check"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    for tower in ("image", "text"):
        assert rows[f"onnx_agreement.{tower}"]["status"] == "skip"
        assert "onnxruntime is not installed" in rows[f"onnx_agreement.{tower}"]["got"]
    assert rows["onnx_agreement.record"]["status"] == "pass"  # the record still names these towers
    assert rows["golden"]["status"] == "pass" and rows["zero_shot_top1"]["status"] == "pass"
