"""The repository's docs stand alone: nothing refers to a design file outside the repository."""

from __future__ import annotations

from pathlib import Path

OUTSIDE = ("DESIGN" + ".md", "../" + "shared/")
FOLDERS = ("builder", "platforms", "specs", "runtime", "verify", "examples", "docs", "tests", "bench", ".github")
SUFFIXES = {".py", ".md", ".toml", ".json", ".spec", ".yml", ".yaml", ".txt"}


def test_no_file_refers_to_a_design_file_outside_the_repository(root: Path) -> None:
    files = [root / "README.md", root / "pyproject.toml", root / "noxfile.py"]
    for folder in FOLDERS:
        files += [p for p in (root / folder).rglob("*") if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    assert len(files) > 50
    found = [f"{p.relative_to(root)}: {word}" for p in files for word in OUTSIDE
             if word in p.read_text(encoding="utf-8", errors="replace")]
    assert found == []


def test_the_deploy_files_are_the_readme_s_and_probe_the_right_paths(root: Path) -> None:
    import yaml  # type: ignore[import-untyped]

    readme = (root / "README.md").read_text(encoding="utf-8")
    compose = (root / "docs" / "deploy" / "compose.yaml").read_text(encoding="utf-8")
    k8s = (root / "docs" / "deploy" / "kubernetes.yaml").read_text(encoding="utf-8")
    assert compose in readme and k8s in readme
    service = yaml.safe_load(compose)["services"]["search"]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"] and service["user"] == "65532:65532"
    assert "models:/models:ro" in service["volumes"] and service["environment"]["MLFREEZE_MODELS_DIR"] == "/models"
    pod = yaml.safe_load(k8s)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 600
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
