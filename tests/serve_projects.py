"""A real slim freeze of the tiny stdlib HTTP server of tests/serve_app/embedserve.py, with the demo
CLIP only (a model set of its own in a copy of mlfreeze's manifest), verified by the real gate first:
the bundle `mlfreeze image` is tested on. Imported by name, as lite_projects."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from lite_projects import host_profile

from mlfreeze import cli
from mlfreeze.bundle.freeze import AppConfig, FreezeRequest, freeze_bundle
from mlfreeze.models.fetch import fetch_set
from mlfreeze.models.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "src" / "mlfreeze" / "specs"
APP_SOURCE = Path(__file__).resolve().parent / "serve_app" / "embedserve.py"
SET = "serve"


def serve_manifest(root: Path) -> Path:
    """mlfreeze's models.toml with a set ``serve`` = the demo CLIP, its URLs made absolute."""
    text = (SPECS / "models.toml").read_text(encoding="utf-8")
    text = re.sub(r'"demo/', f'"{(SPECS / "demo").as_posix()}/', text)
    text = text.replace("[sets]\n", f'[sets]\n{SET} = ["demo-clip"]\n', 1)
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.toml").write_text(text, encoding="utf-8")
    shutil.copytree(SPECS / "goldens", root / "goldens", dirs_exist_ok=True)
    return root / "models.toml"


def freeze_serve_slim(root: Path, cache: Path) -> Path:
    """Verify the set for the slim flavor (the gate, a report), then freeze, self-test and seal the
    slim bundle of embedserve; returns dist/embedserve-0.1.0-<platform>-slim."""
    profile = host_profile(cpu_only=True)
    manifest = serve_manifest(root / "project")
    shutil.copyfile(APP_SOURCE, root / "project" / "embedserve.py")
    report = root / "reports" / f"verify-{profile.name}-slim.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    assert cli.main(["verify", "--set", SET, "--manifest", str(manifest), "--platform", profile.name,
                     "--flavor", "slim", "--cache", str(cache), "--report", str(report)]) == 0
    fetched = fetch_set(load_manifest(manifest), SET, cache)
    entry = root / "project" / "embedserve.py"
    app = AppConfig(app="embedserve", entry=entry, version="0.1.0", model_set=SET, sources=(entry,),
                    pathex=(entry.parent,), uses=("clip",))
    return freeze_bundle(FreezeRequest(profile=profile, flavor="slim", root=root / "project", app=app,
                                       model_set=SET, fetched=fetched, verify_report=report,
                                       goldens_dir=manifest.parent / "goldens", dist_dir=root / "dist",
                                       work_dir=root / "build"))
