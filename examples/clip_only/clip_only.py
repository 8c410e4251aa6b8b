"""clip-only: embeds a text and an image with CLIP (a minimal app scaffolded by `mlfreeze init`).

    clip-only --text "a red circle" --image photo.jpg   # both embeddings and their cosine, as JSON
    clip-only --health                                  # one JSON object: what this build can do
    clip-only --mlfreeze-probe REQUEST.json             # the frozen self-test's probe (mlfreeze's app contract)

CLIP is loaded by name (open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")); a
frozen bundle resolves the name to its own verified models/ with no network (the manifest model's
`provides`), the device comes from mlfreeze_runtime.device.
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
MODEL, PRETRAINED = "ViT-B-32", "openai"  # the load this app makes (a manifest model provides it)


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
    """CLIP loaded by name, as apps do: in a bundle (and under the self-test's probe) the name resolves
    to the bundle's verified files, offline (mlfreeze_runtime.names; the manifest's `provides`)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(MODEL, pretrained=PRETRAINED, device=device())
    return model.eval(), preprocess, open_clip.get_tokenizer(MODEL)


def _rows(out: Any) -> list[list[float]]:
    import torch

    return [[float(x) for x in row] for row in torch.nn.functional.normalize(out.float(), dim=-1).cpu()]


def embed_texts(texts: list[str]) -> list[list[float]]:
    import torch

    model, _, tokenizer = clip()
    with torch.no_grad():
        return _rows(model.encode_text(tokenizer(texts).to(device())))


def embed_images(paths: list[str]) -> list[list[float]]:
    import torch
    from PIL import Image

    model, preprocess, _ = clip()
    batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths]).to(device())
    with torch.no_grad():
        return _rows(model.encode_image(batch))


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
