"""Faulty and faithful ONNX exports of the demo CLIP, made the two ways real exports go wrong: an
altered copy of the torch model exported with ``export_towers`` (what ``mlfreeze export`` runs), or
an edit of the exported ONNX graph with the ``onnx`` package. Shared by
tests/integration/test_slim_export_catalogue.py and bench/bench_onnx_tolerances.py.

``FAULTS``: name -> ``make(loaded, out_dir) -> (image.onnx, text.onnx)``; ``GOOD``: name ->
(``make``, the ``[onnx_agreement]`` table the variant declares). ``loaded`` is
``mlfreeze_runtime.clip.load_clip``'s result for the demo CLIP (:func:`load_demo`).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from mlfreeze.models.export import ExportOptions, derived_from, export_towers, write_agreement
from mlfreeze.models.manifest import load_manifest
from mlfreeze_runtime import clip as rclip
from mlfreeze_runtime.onnx_clip import IMAGE_INPUT

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "mlfreeze" / "specs" / "demo"
WEIGHTS = DEMO / "demo_clip.safetensors"
SOURCE = derived_from("demo-clip", hashlib.sha256(WEIGHTS.read_bytes()).hexdigest())
SPEC = load_manifest().models["demo-clip"]
# no goldens, no reference_sims: only the agreement record and the reference-free checks stand
VERIFY = {k: v for k, v in SPEC.verify.items() if k not in ("reference_sims", "reference_tolerance")}


def load_demo() -> Any:
    return rclip.load_clip(arch=SPEC.arch, weights=WEIGHTS, config=DEMO / "demo_clip_config.json",
                           declared_quick_gelu=True)


# ---- making towers ----

Towers = tuple[Path, Path]


def export(model, loaded, out: Path, *, source: str = SOURCE, opset: int = 17) -> Towers:
    out.mkdir(parents=True, exist_ok=True)
    paths = export_towers(model, out, image_size=loaded.image_size, preprocess_cfg=dict(loaded.preprocess_cfg),
                          context_length=int(loaded.tokenizer.context_length), embed_dim=SPEC.embed_dim,
                          source=source, options=ExportOptions(opset=opset))
    return paths["image"], paths["text"]


def torch_fault(alter: Callable[[object], object]) -> Callable[[object, Path], Towers]:
    return lambda loaded, out: export(alter(copy.deepcopy(loaded.model)), loaded, out)


def graph_edit(tower: str, edit: Callable[[object], None]) -> Callable[[object, Path], Towers]:
    """Export faithfully, then edit one tower's ONNX graph in place."""
    def make(loaded, out: Path) -> Towers:
        image, text = export(loaded.model, loaded, out)
        path = image if tower == "image" else text
        proto = onnx.load(str(path))
        edit(proto)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        return image, text
    return make


def _prepend_on_input(proto, name: str, nodes: list, inits: list, out_name: str) -> None:
    """Route every use of graph input ``name`` through ``nodes`` (which read ``name``, write ``out_name``)."""
    for node in proto.graph.node:
        node.input[:] = [out_name if i == name else i for i in node.input]
    proto.graph.initializer.extend(inits)
    for node in reversed(nodes):
        proto.graph.node.insert(0, node)


def bgr_input(proto) -> None:
    idx = onnx.numpy_helper.from_array(np.array([2, 1, 0], dtype=np.int64), "bgr_order")
    _prepend_on_input(proto, IMAGE_INPUT, [onnx.helper.make_node("Gather", [IMAGE_INPUT, "bgr_order"],
                                                                 ["pixels_bgr"], axis=1)], [idx], "pixels_bgr")


def normalised_twice(proto) -> None:
    cfg = SPEC.verify
    mean = onnx.numpy_helper.from_array(np.array(cfg["mean"], np.float32).reshape(1, 3, 1, 1), "again_mean")
    std = onnx.numpy_helper.from_array(np.array(cfg["std"], np.float32).reshape(1, 3, 1, 1), "again_std")
    nodes = [onnx.helper.make_node("Sub", [IMAGE_INPUT, "again_mean"], ["pixels_centred"]),
             onnx.helper.make_node("Div", ["pixels_centred", "again_std"], ["pixels_again"])]
    _prepend_on_input(proto, IMAGE_INPUT, nodes, [mean, std], "pixels_again")


