"""doctor's pure parts: CPU flags -> the faiss build that should load, distribution families,
the install plan's families, version matching, and the one-line exit 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlfreeze import cli, hostinfo
from mlfreeze.errors import ConfigError
from mlfreeze.hostinfo import flags_from_proc_cpuinfo, flags_from_sysctl, flags_from_windows
from mlfreeze.plan import make_plan
from mlfreeze.platforms.profiles import all_profiles, family_mixes, load_profile, load_stack, requirement_name
from mlfreeze.project import doctor
from mlfreeze.project.doctor import Finding, best_faiss_level, family_findings, judge_faiss, planned_members

AVX2_HOST = frozenset(["fpu", "sse4_2", "avx", "avx2", "fma", "f16c"])
AVX512_HOST = AVX2_HOST | {"avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl"}
SPR_HOST = AVX512_HOST | {"avx512_fp16", "amx_tile"}
OLD_HOST = frozenset(["fpu", "sse4_2", "avx"])
ARM_SVE_HOST = frozenset(["fp", "asimd", "sve"])
PER_LEVEL_1_9 = {"swigfaiss", "swigfaiss_avx2", "swigfaiss_avx512"}  # faiss-cpu 1.8 - 1.13 x86-64 wheels
WITH_SPR = PER_LEVEL_1_9 | {"swigfaiss_avx512_spr"}

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme avx avx2 fma avx512f avx512_fp16
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu
"""


def test_linux_flags_come_from_the_first_processor() -> None:
    assert flags_from_proc_cpuinfo(CPUINFO) == {"fpu", "vme", "avx", "avx2", "fma", "avx512f", "avx512_fp16"}
    assert flags_from_proc_cpuinfo("processor : 0\nFeatures : fp asimd sve\n") == ARM_SVE_HOST
    assert flags_from_proc_cpuinfo("processor : 0\n") == frozenset()


def test_macos_sysctl_flags_use_the_linux_names() -> None:
    text = "FPU VME AVX1.0 FMA F16C\nRDWRFSGS BMI1 AVX2 AVX512F AVX512CD AVX512DQ AVX512BW AVX512VL AVX512FP16"
    flags = flags_from_sysctl(text)
    assert {"avx", "avx2", "fma", "f16c", "avx512f", "avx512vl", "avx512_fp16"} <= flags
    assert "avx1.0" not in flags and "avx512fp16" not in flags
    assert flags_from_sysctl("") == frozenset()  # Apple silicon: no x86 flags


def test_windows_feature_numbers_become_flags() -> None:
    assert flags_from_windows({40: True, 41: False}) == {"avx2", "fma"}
    assert flags_from_windows({40: True, 41: True}) >= {"avx2", "avx512f"}
    assert flags_from_windows({}) == frozenset()


def test_cpu_has_avx2_follows_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostinfo, "cpu_flags", lambda: AVX2_HOST)
    assert hostinfo.cpu_has_avx2() is True
    monkeypatch.setattr(hostinfo, "cpu_flags", lambda: OLD_HOST)
    assert hostinfo.cpu_has_avx2() is False
    monkeypatch.setattr(hostinfo, "cpu_flags", lambda: None)
    assert hostinfo.cpu_has_avx2() is None


@pytest.mark.parametrize(("flags", "available", "expected"), [
    (SPR_HOST, ["AVX512_SPR", "AVX512", "AVX2", "NONE"], "AVX512_SPR"),
    (SPR_HOST, ["AVX512", "AVX2", "NONE"], "AVX512"),  # a wheel without the SPR build
    (AVX512_HOST, ["AVX512_SPR", "AVX512", "AVX2", "NONE"], "AVX512"),
    (AVX512_HOST - {"avx512bw"}, ["AVX512", "AVX2", "NONE"], "AVX2"),  # faiss's AVX-512 build needs all five
    (AVX2_HOST, ["AVX512", "AVX2", "NONE"], "AVX2"),
    (AVX2_HOST - {"fma"}, ["AVX2", "NONE"], "NONE"),
    (OLD_HOST, ["AVX512", "AVX2", "NONE"], "NONE"),
    (ARM_SVE_HOST, ["ARM_SVE", "NONE"], "ARM_SVE"),
    (ARM_SVE_HOST, ["NONE"], "NONE"),
    (frozenset(), [], "NONE"),
])
def test_best_faiss_level_for_the_cpu(flags: frozenset[str], available: list[str], expected: str) -> None:
    assert best_faiss_level(flags, available).name == expected


