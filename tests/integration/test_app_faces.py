"""photo-search faces and face indexing on the real code path, with insightface's
``FaceAnalysis`` replaced by a stand-in that "detects" faces from each image's colour.

Why a stand-in: no face ONNX models can be downloaded here. The stand-in returns real
``insightface.app.common.Face`` objects (unnormalised embeddings, numpy boxes), so the app's
image reading, normalisation, grouping, output and FAISS storage all run for real. The last
test runs the real FaceAnalysis on the demo face models in src/mlfreeze/specs/demo/faces/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
insightface_app = pytest.importorskip("insightface.app")
pytest.importorskip("faiss")
Image = pytest.importorskip("PIL.Image")
from insightface.app.common import Face as InsightFace  # noqa: E402

from photo_search import embed  # noqa: E402
from photo_search.cli import main  # noqa: E402
from photo_search.index import FACES_FAISS, PhotoIndex  # noqa: E402
from photo_search.models import MODELS_ENV  # noqa: E402

RNG = np.random.default_rng(7)
PEOPLE = {"A": RNG.normal(size=512).astype("float32"), "B": RNG.normal(size=512).astype("float32")}
RGB = {"alice": (255, 0, 0), "group": (0, 255, 0), "bob": (0, 0, 255), "empty": (255, 255, 255)}
# faces per image colour (BGR as insightface sees it): (box, person)
FACES = {
    (0, 0, 255): [((10.0, 12.0, 30.0, 40.0), "A")],
    (0, 255, 0): [((5.0, 5.0, 20.0, 25.0), "A"), ((40.0, 8.0, 58.0, 30.0), "B")],
    (255, 0, 0): [((22.0, 18.0, 44.0, 46.0), "B")],
    (255, 255, 255): [],
}


class FakeAnalysis:
    made: list[FakeAnalysis] = []

    def __init__(self, name: str, root: str = "~/.insightface", allowed_modules: list[str] | None = None,
                 **kwargs: object) -> None:
        self.name, self.root, self.allowed_modules, self.kwargs = name, root, allowed_modules, kwargs
        self.prepared: dict[str, object] = {}
        self.models = {"detection": object(), "recognition": object()}
        FakeAnalysis.made.append(self)

    def prepare(self, ctx_id: int = 0, det_thresh: float = 0.5, det_size: object = None) -> None:
        self.prepared = {"ctx_id": ctx_id, "det_size": det_size}

    def get(self, img: object) -> list[InsightFace]:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3  # type: ignore[attr-defined]
        bgr = tuple(int(c) for c in img[0, 0])  # type: ignore[index]
        return [InsightFace(bbox=np.array(box, dtype="float32"), kps=None, det_score=np.float32(0.875),
                            embedding=PEOPLE[who] * 3.0) for box, who in FACES[bgr]]


@pytest.fixture
def face_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    pack = root / "faces" / "pack"
    pack.mkdir(parents=True)
    for name in ("det_10g.onnx", "w600k_r50.onnx"):
        (pack / name).write_bytes(name.encode())
    (root / "models.json").write_text(json.dumps({"schema_version": 1, "set": "test", "models": [
        {"id": "test-faces", "kind": "insightface", "embed_dim": 512, "provides": ["insightface:buffalo_l"],
         "files": {"det_10g.onnx": "faces/pack/det_10g.onnx", "w600k_r50.onnx": "faces/pack/w600k_r50.onnx"}}]}))
    monkeypatch.setenv(MODELS_ENV, str(root))
    monkeypatch.setenv("ONNX_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setattr(insightface_app, "FaceAnalysis", FakeAnalysis)
    FakeAnalysis.made.clear()
    return root


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for name, rgb in RGB.items():
        Image.new("RGB", (64, 48), rgb).save(d / f"{name}.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return d


def test_faces_counts_boxes_and_groups(face_models: Path, photos: Path, capsys) -> None:
    rc = main(["faces", str(photos), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    res = json.loads(out)
    by_name = {Path(i["path"]).name: i for i in res["images"]}
    assert sorted(by_name) == ["alice.png", "bob.png", "empty.png", "group.png"]
    assert "broken.jpg" in err and res["skipped"] == 1
    assert [by_name[n]["count"] for n in ("alice.png", "bob.png", "empty.png", "group.png")] == [1, 1, 0, 2]
    assert by_name["group.png"]["faces"][1]["bbox"] == [40.0, 8.0, 58.0, 30.0]
    assert by_name["alice.png"]["faces"][0]["score"] == 0.875
    a = by_name["alice.png"]["faces"][0]["group"]
    b = by_name["bob.png"]["faces"][0]["group"]
    assert a != b and a > 0 and b > 0
    assert [f["group"] for f in by_name["group.png"]["faces"]] == [a, b]
    assert res["groups"] == 2 and res["model"] == "test-faces"

    made = FakeAnalysis.made[-1]  # how the app built insightface's FaceAnalysis: by name, as apps do
    assert made.name == "buffalo_l" and made.root == "~/.insightface"
    assert made.allowed_modules == ["detection", "recognition"]
    assert made.kwargs["providers"] == ["CPUExecutionProvider"]
    assert made.prepared == {"ctx_id": -1, "det_size": (640, 640)}


def test_faces_text_output_and_threshold(face_models: Path, photos: Path, capsys) -> None:
    assert main(["faces", str(photos), "--threshold", "1.01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"{photos / 'group.png'}: 2 faces" in out
    assert f"{photos / 'empty.png'}: 0 faces" in out
    assert "  [5, 5, 20, 25] score 0.88 person 3" in out  # nothing groups at a threshold above 1
    assert out[-1] == "4 images, 4 faces, 4 distinct people (threshold 1.01)"


def test_faces_without_a_face_model_is_exit_3(face_models: Path, photos: Path, capsys) -> None:
    (face_models / "models.json").write_text(json.dumps({"schema_version": 1, "set": "x", "models": []}))
    assert main(["faces", str(photos)]) == 3
    assert "no insightface model in" in capsys.readouterr().err


def test_index_stores_face_embeddings(face_models: Path, photos: Path, tmp_path: Path, capsys) -> None:
    idx = tmp_path / "idx"
    rc = main(["index", str(photos), "--index", str(idx), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["faces"] == 4 and summary["models"]["faces"]["id"] == "test-faces"
    assert summary["mode"] == "names"  # no CLIP model in this set: names + faces
    stored = PhotoIndex.read_sidecar(idx)
    assert stored is not None
    stored.load_vectors()
    assert (idx / FACES_FAISS).is_file() and stored.face_vectors.shape == (4, 512)
    for f in stored.faces:
        name = Path(stored.images[f["image"]]).stem
        person = dict(FACES[tuple(reversed(RGB[name]))])[tuple(f["bbox"])]
        want = PEOPLE[person] / np.linalg.norm(PEOPLE[person])
        assert np.allclose(stored.face_vectors[f["row"]], want, atol=1e-5)
    # re-indexing the same folder keeps the face rows consistent (no duplicates)
    assert main(["index", str(photos), "--index", str(idx)]) == 0
    again = PhotoIndex.read_sidecar(idx)
    assert again is not None and len(again.faces) == 4
    assert sorted(f["row"] for f in again.faces) == [0, 1, 2, 3]


def test_real_face_analysis_without_a_detector_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """The real FaceAnalysis(name="buffalo_l") resolved to a pack whose ONNX file is no detector: one
    line, exit 2, and no attempt to download."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    pack = tmp_path / "models" / "pack"
    pack.mkdir(parents=True)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 50, 50])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 50, 50])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(pack / "x.onnx"))
    (tmp_path / "models" / "models.json").write_text(json.dumps({"schema_version": 1, "set": "t", "models": [
        {"id": "nodet", "kind": "insightface", "embed_dim": 512, "files": {"x.onnx": "pack/x.onnx"},
         "provides": ["insightface:buffalo_l"]}]}))
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("ONNX_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a download would land here
    (tmp_path / "p").mkdir()
    assert main(["faces", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "no face detection model among the .onnx files in" in err
    assert not (tmp_path / "home").exists()
    assert embed.import_errors(embed.FACE_MODULES) == {}


DEMO_FACES = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "demo" / "faces"


def test_real_face_analysis_with_the_demo_face_models(tmp_path: Path, monkeypatch, capsys) -> None:
    """No stand-in: insightface's FaceAnalysis runs the demo SCRFD/ArcFace-layout models, which
    "detect" bright 96-px tiles (boxes 160 px around each tile) and give 512-d embeddings."""
    from PIL import ImageDraw

    models = tmp_path / "models"
    (models / "demo-faces").mkdir(parents=True)
    files = {}
    for name in ("det_10g.onnx", "w600k_r50.onnx"):
        (models / "demo-faces" / name).write_bytes((DEMO_FACES / name).read_bytes())
        files[name] = f"demo-faces/{name}"
    (models / "models.json").write_text(json.dumps({"schema_version": 1, "set": "demo", "models": [
        {"id": "demo-faces", "kind": "insightface", "arch": "", "embed_dim": 512, "files": files,
         "provides": ["insightface:buffalo_l"]}]}))  # the app loads FaceAnalysis(name="buffalo_l")
    monkeypatch.setenv(MODELS_ENV, str(models))
    monkeypatch.setenv("ONNX_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a download would land here
    photos = tmp_path / "photos"
    photos.mkdir()
    tiles = {"none": [], "one": [(256, 192)], "two": [(64, 64), (400, 200)]}
    for name, corners in tiles.items():
        im = Image.new("RGB", (640, 480), (0, 0, 0))
        for x, y in corners:
            ImageDraw.Draw(im).rectangle([x, y, x + 96, y + 96], fill=(255, 255, 255))
        im.save(photos / f"{name}.png")

    assert main(["faces", str(photos), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    by_name = {Path(i["path"]).stem: i for i in res["images"]}
    assert {n: i["count"] for n, i in by_name.items()} == {"none": 0, "one": 1, "two": 2}
    for name, corners in tiles.items():
        boxes = [f["bbox"] for f in by_name[name]["faces"]]
        for (x, y) in corners:  # every tile's centre lies inside exactly one box
            cx, cy = x + 48, y + 48
            assert sum(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes) == 1
    assert all(f["group"] > 0 for i in res["images"] for f in i["faces"])  # the recognizer ran
    assert not (tmp_path / "home").exists()