def _blocks(model, tower: str):
    return (model.visual.transformer if tower == "image" else model.transformer).resblocks


def zero_head(tower: str) -> Callable[[object], object]:
    def alter(model):
        attn = _blocks(model, tower)[0].attn
        d, hd = attn.embed_dim, attn.head_dim
        with torch.no_grad():
            attn.in_proj_weight[2 * d:2 * d + hd] = 0  # the value rows of head 0: its output is zero
            attn.in_proj_bias[2 * d:2 * d + hd] = 0
        return model
    return alter


def no_attention_scale(tower: str) -> Callable[[object], object]:
    def alter(model):
        for block in _blocks(model, tower):
            attn = block.attn
            with torch.no_grad():  # q * sqrt(head_dim) undoes the 1/sqrt(head_dim) of the attention
                attn.in_proj_weight[:attn.embed_dim] *= attn.head_dim ** 0.5
                attn.in_proj_bias[:attn.embed_dim] *= attn.head_dim ** 0.5
        return model
    return alter


def swap_quickgelu(model):
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "QuickGELU":
                setattr(parent, name, torch.nn.GELU())
    return model


def drop(attr: str) -> Callable[[object], object]:
    def alter(model):
        obj, _, leaf = attr.rpartition(".")
        target = model.get_submodule(obj) if obj else model
        setattr(target, leaf, None if leaf in ("proj", "text_projection") else torch.nn.Identity())
        return model
    return alter


def twice(attr: str) -> Callable[[object], object]:
    def alter(model):
        obj, _, leaf = attr.rpartition(".")
        target = model.get_submodule(obj) if obj else model
        ln = getattr(target, leaf)
        setattr(target, leaf, torch.nn.Sequential(ln, copy.deepcopy(ln)))
        return model
    return alter


def image_projection_transposed(model):
    with torch.no_grad():
        # width x embed_dim (64 x 512 in the demo): its values read transposed, as a converter that swapped the
        # axes and kept the shape (for a square matrix, its transpose)
        model.visual.proj.copy_(model.visual.proj.T.contiguous().reshape(model.visual.proj.shape))
    return model


def text_projection_wrong_layout(model):
    with torch.no_grad():  # 32 x 512: its values read in column order, as a converter that transposed the layout
        model.text_projection.copy_(model.text_projection.T.contiguous().reshape(model.text_projection.shape))
    return model


def no_causal_mask(model):
    model.attn_mask = None
    return model


def text_pool(pool_type: str) -> Callable[[object], object]:
    def alter(model):
        model.text_pool_type = pool_type  # "last": the last position instead of the end-of-text token
        return model
    return alter


def text_mean_pooling(model):
    import types

    def encode_text(self, text, normalize=False):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        return x.mean(dim=1) @ self.text_projection

    model.encode_text = types.MethodType(encode_text, model)
    return model


def image_mean_pooling(model):
    model.visual.pool_type = "avg"
    return model