@pytest.mark.parametrize(("flags", "shipped", "loaded", "ok"), [
    (AVX512_HOST, PER_LEVEL_1_9, {"swigfaiss_avx512"}, True),  # faiss-cpu 1.9 on an AVX-512 host: passes
    (AVX512_HOST, PER_LEVEL_1_9, {"swigfaiss_avx2"}, False),  # AVX-512 CPU held back to AVX2
    (AVX512_HOST, PER_LEVEL_1_9, {"swigfaiss"}, False),
    (AVX2_HOST, PER_LEVEL_1_9, {"swigfaiss_avx2"}, True),
    (AVX2_HOST, PER_LEVEL_1_9, {"swigfaiss"}, False),  # AVX2-only host loading generic: fails
    (OLD_HOST, PER_LEVEL_1_9, {"swigfaiss"}, True),
    (SPR_HOST, WITH_SPR, {"swigfaiss_avx512_spr"}, True),
    (SPR_HOST, WITH_SPR, {"swigfaiss_avx512"}, False),
    (SPR_HOST, PER_LEVEL_1_9, {"swigfaiss_avx512"}, True),  # no SPR build shipped: AVX-512 is the best
    (AVX2_HOST, {"swigfaiss"}, {"swigfaiss"}, True),  # a generic-only build cannot do better
    (AVX512_HOST, PER_LEVEL_1_9, {"swigfaiss", "swigfaiss_avx512"}, True),  # generic beside the real one
    (ARM_SVE_HOST, {"swigfaiss", "swigfaiss_sve"}, {"swigfaiss"}, False),
    (AVX2_HOST, PER_LEVEL_1_9, set(), False),
])
def test_judge_faiss_per_level_wheels(flags: frozenset[str], shipped: set[str], loaded: set[str], ok: bool) -> None:
    finding = judge_faiss(flags=flags, shipped=shipped, loaded=loaded, compile_options="OPTIMIZE AVX512 ")
    assert finding.ok is ok and not finding.note, finding
    if not ok and loaded:
        level = {"swigfaiss": "NONE", "swigfaiss_avx2": "AVX2", "swigfaiss_avx512": "AVX512",
                 "swigfaiss_avx512_spr": "AVX512_SPR", "swigfaiss_sve": "ARM_SVE"}
        expected = best_faiss_level(flags, [level[m] for m in shipped])
        assert f"({expected.module})" in finding.detail and "was loaded" in finding.detail


@pytest.mark.parametrize(("flags", "dispatched", "ok"), [
    (AVX512_HOST | {"avx512_vpopcntdq"}, "AVX512_VPOPCNT", True),
    (AVX512_HOST, "AVX512", True),
    (AVX512_HOST, "AVX2", False),
    (AVX2_HOST, "AVX2", True),
    (AVX2_HOST, "NONE", False),
    (OLD_HOST, "NONE", True),
])
def test_judge_faiss_dynamic_dispatch(flags: frozenset[str], dispatched: str, ok: bool) -> None:
    finding = judge_faiss(flags=flags, shipped={"swigfaiss"}, loaded={"swigfaiss"},
                          compile_options="OPTIMIZE DD AVX2 AVX512 AVX512_VPOPCNT ", dispatched=dispatched)
    assert finding.ok is ok and not finding.note, finding
    assert dispatched in finding.detail


def test_judge_faiss_notes_what_it_cannot_tell() -> None:
    unknown = judge_faiss(flags=None, shipped=PER_LEVEL_1_9, loaded={"swigfaiss"}, compile_options="")
    assert unknown.ok and unknown.note
    dd = judge_faiss(flags=AVX2_HOST, shipped={"swigfaiss"}, loaded={"swigfaiss"}, compile_options="DD AVX2")
    assert dd.ok and dd.note


STACK = load_stack()


def test_the_families_are_data() -> None:
    assert {"onnxruntime", "cv2", "faiss"} <= set(STACK.families)
    assert {"opencv-python", "opencv-python-headless", "opencv-contrib-python",
            "opencv-contrib-python-headless"} == set(STACK.families["cv2"])
    assert {"onnxruntime", "onnxruntime-gpu", "onnxruntime-directml"} <= set(STACK.families["onnxruntime"])
    assert STACK.family_of("OpenCV_Python") == "cv2" and STACK.family_of("onnxruntime-extensions") is None


def test_opencv_python_beside_the_headless_build_fails_naming_both() -> None:
    installed = {"opencv-python": "4.10.0.84", "opencv-python-headless": "4.10.0.84", "numpy": "2.1.0"}
    [finding] = family_findings(installed, STACK.families, {"cv2": "opencv-python-headless"})
    assert not finding.ok and finding.check == "cv2"
    assert "opencv-python 4.10.0.84" in finding.detail and "opencv-python-headless 4.10.0.84" in finding.detail
    assert finding.detail.endswith("keep only opencv-python-headless (pip uninstall -y opencv-python)")


