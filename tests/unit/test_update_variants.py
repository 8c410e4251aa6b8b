"""Variant choice: a table of machines x releases with the one right pick (or none) for each."""

from __future__ import annotations

import pytest

from mlfreeze_runtime.update.machine import arch_name, os_name, parse_nvidia_smi
from mlfreeze_runtime.update.variants import Gpu, Machine, Variant, cc_supported, choose_variant

TORCH_CU13 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120")
TORCH_CU118 = ("sm_37", "sm_50", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")


def V(platform: str, flavor: str = "full", **kw: object) -> Variant:
    os_, arch, acc = {"linux-cuda": ("linux", "x86_64", "cuda"), "linux-cu118": ("linux", "x86_64", "cuda"),
                      "linux-cpu": ("linux", "x86_64", "cpu"), "linux-arm-cpu": ("linux", "arm64", "cpu"),
                      "win-cuda": ("windows", "x86_64", "cuda"), "win-cpu": ("windows", "x86_64", "cpu"),
                      "mac-arm64": ("macos", "arm64", "mps"), "mac-x64": ("macos", "x86_64", "cpu")}[platform]
    if acc == "cuda":
        kw.setdefault("min_driver", "525.60.13" if platform == "linux-cu118" else "580.65.06")
        kw.setdefault("cuda_archs", TORCH_CU118 if platform == "linux-cu118" else TORCH_CU13)
    if platform == "linux-cu118":
        kw["min_driver"] = "450.80.02"
    return Variant(name=f"app-1.0-{platform}-{flavor}", version="1.0", platform=platform, flavor=flavor,
                   os=os_, arch=arch, accelerator=acc, **kw)  # type: ignore[arg-type]


LINUX_ALL = [V("linux-cuda"), V("linux-cu118"), V("linux-cpu")]
LINUX_FLAVORS = LINUX_ALL + [V("linux-cpu", "slim"), V("linux-cpu", "lite"), V("linux-cuda", "slim")]
MAC = [V("mac-arm64"), V("mac-x64")]
WIN = [V("win-cuda"), V("win-cpu")]
EVERYTHING = LINUX_ALL + MAC + WIN

RTX4090 = Gpu(name="RTX 4090", compute_capability="8.9")
A100 = Gpu(name="A100", compute_capability="8.0")
H100 = Gpu(name="H100", compute_capability="9.0")
K80 = Gpu(name="Tesla K80", compute_capability="3.7")
GTX1080 = Gpu(name="GTX 1080", compute_capability="6.1")
B200 = Gpu(name="B200", compute_capability="10.0")
FUTURE = Gpu(name="future", compute_capability="12.9")
NEXTGEN = Gpu(name="nextgen", compute_capability="13.0")


def linux(*gpus: Gpu, driver: str | None = "580.95.05", arch: str = "x86_64") -> Machine:
    return Machine(os="linux", arch=arch, gpus=gpus, nvidia_driver=driver if gpus else None)


CASES = [
    # (id, machine, variants, kwargs, expected platform-flavor or None)
    ("new-gpu-new-driver", linux(RTX4090), LINUX_ALL, {}, "linux-cuda-full"),
    ("hopper", linux(H100), LINUX_ALL, {}, "linux-cuda-full"),
    ("blackwell-sm100", linux(B200), LINUX_ALL, {}, "linux-cuda-full"),
    ("future-cc-runs-ptx", linux(FUTURE), LINUX_ALL, {}, "linux-cuda-full"),
    ("newer-major-than-ptx", linux(NEXTGEN), [V("linux-cuda", cuda_archs=("sm_80", "sm_90")), V("linux-cpu")],
     {}, "linux-cpu-full"),
    ("old-gpu-new-driver-gets-cu118", linux(GTX1080), LINUX_ALL, {}, "linux-cu118-full"),
    ("kepler-new-driver-cu118-has-sm37", linux(K80), LINUX_ALL, {}, "linux-cu118-full"),
    ("kepler-no-cu118-published", linux(K80), [V("linux-cuda"), V("linux-cpu")], {}, "linux-cpu-full"),
    ("driver-too-old-for-cu13", linux(A100, driver="535.104.05"), LINUX_ALL, {}, "linux-cu118-full"),
    ("driver-too-old-for-all-cuda", linux(A100, driver="440.33"), LINUX_ALL, {}, "linux-cpu-full"),
    ("gpu-but-no-driver", linux(A100, driver=None), LINUX_ALL, {}, "linux-cpu-full"),
    ("no-gpu", linux(), LINUX_ALL, {}, "linux-cpu-full"),
    ("no-gpu-variant-published", linux(RTX4090), [V("linux-cpu")], {}, "linux-cpu-full"),
    ("only-cuda-published-no-gpu", linux(), [V("linux-cuda")], {}, None),
    ("cc-not-in-arch-list", linux(GTX1080), [V("linux-cuda"), V("linux-cpu")], {}, "linux-cpu-full"),
    ("sm80-runs-on-8.9-same-major", linux(RTX4090), [V("linux-cuda", cuda_archs=("sm_80",))], {},
     "linux-cuda-full"),
    ("no-arch-list-is-refused", linux(A100), [V("linux-cuda", cuda_archs=()), V("linux-cpu")], {},
     "linux-cpu-full"),
    ("two-gpus-one-supported", linux(K80, A100), [V("linux-cuda"), V("linux-cpu")], {}, "linux-cuda-full"),
    ("linux-arm64-no-arm-build", linux(arch="arm64"), LINUX_ALL, {}, None),
    ("linux-arm64-arm-build", linux(arch="arm64"), LINUX_ALL + [V("linux-arm-cpu")], {}, "linux-arm-cpu-full"),
    ("apple-silicon", Machine(os="macos", arch="arm64", apple_silicon=True), EVERYTHING, {}, "mac-arm64-full"),
    ("rosetta-gets-native-arm", Machine(os="macos", arch="arm64", apple_silicon=True, rosetta=True), MAC, {},
     "mac-arm64-full"),
    ("rosetta-only-x64-published", Machine(os="macos", arch="arm64", apple_silicon=True, rosetta=True),
     [V("mac-x64")], {}, "mac-x64-full"),
    ("intel-mac", Machine(os="macos", arch="x86_64"), MAC, {}, "mac-x64-full"),
    ("intel-mac-only-arm-published", Machine(os="macos", arch="x86_64"), [V("mac-arm64")], {}, None),
    ("windows-gpu", Machine(os="windows", arch="x86_64", gpus=(RTX4090,), nvidia_driver="581.57"), EVERYTHING, {},
     "win-cuda-full"),
    ("windows-old-driver", Machine(os="windows", arch="x86_64", gpus=(RTX4090,), nvidia_driver="560.94"), WIN,
     {}, "win-cpu-full"),
    ("flavor-kept-on-update", linux(A100), LINUX_FLAVORS, {"flavor": "slim"}, "linux-cuda-slim"),
    ("flavor-lite-on-gpu", linux(A100), LINUX_FLAVORS, {"flavor": "lite"}, "linux-cpu-lite"),
    ("flavor-not-published", linux(A100), LINUX_ALL, {"flavor": "slim"}, None),
    ("override-forces-cpu", linux(A100), LINUX_ALL, {"override": "linux-cpu"}, "linux-cpu-full"),
    ("override-by-name", linux(), LINUX_ALL, {"override": "app-1.0-linux-cuda-full"}, "linux-cuda-full"),
    ("override-unknown", linux(), LINUX_ALL, {"override": "nope"}, None),
    ("linux-machine-mac-release", linux(A100), MAC, {}, None),
]


@pytest.mark.parametrize(("machine", "variants", "kw", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_right_variant_or_none(machine: Machine, variants: list[Variant], kw: dict, expected: str | None) -> None:
    chosen, reasons = choose_variant(machine, variants, **kw)
    got = None if chosen is None else f"{chosen.platform}-{chosen.flavor}"
    assert got == expected, "\n".join(reasons)
    assert reasons, "every choice must say why"
    if chosen is not None:
        assert any(chosen.name in r and "chosen" in r for r in reasons)


def test_at_least_24_combinations() -> None:
    assert len(CASES) >= 24 and len({c[0] for c in CASES}) == len(CASES)


def test_reasons_name_the_refusal() -> None:
    _, reasons = choose_variant(linux(GTX1080, driver="470.1"), LINUX_ALL)
    text = "\n".join(reasons)
    assert "needs NVIDIA driver >= 580.65.06, found 470.1" in text
    assert "linux-cu118-full: chosen" in text and "GTX 1080 (compute capability 6.1) runs its sm_61" in text
    _, reasons = choose_variant(linux(K80), [V("linux-cuda"), V("linux-cpu")])
    assert any("has no kernels for Tesla K80 (compute capability 3.7)" in r for r in reasons)


@pytest.mark.parametrize(("cc", "archs", "expected"), [
    ("8.6", ("sm_80",), "sm_80"), ("8.0", ("sm_86",), None), ("9.0", ("sm_80", "compute_80"), "compute_80"),
    ("7.5", ("compute_80",), None), ("12.0", ("sm_120",), "sm_120"), ("10.0", ("sm_90",), None),
])
def test_cuda_compatibility_rules(cc: str, archs: tuple[str, ...], expected: str | None) -> None:
    assert cc_supported(cc, archs) == expected


def test_nvidia_smi_output_is_parsed() -> None:
    text = "NVIDIA GeForce RTX 3090, 550.54.14, 8.6\nTesla K80, 550.54.14, 3.7\n"
    driver, gpus = parse_nvidia_smi(text)
    assert driver == "550.54.14"
    assert [(g.name, g.compute_capability) for g in gpus] == [("NVIDIA GeForce RTX 3090", "8.6"), ("Tesla K80", "3.7")]
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver.") == (None, ())


def test_os_and_arch_names_fold_aliases() -> None:
    assert [os_name(s) for s in ("Darwin", "Windows", "Linux")] == ["macos", "windows", "linux"]
    assert [arch_name(m) for m in ("AMD64", "aarch64", "arm64", "x86_64")] == ["x86_64", "arm64", "arm64", "x86_64"]


def test_apple_silicon_under_rosetta_is_detected_as_arm64(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlfreeze_runtime.update import machine

    monkeypatch.setattr(machine.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    values = {"hw.optional.arm64": 1, "sysctl.proc_translated": 1}
    m = machine.detect(sysctl=values.get)
    assert (m.os, m.arch, m.apple_silicon, m.rosetta) == ("macos", "arm64", True, True)
    intel = machine.detect(sysctl={"hw.optional.arm64": None, "sysctl.proc_translated": None}.get)
    assert (intel.arch, intel.apple_silicon, intel.rosetta) == ("x86_64", False, False)
    chosen, _ = choose_variant(m, MAC)
    assert chosen is not None and chosen.platform == "mac-arm64"
