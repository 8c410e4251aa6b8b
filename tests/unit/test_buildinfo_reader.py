"""The one BUILD-INFO reader (mlfreeze_runtime.buildinfo) agrees with its JSON schema (docs/build-info.schema.json)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from release_bundles import build_info, verify_report

from mlfreeze.bundle.buildinfo import verified
from mlfreeze.errors import VerificationError
from mlfreeze_runtime import buildinfo

DOCS = Path(__file__).resolve().parents[2] / "docs" / "build-info.schema.json"


def test_docs_schema_is_the_readers_schema_and_a_valid_2020_12_schema() -> None:
    assert DOCS.read_text(encoding="utf-8") == buildinfo.schema_text(), \
        "regenerate docs/build-info.schema.json from mlfreeze_runtime.buildinfo.schema_text()"
    jsonschema.Draft202012Validator.check_schema(json.loads(DOCS.read_text()))


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    full, lite = build_info("linux-cuda", "full"), build_info("linux-cpu", "lite")
    out: list[tuple[str, dict[str, Any]]] = [("full", full), ("lite", lite)]

    def mutate(name: str, base: dict[str, Any], path: list[Any], value: Any, *, delete: bool = False) -> None:
        doc = copy.deepcopy(base)
        target = doc
        for p in path[:-1]:
            target = target[p]
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        out.append((name, doc))

    mutate("no record", full, ["record"], None, delete=True)
    mutate("record sha not hex", full, ["record", "sha256"], "Z" * 64)
    mutate("negative file count", full, ["record", "files"], -1)
    mutate("bool as count", full, ["record", "files"], True)
    mutate("unknown key", full, ["surprise"], 1)
    mutate("flavor", full, ["flavor"], "medium")
    mutate("verification old summary", full, ["verification"], {"passed": True, "checks": 1, "failed": 0})
    mutate("verification null", full, ["verification"], None)
    mutate("applies false on full", full, ["verification", "applies"], False)
    mutate("report digest", full, ["verification", "report_sha256"], "abc")
    mutate("lite check", lite, ["verification", "check"], "selftest")
    mutate("model without golden flag", full, ["models", 0, "golden"], None, delete=True)
    mutate("model hash", full, ["models", 0, "files", "demo-clip/weights.bin"], "A" * 64)
    mutate("unpinned not strings", full, ["unpinned_goldens"], [1])
    mutate("built_at", full, ["built_at"], "yesterday")
    mutate("git commit", full, ["git_commit"], "abc")
    mutate("git commit null", full, ["git_commit"], None)
    mutate("torch number", full, ["torch"], 2)
    mutate("selftest passed string", full, ["selftest", "passed"], "yes")
    mutate("distributions", full, ["distributions", "torch"], 2)
    mutate("schema 1", full, ["schema_version"], 1)
    return out


@pytest.mark.parametrize(("name", "doc"), _mutations(), ids=[n for n, _ in _mutations()])
def test_reader_accepts_exactly_what_the_schema_accepts(name: str, doc: dict[str, Any]) -> None:
    by_schema = jsonschema.Draft202012Validator(buildinfo.SCHEMA).is_valid(doc)
    by_reader = not buildinfo.errors(doc)
    assert by_reader == by_schema, (name, buildinfo.errors(doc))
    if name in ("full", "lite", "verification null", "git commit null"):
        assert by_reader, buildinfo.errors(doc)


def test_read_names_the_file_and_key(tmp_path: Path) -> None:
    doc = build_info("linux-cuda", "full")
    doc["verification"]["report_sha256"] = "abc"
    doc["record"]["files"] = -3
    (tmp_path / "BUILD-INFO.json").write_text(json.dumps(doc))
    with pytest.raises(buildinfo.BuildInfoError) as err:
        buildinfo.read(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'BUILD-INFO.json'}: key 'verification' matches none")
    assert "(+1 more)" in str(err.value)
    with pytest.raises(buildinfo.BuildInfoError, match="missing"):
        buildinfo.read(tmp_path / "nowhere")
    doc = build_info("linux-cuda", "full")
    buildinfo.write(tmp_path, doc)
    assert buildinfo.read(tmp_path) == doc


def _report(tmp_path: Path, **context: Any) -> Path:
    path = tmp_path / "verify-linux-cuda-full.json"
    path.write_bytes(verify_report("linux-cuda", **context))
    return path


def test_verified_records_exactly_the_report_it_was_given(tmp_path: Path) -> None:
    report = _report(tmp_path)
    v = verified(report, set_name="demo", flavor="full", platform="linux-cuda")
    assert v["report_sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert (v["applies"], v["set"], v["flavor"], v["checks"], v["report"]) == (True, "demo", "full", 31,
                                                                              "verify-report.json")
    assert not buildinfo.errors({**build_info("linux-cuda", "full"), "verification": v})


@pytest.mark.parametrize(("kw", "says"), [
    ({"set_name": "default"}, "verifies set 'demo'"),
    ({"flavor": "slim"}, "verifies flavor 'full'"),
    ({"platform": "linux-cpu"}, "verifies platform 'linux-cuda'"),
])
def test_verified_refuses_another_sets_flavors_or_platforms_report(tmp_path: Path, kw: dict[str, str],
                                                                   says: str) -> None:
    args = {"set_name": "demo", "flavor": "full", "platform": "linux-cuda", **kw}
    with pytest.raises(VerificationError, match=says):
        verified(_report(tmp_path), **args)
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(VerificationError, match="not a verify report"):
        verified(tmp_path / "junk.json", set_name="demo", flavor="full", platform="linux-cuda")