@pytest.mark.parametrize(("installed", "failing"), [
    ({"onnxruntime": "1.20", "onnxruntime-gpu": "1.20"}, ["onnxruntime"]),
    ({"onnxruntime-gpu": "1.20", "onnxruntime-extensions": "0.13"}, []),  # another module: not a mix
    ({"opencv-contrib-python": "4", "opencv-python-headless": "4", "faiss-cpu": "1.9", "faiss-gpu": "1.7"},
     ["cv2", "faiss"]),
    ({"pillow": "11", "pillow-simd": "9"}, ["PIL"]),
    ({"triton": "3.5", "pytorch-triton": "3.5"}, ["triton"]),
    ({"opencv-python-headless": "4", "faiss-cpu": "1.9", "onnxruntime-gpu": "1.20", "pillow": "11"}, []),
    ({}, []),
])
def test_family_findings(installed: dict[str, str], failing: list[str]) -> None:
    findings = family_findings(installed, STACK.families, {})
    assert [f.check for f in findings] == failing and not any(f.ok for f in findings)
    for f in findings:
        assert "keep only one of them" in f.detail


def test_the_fix_names_the_distribution_the_plan_installs_even_when_absent() -> None:
    [finding] = family_findings({"opencv-python": "4", "opencv-contrib-python": "4"}, STACK.families,
                                {"cv2": "opencv-python-headless"})
    assert "opencv-python-headless is the one the plan installs" in finding.detail


@pytest.mark.parametrize("name", sorted(all_profiles()))
def test_planned_members_follow_the_profile_and_the_stack(name: str) -> None:
    profile = load_profile(name)
    planned = planned_members(profile, STACK)
    assert planned["onnxruntime"] == profile.onnxruntime.package
    assert planned["cv2"] == "opencv-python-headless" and planned["faiss"] == "faiss-cpu"


@pytest.mark.parametrize("name", sorted(all_profiles()))
def test_the_install_plan_never_names_two_members_of_a_family(root: Path, name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mlfreeze.project.config import load_config

    monkeypatch.chdir(root)
    plan = make_plan(load_profile(name), load_config(root))
    # the build installs the hash-pinned lock resolved from these (mlfreeze.project.lock), and nothing else
    names = [requirement_name(r) for r in plan.lock_requirements]
    assert "insightface" in names and "opencv-python-headless" in names
    assert family_mixes(names, STACK.families) == {}
    # insightface's own metadata asks for onnxruntime and opencv-python: the lock's resolve overrides
    # them away and the lock (the complete closure) is installed --no-deps
    profile = load_profile(name)
    assert f"{profile.onnxruntime.package}=={profile.onnxruntime.version}" in plan.lock_overrides
    dropped = {o.split(" ;")[0] for o in plan.lock_overrides if o.endswith("sys_platform == 'never'")}
    assert {"onnxruntime", "onnxruntime-gpu", "onnxruntime-directml"} - {profile.onnxruntime.package} <= dropped
    assert "opencv-python ; sys_platform == 'never'" in plan.lock_overrides
    [step] = [s for s in plan.steps if "--require-hashes" in s.command]
    assert "--no-deps" in step.command


def _stack(tmp_path: Path, families: str, extra: str = "") -> Path:
    p = tmp_path / "stack.toml"
    p.write_text('[base]\nrequirements = []\n[parts.faiss]\nrequirements = ["faiss-cpu>=1.8"' + extra + ']\n'
                 "[families]\nonnxruntime = ['onnxruntime', 'onnxruntime-gpu', 'onnxruntime-directml']\n" + families)
    return p


@pytest.mark.parametrize(("families", "extra", "problem"), [
    ("cv2 = ['opencv-python']\n", "", "at least two"),
    ("cv2 = ['opencv_python', 'opencv-python-headless']\n", "", "normalised name 'opencv-python'"),
    ("cv2 = ['opencv-python', 'opencv-python-headless']\nx = ['opencv-python', 'y']\n", "", "already in family"),
    ("faiss = ['faiss-cpu', 'faiss-gpu']\n", ', "faiss-gpu"', "faiss-cpu and faiss-gpu"),
    ("cv2 = 'opencv-python'\n", "", "list"),
])
def test_bad_families_are_refused_on_load(tmp_path: Path, families: str, extra: str, problem: str) -> None:
    load_stack.cache_clear()
    try:
        with pytest.raises(ConfigError, match=problem):
            load_stack(_stack(tmp_path, families, extra))
    finally:
        load_stack.cache_clear()


def test_the_onnxruntime_family_must_cover_every_profile_distribution(tmp_path: Path) -> None:
    p = tmp_path / "stack.toml"
    p.write_text("[base]\nrequirements = []\n[parts]\n"
                 "[families]\nonnxruntime = ['onnxruntime', 'onnxruntime-gpu']\n")
    with pytest.raises(ConfigError, match="missing onnxruntime-directml"):
        load_stack(p)


@pytest.mark.parametrize(("installed", "wanted", "same"), [
    ("2.14.1+cu130", "2.14.1", True), ("2.14.1", "2.14.1", True), ("2.14.0", "2.14.1", False),
    ("2.14.10", "2.14.1", False), ("not-a-version", "2.14.1", False),
])
def test_same_release_ignores_only_the_local_label(installed: str, wanted: str, same: bool) -> None:
    assert doctor._same_release(installed, wanted) is same


def test_a_mix_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                      root: Path) -> None:
    monkeypatch.chdir(root)
    monkeypatch.setattr(doctor, "require_host", lambda profile, command: None)
    monkeypatch.setattr(doctor, "installed_distributions",
                        lambda: {"opencv-python": "4.10", "opencv-python-headless": "4.10"})

    def fine(profile: object) -> Iterator[Finding]:
        yield Finding(ok=True, check="torch", detail="fine")

    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_families, fine))
    assert cli.main(["doctor", "--platform", "linux-cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "1 mismatch(es) with profile linux-cpu (cv2)" in captured.err
    assert "FAIL cv2" in captured.out and "opencv-python 4.10, opencv-python-headless 4.10" in captured.out
    assert "ok   torch" in captured.out


def test_a_clean_environment_passes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(doctor, "require_host", lambda profile, command: None)
    monkeypatch.setattr(doctor, "installed_distributions", lambda: {"opencv-python-headless": "4.10"})
    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_families,))
    assert cli.main(["doctor", "--platform", "linux-cpu"]) == 0
    assert "environment matches linux-cpu" in capsys.readouterr().out


