"""clip-only: embeds a text and an image with CLIP (a minimal app scaffolded by `mlfreeze init`).

    clip-only --text "a red circle" --image photo.jpg   # both embeddings and their cosine, as JSON
    clip-only --health                                  # one JSON object: what this build can do
    clip-only --mlfreeze-probe REQUEST.json             # the frozen self-test's probe (mlfreeze's app contract)

Models come from mlfreeze's runtime: models.json in $MLFREEZE_MODELS_DIR (a frozen bundle's
runtime hook points it at the bundle's models/), the device from mlfreeze_runtime.device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

APP = "clip-only"
VERSION = "0.1.0"


def models_dir() -> tuple[Path | None, str]:
    """Where the models are, and who said so."""
    env = os.environ.get("MLFREEZE_MODELS_DIR")
    if env:
        return Path(env), "MLFREEZE_MODELS_DIR"
    return None, "unset"


def device() -> str:
    try:
        from mlfreeze_runtime.device import get_device
    except ImportError:
        return "cpu"
    return str(get_device())


@cache
def clip() -> Any:
    """The bundle's CLIP model through mlfreeze's runtime loader (the code the self-test verified)."""
    from mlfreeze_runtime.clip import ClipEmbedder, load_clip
    from mlfreeze_runtime.verify.bundle import read_models_index

    base, _ = models_dir()
    if base is None:
        raise SystemExit(f"{APP}: error: no models: set MLFREEZE_MODELS_DIR to a folder holding models.json")
    _, refs = read_models_index(base)
    ref = next((r for r in refs if r.kind == "clip"), None)
    if ref is None:
        raise SystemExit(f"{APP}: error: {base / 'models.json'} lists no CLIP model")
    role = {r: n for n, r in ref.roles.items()}
    loaded = load_clip(arch=ref.arch, weights=Path(ref.files[role["weights"]]),
                       config=Path(ref.files[role["config"]]) if "config" in role else None,
                       declared_quick_gelu=bool(ref.verify.get("quick_gelu", False)))
    return ClipEmbedder(loaded, device())


def embed_texts(texts: list[str]) -> list[list[float]]:
    return [[float(x) for x in row] for row in clip().texts(texts)]


def embed_images(paths: list[str]) -> list[list[float]]:
    import numpy as np
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return [[float(x) for x in row] for row in clip().images(images)]


def health() -> dict[str, Any]:
    base, source = models_dir()
    try:
        import open_clip  # noqa: F401
        import torch  # noqa: F401

        ml_available = True
    except ImportError:
        ml_available = False
    return {"app": APP, "version": VERSION, "ml_available": ml_available,
            "models_dir": str(base) if base else None, "models_dir_source": source,
            "device": device() if ml_available else "none"}


def probe(argv: list[str]) -> int:
    """--mlfreeze-probe REQUEST.json through this app's own embedding code."""
    try:
        from mlfreeze_runtime.app import handle_probe
    except ImportError:  # an mlfreeze without mlfreeze_runtime.app: the same contract, by hand
        request = json.loads(Path(argv[argv.index("--mlfreeze-probe") + 1]).read_text(encoding="utf-8"))
        out = {"text": embed_texts(request.get("texts", [])), "image": embed_images(request.get("images", []))}
        print(json.dumps(out))
        return 0
    return int(handle_probe(argv, embed_texts=embed_texts, embed_images=embed_images) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--mlfreeze-probe" in argv:
        return probe(argv)
    ap = argparse.ArgumentParser(prog=APP, description="Embed a text and an image with CLIP.")
    ap.add_argument("--health", action="store_true", help="print what this build can do, as JSON")
    ap.add_argument("--text", default="a photo", help="the text to embed")
    ap.add_argument("--image", default=None, help="the image to embed")
    args = ap.parse_args(argv)
    if args.health:
        print(json.dumps(health()))
        return 0
    result: dict[str, Any] = {"text": args.text, "text_embedding": embed_texts([args.text])[0]}
    if args.image:
        image = embed_images([args.image])[0]
        result["image"] = args.image
        result["image_embedding"] = image
        result["cosine"] = sum(a * b for a, b in zip(image, result["text_embedding"], strict=True))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
