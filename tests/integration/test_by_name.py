"""By-name loads resolve offline to the demo set's verified files (no network namespace at all).

A models folder is built from the demo set the way freeze builds a bundle's (fetch, bundle_models,
install_models). Scripts written like apps in the wild then run inside ``unshare -n`` (a network
namespace with no interface but loopback) with ``HF_HUB_OFFLINE=0`` in their environment:

- ``open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")``,
  ``create_model_from_pretrained("hf-hub:timm/vit_base_patch32_clip_224.openai")``,
  ``get_tokenizer``, OpenAI ``clip.load("ViT-B/32")`` (clip-anytorch) and
  ``FaceAnalysis(name="buffalo_l")`` give the embeddings of the runtime's own loaders;
- a name the set does not provide fails with one line naming it and ``models.<id>.provides``,
  never a connection attempt;
- through the self-test's app probe, an app that hands InsightFace RGB where it expects BGR fails
  ``app_probe.face``, and the same app without the swap passes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNSHARE = shutil.which("unshare")


def _can_unshare() -> bool:
    if UNSHARE is None:
        return False
    return subprocess.run([UNSHARE, "-n", "true"], capture_output=True, check=False).returncode == 0


needs_netns = pytest.mark.skipif(not _can_unshare(), reason="unshare -n (a network namespace) is not permitted here")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlfreeze.bundle.freeze import bundle_models, install_models
    from mlfreeze.models.fetch import fetch_set
    from mlfreeze.models.manifest import load_manifest

    tmp = tmp_path_factory.mktemp("by-name")
    man = load_manifest()
    fetched = fetch_set(man, "demo", cache_dir=tmp / "cache", offline=True, progress=False)
    out = tmp / "bundle" / "models"
    install_models(out, bundle_models(fetched, "full"), "demo", expected_providers=["CPUExecutionProvider"],
                   goldens=ROOT / "src" / "mlfreeze" / "specs" / "goldens")
    return out


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip-anytorch (OpenAI's clip package) imports pkg_resources, which setuptools >= 81 no longer
    ships: an old setuptools' two-line stand-in, as the apps that still use the package pin."""
    folder = tmp_path_factory.mktemp("pkg-resources-shim")
    (folder / "pkg_resources.py").write_text("import packaging\nimport packaging.version\n", encoding="utf-8")
    return folder


