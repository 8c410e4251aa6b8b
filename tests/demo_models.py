"""The demo set laid out as the freezer lays out a bundle's models/ (shared by integration tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import tomllib

from mlfreeze_runtime.verify import bundle, probes

SPECS = Path(__file__).resolve().parents[1] / "src" / "mlfreeze" / "specs"


def lay_out_demo_models(dest: Path) -> Path:
    """``dest/<id>/<file>``, ``models.json``, goldens and ``_probes/`` for the ``demo`` set; returns ``dest``."""
    data = tomllib.loads((SPECS / "models.toml").read_text())
    entries = []
    for mid in data["sets"]["demo"]:
        m = data["models"][mid]
        files, sums, roles = {}, {}, {}
        for a in m["artifacts"]:
            rel = f"{mid}/{a['file']}"
            (dest / mid).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SPECS / a["urls"][0], dest / rel)
            files[a["file"]], sums[rel], roles[a["file"]] = rel, a["sha256"], a.get("role", "")
        entries.append({"id": mid, "kind": m["kind"], "arch": m["arch"], "embed_dim": m["embed_dim"],
                        "files": files, "sha256": sums, "roles": roles, "verify": m["verify"],
                        "provides": m.get("provides", [])})
    bundle.write_models_index(dest, entries, set_name="demo", expected_providers=["CPUExecutionProvider"],
                              goldens_dir=SPECS / "goldens")
    probes.copy_probe_inputs(dest / probes.PROBES_DIRNAME)
    return dest
