"""src/mlfreeze/specs/models.toml: the pinned default set and the loader's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.models.manifest import check_set, load_manifest

SHA = "ab" * 32
GOOD = f"""
[sets]
t = ["m"]

[models.m]
kind = "insightface"
embed_dim = 4
license = "test"

[[models.m.artifacts]]
file = "w.bin"
sha256 = "{SHA}"
size = 10
urls = ["demo/w.bin", "https://example.org/w.bin"]
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "models.toml"
    path.write_text(text)
    return load_manifest(path)


def test_default_set_has_the_pinned_values() -> None:
    m = load_manifest()
    assert m.sets["default"] == ("clip-vit-b-32-openai", "buffalo_l")
    clip, faces = (m.models[i] for i in m.sets["default"])
    assert (clip.kind, clip.arch, clip.embed_dim) == ("clip", "ViT-B-32-quickgelu", 512)
    (art,) = clip.artifacts
    assert art.file == "open_clip_model.safetensors" and art.size == 605_143_284
    assert art.sha256 == "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31"
    assert art.urls == ("https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/"
                        "a6f597a30f7b82c51704746581f9a4e41421e878/open_clip_model.safetensors",)
    (zip_,) = faces.artifacts
    assert (faces.kind, zip_.size, zip_.extract) == ("insightface", 288_621_354, True)
    assert zip_.sha256 == "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f"
    assert zip_.urls[0].endswith("/download/v0.7/buffalo_l.zip")
    assert zip_.urls[1].endswith("/download/model-zoo/buffalo_l.zip")
    members = {x.name: x for x in zip_.members}
    assert sorted(n for n, x in members.items() if x.bundle) == ["det_10g.onnx", "w600k_r50.onnx"]
    assert members["w600k_r50.onnx"].sha256 == "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43"
    assert len(members) == 5 and all(x.sha256 for x in members.values())
    assert all(u.startswith("https://") for a in (art, zip_) for u in a.urls)


def test_relative_url_resolves_next_to_the_manifest(tmp_path: Path) -> None:
    m = _load(tmp_path, GOOD)
    art = m.models["m"].artifacts[0]
    assert m.resolve_url(art.urls[0]) == (tmp_path / "demo" / "w.bin").as_uri()
    assert m.resolve_url(art.urls[1]) == "https://example.org/w.bin"
    assert art.role == "weights" and art.bundle is True
    assert dict(m.models["m"].verify) == {}


def test_verify_and_role_pass_through(tmp_path: Path) -> None:
    text = GOOD.replace('file = "w.bin"', 'file = "w.bin"\nrole = "config"') + "\n[models.m.verify]\nprobe = 3\n"
    m = _load(tmp_path, text)
    assert m.models["m"].artifacts[0].role == "config"
    assert m.models["m"].verify["probe"] == 3


@pytest.mark.parametrize(("old", "new", "key"), [
    (f'sha256 = "{SHA}"', 'sha256 = "abc"', "models.m.artifacts[0].sha256"),
    (f'sha256 = "{SHA}"', f'sha256 = "{SHA.upper()}"', "models.m.artifacts[0].sha256"),
    ("size = 10\n", "", "models.m.artifacts[0].size"),
    (f'sha256 = "{SHA}"\n', "", "models.m.artifacts[0].sha256"),
    ("size = 10", "size = 10\nsizes = 3", "models.m.artifacts[0].sizes"),
    ('license = "test"', 'license = "test"\nlicence = "x"', "models.m.licence"),
    ('kind = "insightface"', 'kind = "resnet"', "models.m.kind"),
    ('file = "w.bin"', 'file = "../w.bin"', "models.m.artifacts[0].file"),
    ('file = "w.bin"', 'file = "/etc/w.bin"', "models.m.artifacts[0].file"),
    ('urls = ["demo/w.bin", "https://example.org/w.bin"]', "urls = []", "models.m.artifacts[0].urls"),
    ("size = 10", "size = 10\nextract = true", "models.m.artifacts[0].members"),
    ('kind = "insightface"', 'kind = "clip"', "models.m.arch"),
])
def test_bad_manifest_names_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, GOOD.replace(old, new, 1))
    assert str(tmp_path / "models.toml") in info.value.message
    assert f"'{key}'" in info.value.message
    assert info.value.exit_code == 2


def test_member_keys_validated(tmp_path: Path) -> None:
    text = GOOD.replace("size = 10", "size = 10\nextract = true") + \
        '[models.m.artifacts.members]\n"a.onnx" = { sha256 = "zz", bundle = true }\n'
    with pytest.raises(ConfigError, match=r"'models\.m\.artifacts\[0\]\.members\.a\.onnx\.sha256'"):
        _load(tmp_path, text)
    text = text.replace('sha256 = "zz"', 'shasum = "x"')
    with pytest.raises(ConfigError, match="shasum"):
        _load(tmp_path, text)


def test_unknown_set_is_usage_error_and_unknown_id_config_error(tmp_path: Path) -> None:
    m = _load(tmp_path, GOOD.replace('t = ["m"]', 't = ["m"]\nu = ["nope"]'))
    with pytest.raises(UsageError, match="unknown model set 'x'.*known: t, u"):
        check_set(m, "x")
    with pytest.raises(ConfigError, match="'sets.u' names 'nope'"):
        check_set(m, "u")
    assert [s.id for s in check_set(m, "t")] == ["m"]


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "[sets\n")
