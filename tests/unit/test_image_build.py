"""mlfreeze image on a hand-made bundle (tests/release_bundles.py) and a small base tar: what the
layout holds (index -> manifest -> config -> layers, all content-addressed), the container it
describes (non-root numeric user, entrypoint, port, probes: from the app's serve contract),
reproducibility, and the refusals."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from release_bundles import EPOCH, fake_bundles_have_no_closure, make_bundle  # noqa: F401 (fixture)

from mlfreeze import cli
from mlfreeze.errors import IntegrityError, UsageError
from mlfreeze.release import image

SERVE = {"serve": {"args": ["serve", "--host", "{host}", "--workers", "2"], "port_env": "APP_PORT",
                   "env": {"APP_LISTEN": "{host}:{port}"}, "ready": "/readyz", "live": "/livez"}}
STATUS = b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u14\n\n" \
         b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\n"


def _base(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in (("./lib/libc.so.6", b"libc"), ("./var/lib/dpkg/status", STATUS),
                           ("./etc/passwd", b"root:x:0:0::/root:/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest.split(":")[1]
    return data


def _server(dist: Path, platform: str = "linux-cpu", flavor: str = "full", **kw) -> Path:
    return make_bundle(dist, platform, flavor, contract=SERVE, **kw)


def _build(tmp: Path, bundle: Path, epoch: str = EPOCH, out: str = "image", **kw) -> image.ImageResult:
    plan = image.plan_image(bundle, port=9000, base_tar=_base(tmp / "base.tar"), out_root=tmp / out,
                            env={"SOURCE_DATE_EPOCH": epoch}, **kw)
    return image.build_image(plan, log=lambda _line: None)


def test_the_layout_describes_a_non_root_read_only_server(tmp_path: Path) -> None:
    bundle = _server(tmp_path / "dist")
    result = _build(tmp_path, bundle)
    layout = result.layout
    assert layout == tmp_path / "image" / bundle.name
    index = json.loads((layout / "index.json").read_text())
    (desc,) = index["manifests"]
    assert desc["digest"] == result.digest and desc["annotations"]["org.opencontainers.image.ref.name"] == \
        "0.1.0-linux-cpu-full"
    manifest = json.loads(_blob(layout, result.digest))
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    assert len(manifest["layers"]) == 3 == len(config["rootfs"]["diff_ids"])
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        import gzip

        assert f"sha256:{hashlib.sha256(gzip.decompress(_blob(layout, layer['digest']))).hexdigest()}" == diff_id
    c = config["config"]
    assert c["User"] == "65532:65532" and c["Entrypoint"] == ["/opt/photo-search/photo-search"]
    # the serve contract: {host} is the container's 0.0.0.0, {port} and port_env the container port
    assert c["Cmd"] == ["serve", "--host", "0.0.0.0", "--workers", "2"] and c["ExposedPorts"] == {"9000/tcp": {}}
    assert "APP_PORT=9000" in c["Env"] and "HOME=/tmp" in c["Env"] and "HOST=0.0.0.0" in c["Env"]
    assert "APP_LISTEN=0.0.0.0:9000" in c["Env"] and not any(e.startswith("PORT=") for e in c["Env"])
    assert c["Labels"]["io.mlfreeze.readiness"] == "/readyz" and c["Labels"]["io.mlfreeze.liveness"] == "/livez"
    assert c["Labels"]["io.mlfreeze.flavor"] == "full" and c["Labels"]["io.mlfreeze.port"] == "9000"
    assert config["architecture"] == "amd64" and config["created"] == "2026-01-01T00:00:00Z"
    layers = [tarfile.open(fileobj=io.BytesIO(_blob(layout, m["digest"])), mode="r:gz")  # noqa: SIM115
              for m in manifest["layers"]]
    base, app, models = ({m.name: m for m in t.getmembers()} for t in layers)
    assert "app:x:65532:65532" in layers[0].extractfile(base["etc/passwd"]).read().decode()  # ours, not the tar's
    assert base["tmp"].mode == 0o1777 and "lib/libc.so.6" in base
    assert "opt/photo-search/photo-search" in app and not any("/models/" in n for n in app)
    assert ".mlfreeze-stamp" not in "".join(app) and "opt/photo-search/RECORD" in app
    assert "opt/photo-search/models/demo-clip/weights.bin" in models
    assert all(m.uid == 0 and not m.mode & 0o022 for t in (app, models) for m in t.values())
    record = json.loads((layout / "image.json").read_text())
    assert record["digest"] == result.digest and record["base"]["packages"] == {"libc6": "2.36-9+deb12u14",
                                                                                  "zlib1g": "1:1.2.13.dfsg-1"}
    assert image.run_line(result).endswith("-p 127.0.0.1:9000:9000 localhost/photo-search:0.1.0-linux-cpu-full")
    assert record["serve"]["port_env"] == "APP_PORT" and record["pushed"] == []
    assert (record["serve"]["readiness"], record["serve"]["liveness"], record["serve"]["port"]) == \
        ("/readyz", "/livez", 9000)
    containerfile = (layout / "Containerfile").read_text()
    assert containerfile.count("ADD blobs/sha256/") == 3 and 'ENTRYPOINT ["/opt/photo-search/photo-search"]' in \
        containerfile and "USER 65532:65532" in containerfile and "FROM scratch" in containerfile
    assert sorted(p.name for p in (layout / "blobs" / "sha256").iterdir()) == sorted(
        d.split(":")[1] for d in [result.digest, manifest["config"]["digest"], *(m["digest"] for m in
                                                                                 manifest["layers"])])


def test_same_inputs_same_digest_another_epoch_another(tmp_path: Path) -> None:
    bundle = _server(tmp_path / "dist")
    first = _build(tmp_path, bundle)
    again = _build(tmp_path, bundle, out="again")
    later = _build(tmp_path, bundle, epoch=str(int(EPOCH) + 1), out="later")
    assert first.digest == again.digest != later.digest
    assert (first.layout / "Containerfile").read_bytes() == (again.layout / "Containerfile").read_bytes()


def test_a_rebuild_replaces_the_folder_and_leaves_nothing_else(tmp_path: Path) -> None:
    bundle = _server(tmp_path / "dist")
    first = _build(tmp_path, bundle)
    (first.layout / "stale").write_text("x")
    again = _build(tmp_path, bundle)
    assert again.digest == first.digest and not (again.layout / "stale").exists()
    assert sorted(p.name for p in (tmp_path / "image").iterdir()) == [bundle.name]


@pytest.mark.parametrize(("platform", "flavor", "match"), [
    ("linux-cpu", "lite", "a lite bundle has no models and no self-test"),
    ("win-cpu", "full", "images are Linux containers; win-cpu is a windows bundle"),
    ("mac-arm64", "full", "mac-arm64 is a macos bundle"),
])
def test_lite_and_other_systems_are_refused_with_one_line(tmp_path: Path, platform: str, flavor: str,
                                                          match: str) -> None:
    bundle = _server(tmp_path / "dist", platform, flavor)
    with pytest.raises(UsageError, match=match):
        image.plan_image(bundle, env={})


def test_the_liveness_path_defaults_to_the_readiness_path_and_the_port_may_be_an_argument(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "dist", "linux-cpu", "slim",
                         contract={"serve": {"args": ["--listen", "{host}:{port}"], "ready": "/health"}})
    plan = image.plan_image(bundle, env={})
    assert plan.serve == image.ServeSpec(command=("--listen", "0.0.0.0:8080"), port=8080, port_env=None,
                                         readiness="/health", liveness="/health")
    assert not any(e.startswith("PORT=") for e in image.environment(plan))


@pytest.mark.parametrize(("contract", "match"), [
    (None, r"declares no \[tool.mlfreeze.serve\]"),
    ({"smoke": {"args": ["--version"]}}, r"declares no \[tool.mlfreeze.serve\]"),
    ({"serve": {"args": ["--host", "{host}"], "port_env": "PORT"}}, "serve.ready is missing"),
])
def test_a_bundle_without_a_serve_contract_is_refused_with_one_line(tmp_path: Path, contract: dict | None,
                                                                    match: str, capsys: pytest.CaptureFixture[str]
                                                                    ) -> None:
    bundle = make_bundle(tmp_path / "dist", "linux-cpu", "full", contract=contract)
    with pytest.raises(UsageError, match=match):
        image.plan_image(bundle, env={})
    assert cli.main(["image", str(bundle), "--base-tar", str(_base(tmp_path / "b.tar"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlfreeze image: error:" in err[0] and bundle.name in err[0], err
    assert not (tmp_path / "dist" / "image").exists()


def test_bad_serve_data_and_a_missing_bundle_are_usage_errors(tmp_path: Path) -> None:
    bundle = _server(tmp_path / "dist")
    for serve, match in ((image.ServeSpec(port=0), "not a TCP port"), (image.ServeSpec(port_env="MY-PORT"),
                         "not an environment variable"), (image.ServeSpec(readiness="readyz"), "absolute URL path")):
        with pytest.raises(UsageError, match=match):
            image.plan_image(bundle, serve=serve, env={})
    with pytest.raises(UsageError, match="not a TCP port"):
        image.plan_image(bundle, port=70000, env={})
    with pytest.raises(UsageError, match="not a whole number"):
        image.plan_image(bundle, env={"SOURCE_DATE_EPOCH": "yesterday"})
    with pytest.raises(UsageError, match="--uid 0"):
        image.plan_image(bundle, uid=0, env={})
    with pytest.raises(UsageError, match="not a folder"):
        image.plan_image(tmp_path / "nope", env={})
    with pytest.raises(UsageError, match="BUILD-INFO"):
        image.plan_image(tmp_path, env={})


def test_a_bundle_that_differs_from_its_record_is_not_imaged(tmp_path: Path) -> None:
    bundle = _server(tmp_path / "dist")
    (bundle / "models" / "demo-clip" / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="weights.bin"):
        image.build_image(image.plan_image(bundle, base_tar=_base(tmp_path / "b.tar"), env={}),
                          log=lambda _line: None)
    assert not (tmp_path / "dist" / "image").exists() or not any((tmp_path / "dist" / "image").iterdir())


def test_the_cli_prints_the_digest_and_lite_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    bundle = _server(tmp_path / "dist")
    assert cli.main(["image", str(bundle), "--base-tar", str(_base(tmp_path / "b.tar"))]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["tag"] == "0.1.0-linux-cpu-full" and Path(out["image"]) == tmp_path / "dist" / "image" / bundle.name
    lite = _server(tmp_path / "dist2", "linux-cpu", "lite")
    assert cli.main(["image", str(lite)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlfreeze image: error:") and "lite" in err[0]


def test_release_records_the_image_digest_and_writes_the_image_sbom(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from mlfreeze.release import assemble

    dist = tmp_path / "dist"
    bundle = _server(dist)
    make_bundle(dist, "linux-cpu", "lite")
    result = image.build_image(image.plan_image(bundle, base_tar=_base(tmp_path / "b.tar"),
                                                env={"SOURCE_DATE_EPOCH": EPOCH}), log=lambda _line: None)
    record = json.loads((result.layout / "image.json").read_text())
    record["pushed"] = [{"ref": "ghcr.io/acme/photo-search:0.1.0-linux-cpu-full", "digest": result.digest}]
    (result.layout / "image.json").write_text(json.dumps(record))
    out = assemble.release(dist, env={"SOURCE_DATE_EPOCH": EPOCH}).directory
    manifest = json.loads((out / "release-manifest.json").read_text())
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "release-manifest.schema.json").read_text())
    jsonschema.validate(manifest, schema)
    assets = {a["bundle"]: a for a in manifest["assets"]}
    assert "image" not in assets[bundle.name.replace("-full", "-lite")]
    img = assets[bundle.name]["image"]
    assert img["digest"] == result.digest and img["tag"] == "0.1.0-linux-cpu-full"
    assert img["pushed"][0]["ref"].startswith("ghcr.io/acme/") and img["base"]["packages"]["libc6"]
    sums = dict(reversed(line.split("  ")) for line in (out / "SHA256SUMS").read_text().splitlines())
    assert img["sbom"] == f"{bundle.name}.image.cdx.json" and img["sbom"] in sums
    doc = json.loads((out / img["sbom"]).read_text())
    top = doc["metadata"]["component"]
    assert top["type"] == "container" and top["version"] == result.digest
    assert top["purl"].startswith("pkg:oci/photo-search@sha256%3A") and "repository_url=ghcr.io/acme/photo-search" \
        in top["purl"]
    purls = {c.get("purl") for c in doc["components"]}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-bookworm" in purls
    # the image record of another bundle is refused, naming it
    record["bundle"] = "someone-else"
    (result.layout / "image.json").write_text(json.dumps(record))
    from mlfreeze.errors import ConfigError

    with pytest.raises(ConfigError, match="someone-else"):
        assemble.release(dist, env={"SOURCE_DATE_EPOCH": EPOCH})
