"""Nothing the install plan installs normally pulls a second member of a distribution family.

Walks the real ``Requires-Dist`` metadata of the installed stack (this environment is built
by the same plan): from every requirement pip resolves (torch, torchvision, the profile's
onnxruntime, the stack's requirements and insightface's listed requirements), transitively,
without entering what the plan installs ``--no-deps``. Every family member reached must be
the one the plan chose (opencv-python-headless, faiss-cpu, ...).
"""

from __future__ import annotations

import importlib.metadata as md
import os

import pytest
from packaging.requirements import Requirement

from mlfreeze.platforms.profiles import canonical_name, load_profile, load_stack, requirement_name
from mlfreeze.project.doctor import planned_members

pytest.importorskip("torch")
PLATFORM = os.environ.get("MLFREEZE_TEST_PLATFORM", "linux-cuda")


def _requires(dist: str) -> list[Requirement]:
    try:
        lines = md.requires(dist) or []
    except md.PackageNotFoundError:
        return []
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def reached(roots: list[str], no_deps: set[str]) -> dict[str, str]:
    """``{distribution: the root it was reached from}`` for everything pip would install."""
    seen: dict[str, str] = {}
    todo = [(canonical_name(r), canonical_name(r)) for r in roots]
    while todo:
        name, root = todo.pop()
        if name in seen:
            continue
        seen[name] = root
        if name in no_deps:
            continue
        todo += [(canonical_name(r.name), root) for r in _requires(name)]
    return seen


def test_no_normally_installed_requirement_pulls_a_second_family_member() -> None:
    profile, stack = load_profile(PLATFORM), load_stack()
    roots = ["torch", "torchvision", profile.onnxruntime.package,
             *(requirement_name(r) for r in stack.requirements + stack.no_deps_requirements)]
    no_deps = {requirement_name(r) for r in stack.no_deps}
    seen = reached(roots + sorted(no_deps), no_deps)
    assert "numpy" in seen and "torch" in seen and "insightface" in seen  # the walk really walked
    planned = planned_members(profile, stack)
    for module, members in stack.families.items():
        found = {m: seen[m] for m in members if m in seen}
        assert len(found) <= 1, f"{module}: {found} (distribution: pulled in via) would mix"
        if module in planned:
            assert set(found) == {planned[module]}, f"{module}: {found} beside the planned {planned[module]}"


def test_insightface_would_pull_opencv_python_if_it_were_not_installed_no_deps() -> None:
    """Why insightface stays --no-deps: its own metadata asks for onnxruntime and opencv-python."""
    pytest.importorskip("insightface")
    names = {canonical_name(r.name) for r in _requires("insightface")}
    assert {"onnxruntime", "opencv-python"} <= names
    assert "insightface==2.1" in load_stack().no_deps
