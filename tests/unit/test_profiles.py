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
        if prof.accelerator == "cuda" and "CUDAExecutionProvider" in prof.onnxruntime.providers:
            assert prof.onnxruntime.package == "onnxruntime-gpu"
    # linux-cu118 runs faces on the CPU by declaration (no PyPI onnxruntime-gpu pairs CUDA 11.8 with cuDNN 9)
    assert p["linux-cu118"].onnxruntime.package == "onnxruntime"
    assert p["linux-cu118"].onnxruntime.providers == ("CPUExecutionProvider",)


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
        (lambda s: s.replace("cuda_major = 13", "cuda_major = 12"), "key 'closure.cuda_major' is 12 but torch.cuda"),
        (lambda s: s.replace("cudnn_major = 9", "cudnn_major = 8"),
         "key 'closure.cudnn_major' is 8 but torch 2.14.1's CUDA wheels bring cuDNN 9"),
        (lambda s: s.replace("cudnn_major = 9\n", ""), "key 'closure.cudnn_major' is missing"),
        (lambda s: s.replace('version = "1.31.1"', 'version = "1.23.2"'),
         "onnxruntime-gpu 1.23.2's CUDA provider needs CUDA 12 + cuDNN 9"),
        (lambda s: s.replace('at = ".", module', 'at = "../x", module'), "key 'closure.dlopen[0].at'"),
        (lambda s: s.replace('at = ".", module = ["torch", "onnxruntime"] }', 'at = "." }'),
         "key 'closure.dlopen[0].module' is missing"),
        (lambda s: s.replace('at = ".", module = ["torch", "onnxruntime"] }', 'at = ".", module = [] }'),
         "key 'closure.dlopen[0].module' is []; expected an import name or a list of them"),
        (lambda s: s.replace('preload = true }', 'preload = "yes" }', 1),
         "key 'closure.dlopen[12].preload' must be"),
        (lambda s: s.replace("[closure]", "[closure]\nextra = 1"), "key 'closure.extra' is not a known key"),
        (lambda s: s[:s.index("[closure]")], "key 'closure' is missing"),
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


CU118 = (PROFILE_DIR / "linux-cu118.toml").read_text()


def test_cu118_with_onnxruntime_gpu_118_is_a_load_error(tmp_path):
    # The trap the profile avoids: onnxruntime-gpu 1.18's CUDA provider is CUDA 11.8 + cuDNN 8,
    # torch 2.7's cu118 wheels bring cuDNN 9; declaring the CUDA provider must not load.
    text = CU118.replace('package = "onnxruntime"', 'package = "onnxruntime-gpu"').replace(
        'providers = ["CPUExecutionProvider"]', 'providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]')
    with pytest.raises(ConfigError, match=r"declares CUDA 11 \+ cuDNN 9, but onnxruntime-gpu 1.18.1's CUDA provider "
                                          r"needs CUDA 11 \+ cuDNN 8"):
        load_profile_file(_write(tmp_path, text, name="linux-cu118"))
    # and cuDNN 8 would contradict torch 2.7.1
    with pytest.raises(ConfigError, match="torch 2.7.1's CUDA wheels bring cuDNN 9"):
        load_profile_file(_write(tmp_path, text.replace("cudnn_major = 9", "cudnn_major = 8"), name="linux-cu118"))


def test_cuda_majors_only_on_cuda_profiles(tmp_path):
    text = (PROFILE_DIR / "linux-cpu.toml").read_text().replace("[closure]", "[closure]\ncuda_major = 12")
    with pytest.raises(ConfigError, match="key 'closure.cuda_major' is set but accelerator is 'cpu'"):
        load_profile_file(_write(tmp_path, text, name="linux-cpu"))


def test_build_tables():
    from mlfreeze.platforms.profiles import onnxruntime_gpu_majors, torch_cudnn_major

    assert onnxruntime_gpu_majors("1.18.1") == (11, 8)
    assert onnxruntime_gpu_majors("1.19.0") == (12, 9) and onnxruntime_gpu_majors("1.26.9") == (12, 9)
    assert onnxruntime_gpu_majors("1.31.1") == (13, 9) and onnxruntime_gpu_majors("1.14.0") is None
    assert torch_cudnn_major("2.3.1") == 8 and torch_cudnn_major("2.4.0") == 9 and torch_cudnn_major("2.14.1") == 9
