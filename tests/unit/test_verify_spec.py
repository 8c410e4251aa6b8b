"""The verify tables of src/mlfreeze/specs/models.toml validate, and malformed ones are refused by key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import tomllib

from mlfreeze_runtime.verify import spec
from mlfreeze_runtime.verify.probes import FACE_BAND, FACE_SKIN, load_rgb, render_shape

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "models.toml"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return tomllib.loads(MANIFEST.read_text())


def test_every_model_in_every_set_declares_valid_checks(manifest: dict) -> None:
    for ids in manifest["sets"].values():
        for mid in ids:
            table = manifest["models"][mid]["verify"]
            kind = manifest["models"][mid].get("kind") or ("insightface" if "faces" in table else "clip")
            parsed = spec.parse(mid, kind, table)
            assert parsed.golden_tolerance > 0


def test_default_clip_declares_quickgelu_and_real_photos(manifest: dict) -> None:
    s = spec.parse_clip("clip-vit-b-32-openai", manifest["models"]["clip-vit-b-32-openai"]["verify"])
    assert s.quick_gelu is True and s.top1 == 1.0
    assert all(z.image.startswith("skimage:") for z in s.zero_shot) and len(s.zero_shot) >= 5


def test_buffalo_declares_six_faces_in_t1(manifest: dict) -> None:
    s = spec.parse_faces("buffalo_l", manifest["models"]["buffalo_l"]["verify"])
    assert s.faces[0].image == "insightface:t1" and s.faces[0].count == 6
    assert s.no_face and s.augment_min_cosine > 0 and s.distinct_max_cosine < s.augment_min_cosine


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda t: t.pop("quick_gelu"), "verify.quick_gelu is missing"),
    (lambda t: t.update(top1=1.5), "verify.top1 is 1.5"),
    (lambda t: t.update(bogus=1), "verify.bogus is not a known key"),
    (lambda t: t.update(mean=[0.5, 0.5]), "verify.mean must be a list of 3 numbers"),
    (lambda t: t["zero_shot"].append({"image": "skimage:nope", "caption": "x"}), "zero_shot[18].image"),
    (lambda t: t.update(margin="big"), "verify.margin must be a number"),
    (lambda t: t.update(interpolation="lanczos"), "verify.interpolation is 'lanczos'; allowed: bicubic"),
    (lambda t: t.update(resize_mode="crop"), "verify.resize_mode is 'crop'"),
    (lambda t: t.update(matched_cosine=[0.9, 0.1]), "verify.matched_cosine must be [low, high]"),
    (lambda t: t.update(unmatched_cosine=[0.1]), "verify.unmatched_cosine must be"),
    (lambda t: t.update(reference_sims=[0.5, 0.5]), "verify.reference_sims must hold one cosine"),
    (lambda t: t.update(paraphrases=[["a", "b"], ["c", "d"]]), "verify.paraphrases needs at least 3 pairs"),
    (lambda t: t.update(paraphrases=[["a", "b"], ["c", "d"], ["e"]]), "verify.paraphrases[2] must be"),
    (lambda t: t.pop("paraphrases"), "verify.paraphrases is missing"),
    (lambda t: t.update(text_triples=[["a", "b"]]), "verify.text_triples[0] must be [caption, paraphrase, unrelated]"),
])
def test_malformed_clip_tables_name_the_key(manifest: dict, mutate, key: str) -> None:
    table = copy.deepcopy(manifest["models"]["demo-clip"]["verify"])
    mutate(table)
    with pytest.raises(spec.SpecError, match=re.escape(key)):
        spec.parse("demo-clip", "clip", table)


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda t: t["faces"][0].update(min_score="high"), "faces[0].min_score must be a number in [0, 1], got 'high'"),
    (lambda t: t["faces"][0].update(min_score=True), "faces[0].min_score must be a number"),
    (lambda t: t["faces"][0].update(min_score=1.5), "faces[0].min_score must be a number in [0, 1]"),
    (lambda t: t.pop("augment_min_cosine"), "augment_min_cosine is missing"),
    (lambda t: t.update(distinct_max_cosine="far"), "distinct_max_cosine must be a number"),
    (lambda t: (t.pop("augment_min_cosine"), t.update(flip_min_cosine="x")), "flip_min_cosine must be a number"),
])
def test_malformed_faces_tables_name_the_key(manifest: dict, mutate, key: str) -> None:
    table = copy.deepcopy(manifest["models"]["demo-faces"]["verify"])
    mutate(table)
    with pytest.raises(spec.SpecError, match=re.escape("models.demo-faces.verify." + key)):
        spec.parse("demo-faces", "insightface", table)


def test_older_keys_are_still_read(manifest: dict) -> None:
    """Tables written for the earlier gate (text_triples, flip_min_cosine) keep working."""
    clip = copy.deepcopy(manifest["models"]["demo-clip"]["verify"])
    clip.pop("paraphrases")
    clip["text_triples"] = [["a red circle", "a circle that is red", "a blue square"],
                            ["a green triangle", "a picture of a green triangle", "a white circle"]]
    s = spec.parse_clip("demo-clip", clip)
    assert s.paraphrases == (("a red circle", "a circle that is red"),
                             ("a green triangle", "a picture of a green triangle"))
    assert s.paraphrase_distractors == ("a blue square", "a white circle")
    faces = copy.deepcopy(manifest["models"]["demo-faces"]["verify"])
    faces.pop("augment_min_cosine")
    faces["flip_min_cosine"] = 0.75
    assert spec.parse_faces("demo-faces", faces).augment_min_cosine == 0.75


def test_faces_tables_need_a_probe_with_faces(manifest: dict) -> None:
    table = copy.deepcopy(manifest["models"]["demo-faces"]["verify"])
    table["faces"] = []
    with pytest.raises(spec.SpecError, match="at least one probe with faces"):
        spec.parse("demo-faces", "insightface", table)
    with pytest.raises(spec.SpecError, match="verify is missing"):
        spec.parse("x", "clip", None)


def test_synthetic_probes_are_exact_and_distinct() -> None:
    a = render_shape("red", "circle")
    assert a.shape == (64, 64, 3) and a.dtype.name == "uint8"
    assert (a == render_shape("red", "circle")).all()
    assert not (a == render_shape("red", "square")).all()
    assert tuple(a[32, 32]) == (220, 30, 30) and tuple(a[0, 0]) == (24, 24, 24)
    faces = load_rgb("synthetic:faces/3")
    assert faces.shape == (640, 640, 3) and tuple(faces[0, 0]) == (16, 16, 16)
    # colour faces: a skin tile and a band whose red and blue differ, so a channel swap changes the face
    assert tuple(faces[40, 40]) == FACE_SKIN and tuple(faces[32 + 41, 32 + 20]) == FACE_BAND
    assert FACE_SKIN[0] - FACE_SKIN[2] >= 30 and FACE_BAND[0] - FACE_BAND[2] >= 100
    assert not (faces == faces[:, :, ::-1]).all()
