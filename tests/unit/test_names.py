"""By-name loads: the names a manifest model provides, the architectures it may declare, the refusals.

The manifest side (src/mlfreeze/models/manifest.py) is checked on TOML written here; the resolver
(src/mlfreeze_runtime/names.py) on plain Model records. The unit tier forbids network and
subprocesses, so every refusal here is also proven to make no request.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError
from mlfreeze.models.manifest import check_set, load_manifest, open_clip_builtins
from mlfreeze.project.config import load_config
from mlfreeze_runtime import names

SHA = "a" * 64


def manifest(tmp_path: Path, model: str, *, artifacts: str = "", kind: str = "clip") -> Path:
    art = artifacts or f'[[models.m.artifacts]]\nfile = "w.safetensors"\nsha256 = "{SHA}"\nsize = 1\nurls = ["w"]\n'
    path = tmp_path / "models.toml"
    path.write_text(f'[sets]\ns = ["m"]\n\n[models.m]\nkind = "{kind}"\nembed_dim = 512\nlicense = "MIT"\n'
                    f"{model}\n\n{art}", encoding="utf-8")
    return path


def config_art(name: str = "open_clip_config.json", role: str = "config") -> str:
    return (f'[[models.m.artifacts]]\nfile = "{name}"\nrole = "{role}"\nsha256 = "{SHA}"\nsize = 1\n'
            f'urls = ["{name}"]\n')


WEIGHTS = f'[[models.m.artifacts]]\nfile = "w.safetensors"\nsha256 = "{SHA}"\nsize = 1\nurls = ["w"]\n'


@pytest.mark.parametrize("name", ["open_clip:ViT-B-32/openai", "hf-hub:timm/vit_base_patch32_clip_224.openai",
                                  "clip:ViT-B/32", "insightface:buffalo_l", "open_clip:ViT-L-14-336/openai"])
def test_names_parse(name: str) -> None:
    scheme, ident, tag = names.parse(name)
    assert names.SCHEMES[scheme] in ("clip", "insightface")
    assert name == f"{scheme}:{ident}" + (f"/{tag}" if tag else "")


@pytest.mark.parametrize("name", ["ViT-B-32", "open_clip:ViT-B-32", "open_clip:/openai", "hf-hub:org",
                                  "hf-hub:org/repo/extra", "insightface:a/b", "torchhub:x", "clip:", "clip: x"])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        names.parse(name)


def test_the_shipped_sets_provide_the_default_names() -> None:
    man = load_manifest()
    for set_name in ("default", "demo"):
        provided = {n for m in check_set(man, set_name) for n in m.provides}
        assert {"open_clip:ViT-B-32/openai", "clip:ViT-B/32", "insightface:buffalo_l"} <= provided
    assert man.models["clip-vit-b-32-openai"].revision == "a6f597a30f7b82c51704746581f9a4e41421e878"


@pytest.mark.parametrize(("provides", "message"), [
    ('["insightface:buffalo_l"]', "a insightface model, but this model's kind is 'clip'"),
    ('["open_clip:ViT-B-32"]', "open_clip:<model name>/<pretrained tag>"),
    ('["tfhub:x"]', "expected <scheme>:<name>"),
    ('["clip:ViT-B/32", "clip:ViT-B/32"]', "names the same load twice"),
])
def test_bad_provides_are_refused_naming_the_key(tmp_path: Path, provides: str, message: str) -> None:
    path = manifest(tmp_path, f'arch = "ViT-B-32"\nprovides = {provides}')
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    assert "models.m.provides" in str(err.value) and message in str(err.value)


def test_two_models_of_one_set_cannot_provide_one_name(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    two = "".join(f'[models.{i}]\nkind = "insightface"\nembed_dim = 512\nlicense = "MIT"\n'
                  f'provides = ["insightface:buffalo_l"]\n[[models.{i}.artifacts]]\nfile = "{i}.onnx"\n'
                  f'sha256 = "{SHA}"\nsize = 1\nurls = ["x"]\n\n' for i in ("a", "b"))
    path.write_text(f'[sets]\ns = ["a", "b"]\nalone = ["a"]\n\n{two}', encoding="utf-8")
    man = load_manifest(path)  # each set is checked when it is used
    check_set(man, "alone")
    with pytest.raises(ConfigError, match="'insightface:buffalo_l', which models.a.provides of the same set"):
        check_set(man, "s")


def test_hub_arch_without_a_config_artifact_is_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's manifest: a SigLIP i18n hub id, a weights artifact, no config. Refused when the
    manifest loads, even with the hub allowed by the environment; no request (the unit tier's guard)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    path = manifest(tmp_path, 'arch = "hf-hub:timm/ViT-B-16-SigLIP-i18n-256"\n'
                              'revision = "0123456789abcdef0123456789abcdef01234567"')
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert "models.m.arch" in msg and "hf-hub:timm/ViT-B-16-SigLIP-i18n-256" in msg and 'role = "config"' in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("model", "artifacts", "message"), [
    ('arch = "hf-hub:org/clip"', WEIGHTS + config_art(), "models.m.revision' is missing"),
    ('arch = "hf-hub:timm/ViT-B-16-SigLIP-i18n-256"\nrevision = "' + "b" * 40 + '"', WEIGHTS + config_art(),
     "tokenizer comes from the Hugging Face hub"),
    ('arch = "ViT-B-16-SigLIP"', WEIGHTS, "tokenizer comes from the Hugging Face hub"),
    ('arch = "ViT-B-33"', WEIGHTS, "no open_clip built-in"),
    ('arch = "local-dir:/models/clip"', WEIGHTS, "a local folder is not pinned"),
    ('arch = "hf-hub:org"\nrevision = "' + "b" * 40 + '"', WEIGHTS + config_art(), "expected hf-hub:<org>/<repo>"),
    ('arch = "ViT-B-32"\nrevision = "main"', WEIGHTS, "40-hex hub commit"),
])
def test_architectures_that_would_reach_a_hub_are_refused(tmp_path: Path, model: str, artifacts: str,
                                                           message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_manifest(manifest(tmp_path, model, artifacts=artifacts))
    assert message in str(err.value)


@pytest.mark.parametrize(("model", "artifacts"), [
    ('arch = "ViT-B-32-quickgelu"', WEIGHTS),  # an open_clip built-in
    ('arch = "my-tiny-clip"', WEIGHTS + config_art("tiny.json")),  # defined by its config artifact
    ('arch = "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"\nrevision = "' + "c" * 40 + '"',
     WEIGHTS + config_art()),  # BPE tokenizer: the config and weights are all it needs
    ('arch = "hf-hub:timm/ViT-B-16-SigLIP-i18n-256"\nrevision = "' + "c" * 40 + '"',
     WEIGHTS + config_art() + config_art("tokenizer.json", "tokenizer")),  # its tokenizer pinned too
    ('arch = "ViT-B-16-SigLIP"', WEIGHTS + config_art("tokenizer.json", "tokenizer")),
])
def test_pinned_architectures_load(tmp_path: Path, model: str, artifacts: str) -> None:
    load_manifest(manifest(tmp_path, model, artifacts=artifacts))


def test_pinned_builtin_list_matches_the_installed_open_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pinned list stands in where open_clip is not installed; it is open_clip 3.3.0's own."""
    installed = open_clip_builtins()
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    pinned = open_clip_builtins()
    assert "ViT-B-32-quickgelu" in pinned and "ViT-B-16-SigLIP-i18n-256" in pinned
    assert set(pinned) <= set(installed)


