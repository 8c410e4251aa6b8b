"""`mlfreeze lock`: what a lock is resolved from (pure), its header digest and staleness."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.errors import FreezeError, UsageError
from mlfreeze.platforms.profiles import all_profiles, load_profile, load_stack
from mlfreeze.project import lock
from mlfreeze.project.config import load_config

CHECKOUT = Path(__file__).resolve().parents[2]  # this repository (mlfreeze may be installed elsewhere)


def _project(tmp_path: Path, uses: str = '["clip"]', deps: str = '["rich>=13"]') -> Path:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "clipdemo"\nversion = "1.0"\ndependencies = {deps}\n\n'
        f'[tool.mlfreeze]\napp = "clipdemo"\nentry = "app.py"\nuses = {uses}\n')
    return tmp_path


def test_clip_only_lock_has_torch_and_no_onnxruntime_or_insightface(tmp_path):
    inputs = lock.plan_lock(load_profile("linux-cuda"), load_stack(), load_config(_project(tmp_path)))
    reqs = inputs.requirements
    assert "torch==2.14.1" in reqs and "torchvision==0.29.1" in reqs and "open-clip-torch>=3.3" in reqs
    assert not [r for r in reqs if r.startswith(("onnxruntime", "insightface", "opencv", "faiss"))]
    assert "rich>=13" in reqs and lock.PYINSTALLER in reqs  # the project's own dependencies, PyInstaller
    assert (inputs.python, inputs.python_platform, inputs.torch_index) == ("3.11", "x86_64-manylinux_2_28", "")


def test_full_stack_lock_holds_exactly_the_profiles_onnxruntime(tmp_path):
    cfg = load_config(_project(tmp_path, uses='["clip", "faces", "faiss"]'))
    for profile in all_profiles().values():
        inputs = lock.plan_lock(profile, load_stack(), cfg)
        ort = [r for r in inputs.requirements if r.startswith("onnxruntime")]
        assert ort == [f"{profile.onnxruntime.package}=={profile.onnxruntime.version}"], profile.name
        assert f"{profile.onnxruntime.package}=={profile.onnxruntime.version}" in inputs.overrides
        dropped = {o.split(" ;")[0] for o in inputs.overrides if o.endswith(lock.NEVER)}
        assert dropped == {"onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "opencv-python"} - {
            profile.onnxruntime.package}
        assert "insightface==2.1" in inputs.requirements


def test_slim_variant_has_no_torch_but_onnxruntime(tmp_path):
    inputs = lock.plan_lock(load_profile("linux-cpu"), load_stack(), load_config(_project(tmp_path)), variant="slim")
    assert not [r for r in inputs.requirements if r.startswith(("torch", "torchvision", "open-clip-torch"))]
    profile = load_profile("linux-cpu")
    assert f"{profile.onnxruntime.package}=={profile.onnxruntime.version}" in inputs.requirements
    assert lock.lock_name("linux-cpu", "slim") == "linux-cpu-slim.txt"
    assert lock.variant_for(("slim",)) == "slim" and lock.variant_for(("full", "slim")) == ""
    with pytest.raises(UsageError):
        lock.lock_name("linux-cpu", "fat")


def test_a_slim_lock_overrides_away_the_torch_an_apps_own_dependencies_ask_for(tmp_path):
    """A real CLIP app depends on open-clip-torch (which requires torch): its slim lock still holds no
    torch, torchvision or open_clip, whoever asks for them; the torch lock keeps them."""
    root = _project(tmp_path, deps='["open-clip-torch>=3.3", "torch>=2", "rich>=13"]')
    slim = lock.plan_lock(load_profile("linux-cuda"), load_stack(), load_config(root), variant="slim")
    never = {o.split(" ;")[0] for o in slim.overrides if o.endswith(lock.NEVER)}
    assert {"torch", "torchvision", "open-clip-torch"} <= never
    assert "onnxruntime-gpu" not in never and "rich>=13" in slim.requirements
    full = lock.plan_lock(load_profile("linux-cuda"), load_stack(), load_config(root))
    assert not {"torch", "torchvision", "open-clip-torch"} & {o.split(" ;")[0] for o in full.overrides}


def test_a_clip_app_with_slim_beside_full_locks_onnxruntime_with_torch(tmp_path):
    """One environment freezes every flavor of a build: with slim among the project's flavors the torch
    lock also holds the profile's onnxruntime (the slim bundle's CLIP), and the lock is stale until then."""
    root = _project(tmp_path)
    profile = load_profile("linux-cuda")
    plain = lock.plan_lock(profile, load_stack(), load_config(root))
    with (root / "pyproject.toml").open("a") as f:
        f.write('flavors = ["full", "lite", "slim"]\n')
    both = lock.plan_lock(profile, load_stack(), load_config(root))
    ort = f"{profile.onnxruntime.package}=={profile.onnxruntime.version}"
    assert ort not in plain.requirements and ort in both.requirements and "torch==2.14.1" in both.requirements
    assert plain.requirements_text() != both.requirements_text()  # a lock of the first is stale for the second


def test_torch_index_profiles_pass_their_index_to_uv(tmp_path):
    inputs = lock.plan_lock(load_profile("win-cuda"), load_stack(), load_config(_project(tmp_path)))
    cmd = lock.compile_command(inputs, requirements=Path("r.in"), overrides=Path("o.txt"), output=Path("l.txt"))
    assert cmd[cmd.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cu126"
    assert cmd[cmd.index("--python-platform") + 1] == "x86_64-pc-windows-msvc"
    assert "--generate-hashes" in cmd and cmd[cmd.index("--override") + 1] == "o.txt"


def test_pip_config_becomes_uv_index_options():
    listed = ("global.cert='/etc/ssl/certs/ca.crt'\n"
              "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'\n"
              "global.find-links='/opt/wheels'\n:env:.find-links='/opt/wheels'\n"
              "global.index-url='https://pypi.org/simple'\ninstall.index-url='https://mirror/simple'\n")
    assert lock.pip_index_options(listed) == (
        "--index-url", "https://mirror/simple", "--extra-index-url", "file:///opt/a/simple",
        "--extra-index-url", "file:///opt/b/simple", "--find-links", "/opt/wheels")
    assert lock.pip_index_options("") == ()


def test_digest_changes_with_any_input_and_staleness_follows(tmp_path):
    root = _project(tmp_path)
    cfg, profile = load_config(root), load_profile("linux-cuda")
    inputs = lock.plan_lock(profile, load_stack(), cfg)
    stack = CHECKOUT / "src" / "mlfreeze" / "platforms" / "stack.toml"
    digest = lock.digest_for(inputs, cfg, profile, stack)
    assert lock.staleness(cfg, profile) == f"{root / 'locks' / 'linux-cuda.txt'} is missing"
    (root / "locks").mkdir()
    body = "torch==2.14.1 \\\n    --hash=sha256:00\n"
    (root / "locks" / "linux-cuda.txt").write_text(lock.header(inputs, digest) + body)
    assert lock.recorded_digest(root / "locks" / "linux-cuda.txt") == digest
    assert lock.staleness(cfg, profile) is None
    # a version bump, a comment or a budget does not change what resolves: the lock stays fresh
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text("# a comment\n" + text.replace('version = "1.0"', 'version = "1.1"')
                                         + '\n[tool.mlfreeze.budgets]\nlite = "60 MB"\n')
    assert lock.staleness(load_config(root), profile) is None
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text().replace("rich>=13", "rich>=14"))
    problem = lock.staleness(load_config(root), profile)
    assert problem is not None and "stale" in problem
    other = lock.inputs_digest(inputs, pyproject=b"a", profile_toml=b"b", stack_toml=b"c")
    assert other != lock.inputs_digest(inputs, pyproject=b"a", profile_toml=b"b", stack_toml=b"d")


def test_onnxruntime_trap_check_on_a_resolved_lock():
    profile = load_profile("linux-cuda")
    good = "onnxruntime-gpu==1.31.1 \\\n    --hash=sha256:aa\nopencv-python-headless==4.10.0.84 \\\n"
    lock.check_single_onnxruntime(good, profile)
    with pytest.raises(FreezeError, match="onnxruntime beside onnxruntime-gpu"):
        lock.check_single_onnxruntime(good + "onnxruntime==1.31.1 \\\n    --hash=sha256:bb\n", profile)
    assert lock.pinned(good) == {"onnxruntime-gpu": "1.31.1", "opencv-python-headless": "4.10.0.84"}


def test_committed_linux_cuda_lock_is_fresh_and_hashed():
    cfg = load_config(CHECKOUT)
    assert lock.staleness(cfg, load_profile("linux-cuda")) is None, "run `mlfreeze lock --platform linux-cuda`"
    text = (CHECKOUT / "locks" / "linux-cuda.txt").read_text()
    names = lock.pinned(text)
    assert names["onnxruntime-gpu"] == "1.31.1" and "onnxruntime" not in names and "opencv-python" not in names
    assert names["torch"] == "2.14.1" and text.count("--hash=sha256:") >= len(names)


def test_build_info_records_the_locks_sha256(tmp_path):
    import hashlib

    from mlfreeze.bundle.freeze import lock_digest

    assert lock_digest(tmp_path, "linux-cuda", "full") is None
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "linux-cuda.txt").write_text("torch==1 \\\n    --hash=sha256:00\n")
    want = hashlib.sha256((tmp_path / "locks" / "linux-cuda.txt").read_bytes()).hexdigest()
    assert lock_digest(tmp_path, "linux-cuda", "full") == want
    assert lock_digest(tmp_path, "linux-cuda", "slim") is None  # a slim-only build has its own lock


def test_lock_workflow_covers_every_profile_on_its_runner():
    import yaml

    wf = yaml.safe_load((CHECKOUT / ".github" / "workflows" / "lock.yml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    options = on["workflow_dispatch"]["inputs"]["platform"]["options"]
    assert options == ["all", *sorted(all_profiles())]
    job = wf["jobs"]["lock"]
    assert job["runs-on"] == "${{ matrix.runner }}" and "matrix" in job["needs"]
    runs = "\n".join(str(s.get("run", "")) for s in job["steps"])
    assert 'mlfreeze lock --platform "$PLATFORM"' in runs and "--check" in runs
    upload = next(s for s in job["steps"] if "upload-artifact" in str(s.get("uses", "")))
    assert upload["with"]["path"] == "locks/${{ matrix.platform }}*.txt"
    assert wf["permissions"] == {} and job["permissions"] == {"contents": "read"}


def test_slim_lock_inputs_have_no_torch_and_no_torch_index() -> None:
    from mlfreeze.platforms.profiles import load_profile, load_stack
    from mlfreeze.project.config import load_config
    from mlfreeze.project.lock import plan_lock

    cpu = plan_lock(load_profile("linux-cpu"), load_stack(), load_config(), variant="slim")
    names = [r.split("==")[0].split(">=")[0].split("[")[0] for r in cpu.requirements]
    assert not {"torch", "torchvision", "open-clip-torch"} & set(names)
    assert {"onnxruntime", "ftfy", "regex", "faiss-cpu", "insightface"} <= set(names)
    assert cpu.torch_index == "" and plan_lock(load_profile("linux-cpu"), load_stack(), load_config()).torch_index
    cuda = plan_lock(load_profile("linux-cuda"), load_stack(), load_config(), variant="slim")
    assert "onnxruntime-gpu[cuda,cudnn]==1.31.1" in cuda.requirements


def test_uv_searches_every_index_as_pip_does_and_never_downloads_a_python(tmp_path):
    inputs = lock.plan_lock(load_profile("linux-cpu"), load_stack(), load_config(_project(tmp_path)))
    cmd = lock.compile_command(inputs, requirements=Path("r.in"), overrides=Path("o.txt"), output=Path("l.txt"),
                               index_options=("--extra-index-url", "file:///mirror/simple"))
    assert cmd[cmd.index("--index-strategy") + 1] == "unsafe-best-match" and "--no-python-downloads" in cmd
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--extra-index-url"] == [
        "file:///mirror/simple", "https://download.pytorch.org/whl/cpu"]  # pip's indexes and the torch index
    other = lock.compile_command(inputs, requirements=Path("r.in"), overrides=Path("o.txt"), output=Path("l.txt"),
                                 index_strategy="first-index")
    assert other[other.index("--index-strategy") + 1] == "first-index"


# uv's own output (0.13, not a terminal), as mlfreeze captures it
UNSATISFIABLE = """error: No solution found when resolving dependencies
  cause: Because torch==2.14.1 has no wheels with a matching Python implementation tag (e.g., `cp39`) and you \
