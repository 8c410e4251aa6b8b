"""Model packs for real: the demo set's models, the real self-test code (run un-frozen through
``python -m mlfreeze_runtime.verify.selftest`` as the install's ``<app>-selftest``), signed packs.

The install is a hand-made full bundle (release_bundles.make_bundle) whose models/ holds the
demo set and whose two executables are scripts: ``<app> --health`` and ``<app>-selftest`` (which
execs the runtime's real self-test). A good pack is switched in; a pack whose weights were
spoiled (and re-pinned, as a bad retrain would ship them) is refused by the self-test and the
models in use stay.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from demo_models import lay_out_demo_models
from release_bundles import make_bundle, seal

from mlfreeze.release import publish
from mlfreeze_runtime.update import models

pytest.importorskip("tuf")
pytest.importorskip("torch")
SPECS = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs"
HEALTH = '''#!/bin/sh
printf '{"app": "photo-search", "models_dir": "%s"}\\n' "$MLFREEZE_MODELS_DIR"
'''


def demo_models(dest: Path) -> Path:
    return lay_out_demo_models(dest)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("models")
    b = make_bundle(base / "dist", flavor="full")
    shutil.rmtree(b / "models")
    demo_models(b / "models")
    (b / "photo-search").write_text(HEALTH)
    selftest = f'#!/bin/sh\nexec {sys.executable} -m mlfreeze_runtime.verify.selftest "$@"\n'  # the frozen one
    (b / "photo-search-selftest").write_text(selftest)
    seal(b, "linux-cpu", "full")
    keys = base / "keys"
    publish.generate_keys(keys)
    signers = publish.load_signers(keys, env={})
    repo = base / "repo"
    sde = int(time.time()) - 60
    publish.publish([b], repo, signers, source_date_epoch=sde)
    root = base / "root"
    done = run("install", "--from", str(repo), "--root", str(root), "--trust", str(repo / "metadata" / "1.root.json"))
    assert done.returncode == 0, done.stderr
    return {"base": base, "bundle": b, "repo": repo, "signers": signers, "root": root, "sde": sde}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlfreeze_runtime.update", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "DEVICE": "cpu"})


def test_a_good_pack_is_switched_in_and_a_spoiled_one_refused(world: dict) -> None:
    root, repo = world["root"], world["repo"]
    good = world["base"] / "pack-good"
    shutil.copytree(world["bundle"] / "models", good)
    publish.publish_model_pack(good, repo, world["signers"], app="photo-search", set_name="demo", version="2",
                               source_date_epoch=world["sde"])
    done = run("models", "--from", str(repo), "--root", str(root))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["models"] == "demo-2" and out["previous"] is None and out["reused_files"] > 0
    assert models.models_pointer(root).read() == "demo-2"
    assert models.current_models(root) == root / "models" / "demo-2"

    spoiled = world["base"] / "pack-spoiled"
    shutil.copytree(good, spoiled)
    weights = spoiled / "demo-clip" / "demo_clip.safetensors"
    blob = bytearray(weights.read_bytes())
    for i in range(len(blob) - 4096, len(blob) - 16, 7):  # tensor data at the end of the file
        blob[i] ^= 0x5A
    weights.write_bytes(bytes(blob))
    index_path = spoiled / "models.json"
    doc = json.loads(index_path.read_text())
    from mlfreeze_runtime import record
    for m in doc["models"]:
        for rel in m["sha256"]:
            m["sha256"][rel] = record.hash_file(spoiled / rel)[0]  # re-pinned: only the self-test can tell
    index_path.write_text(json.dumps(doc, indent=2))
    publish.publish_model_pack(spoiled, repo, world["signers"], app="photo-search", set_name="demo", version="3",
                               source_date_epoch=world["sde"])
    done = run("models", "--from", str(repo), "--root", str(root))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "self-test failed on the new models" in done.stderr
    assert models.models_pointer(root).read() == "demo-2"
    assert sorted(p.name for p in (root / "models").iterdir() if not p.is_symlink()) == ["demo-2"]
    assert not list((root / ".staging").iterdir())


def test_a_pack_with_wrong_bytes_is_refused_before_any_check(world: dict) -> None:
    pack_dir = world["base"] / "unsigned"
    shutil.copytree(world["bundle"] / "models", pack_dir / "src")
    weights = next((pack_dir / "src").rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # new weights: the updater has to fetch them
    data, files = models.pack_document(pack_dir / "src", app="photo-search", set_name="demo", version="9")
    (pack_dir / models.PACK_NAME).write_bytes(data)
    for rel, sha in files:
        dest = pack_dir / "blobs" / sha[:2] / sha
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((pack_dir / "src" / rel).read_bytes())
    rel, sha = next(f for f in files if f[0].endswith(".safetensors"))
    blob = pack_dir / "blobs" / sha[:2] / sha
    blob.write_bytes(b"\0" * blob.stat().st_size)
    root = world["base"] / "root-copy"
    shutil.copytree(world["root"], root, symlinks=True)
    done = run("models", "--from", str(pack_dir / models.PACK_NAME), "--root", str(root))
    assert done.returncode == 3 and "damaged or tampered" in done.stderr, done.stderr
    assert models.models_pointer(root).read() == "demo-2"


def test_release_model_pack_signs_the_set_of_the_bundle_that_ships_it(world: dict, tmp_path: Path) -> None:
    from mlfreeze.errors import UsageError
    from mlfreeze.release.assemble import release_model_pack
    from mlfreeze_runtime.update import trust

    repo = tmp_path / "repo"
    shutil.copytree(world["repo"], repo)
    bundle = tmp_path / "dist" / world["bundle"].name
    shutil.copytree(world["bundle"], bundle, symlinks=True)
    index_doc = json.loads((bundle / "models" / "models.json").read_text())
    seal(bundle, "linux-cpu", "full", model_set="demo",  # BUILD-INFO names the models/ the fixture put in
         models=[{"id": m["id"], "kind": m["kind"], "files": m["sha256"], "golden": True}
                 for m in index_doc["models"]])
    env = {"SOURCE_DATE_EPOCH": str(world["sde"])}
    with pytest.raises(UsageError, match="no bundle ships model set 'other'"):
        release_model_pack(bundle.parent, "other", repo, world["signers"], env=env)
    written = release_model_pack(bundle.parent, "demo", repo, world["signers"], version="7", env=env)
    assert written["timestamp"] > 1
    client = tmp_path / "client"
    doc = json.loads(trust.refresh_index(str(repo), client, trust_root=repo / "metadata" / "1.root.json",
                                         target=models.PACK_NAME))
    assert (doc["app"], doc["set"], doc["version"]) == ("photo-search", "demo", "7")
    shipped = {p.relative_to(bundle / "models").as_posix() for p in (bundle / "models").rglob("*") if p.is_file()}
    assert {f[0] for f in doc["files"]} <= shipped and "models.json" in {f[0] for f in doc["files"]}
