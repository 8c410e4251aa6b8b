"""Export the demo CLIP's towers to ONNX for pinning (src/mlfreeze/specs/demo/demo_clip_{image,text}.onnx).

Run from the repository root (the ML stack installed):

    python src/mlfreeze/specs/demo/make_demo_onnx.py [--out src/mlfreeze/specs/demo]

Loads ``demo_clip.safetensors`` + ``demo_clip_config.json`` through the runtime's CLIP loader,
exports with ``mlfreeze.models.export.export_towers`` (the same function ``mlfreeze export`` runs in
its child process: opset 17, dynamic batch, fp32), and prints the ``[[models.demo-clip.artifacts]]``
entries for src/mlfreeze/specs/models.toml (sha256, size, ``derived_from``), then measures the towers
against the torch model and writes their agreement record (``demo_clip_agreement.json``, role
``agreement``; ``mlfreeze.models.export.write_agreement``, as ``mlfreeze export`` does). With the export pinned, a slim
build of the demo set needs neither an export nor torch. The bytes are reproducible for the
same torch/onnx versions; the committed files and their pins are the reference.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHTS, CONFIG = HERE / "demo_clip.safetensors", HERE / "demo_clip_config.json"
ARCH, MODEL_ID = "mlfreeze-demo-clip", "demo-clip"
NAMES = {"image": "demo_clip_image.onnx", "text": "demo_clip_text.onnx"}


def main() -> int:
    import tomllib

    from mlfreeze.models.export import derived_from, export_towers, write_agreement
    from mlfreeze_runtime.clip import load_clip

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    weights_sha = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    source = derived_from(MODEL_ID, weights_sha)
    loaded = load_clip(arch=ARCH, weights=WEIGHTS, config=CONFIG, declared_quick_gelu=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_towers(loaded.model, Path(tmp), image_size=loaded.image_size,
                              preprocess_cfg=dict(loaded.preprocess_cfg),
                              context_length=int(loaded.tokenizer.context_length), embed_dim=loaded.embed_dim,
                              source=source)
        for tower, path in paths.items():
            data = path.read_bytes()
            (args.out / NAMES[tower]).write_bytes(data)
            print(f'[[models.{MODEL_ID}.artifacts]]\nfile = "{NAMES[tower]}"\nrole = "{tower}_onnx"\n'
                  f'derived_from = "{source}"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\n'
                  f'size = {len(data)}\nurls = ["demo/{NAMES[tower]}"]\n')
    model = tomllib.loads((HERE.parent / "models.toml").read_text())["models"][MODEL_ID]
    record = write_agreement(loaded, args.out / NAMES["image"], args.out / NAMES["text"],
                             args.out / "demo_clip_agreement.json", model_id=MODEL_ID, source=source,
                             verify=model["verify"], raw_tolerances=model.get("onnx_agreement", {}),
                             options={"opset": 17, "dynamic_batch": True, "precision": "fp32"})
    data = record.read_bytes()
    print(f'[[models.{MODEL_ID}.artifacts]]\nfile = "{record.name}"\nrole = "agreement"\n'
          f'derived_from = "{source}"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\n'
          f'size = {len(data)}\nurls = ["demo/{record.name}"]\n')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