require torch==2.14.1, we can conclude that your requirements are unsatisfiable.

hint: You require CPython 3.9 (`cp39`), but we only found wheels for `torch` (v2.14.1) with the following Python \
implementation tags: `cp310`, `cp311`
"""
UNREACHABLE = """error: Request failed after 3 retries in 10.2s
  cause: Failed to fetch: http://127.0.0.1:9/simple/foo/
  cause: error sending request for url (http://127.0.0.1:9/simple/foo/)
  cause: Connection refused (os error 111)
"""
DRAWN = """  × No solution found when resolving dependencies:
  ╰─▶ Because only foo<2 is available and you require foo>=2, we can
      conclude that your requirements are unsatisfiable.
"""


@pytest.mark.parametrize(("output", "want"), [
    (UNSATISFIABLE, "Because torch==2.14.1 has no wheels with a matching Python implementation tag (e.g., `cp39`) "
                    "and you require torch==2.14.1, we can conclude that your requirements are unsatisfiable."),
    (UNREACHABLE, "Request failed after 3 retries in 10.2s: Failed to fetch: http://127.0.0.1:9/simple/foo/: error "
                  "sending request for url (http://127.0.0.1:9/simple/foo/): Connection refused (os error 111)"),
    (DRAWN, "Because only foo<2 is available and you require foo>=2, we can conclude that your requirements are "
            "unsatisfiable."),
    ("something odd\nlast words\n", "last words"), ("", "uv printed no reason"),
])
def test_resolver_reason_is_uvs_own_in_one_line(output, want):
    assert lock.resolver_reason(output) == want
