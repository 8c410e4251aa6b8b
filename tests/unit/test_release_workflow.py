"""release.yml and ci.yml agree with the profiles and follow the hardening rules."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlfreeze.platforms.profiles import PROFILE_DIR, all_profiles
from mlfreeze.release.matrix import workflow_problems

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the ML stack (timm, huggingface_hub)")
WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
NAMES = ("ci.yml", "release.yml", "resign.yml")
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<action>[^@\s]+)@(?P<ref>\S+)(?P<comment>.*)$")


def _load(name: str) -> dict[Any, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())  # type: ignore[no-any-return]


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    triggers: dict[str, Any] = workflow.get("on", workflow.get(True)) or {}  # YAML 1.1: bare `on` is True
    return triggers


def test_release_workflow_agrees_with_the_profiles() -> None:
    assert workflow_problems(_load("release.yml"), all_profiles()) == []


def test_a_profile_removed_or_added_makes_the_workflow_disagree(tmp_path: Path) -> None:
    platforms = tmp_path / "platforms"
    shutil.copytree(PROFILE_DIR, platforms, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (platforms / "mac-x64.toml").unlink()
    problems = workflow_problems(_load("release.yml"), all_profiles(platforms))
    assert len(problems) == 1 and "mac-x64" in problems[0]
    extra = dict(all_profiles())
    extra["linux-rocm"] = extra["linux-cpu"]
    problems = workflow_problems(_load("release.yml"), extra)
    assert len(problems) == 1 and "missing: ['linux-rocm']" in problems[0]


def test_a_hand_written_matrix_is_caught() -> None:
    workflow = _load("release.yml")
    workflow["jobs"]["build"]["strategy"]["matrix"] = {"include": [{"platform": "linux-cpu"}]}
    assert any("fromJSON" in p for p in workflow_problems(workflow, all_profiles()))
    workflow = _load("release.yml")
    workflow["jobs"]["build"]["runs-on"] = "ubuntu-24.04"
    assert any("matrix.runner" in p for p in workflow_problems(workflow, all_profiles()))
    workflow = _load("release.yml")
    workflow["jobs"]["matrix"]["steps"][-1]["run"] = "echo 'matrix={}' >> $GITHUB_OUTPUT"
    assert any("mlfreeze.release.matrix" in p for p in workflow_problems(workflow, all_profiles()))


@pytest.mark.parametrize("name", NAMES)
def test_every_action_is_pinned_by_full_sha_with_a_version_comment(name: str) -> None:
    found = 0
    for line in (WORKFLOWS / name).read_text().splitlines():
        if m := USES.match(line):
            found += 1
            assert re.fullmatch(r"[0-9a-f]{40}", m["ref"]), line
            assert re.match(r"\s*#\s*v\d+(\.\d+)*\b", m["comment"]), line
    assert found >= (2 if name == "resign.yml" else 3)


@pytest.mark.parametrize("name", NAMES)
def test_least_privilege_timeouts_concurrency_and_no_persisted_credentials(name: str) -> None:
    workflow = _load(name)
    assert workflow["permissions"] == {}
    assert "group" in workflow["concurrency"]
    for job_name, job in workflow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), job_name
        perms = job.get("permissions", {})
        assert set(perms.values()) <= {"read", "write"}
        writes = [k for k, v in perms.items() if v == "write"]
        allowed = {("release.yml", "release"): ["contents"], ("release.yml", "image"): ["packages"]}
        assert writes == allowed.get((name, job_name), []), job_name
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, job_name


@pytest.mark.parametrize("name", NAMES)
def test_no_expression_is_interpolated_into_a_script(name: str) -> None:
    for job_name, job in _load(name)["jobs"].items():
        for step in job.get("steps", []):
            assert "${{" not in str(step.get("run", "")), (job_name, step.get("name"))


def test_release_triggers_and_publishing() -> None:
    workflow = _load("release.yml")
    triggers = _triggers(workflow)
    assert triggers["push"]["tags"] == ["v*"]
    assert "platform" in triggers["workflow_dispatch"]["inputs"]
    release = workflow["jobs"]["release"]
    assert "startsWith(github.ref, 'refs/tags/v')" in release["if"]
    runs = "\n".join(str(s.get("run", "")) for s in release["steps"])
    assert 'mlfreeze release dist --version "$TAG"' in runs
    assert "sha256sum -c SHA256SUMS" in runs
    assert "gh release create" in runs
    publish = next(s for s in release["steps"] if "gh release" in str(s.get("run", "")))
    assert publish["env"]["GH_TOKEN"] == "${{ github.token }}"
    build = workflow["jobs"]["build"]
    build_text = yaml.safe_dump(build)
    assert "hashFiles('src/mlfreeze/specs/models.toml')" in build_text and "MLFREEZE_CACHE" in build_text
    assert "GITHUB_STEP_SUMMARY" in build_text and "sizes-${PLATFORM}.md" in build_text


def test_ci_lints_tests_and_plans_every_profile() -> None:
    workflow = _load("ci.yml")
    triggers = _triggers(workflow)
    assert "push" in triggers and "pull_request" in triggers
    runs = {name: "\n".join(str(s.get("run", "")) for s in job["steps"]) for name, job in workflow["jobs"].items()}
    assert "nox -s lint" in runs["lint"] and "nox -s tests" in runs["tests"]
    assert "python -m mlfreeze.release.matrix --names" in runs["plan"]
    assert 'mlfreeze plan --platform "$platform" --json' in runs["plan"]
    assert all(job["runs-on"].startswith("ubuntu-") for job in workflow["jobs"].values())


def test_the_merge_job_signs_and_a_schedule_resigns_with_keys_from_secrets() -> None:
    release = _load("release.yml")["jobs"]["release"]
    sign = next(s for s in release["steps"] if "mlfreeze publish --release" in str(s.get("run", "")))
    assert {f"MLFREEZE_TUF_KEY_{r}" for r in ("TARGETS", "SNAPSHOT", "TIMESTAMP")} <= set(sign["env"])
    assert "MLFREEZE_TUF_KEY_ROOT" not in sign["env"]  # root stays offline
    assert all(str(v).startswith("${{ secrets.") for k, v in sign["env"].items() if k.startswith("MLFREEZE_TUF"))
    run = sign["run"]
    assert run.index("mlfreeze publish") < run.index("s3://$BUCKET/blobs/")
    assert "--packs" in run and "releases/download/$TAG/{name}" in run  # MLFREEZE_UPDATE_TRANSPORT=release-assets
    steps = [str(s.get("run", "")) for s in release["steps"]]
    at = {what: next(i for i, r in enumerate(steps) if what in r)
          for what in ("mlfreeze publish --release", "gh release create", "metadata/timestamp.json")}
    assert at["mlfreeze publish --release"] < at["gh release create"] < at["metadata/timestamp.json"], \
        "metadata goes up last, after the blobs, targets and the release's packs it names"
    assert "update-repo/packs/*.pack" in steps[at["gh release create"]]
    resign = _load("resign.yml")
    assert "schedule" in _triggers(resign)
    (job,) = resign["jobs"].values()
    step = next(s for s in job["steps"] if "--resign" in str(s.get("run", "")))
    assert set(k for k in step["env"] if k.startswith("MLFREEZE_TUF")) == {"MLFREEZE_TUF_KEY_SNAPSHOT",
                                                                          "MLFREEZE_TUF_KEY_TIMESTAMP"}


def test_an_image_job_per_linux_profile_smoke_tests_pushes_and_hands_its_digest_to_the_release() -> None:
    workflow = _load("release.yml")
    job = workflow["jobs"]["image"]
    assert job["needs"] == ["matrix", "build"]
    assert str(job["strategy"]["matrix"]).replace(" ", "") == "${{fromJSON(needs.matrix.outputs.images)}}"
    assert job["runs-on"].replace(" ", "") == "${{matrix.runner}}"
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    # only the matrix decides (a project with [tool.mlfreeze.serve]); how it serves is the bundle's contract
    assert job["if"].replace(" ", "") == "needs.matrix.outputs.has_images=='true'"
    runs = "\n".join(str(s.get("run", "")) for s in job["steps"])
    for needed in ("mlfreeze image \"$bundle\" --load", "podman run", "--read-only", "--cap-drop=ALL", "curl -fsS",
                   '["serve"]', "${readiness}", "${port}", "--push \"ghcr.io/${OWNER,,}/${app}:${tag}\"",
                   "skopeo login ghcr.io"):
        assert needed in runs, needed
    text = (WORKFLOWS / "release.yml").read_text()
    for gone in ("MLFREEZE_IMAGES", "MLFREEZE_SERVE_COMMAND", "MLFREEZE_READINESS", "MLFREEZE_SERVE_PORT", "--command"):
        assert gone not in text, gone
    assert not set(job.get("env") or {}) - {"PLATFORM"}
    assert runs.index("podman run") < runs.index("--push"), "smoke-tested before it is pushed"
    assert 'if [ "$GITHUB_REF_TYPE" = tag ]' in runs  # only a tag build pushes
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "dist/image/*/image.json"
    release = workflow["jobs"]["release"]
    assert "image" in release["needs"] and "needs.image.result == 'skipped'" in release["if"]
    download = [s for s in release["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact@")]
    assert any(s["with"].get("pattern") == "image-*" and s["with"].get("path") == "dist/image" for s in download)
    outputs = workflow["jobs"]["matrix"]["outputs"]
    assert "steps.matrix.outputs.images" in outputs["images"] and "has_images" in outputs["has_images"]


def test_linux_builds_run_in_the_manylinux_container_and_sign_with_environment_secrets() -> None:
    from mlfreeze.release.matrix import build_matrix

    workflow = _load("release.yml")
    build = workflow["jobs"]["build"]
    assert build["container"] == "${{ matrix.container }}" and build["environment"] == "release-signing"
    entries = {e["platform"]: e for e in build_matrix(all_profiles())["include"]}
    assert {p: e["container"] for p, e in entries.items() if e["host_os"] == "linux"} == \
        dict.fromkeys(("linux-cpu", "linux-cu118", "linux-cuda"), "quay.io/pypa/manylinux_2_28_x86_64")
    assert all(e["container"] == "" for e in entries.values() if e["host_os"] != "linux")
    steps = build["steps"]
    names = [s.get("name", "") for s in steps]
    # setup-python only outside the container; inside it, the distribution's Python with a shared libpython
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert setup["if"] == "matrix.container == ''"
    inside = [s for s in steps if s.get("if") == "matrix.container != ''"]
    assert any("python${PYTHON_VERSION}-devel" in s.get("run", "") for s in inside)
    # signing material before the build (which signs before RECORD), from secrets, then removed
    nox = names.index("nox -s ${{ matrix.session }}")
    windows = next(i for i, s in enumerate(steps) if s.get("if") == "matrix.host_os == 'windows'")
    macos = next(i for i, s in enumerate(steps) if s.get("if") == "matrix.host_os == 'macos'")
    assert windows < nox and macos < nox
    assert "secrets.WINDOWS_SIGNING_PFX_BASE64" in str(steps[windows]["env"])
    assert "security import" in steps[macos]["run"]
    assert set(steps[nox]["env"]) == {"MLFREEZE_SIGN_PFX_PASSWORD", "MLFREEZE_NOTARY_APPLE_ID",
                                      "MLFREEZE_NOTARY_TEAM_ID", "MLFREEZE_NOTARY_PASSWORD"}
    assert "always()" in steps[-1]["if"] and "delete-keychain" in steps[-1]["run"]
    assert workflow_problems(workflow, all_profiles()) == []
    del build["container"]
    assert any("matrix.container" in p for p in workflow_problems(workflow, all_profiles()))