# ---- the resolver ----

def _model(**kw: object) -> names.Model:
    base: dict = {"id": "demo-clip", "kind": "clip", "arch": "a", "files": {"w.safetensors": Path("/m/w.safetensors")},
                  "roles": {"w.safetensors": "weights"}, "provides": ("open_clip:ViT-B-32/openai", "clip:ViT-B/32")}
    base.update(kw)
    return names.Model(**base)


def test_resolver_finds_provided_names_and_refuses_others_in_one_line() -> None:
    faces = names.Model(id="demo-faces", kind="insightface", arch="", files={}, provides=("insightface:buffalo_l",))
    r = names.Resolver([_model(), faces], where="the models of /b/models/models.json")
    assert r.lookup("open_clip", "ViT-B-32", "openai").id == "demo-clip"
    assert r.lookup("open_clip", "ViT-B/32", "openai").id == "demo-clip"  # open_clip's own '/' -> '-'
    assert r.lookup("clip", "ViT-B/32").id == "demo-clip"
    assert r.lookup("insightface", "buffalo_l").id == "demo-faces"
    assert r.lookup("open_clip", "ViT-B-32", "laion2b_s34b_b79k") is None
    err = str(r.refusal("open_clip:ViT-L-14/openai"))
    assert "'open_clip:ViT-L-14/openai'" in err and "models.demo-clip.provides" in err and "\n" not in err
    assert "/b/models/models.json" in err and "no download" in err
    assert "models.demo-faces.provides" in str(r.refusal("insightface:antelopev2"))
    two = names.Resolver([_model(), _model(id="other", provides=())])
    assert "models.<id>.provides" in str(two.refusal("clip:RN50"))


