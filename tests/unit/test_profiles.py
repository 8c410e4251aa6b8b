"""Platform profiles: the seven shipped ones load, and malformed ones are refused by key."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.platforms.profiles import PROFILE_DIR, all_profiles, load_profile, load_profile_file

EXPECTED = {
    "mac-arm64": "build-mac", "mac-x64": "build-mac-intel", "linux-cpu": "build-linux",
    "linux-cu118": "build-linux-cu118", "linux-cuda": "build-linux-cuda", "win-cpu": "build-win",
    "win-cuda": "build-win-cuda",
}


def test_seven_profiles_with_design_session_names():
    profiles = all_profiles()
    assert {n: p.session for n, p in profiles.items()} == EXPECTED


def test_profile_facts_from_design():
    p = all_profiles()
    assert p["linux-cpu"].torch.index_url == "https://download.pytorch.org/whl/cpu"
    assert p["win-cpu"].torch.index_url == "https://download.pytorch.org/whl/cpu"
    assert p["linux-cu118"].torch.index_url.endswith("/cu118")
    assert p["linux-cu118"].torch.version.startswith("2.7.")
    assert p["win-cuda"].torch.index_url.endswith("/cu126")
    assert p["mac-x64"].torch.version.startswith("2.2.") and "numpy<2" in p["mac-x64"].constraints
    assert p["mac-arm64"].torch.index_url == "" and p["mac-arm64"].accelerator == "mps"
    assert "CoreMLExecutionProvider" in p["mac-arm64"].onnxruntime.providers
    assert p["linux-cuda"].torch.index_url == "" and p["linux-cuda"].torch.version == "2.14.1"
    assert p["linux-cuda"].onnxruntime.package == "onnxruntime-gpu"
    assert "CUDAExecutionProvider" in p["linux-cuda"].onnxruntime.providers
    major, minor = (int(x) for x in p["linux-cu118"].onnxruntime.version.split(".")[:2])
    assert (major, minor) <= (1, 18)  # onnxruntime-gpu <= 1.18 is the CUDA 11.8 build
    for prof in p.values():
        assert prof.archive_format == ("zip" if prof.host_os == "windows" else "tar.gz")
        if prof.accelerator == "cuda":
            assert prof.onnxruntime.package == "onnxruntime-gpu"


def test_torch_index_override(monkeypatch):
    prof = load_profile("linux-cpu")
    assert prof.torch_index({"MLFREEZE_TORCH_INDEX": "https://mirror.example/whl/cpu"}) == "https://mirror.example/whl/cpu"
    assert prof.torch_index({}) == "https://download.pytorch.org/whl/cpu"


def test_unknown_platform_lists_known():
    with pytest.raises(UsageError, match="unknown platform 'beos'.*linux-cpu"):
        load_profile("beos")


def _write(tmp_path: Path, text: str, name: str = "linux-cuda") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


GOOD = (PROFILE_DIR / "linux-cuda.toml").read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: 'colour = "blue"\n' + s, "key 'colour' is not a known key"),
        (lambda s: s.replace('runner = "ubuntu-24.04"\n', ""), "key 'runner' is missing"),
        (lambda s: s.replace('accelerator = "cuda"', 'accelerator = "tpu"'), "key 'accelerator' is 'tpu'; allowed"),
        (lambda s: s.replace('version = "2.14.1"', 'version = "latest"'), "key 'torch.version'"),
        (lambda s: s.replace('cuda = "13"', 'cuda = ""'), "key 'torch.cuda'"),
        (lambda s: s.replace('package = "onnxruntime-gpu"', 'package = "onnxruntime-silicon"'),
         "key 'onnxruntime.package'"),
        (lambda s: s.replace('"CUDAExecutionProvider", "CPUExecutionProvider"', '"CPUExecutionProvider", "CUDA"'),
         "key 'onnxruntime.providers'"),
        (lambda s: s.replace("[onnxruntime]", "[onnxruntime]\nextra = 1"), "key 'onnxruntime.extra' is not a known"),
        (lambda s: s.replace('session = "build-linux-cuda"', "session = 3"), "key 'session' must be a string"),
        (lambda s: s.replace('index_url = ""', 'index_url = "http://insecure"'), "key 'torch.index_url'"),
        (lambda s: s + "[broken", "not valid TOML"),
    ],
)
def test_malformed_profile_names_file_and_key(tmp_path, edit, message):
    path = _write(tmp_path, edit(GOOD))
    with pytest.raises(ConfigError) as info:
        load_profile_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_name_must_match_file(tmp_path):
    path = _write(tmp_path, GOOD, name="linux-other")
    with pytest.raises(ConfigError, match="key 'name'.*linux-other.toml"):
        load_profile_file(path)


def test_duplicate_session_refused(tmp_path):
    _write(tmp_path, GOOD)
    _write(tmp_path, GOOD.replace('name = "linux-cuda"', 'name = "linux-cuda2"'), name="linux-cuda2")
    with pytest.raises(ConfigError, match="build-linux-cuda.*also used"):
        all_profiles.__wrapped__(tmp_path)
