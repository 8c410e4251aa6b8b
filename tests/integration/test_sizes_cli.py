"""`python -m mlfreeze sizes` end to end: budgets exit 5, baselines, reports, and the HTML in Chromium."""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from mlfreeze import _proc as proc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_sizes_scan import KNOWN, make_bundle, meta_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def sizes(cwd: Path, *args: str) -> proc.subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return proc.capture([sys.executable, "-m", "mlfreeze", "sizes", *args], cwd=cwd, env=env, timeout=120)


def project(tmp_path: Path, budgets: str) -> Path:
    work = tmp_path / "work"
    work.mkdir(parents=True)
    (work / "app.py").write_text("")  # the project config is validated whole (mlfreeze.project.config)
    (work / "pyproject.toml").write_text("[project]\nname = 'photo-search'\nversion = '1'\n[tool.mlfreeze]\n"
                                         f"app = 'photo-search'\nentry = 'app.py'\n[tool.mlfreeze.budgets]\n{budgets}")
    return work


def test_a_budget_one_byte_too_small_exits_5(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    total = sum(KNOWN.values()) + meta_bytes(bundle)
    ok = sizes(project(tmp_path / "a", f"full = {total}\n"), str(bundle))
    assert ok.returncode == 0, ok.stderr
    assert "model:demo-clip" in ok.stdout and "triton" in ok.stdout
    out = tmp_path / "reports"
    bad = sizes(project(tmp_path / "b", f"full = {total - 1}\n"), str(bundle), "--json", str(out / "s.json"))
    assert bad.returncode == 5
    lines = bad.stderr.strip().splitlines()
    assert lines[-1].startswith("mlfreeze sizes: error: ") and f"{total:,} bytes" in lines[-1]
    assert json.loads((out / "s.json").read_text())["breaches"]  # the report is still written
    assert not list(out.glob(".*.tmp"))


def test_a_component_budget_breach_is_one_line_each(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    r = sizes(project(tmp_path, 'components = { triton = "699999 B", "cuda/cudnn" = "1 MB" }\n'), str(bundle))
    assert r.returncode == 5
    breaches = [ln for ln in r.stderr.splitlines() if "budget exceeded:" in ln]
    assert len(breaches) == 2 and any("component triton is 700,000 bytes" in ln for ln in breaches)


def test_a_baseline_with_a_smaller_torch_reports_the_delta(tmp_path: Path) -> None:
    old = make_bundle(tmp_path / "old", sizes={**KNOWN, "_internal/torch/lib/libtorch_cpu.so": 2_500_000})
    work = project(tmp_path, 'max_growth = "50 MB"\n')
    assert sizes(work, str(old), "--json", str(tmp_path / "base.json")).returncode == 0
    new = make_bundle(tmp_path / "new")
    r = sizes(work, str(new), "--baseline", str(tmp_path / "base.json"), "--json", str(tmp_path / "new.json"),
              "--markdown", str(tmp_path / "new.md"))
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "new.json").read_text())["bundles"][0]["baseline"]
    torch = next(c for c in d["components"] if c["name"] == "torch")
    assert torch["delta_bytes"] == 500_000 and d["delta_bytes"] == 500_000
    assert "torch" in (tmp_path / "new.md").read_text() and "+488.3 KiB" in r.stdout  # 500,000 bytes
    tight = project(tmp_path / "t", 'max_growth = "1%"\n')
    r = sizes(tight, str(new), "--baseline", str(tmp_path / "base.json"))
    assert r.returncode == 5 and "max_growth" in r.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = sizes(tmp_path, str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a directory" in r.stderr


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this test")
    return found


def test_the_html_renders_in_chromium(tmp_path: Path) -> None:
    exe = chromium()
    full = make_bundle(tmp_path / "f")
    lite = make_bundle(tmp_path / "l", flavor="lite", models_json=False,
                       sizes={"_internal/libpython3.11.so.1.0": 400_000, "photo-search": 50_000})
    html = tmp_path / "sizes.html"
    r = sizes(project(tmp_path, ""), str(full), str(lite), "--html", str(html))
    assert r.returncode == 0, r.stderr
    text = html.read_text()
    assert "http://" not in text and "https://" not in text and "<script src" not in text
    dom = proc.capture([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                        html.as_uri()], timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    for name in ("torch", "cuda/cudnn", "cuda/cublas", "triton", "model:demo-clip", "numpy/scipy", "python"):
        assert f">{name}<" in page, name
    assert "2.9 MiB" in page  # torch's 3,001,000 bytes
    assert page.index('id="headline"') < page.index("<h2>Components</h2>")  # the findings come first
    assert "budgets: none set" in page
    assert "photo-search-0.1.0-linux-cuda-full" in page and "photo-search-0.1.0-linux-cuda-lite" in page
    assert "Waste in photo-search-0.1.0-linux-cuda-full" in page and "_internal/triton/_C/libtriton.so" in page
    assert page.count("<rect") >= 10  # the stacked bars drew
    assert probe(exe, html, tmp_path)["scroll_width"] <= WINDOW
    shot = tmp_path / "shot.png"
    proc.capture([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
                  f"--window-size={WINDOW},1600", html.as_uri()], timeout=120)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MLFREEZE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["MLFREEZE_KEEP_SCREENSHOT"])


WINDOW = 1400
PROBE = ("<script>document.body.insertAdjacentHTML('beforeend', '<pre id=probe>' + JSON.stringify({"
         "scroll_width: document.documentElement.scrollWidth, "
         "legend: [...document.querySelectorAll('.legend span')].map(e => [e.textContent, "
         "getComputedStyle(e.querySelector('.sw')).backgroundColor])}) + '</pre>')</script>")


def probe(exe: str, html: Path, tmp_path: Path) -> dict[str, Any]:
    """Lay ``html`` out in headless Chromium in a WINDOW-px-wide window; return what the page measured:
    the document's scroll width and each legend entry's rendered colour."""
    page = tmp_path / f"probe-{html.name}"
    page.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    dom = proc.capture([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / ('p-' + html.stem)}",
                        f"--window-size={WINDOW},1000", "--dump-dom", page.as_uri()], timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert found, dom.stdout[-2000:]
    return json.loads(html_lib.unescape(found.group(1)))  # type: ignore[no-any-return]


def wide_report(components: int) -> dict[str, Any]:
    """A report as the full linux-cuda bundle gives one, with more components than any palette of
    16 and waste paths far longer than a window is wide."""
    comps = [{"name": f"component-{i:02d}", "files": 3, "disk_bytes": 10_000_000 * (components + 5 - i),
              "compressed_bytes": 5_000_000 * (components + 5 - i)} for i in range(components)]
    long_path = "_internal/nvidia/cudnn/lib/" + "libcudnn_engines_precompiled_" * 12 + ".so.9"
    findings = [{"rule": "duplicate-file", "why": "the same bytes ship twice under two names; keep one " * 2,
                 "bytes": 123_456_789, "files": 3, "paths": [long_path, "_internal/torch/lib/" + "x" * 300 + ".so"]}]
    bundle = {"name": "photo-search-0.1.0-linux-cuda-full", "path": "/x", "source": "bundle",
              "archive_format": "tar.gz", "disk_bytes": sum(c["disk_bytes"] for c in comps),
              "compressed_bytes": 3_000_000_000, "compressed": {"exact": False, "level": 6, "read_bytes": 1},
              "components": comps, "kinds": [], "checks": [], "baseline": None,
              "waste": {"total_bytes": 123_456_789, "hashed_bytes": 0, "findings": findings}}
    return {"generator": "mlfreeze", "generated_at": "now", "bundles": [bundle], "breaches": []}


def test_a_wide_report_fits_1400_px_and_every_component_has_its_own_colour(tmp_path: Path) -> None:
    from mlfreeze.sizes.html import to_html

    exe = chromium()
    html = tmp_path / "wide.html"
    html.write_text(to_html(wide_report(40)))
    measured = probe(exe, html, tmp_path)
    assert measured["scroll_width"] <= WINDOW, measured["scroll_width"]
    legend = dict(measured["legend"])
    assert len(legend) == 40 and len(set(legend.values())) == 40, legend
