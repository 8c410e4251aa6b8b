"""``mlfreeze export``: a real child process exports, the cache serves the second run, failures are exit 4.

Uses the demo CLIP's committed weights through a manifest without pinned exports (so an export
must run), and the real manifest (whose demo exports are pinned: no export at all).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnx")

from mlfreeze import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "mlfreeze" / "specs" / "demo"


def _manifest(tmp_path: Path, config: Path = DEMO / "demo_clip_config.json") -> Path:
    def art(path: Path, role: str) -> str:
        data = path.read_bytes()
        return (f'[[models.demo-clip.artifacts]]\nfile = "{path.name}"\nrole = "{role}"\n'
                f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}\nurls = ["{path.as_uri()}"]\n')

    text = ('[sets]\nx = ["demo-clip"]\n\n[models.demo-clip]\nkind = "clip"\narch = "mlfreeze-demo-clip"\n'
            'embed_dim = 512\nlicense = "MIT"\n\n' + art(DEMO / "demo_clip.safetensors", "weights") + "\n"
            + art(config, "config") + '\n[models.demo-clip.verify]\nquick_gelu = true\n'
            'zero_shot = [{ image = "synthetic:shape/red/circle", caption = "a red circle" },\n'
            '  { image = "synthetic:shape/blue/square", caption = "a blue square" }]\n')
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def _export(manifest: Path, cache: Path, capfd, set_name: str = "x") -> tuple[int, str, str]:
    rc = cli.main(["export", "--set", set_name, "--manifest", str(manifest), "--cache", str(cache)])
    out = capfd.readouterr()
    return rc, out.out, out.err


def test_export_then_cache_then_repair(tmp_path: Path, capfd) -> None:
    manifest, cache = _manifest(tmp_path), tmp_path / "cache"
    rc, out, _ = _export(manifest, cache, capfd)
    assert rc == 0 and "ok demo-clip: exported ONNX towers" in out
    (entry,) = (cache / "derived").iterdir()
    record = json.loads((entry / "export.json").read_text())
    weights_sha = hashlib.sha256((DEMO / "demo_clip.safetensors").read_bytes()).hexdigest()
    assert record["options"]["opset"] == 17 and record["derived_from"] == f"demo-clip@{weights_sha}"
    assert record["files"]["image.onnx"]["sha256"] == hashlib.sha256((entry / "image.onnx").read_bytes()).hexdigest()
    # the export's proof beside it: measured against torch in the same child
    agreement = json.loads((entry / "agreement.json").read_text())
    assert agreement["towers"]["image"]["sha256"] == record["files"]["image.onnx"]["sha256"]
    assert agreement["agreement"]["text"]["min_cosine"] >= 0.999999
    assert agreement["versions"]["torch"] != "absent" and agreement["options"]["opset"] == 17
    assert not [p for p in (cache / "tmp").iterdir() if p.name.startswith("export-")]
    before = (entry / "text.onnx").stat().st_mtime_ns

    rc, out, _ = _export(manifest, cache, capfd)
    assert rc == 0 and "ok demo-clip: cache ONNX towers" in out
    assert (entry / "text.onnx").stat().st_mtime_ns == before

    with open(entry / "image.onnx", "r+b") as f:  # damage the cached export
        f.seek(100)
        f.write(b"\0" * 16)
    rc, out, err = _export(manifest, cache, capfd)
    assert rc == 0 and "ok demo-clip: exported ONNX towers" in out and "is damaged" in err
    assert record["files"]["image.onnx"]["sha256"] == hashlib.sha256((entry / "image.onnx").read_bytes()).hexdigest()


def test_exporter_failure_is_exit_4_and_leaves_nothing(tmp_path: Path, capfd) -> None:
    config = json.loads((DEMO / "demo_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["width"] = 96  # the weights no longer fit: the child's strict load fails
    bad = tmp_path / "demo_clip_config.json"
    bad.write_text(json.dumps(config))
    cache = tmp_path / "cache"
    rc, _, err = _export(_manifest(tmp_path, bad), cache, capfd)
    assert rc == 4
    last = err.strip().splitlines()[-1]
    assert last.startswith("mlfreeze export: error: model demo-clip: the ONNX export process exited with status 1")
    assert "export error: ClipLoadError" in err
    assert not (cache / "derived").exists() or not list((cache / "derived").iterdir())
    assert not [p for p in (cache / "tmp").iterdir() if p.name.startswith("export-")]


def test_pinned_exports_need_no_export(tmp_path: Path, capfd) -> None:
    rc, out, err = _export(ROOT / "src" / "mlfreeze" / "specs" / "models.toml", tmp_path / "cache", capfd, "demo")
    assert rc == 0 and "ok demo-clip: pinned ONNX towers" in out  # with their pinned agreement record
    assert "child process" not in err and not (tmp_path / "cache" / "derived").exists()


def test_pinned_towers_without_a_record_get_one_measured(tmp_path: Path, capfd) -> None:
    text = (ROOT / "src" / "mlfreeze" / "specs" / "models.toml").read_text()
    start = text.index('[[models.demo-clip.artifacts]]\nfile = "demo_clip_agreement.json"')
    end = text.index("[models.demo-faces]")
    (tmp_path / "models.toml").write_text(text[:start] + text[end:])
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    rc, out, err = _export(tmp_path / "models.toml", tmp_path / "cache", capfd, "demo")
    assert rc == 0 and "measuring the pinned ONNX towers against torch" in err
    assert 'role = "agreement"' in out and "to pin it" in out
    (record,) = (tmp_path / "cache" / "derived").glob("*/agreement.json")
    doc = json.loads(record.read_text())
    pinned = (DEMO / "demo_clip_image.onnx").read_bytes()
    assert doc["towers"]["image"]["sha256"] == hashlib.sha256(pinned).hexdigest()
    assert doc["options"]["image_opsets"] == {"ai.onnx": 17}


def _kill_export_child(stop: threading.Event) -> None:
    """SIGKILL this test's own export child (found by parent pid and its child.py), as an OOM killer would."""
    me = os.getpid()
    while not stop.is_set():
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                ppid = int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (proc_dir / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == me and b"child.py" in cmd:
                os.kill(int(proc_dir.name), signal.SIGKILL)
                return
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the child through /proc")
def test_a_killed_exporter_is_exit_4(tmp_path: Path, capfd) -> None:
    stop = threading.Event()
    killer = threading.Thread(target=_kill_export_child, args=(stop,), daemon=True)
    killer.start()
    try:
        rc, _, err = _export(_manifest(tmp_path), tmp_path / "cache", capfd)
    finally:
        stop.set()
        killer.join(timeout=5)
    assert rc == 4
    assert err.strip().splitlines()[-1].startswith(
        "mlfreeze export: error: model demo-clip: the ONNX export process was killed by signal 9")
    assert not (tmp_path / "cache" / "derived").exists()
    assert not [p for p in (tmp_path / "cache" / "tmp").iterdir() if p.name.startswith("export-")]
