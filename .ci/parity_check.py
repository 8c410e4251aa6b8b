"""CI: the full (torch CLIP) and slim (ONNX CLIP) bundles of one build return the same top-5 images.

Usage: python .ci/parity_check.py FULL_BUNDLE SLIM_BUNDLE APP

Writes the demo CLIP's probe images (the verification probes) into a folder, runs each frozen app
from an empty environment (`<app> index DIR`, then `<app> search QUERY -k 5`, both `--json`) and
compares the ranked file names per query. Run it with the build environment's python (it imports
mlfreeze_runtime for the probe images). Exit 0 when every query agrees, 1 otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mlfreeze.models.manifest import load_manifest
from mlfreeze_runtime.verify import onnx_checks
from mlfreeze_runtime.verify.probes import load_rgb
from PIL import Image

QUERIES = ("a red circle", "a blue triangle", "a green square", "a photo of a dog")


def run(app: Path, *args: str) -> dict:
    done = subprocess.run([str(app), *args, "--json"], env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"parity: {app} {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout)


def main(argv: list[str]) -> int:
    full, slim, app = Path(argv[0]), Path(argv[1]), argv[2]
    names, _ = onnx_checks.probes(load_manifest().models["demo-clip"].verify)
    with tempfile.TemporaryDirectory(prefix="mlfreeze-parity-") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for i, name in enumerate(names):
            Image.fromarray(load_rgb(name)).save(photos / f"{i:02d}.png")
        ranked: dict[str, dict[str, list[str]]] = {}
        for label, bundle in (("full", full), ("slim", slim)):
            index = Path(tmp) / f"index-{label}"
            run(bundle / app, "index", str(photos), "--index", str(index))
            ranked[label] = {}
            for q in QUERIES:
                doc = run(bundle / app, "search", q, "-k", "5", "--index", str(index))
                if doc.get("mode") != "clip":
                    raise SystemExit(f"parity: {label} searched by {doc.get('mode')!r}, not by CLIP embeddings")
                ranked[label][q] = [Path(r["path"]).name for r in doc["results"]]
    bad = [q for q in QUERIES if ranked["full"][q] != ranked["slim"][q] or len(ranked["full"][q]) != 5]
    for q in QUERIES:
        print(f"parity: {q!r}: full {ranked['full'][q]} slim {ranked['slim'][q]}"
              f"{'  DIFFERENT' if q in bad else ''}")
    print(f"parity: {len(QUERIES) - len(bad)} of {len(QUERIES)} queries return the same top-5 from "
          f"{len(names)} images")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