def run_app(script: str, models: Path, shim: Path, *, netns: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLFREEZE_"))}
    env.update({"MLFREEZE_MODELS_DIR": str(models), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
                "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT / "src")]), "DEVICE": "cpu"})
    cmd = [sys.executable, "-c", textwrap.dedent(script)]
    if netns:
        cmd = [UNSHARE or "unshare", "-n", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)


APP = """
import json, warnings
warnings.filterwarnings("ignore")
from mlfreeze_runtime import names
names.install()  # what a bundle's runtime hook does before the app runs

import numpy as np, torch, open_clip
from PIL import Image
from insightface.app import FaceAnalysis
from mlfreeze_runtime import clip as rclip, faces as rfaces
from mlfreeze_runtime.modelindex import find_models_dir, read_models_index
from mlfreeze_runtime.verify.probes import load_bgr, load_rgb

captions = ["a red circle", "a blue square", "a green triangle"]
images = [load_rgb(f"synthetic:shape/{c}") for c in ("red/circle", "blue/square", "green/triangle")]
index = read_models_index(find_models_dir()[0])
ref = rclip.ClipEmbedder(rclip.load_entry(index.first("clip")))
want_t, want_i = ref.embed_texts(captions), ref.embed_images(images)

def unit(x):
    x = x.float()
    return torch.nn.functional.normalize(x, dim=-1).numpy()

out = {}
def compare(label, model, preprocess, tokenize):
    with torch.no_grad():
        t = unit(model.encode_text(tokenize(captions)))
        i = unit(model.encode_image(torch.stack([preprocess(Image.fromarray(im)) for im in images])))
    out[label] = {"dim": int(t.shape[-1]), "text": float((t * want_t).sum(-1).min()),
                  "image": float((i * want_i).sum(-1).min())}

model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")
compare("open_clip", model.eval(), preprocess, open_clip.get_tokenizer("ViT-B-32"))
model, preprocess = open_clip.create_model_from_pretrained("hf-hub:timm/vit_base_patch32_clip_224.openai")
compare("hf-hub", model.eval(), preprocess, open_clip.get_tokenizer("hf-hub:timm/vit_base_patch32_clip_224.openai"))
try:
    import clip
except ImportError:
    clip = None
if clip is not None:
    model, preprocess = clip.load("ViT-B/32", device="cpu")
    compare("clip", model, preprocess, clip.tokenize)

app = FaceAnalysis(name="buffalo_l", allowed_modules=["detection", "recognition"], providers=["CPUExecutionProvider"])
app.prepare(ctx_id=-1, det_size=(640, 640))
got = sorted(app.get(load_bgr("synthetic:faces/3")), key=lambda f: f.bbox[0])
mine = rfaces.load_entry(index.first("insightface"), providers=["CPUExecutionProvider"])
want = sorted(mine.app.get(load_bgr("synthetic:faces/3")), key=lambda f: f.bbox[0])
out["insightface"] = {"faces": len(got), "dim": int(got[0].normed_embedding.shape[-1]),
                      "cos": float(min((a.normed_embedding * b.normed_embedding).sum() for a, b in zip(got, want)))}
from insightface import model_zoo
out["get_model"] = model_zoo.get_model("buffalo_l/w600k_r50.onnx", providers=["CPUExecutionProvider"]).taskname
print(json.dumps(out))
"""


@needs_netns
def test_by_name_loads_resolve_offline_to_the_verified_files(models_dir: Path, shim: Path) -> None:
    done = run_app(APP, models_dir, shim)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {"open_clip", "hf-hub", "insightface"} | ({"clip"} if importlib.util.find_spec("clip") else set())
    assert out.pop("get_model") == "recognition"  # buffalo_l's member names, on the demo pack too
    assert set(out) == expected
    for label in expected - {"insightface"}:
        assert out[label]["dim"] == 512, out  # ViT-B/32's interface
        assert out[label]["text"] >= 0.9999 and out[label]["image"] >= 0.9999, (label, out[label])
    assert out["insightface"] == {"faces": 3, "dim": 512, "cos": pytest.approx(1.0, abs=1e-4)}


@needs_netns
@pytest.mark.parametrize(("call", "name", "key"), [
    ('import open_clip; open_clip.create_model_and_transforms("ViT-L-14", pretrained="openai")',
     "open_clip:ViT-L-14/openai", "models.demo-clip.provides"),
    ('import open_clip; open_clip.create_model_from_pretrained("hf-hub:timm/ViT-B-16-SigLIP-i18n-256")',
     "hf-hub:timm/ViT-B-16-SigLIP-i18n-256", "models.demo-clip.provides"),
    ('import open_clip; open_clip.get_tokenizer("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")',
     "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "models.demo-clip.provides"),
    ('from insightface.app import FaceAnalysis; FaceAnalysis(name="antelopev2")',
     "insightface:antelopev2", "models.demo-faces.provides"),
    ('from insightface import model_zoo; model_zoo.get_model("antelopev2/glintr100.onnx", download=True)',
     "insightface:antelopev2", "models.demo-faces.provides"),
])
def test_a_name_no_model_provides_fails_in_one_line_without_a_request(models_dir: Path, shim: Path, call: str,
                                                                      name: str, key: str) -> None:
    script = ("import sys\nfrom mlfreeze_runtime import names\nnames.install()\n"
              f"try:\n    {call}\nexcept names.NotProvidedError as exc:\n"
              "    print(f'error: {exc}', file=sys.stderr)\n    sys.exit(3)\n")
    done = run_app(script, models_dir, shim)
    assert done.returncode == 3, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and repr(name) in lines[0] and key in lines[0], done.stderr[-2000:]
    for attempt in ("Network is unreachable", "ConnectionError", "urlopen", "Max retries", "Traceback"):
        assert attempt not in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("clip") is None, reason="OpenAI's clip package is not installed")
@needs_netns
def test_clip_load_of_another_name_is_refused(models_dir: Path, shim: Path) -> None:
    done = run_app("from mlfreeze_runtime import names\nnames.install()\nimport clip\nclip.load('RN50')\n",
                   models_dir, shim)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mlfreeze_runtime.names.NotProvidedError: 'clip:RN50' is not provided")
    assert "models.demo-clip.provides" in last and "Network is unreachable" not in done.stderr


FACE_APP = """
import sys
import numpy as np
from PIL import Image
from insightface.app import FaceAnalysis
from mlfreeze_runtime.app import handle_probe

SWAP = {swap}

def embed_faces(paths):
    app = FaceAnalysis(name="buffalo_l", allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    out = []
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        img = np.ascontiguousarray(rgb if SWAP else rgb[:, :, ::-1])  # the bug: RGB where BGR is expected
        found = sorted(app.get(img), key=lambda f: -f.det_score)
        out.append(found[0].normed_embedding if found else None)
    return out

sys.exit(handle_probe(sys.argv[1:], embed_faces=embed_faces) or 0)
"""


@needs_netns
@pytest.mark.parametrize("swap", [False, True])
def test_the_app_probe_catches_an_rgb_bgr_swap(models_dir: Path, shim: Path, tmp_path: Path, swap: bool) -> None:
    from mlfreeze_runtime.modelindex import read_models_index
    from mlfreeze_runtime.verify import selftest

    app = tmp_path / "face_app.py"
    app.write_text(textwrap.dedent(FACE_APP.format(swap=swap)), encoding="utf-8")
    index = read_models_index(models_dir)
    old = {k: os.environ.get(k) for k in ("PYTHONPATH",)}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(shim), str(ROOT / "src")])
    try:
        results = selftest.app_probe([UNSHARE or "unshare", "-n", sys.executable, str(app)], index,
                                     models_dir / "_probes", device="cpu", providers=["CPUExecutionProvider"])
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    face = next(r for r in results if r.check == "app_probe.face")
    if swap:
        assert face.status == "fail" and "cosine" in face.got, face
        cos = float(face.got.rsplit("cosine", 1)[1])
        assert cos < 0.9, face  # far beyond the probe threshold (0.9999), not a rounding wobble
    else:
        assert face.status == "pass", face