def test_a_check_that_raises_is_a_finding() -> None:
    def broken(profile: object) -> Iterator[Finding]:
        raise ImportError("libcudnn.so.9: cannot open shared object file\nmore")
        yield  # pragma: no cover

    original = doctor.CHECKS
    try:
        doctor.CHECKS = (broken,)  # type: ignore[assignment]
        [finding] = doctor.diagnose(load_profile("linux-cpu"))
    finally:
        doctor.CHECKS = original
    assert not finding.ok and finding.check == "broken"
    assert finding.detail == "could not run: ImportError: libcudnn.so.9: cannot open shared object file"


@pytest.mark.parametrize("member", ["onnxruntime", "onnxruntime-openvino", "onnxruntime_gpu>=1.20"])
def test_the_stack_never_names_an_onnxruntime_family_member(tmp_path: Path, member: str) -> None:
    p = tmp_path / "stack.toml"
    p.write_text(f'[base]\nrequirements = []\n[parts.x]\nrequirements = ["{member}"]\n[families]\n'
                 "onnxruntime = ['onnxruntime', 'onnxruntime-gpu', 'onnxruntime-directml', 'onnxruntime-openvino']\n")
    with pytest.raises(ConfigError, match="onnxruntime comes from the profile"):
        load_stack(p)


def test_slim_only_doctor_skips_torch_and_checks_the_onnx_clip_imports(monkeypatch) -> None:
    from mlfreeze.platforms.profiles import load_profile
    from mlfreeze.project import doctor

    ran: list[str] = []
    def recorder(name: str):
        def check(profile):
            ran.append(name)
            return iter(())
        check.__name__ = name
        return check

    monkeypatch.setattr(doctor, "CHECKS", tuple(recorder(c.__name__) if c is not doctor.check_imports else c
                                                for c in doctor.CHECKS))
    imported: list[str] = []
    monkeypatch.setattr(doctor.importlib, "import_module", lambda m: imported.append(m))
    findings = doctor.diagnose(load_profile("linux-cpu"), ("clip",), torch_free=True)
    assert "check_torch" not in ran and "check_torchvision" not in ran and "check_onnxruntime" in ran
    assert imported == ["onnxruntime", "ftfy", "regex"] and all(f.ok for f in findings)
    ran.clear()
    imported.clear()
    doctor.diagnose(load_profile("linux-cpu"), ("clip",))
    assert "check_torch" in ran and "check_onnxruntime" not in ran and imported == ["open_clip"]
    ran.clear()
    imported.clear()
    doctor.diagnose(load_profile("linux-cpu"), ("clip",), onnx_clip=True)  # slim beside full: both runtimes
    assert "check_torch" in ran and "check_onnxruntime" in ran and imported == ["open_clip"]
