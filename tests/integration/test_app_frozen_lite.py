"""A real PyInstaller lite freeze of the example app: what its --health and name search say.

The lite bundle ships the runtime package without ``mlfreeze_runtime.verify`` and without the ML
stack; the app must still find its device layer, say where its models folder comes from, and
search file names by the words that name something.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lite_projects import host_profile

from mlfreeze import hostinfo
from mlfreeze.bundle.freeze import FreezeRequest, freeze_bundle, load_app_config

pytest.importorskip("PyInstaller")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("photo-lite")
    out = freeze_bundle(FreezeRequest(profile=host_profile(), flavor="lite", root=ROOT, app=load_app_config(ROOT),
                        dist_dir=work / "dist", work_dir=work / "build"))
    yield out
    shutil.rmtree(work, ignore_errors=True)


def _run(bundle: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    exe = bundle / f"photo-search{hostinfo.exe_suffix(host_profile().host_os)}"
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "SYSTEMROOT")}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**base, **(env or {})})


def test_lite_health_has_the_device_layer_and_no_models(bundle: Path, tmp_path: Path) -> None:
    done = _run(bundle, "--health", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    h = json.loads(done.stdout)
    assert h["frozen"] is True and h["ml_available"] is False
    assert h["device"]["device"] == "cpu" and h["device"]["onnx_providers"] == ["CPUExecutionProvider"]
    assert "unavailable" not in json.dumps(h["device"]) and "note" not in h["device"]
    assert h["models_dir_source"] == "frozen" and h["models_dir"] == str((bundle / "models").resolve())
    assert "does not exist" in h["models_error"] and "reinstall the bundle" in h["models_error"]


def test_health_tells_the_bundles_models_from_the_users(bundle: Path, tmp_path: Path) -> None:
    models = bundle / "models"
    models.mkdir()
    try:
        (models / "models.json").write_text(json.dumps({"schema_version": 1, "set": "demo", "models": []}))
        h = json.loads(_run(bundle, "--health", cwd=tmp_path).stdout)
        assert (h["models_dir_source"], h["model_set"]) == ("frozen", "demo")  # set by the runtime hook
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "models.json").write_text(json.dumps({"schema_version": 1, "set": "mine", "models": []}))
        h = json.loads(_run(bundle, "--health", env={"MLFREEZE_MODELS_DIR": str(mine)}, cwd=tmp_path).stdout)
        assert (h["models_dir_source"], h["model_set"]) == ("MLFREEZE_MODELS_DIR", "mine")
    finally:
        shutil.rmtree(models)


def test_lite_name_search_ignores_stop_words(bundle: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut.png", "cat.png", "rocket.jpg"):
        (photos / name).write_bytes(b"not decoded in names mode")
    idx = tmp_path / "idx"
    done = _run(bundle, "index", str(photos), "--index", str(idx), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _run(bundle, "search", "a cat", "--index", str(idx), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    assert res["mode"] == "names" and [Path(r["path"]).name for r in res["results"]] == ["cat.png"]