def test_install_forces_the_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in names.OFFLINE_ENV:
        monkeypatch.setenv(key, "0")
    monkeypatch.setenv(names.HUB_CACHE_ENV, str(tmp_path / "elsewhere"))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    m = _model(files={"w.safetensors": weights}, provides=("hf-hub:timm/vit_base_patch32_clip_224.openai",),
               revision="d" * 40)
    try:
        names.install([m], work_dir=tmp_path / "work")
        assert all(__import__("os").environ[k] == v for k, v in names.OFFLINE_ENV.items())
        hub = tmp_path / "work" / "hub"
        assert __import__("os").environ[names.HUB_CACHE_ENV] == str(hub)
        repo = hub / "models--timm--vit_base_patch32_clip_224.openai"
        assert (repo / "refs" / "main").read_text() == "d" * 40
        assert (repo / "snapshots" / ("d" * 40) / "open_clip_model.safetensors").read_bytes() == b"w"
    finally:
        names.reset_for_tests()


def test_module_collection_mode_key(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")

    def project(table: str) -> Path:
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "a"\nversion = "1"\n[tool.mlfreeze]\n'
                                                 f'app = "a"\nentry = "app.py"\n{table}\n')
        return tmp_path

    cfg = load_config(project('module_collection_mode = { mypkg = "pyz+py", "mypkg.jit" = "py" }'))
    assert cfg.module_collection_mode == (("mypkg", "pyz+py"), ("mypkg.jit", "py"))
    with pytest.raises(ConfigError, match="module_collection_mode.mypkg' is 'source'; allowed: pyz, pyc, py"):
        load_config(project('module_collection_mode = { mypkg = "source" }'))
    with pytest.raises(ConfigError, match="module_collection_mode.my-pkg' is not a module"):
        load_config(project('module_collection_mode = { "my-pkg" = "py" }'))


def test_spec_params_carry_the_module_collection_mode(tmp_path: Path) -> None:
    from mlfreeze.bundle.freeze import AppConfig, spec_params

    app = AppConfig(app="a", entry=tmp_path / "a.py", version="1", model_set="demo", sources=(), pathex=(tmp_path,),
                    uses=("clip",), module_collection_mode=(("mypkg", "pyz+py"),))
    params = spec_params(app=app, flavor="lite", name="a-1", excludes=[])
    assert params["module_collection_mode"] == {"mypkg": "pyz+py"}
    # every spec hands it to its Analysis: tests/unit/test_freeze_spec.py runs the specs
    hook = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "hooks" / "hook-open_clip.py"
    assert 'module_collection_mode = "pyz+py"' in hook.read_text()


def test_install_imports_no_ml_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime hook runs at every app start: laying out the default set's hub names reads
    open_clip's built-in config file without importing open_clip (which imports torch)."""
    import sys

    for key in (*names.OFFLINE_ENV, names.HUB_CACHE_ENV):  # restored after the test
        monkeypatch.setenv(key, "")
    before = {m for m in ("torch", "open_clip", "numpy", "insightface", "onnxruntime") if m in sys.modules}
    m = _model(id="clip-vit-b-32-openai", arch="ViT-B-32-quickgelu",
               files={"open_clip_model.safetensors": tmp_path / "w.safetensors"},
               roles={"open_clip_model.safetensors": "weights"}, revision="a6f597a30f7b82c51704746581f9a4e41421e878",
               provides=("open_clip:ViT-B-32/openai", "hf-hub:timm/vit_base_patch32_clip_224.openai"))
    try:
        names.install([m], work_dir=tmp_path / "work")
        after = {m for m in ("torch", "open_clip", "numpy", "insightface", "onnxruntime") if m in sys.modules}
        assert after == before
        snap = (tmp_path / "work" / "hub" / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots"
                / "a6f597a30f7b82c51704746581f9a4e41421e878")
        if open_clip_builtins().get("ViT-B-32-quickgelu") is not None:  # open_clip installed here
            import json

            assert json.loads((snap / "open_clip_config.json").read_text())["model_cfg"]["quick_gelu"] is True
    finally:
        names.reset_for_tests()


@pytest.mark.parametrize("blocked", [("open_clip",), ("torch", "open_clip", "clip", "insightface")])
def test_install_where_the_ml_libraries_are_blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    blocked: tuple[str, ...]) -> None:
    """A process that blocks a library (``sys.modules[name] = None``, as a torch-free slim app's
    probe is run) treats it as absent: install neither imports nor patches it, and lays out the hub."""
    import sys

    for key in (*names.OFFLINE_ENV, names.HUB_CACHE_ENV):  # restored after the test
        monkeypatch.setenv(key, "")
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    m = _model(files={"w.safetensors": weights}, provides=("open_clip:ViT-B-32/openai",
                                                           "hf-hub:timm/vit_base_patch32_clip_224.openai"),
               revision="d" * 40)
    try:
        resolver = names.install([m], work_dir=tmp_path / "work")
        assert resolver.lookup("open_clip", "ViT-B-32", "openai") is not None
        assert all(sys.modules[name] is None for name in blocked)
        assert not (tmp_path / "work" / "open_clip_configs").exists()  # nothing registered with open_clip
        repo = tmp_path / "work" / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
        assert (repo / "refs" / "main").read_text() == "d" * 40
    finally:
        names.reset_for_tests()
