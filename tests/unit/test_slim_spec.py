"""src/mlfreeze/specs/slim.spec: declarative like full.spec, and torch can never get in whatever the params say."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlfreeze.bundle.freeze import SPECS


def _run(params: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params))
    calls: list[tuple[str, dict[str, Any]]] = []

    def make(kind: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            calls.append((kind, kwargs))
            return SimpleNamespace(pure="pure", scripts=["boot", "rthook", "main"], binaries="bin", datas="datas")
        return build

    ns: dict[str, Any] = {k: make(k) for k in ("Analysis", "PYZ", "EXE", "COLLECT")}
    spec = SPECS / "slim.spec"
    monkeypatch.setattr(sys, "argv", [str(spec), str(path)])
    exec(compile(spec.read_text(), str(spec), "exec"), ns)
    return calls


def test_slim_spec_always_excludes_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"name": "app-0.1.0-linux-cpu-slim", "app": "app", "selftest": "app-selftest", "entry": "main.py",
              "script": "main.py", "module_collection_mode": {}, "selftest_entry": "selftest.py", "pathex": [],
              "hookspath": [],
              "runtime_hooks": [], "hiddenimports": ["mlfreeze_runtime"], "excludes": ["tkinter", "torch"],
              "datas": [], "console": True, "updater": "app-update", "updater_entry": "update.py",
              "updater_excludes": ["torch"]}
    calls = _run(params, tmp_path, monkeypatch)
    analysis, _launcher, _updater = [kw for kind, kw in calls if kind == "Analysis"]
    excludes = analysis["excludes"]
    assert excludes[:2] == ["tkinter", "torch"] and excludes.count("torch") == 1
    assert {"torchvision", "open_clip", "timm", "triton"} <= set(excludes)
    assert [kw["name"] for kind, kw in calls if kind == "EXE"] == ["app-selftest", "app-update", "app"]
