"""Frozen, ``torch.jit.script`` works on an open_clip model and on an app function.

TorchScript compiles from source (``inspect.getsource``): collected as byte-code only, a frozen
app failed with "could not get source code". hook-open_clip.py keeps open_clip's sources
(``module_collection_mode = "pyz+py"``) and ``[tool.mlfreeze] module_collection_mode`` does the same
for the app's own packages. This freezes a tiny project whose pyproject names its package
``jitapp = "pyz+py"``, through the real ``load_config`` -> ``spec_params`` -> PyInstaller path
(the lite spec, with the clip part's modules kept in), and runs the executable: it scripts an
open_clip model built from the demo config and an app function, and checks their results. The
same executable with the app's source file removed fails to script the function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "src" / "mlfreeze" / "specs" / "demo" / "demo_clip_config.json"

APP = '''
import json, sys
import torch
from jitapp.ops import scaled_sum


def main():
    import open_clip
    from open_clip import factory
    cfg = json.load(open(sys.argv[1]))["model_cfg"]
    factory._MODEL_CONFIGS["jit-demo"] = cfg
    model = open_clip.create_model("jit-demo", pretrained=None).eval()
    scripted_model = torch.jit.script(model.visual.transformer.resblocks[0].mlp)  # open_clip's own source
    x = torch.ones(1, 2, cfg["vision_cfg"]["width"])
    same = bool(torch.allclose(scripted_model(x), model.visual.transformer.resblocks[0].mlp(x), atol=1e-6))
    fn = torch.jit.script(scaled_sum)  # the app's own function
    print(json.dumps({"model": same, "app": float(fn(torch.tensor([1.0, 2.0, 3.0]), 2.0))}))


if __name__ == "__main__":
    main()
'''

OPS = '''
import torch


def scaled_sum(x: torch.Tensor, k: float) -> torch.Tensor:
    return (x * k).sum()
'''


def project(root: Path, *, keep_sources: bool) -> Path:
    (root / "jitapp").mkdir(parents=True)
    (root / "jitapp" / "__init__.py").write_text("")
    (root / "jitapp" / "ops.py").write_text(textwrap.dedent(OPS))
    (root / "jit_main.py").write_text(textwrap.dedent(APP))
    mode = 'module_collection_mode = { jitapp = "pyz+py" }\n' if keep_sources else ""
    (root / "pyproject.toml").write_text('[project]\nname = "jitapp"\nversion = "0.1.0"\n\n[tool.mlfreeze]\n'
                                         f'app = "jitapp"\nentry = "jit_main.py"\nuses = ["clip"]\n{mode}')
    return root


def freeze(root: Path) -> Path:
    from mlfreeze.bundle.freeze import SPECS, load_app_config, spec_params, stack_modules

    app = load_app_config(root)
    hidden, _ = stack_modules(("clip",), "full")  # the clip part, as a full bundle takes it
    params = spec_params(app=app, flavor="lite", name="jitapp", excludes=["tkinter"], hiddenimports=hidden)
    (root / "params.json").write_text(json.dumps(params))
    subprocess.run([sys.executable, "-m", "PyInstaller", str(SPECS / "lite.spec"), "--noconfirm", "--log-level",
                    "WARN", "--distpath", str(root / "dist"), "--workpath", str(root / "build"), "--",
                    str(root / "params.json")], check=True, cwd=root, timeout=3000)
    return root / "dist" / "jitapp" / "jitapp"


def test_frozen_app_scripts_an_open_clip_model_and_its_own_function(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    root = project(tmp_path / "p", keep_sources=True)
    exe = freeze(root)
    assert (exe.parent / "_internal" / "jitapp" / "ops.py").is_file()  # the key kept the app's source
    assert (exe.parent / "_internal" / "open_clip" / "transformer.py").is_file()  # hook-open_clip kept open_clip's
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    done = subprocess.run([str(exe), str(DEMO_CONFIG)], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"model": True, "app": 12.0}
    # without the source, the same function cannot be scripted: remove it and run again
    (exe.parent / "_internal" / "jitapp" / "ops.py").unlink()
    done = subprocess.run([str(exe), str(DEMO_CONFIG)], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert done.returncode != 0 and "source" in done.stderr.lower(), done.stderr[-3000:]