def _perturbed(loaded, fraction: float, seed: int):
    model = copy.deepcopy(loaded.model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1:
                p.add_(fraction * p.float().std() * torch.randn(p.shape, generator=g))
    return model


def other_training(loaded, out: Path) -> Towers:
    """Towers exported from other weights (here: each tensor moved by 3 % of its spread), recording
    their own source as ``mlfreeze export`` would."""
    model = _perturbed(loaded, 0.03, 11)
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
    return export(model, loaded, out, source=derived_from("demo-clip", digest))


def other_training_forged_source(loaded, out: Path) -> Towers:
    """The same kind of towers, claiming in their metadata to come from the pinned weights."""
    return export(_perturbed(loaded, 0.03, 12), loaded, out)


FAULTS: dict[str, Callable[[object, Path], Towers]] = {
    "gelu-for-quickgelu": torch_fault(swap_quickgelu),
    "no-ln_final": torch_fault(drop("ln_final")),
    "no-ln_post": torch_fault(drop("visual.ln_post")),
    "no-image-projection": torch_fault(drop("visual.proj")),
    "no-text-projection": torch_fault(drop("text_projection")),
    "image-projection-transposed": torch_fault(image_projection_transposed),
    "text-projection-wrong-layout": torch_fault(text_projection_wrong_layout),
    "zeroed-head-image": torch_fault(zero_head("image")),
    "zeroed-head-text": torch_fault(zero_head("text")),
    "no-attention-scale-image": torch_fault(no_attention_scale("image")),
    "no-attention-scale-text": torch_fault(no_attention_scale("text")),
    "no-causal-mask": torch_fault(no_causal_mask),
    "eot-pooling-last-position": torch_fault(text_pool("last")),
    "eot-pooling-first-position": torch_fault(text_pool("first")),
    "text-mean-pooling": torch_fault(text_mean_pooling),
    "image-mean-pooling": torch_fault(image_mean_pooling),
    "ln_final-twice": torch_fault(twice("ln_final")),
    "pixels-normalised-twice": graph_edit("image", normalised_twice),
    "bgr-input": graph_edit("image", bgr_input),
    "other-training": other_training,
    "other-training-forged-source": other_training_forged_source,
}


# ---- good variants ----

def fresh(loaded, out: Path) -> Towers:
    return export(copy.deepcopy(loaded.model), loaded, out)


def opset(n: int) -> Callable[[object, Path], Towers]:
    return lambda loaded, out: export(loaded.model, loaded, out, opset=n)


def ort_optimised(loaded, out: Path) -> Towers:
    image, text = export(loaded.model, loaded, out / "src")
    done = []
    for path in (image, text):
        target = out / path.name
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(target)
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        proto, meta = onnx.load(str(target)), {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        if {p.key for p in proto.metadata_props} != set(meta):  # keep the tower's self-description
            del proto.metadata_props[:]
            for key, value in meta.items():
                proto.metadata_props.add(key=key, value=value)
            onnx.save(proto, str(target))
        assert target.read_bytes() != path.read_bytes()
        done.append(target)
    return done[0], done[1]


def renamed(proto) -> None:
    """Every node and every intermediate value renamed (inputs, outputs and initializers keep theirs)."""
    keep = {i.name for i in proto.graph.input} | {o.name for o in proto.graph.output} | \
        {i.name for i in proto.graph.initializer}
    names: dict[str, str] = {}

    def new(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"v{len(names)}")

    for n, node in enumerate(proto.graph.node):
        node.name = f"renamed_{n}"
        node.input[:] = [new(i) for i in node.input]
        node.output[:] = [new(o) for o in node.output]
    del proto.graph.value_info[:]


def fp16_round_trip(proto) -> None:
    """Every float intermediate rounded to fp16 and back, as an fp16 inference graph computes it."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    floats = {vi.name for vi in inferred.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    for node in list(proto.graph.node):
        for k, out in enumerate(node.output):
            if out in floats:
                node.output[k] = f"{out}__wide"
                at = list(proto.graph.node).index(node) + 1
                proto.graph.node.insert(at, onnx.helper.make_node("Cast", [f"{out}__wide"], [f"{out}__half"],
                                                                  to=onnx.TensorProto.FLOAT16))
                proto.graph.node.insert(at + 1, onnx.helper.make_node("Cast", [f"{out}__half"], [out],
                                                                      to=onnx.TensorProto.FLOAT))


def both(edit: Callable[[object], None]) -> Callable[[object, Path], Towers]:
    def make(loaded, out: Path) -> Towers:
        image, text = export(loaded.model, loaded, out)
        for path in (image, text):
            proto = onnx.load(str(path))
            edit(proto)
            onnx.checker.check_model(proto)
            onnx.save(proto, str(path))
        return image, text
    return make


FP16 = {"precision": "fp16", "top_k": 5}
GOOD: dict[str, tuple[Callable[[object, Path], Towers], dict]] = {
    "fresh-export": (fresh, {}),
    "opset-18": (opset(18), {}),
    "opset-20": (opset(20), {}),
    "ort-optimised": (ort_optimised, {}),
    "renamed-nodes": (both(renamed), {}),
    "fp16-round-trip": (both(fp16_round_trip), FP16),
}



def record_for(loaded: Any, towers: Towers, out: Path, agreement: dict | None = None) -> Path:
    """The agreement record ``mlfreeze export`` writes for these towers (made with torch)."""
    return write_agreement(loaded, towers[0], towers[1], out, model_id="demo-clip", source=SOURCE, verify=VERIFY,
                           raw_tolerances=agreement or dict(SPEC.onnx_agreement), options={"test": True})
