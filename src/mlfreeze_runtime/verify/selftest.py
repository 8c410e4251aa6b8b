"""``<app>-selftest``: the gate, run inside a frozen bundle on its own ``models/``, then the app itself.

    <app>-selftest [--models-dir DIR] [--json] [--strict] [--device D] [--app CMD | --no-app-probe]

The models dir is ``--models-dir``, else ``$MLFREEZE_MODELS_DIR``, else ``models/`` beside the
executable when frozen (:func:`mlfreeze_runtime.modelindex.find_models_dir`).

Three parts:

1. the gate's checks on every model of ``models.json`` (:func:`mlfreeze_runtime.verify.gate.run`);
2. a known-answer search through FAISS when the bundle ships it (:func:`faiss_check`: the models
   never touch FAISS, so without it a bundle whose FAISS cannot load passes until a user searches);
3. the app probe (the contract in :mod:`mlfreeze_runtime.app`): a request built from the bundled
   probes (the first clip model's zero-shot captions and images, the first insightface model's
   face and no-face images; synthetic probes are written as PNG files first) is given to the app
   executable as ``<app> --mlfreeze-probe REQUEST.json``; every row it prints must have cosine
   >= 0.9999 with the self-test's own reference embedding of the same input and unit norm. The app
   is ``--app CMD`` (a command line), else ``$MLFREEZE_SELFTEST_APP``, else, when frozen, this
   executable (``<app>-selftest`` runs the self-test inside ``<app>``); with none of these (a checkout) the probe
   is skipped. An app that is missing, fails, times out (``$MLFREEZE_SELFTEST_APP_TIMEOUT``,
   default 600 s) or disagrees is a failed check naming the app and the input.

   A server (a ``serve`` contract in ``app-contract.json`` beside the executable, or ``--contract
   FILE``; :mod:`mlfreeze_runtime.contract`) is probed over HTTP instead (:func:`serve_probe`): the
   app is started on 127.0.0.1 and a free port, the self-test waits for its readiness URL, sends
   each declared probe once per input of its kind, compares the vectors like the CLI probe's, and
   stops it (:mod:`mlfreeze_runtime.serve`); check ``app_serve`` names the step that failed
   (start, readiness, probe N, stop), ``app_serve.probe<N>.<input>`` compares each probe.

The app runs with ``$MLFREEZE_DATA_DIR`` pointing at a temporary folder. When frozen, the check
``app_writes`` fails when the app's run left a file inside the bundle (new, changed or deleted),
naming the files.

Exit 0 when every check passes, 1 when any fails (one ``FAILED`` line per failing check on
stderr), 2 when there is nothing to test (no models dir / index / models) or ``DEVICE`` /
``ONNX_PROVIDERS`` name something this machine lacks. The runtime's subprocess calls are
:func:`run_app` and :func:`mlfreeze_runtime.serve.popen` (the builder's chokepoint,
``mlfreeze._proc``, is not part of a bundle).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlfreeze_runtime.app import DATA_ENV, PROBE_FLAG, PROBE_MIN_COSINE, filter_known_warnings
from mlfreeze_runtime.contract import CONTRACT_FILE, AppContract, ContractError, Serve, parse_contract
from mlfreeze_runtime.modelindex import FROZEN_MARK_ENV, MODELS_ENV, ModelIndex, ModelIndexError
from mlfreeze_runtime.verify.probes import PROBES_DIRNAME
from mlfreeze_runtime.verify.result import FAIL, PASS, SKIP, CheckResult

APP_ENV = "MLFREEZE_SELFTEST_APP"
APP_TIMEOUT_ENV = "MLFREEZE_SELFTEST_APP_TIMEOUT"
NORM_TOLERANCE = 1e-3


def faiss_check() -> list[CheckResult]:
    """One check when FAISS is in this bundle (importable, or present but failing to import); []
    when the bundle does not ship it (an app whose ``uses`` leaves faiss out).

    Known answer: five orthonormal vectors in ``IndexFlatIP(8)``; the queries are two of them,
    scaled and offset, so the nearest neighbour by inner product is that vector (ids [3, 1])."""
    import importlib.util

    t0 = time.perf_counter()
    try:
        if importlib.util.find_spec("faiss") is None:
            return []
    except (ImportError, ValueError):
        pass  # a package whose import machinery is broken is "present": the import below says why
    expected = "IndexFlatIP(8) over 5 unit vectors returns ids [3, 1] for their two scaled copies"
    try:
        import faiss
        import numpy as np

        base = np.eye(8, dtype=np.float32)[:5]
        index = faiss.IndexFlatIP(8)
        index.add(base)
        _, ids = index.search(base[[3, 1]] * 0.9 + 0.01, 2)
        got = [int(i) for i in ids[:, 0]]
    except Exception as exc:  # a missing shared library is an ImportError/OSError: a failure, not a crash
        return [CheckResult(model="faiss", check="known_answer_search", status=FAIL, expected=expected,
                            got=f"{type(exc).__name__}: {exc}".splitlines()[0], seconds=time.perf_counter() - t0)]
    return [CheckResult(model="faiss", check="known_answer_search", status=PASS if got == [3, 1] else FAIL,
                        expected=expected, got=f"ids {got} (faiss {getattr(faiss, '__version__', '?')})",
                        seconds=time.perf_counter() - t0)]


def models_dir(explicit: str | None) -> Path | None:
    from mlfreeze_runtime.modelindex import find_models_dir

    return find_models_dir(explicit)[0]


def prog_name() -> str:
    """How this program was called (``photo-search-selftest``), for usage and error lines."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] and sys.argv[0] != "-c" else "selftest"


def app_command(explicit: str | None) -> list[str] | None:
    """The app to probe: ``--app``, ``$MLFREEZE_SELFTEST_APP``, this executable when frozen (the
    self-test runs inside ``<app>``), else None."""
    chosen = explicit or os.environ.get(APP_ENV, "").strip()
    if chosen:
        return shlex.split(chosen, posix=os.name != "nt")
    if getattr(sys, "frozen", False):
        # <app>-selftest is a launcher that runs the self-test inside <app> (src/mlfreeze/specs/selftest_entry.py)
        return [str(Path(sys.executable).resolve())]
    return None


# ---- the probe request ----
def _probe_file(name: str, probes_dir: Path | None, tmp: Path) -> Path:
    """A probe as a file the app can open: the bundled file, or a PNG of a synthetic probe."""
    from mlfreeze_runtime.verify import probes

    if name in probes.FILE_PROBES:
        return probes.probe_path(name, probes_dir)
    from PIL import Image

    path = tmp / (name.replace(":", "_").replace("/", "_") + ".png")
    if not path.exists():
        Image.fromarray(probes.load_rgb(name, probes_dir)).save(path)
    return path


def build_request(index: ModelIndex, probes_dir: Path | None, tmp: Path) -> dict[str, Any]:
    """``{"request": {...}, "labels": {part: [input names]}, "models": {"clip": entry, "faces": entry}}``."""
    from mlfreeze_runtime.verify.spec import ClipSpec, FacesSpec, SpecError, parse

    request: dict[str, list[str]] = {"texts": [], "images": [], "faces": []}
    labels: dict[str, list[str]] = {"text": [], "image": [], "face": []}
    chosen: dict[str, Any] = {}
    for kind, key in (("clip", "clip"), ("insightface", "faces")):
        entry = index.first(kind)
        if entry is None:
            continue
        try:
            spec = parse(entry.id, entry.kind, entry.verify)
        except SpecError:
            continue  # the gate already failed this model's verify_spec
        chosen[key] = entry
        if isinstance(spec, ClipSpec):
            request["texts"] = [z.caption for z in spec.zero_shot]
            labels["text"] = [repr(z.caption) for z in spec.zero_shot]
            request["images"] = [str(_probe_file(z.image, probes_dir, tmp)) for z in spec.zero_shot]
            labels["image"] = [z.image for z in spec.zero_shot]
        elif isinstance(spec, FacesSpec):
            names = [f.image for f in spec.faces] + list(spec.no_face)
            request["faces"] = [str(_probe_file(n, probes_dir, tmp)) for n in names]
            labels["face"] = names
    return {"request": request, "labels": labels, "models": chosen}


def reference(built: dict[str, Any], device: str, providers: Sequence[str]) -> dict[str, list[Any]]:
    """The self-test's own embeddings of the request, through the same runtime loaders."""
    from mlfreeze_runtime import clip, faces

    req, out = built["request"], {}
    if "clip" in built["models"]:
        emb = clip.embedder_for(built["models"]["clip"], device=device, providers=providers)
        out["text"] = list(emb.embed_texts(req["texts"]))
        out["image"] = list(emb.embed_images([clip.read_rgb(p) for p in req["images"]]))
    if "faces" in built["models"]:
        with tempfile.TemporaryDirectory(prefix="mlfreeze-selftest-faces-") as work:
            fe = faces.load_entry(built["models"]["faces"], providers=providers, workdir=Path(work))
            out["face"] = fe.embed_faces([faces.read_bgr(p) for p in req["faces"]])
    return out


def run_app(command: Sequence[str], request_path: Path, *, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run ``command --mlfreeze-probe request_path``; ``(exit code, stdout, stderr)``; raises OSError
    when it cannot start and subprocess.TimeoutExpired after ``timeout`` seconds."""
    proc = subprocess.run([*command, PROBE_FLAG, str(request_path)], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def compare(app: str, labels: dict[str, list[str]], ref: dict[str, list[Any]],
            got: dict[str, Any], *, check_prefix: str = "app_probe") -> list[CheckResult]:
    """One result per part the request holds: every row of the app within cosine 0.9999 of the reference."""
    results = []
    expected = f"the app's embeddings: cosine >= {PROBE_MIN_COSINE} with the self-test's, unit norm"
    answered = [p for p in ref if p in got]
    for part in ref:
        check = f"{check_prefix}.{part}"
        if part not in got:
            results.append(CheckResult(model=app, check=check, status=SKIP, got=f"the app does not embed {part}s"))
            continue
        rows = got[part]
        if not isinstance(rows, list) or len(rows) != len(ref[part]):
            results.append(CheckResult(model=app, check=check, status=FAIL, expected=expected,
                                       got=f"{len(rows) if isinstance(rows, list) else type(rows).__name__} rows "
                                           f"for {len(ref[part])} inputs"))
            continue
        worst, bad = 1.0, ""
        for label, r, g in zip(labels[part], ref[part], rows, strict=True):
            if r is None or g is None:
                if (r is None) != (g is None):
                    bad = f"{label}: {'no face' if g is None else 'a face'} in the app, " \
                          f"{'no face' if r is None else 'a face'} in the self-test"
                    break
                continue
            cos, norm = _cosine(r, g)
            if abs(norm - 1.0) > NORM_TOLERANCE:
                bad = f"{label}: norm {norm:.5f}"
                break
            if not cos >= PROBE_MIN_COSINE:
                bad = f"{label}: cosine {cos:.6f}"
                break
            worst = min(worst, cos)
        results.append(CheckResult(model=app, check=check, status=FAIL if bad else PASS, expected=expected,
                                   got=bad or f"{len(rows)} inputs, min cosine {worst:.6f}"))
    if ref and not answered:
        results.append(CheckResult(model=app, check="app_probe", status=FAIL, expected="the app embeds the probes",
                                   got="it answered no part of the request"))
    return results


def _cosine(a: Any, b: Sequence[float]) -> tuple[float, float]:
    ra = [float(x) for x in a]
    rb = [float(x) for x in b]
    if len(ra) != len(rb):
        return float("nan"), float("nan")
    na = math.sqrt(sum(x * x for x in ra))
    nb = math.sqrt(sum(x * x for x in rb))
    dot = sum(x * y for x, y in zip(ra, rb, strict=True))
    return (dot / (na * nb) if na and nb else float("nan")), nb


def app_label(command: Sequence[str]) -> str:
    """``app photo-search`` for ``/b/photo-search``; ``app photo_search`` for ``python -m photo_search``."""
    first = Path(command[0]).name
    if len(command) > 1 and first.lower().startswith("python"):
        return f"app {Path(command[-1]).name}"
    return f"app {first}"


def app_environment(index: ModelIndex, device: str, data: Path) -> dict[str, str]:
    """The app's environment: this process's, the models folder the self-test checked, its device,
    and ``$MLFREEZE_DATA_DIR`` at ``data`` (created), so the app's run writes nothing a user keeps;
    ``MLFREEZE_UNDER_SELFTEST=1`` so a server's readiness (mlfreeze_runtime.readiness) does not
    start this self-test again."""
    from mlfreeze_runtime.readiness import UNDER_SELFTEST_ENV

    env = dict(os.environ)
    env[UNDER_SELFTEST_ENV] = "1"
    old = env.get(MODELS_ENV)
    env[MODELS_ENV] = str(index.directory)
    if old is not None and env.get(FROZEN_MARK_ENV) == old:
        env[FROZEN_MARK_ENV] = str(index.directory)
    env.setdefault("DEVICE", device)
    data.mkdir(parents=True, exist_ok=True)
    env[DATA_ENV] = str(data)
    return env


def contract_of(explicit: str | None) -> AppContract:
    """``--contract FILE``, else ``app-contract.json`` beside the frozen executable, else none.
    ContractError when the file is unreadable or invalid."""
    from mlfreeze_runtime.contract import read_contract

    if explicit:
        try:
            doc = json.loads(Path(explicit).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ContractError(explicit, f"is not a readable JSON contract ({exc})") from None
        return parse_contract(doc)
    if getattr(sys, "frozen", False):
        return read_contract(Path(sys.executable).resolve().parent)
    return AppContract()


def serve_probe(command: list[str], serve: Serve, index: ModelIndex, probes_dir: Path | None, *, device: str,
                providers: Sequence[str]) -> list[CheckResult]:
    """Start the app's server as its contract says, send the probes over HTTP, compare, stop
    (module docstring, part 3). One ``app_serve`` result for the run, one per probe."""
    from mlfreeze_runtime import serve as _serve

    app = app_label(command)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlfreeze-selftest-serve-") as tmp_s:
        tmp = Path(tmp_s)
        built = build_request(index, probes_dir, tmp)
        ref = reference(built, device, providers) if built["models"] else {}
        req = built["request"]
        inputs = {part: items for part, items in (("text", req["texts"]), ("image", req["images"]),
                                                  ("face", req["faces"])) if part in ref}
        workdir = tmp / "run"
        workdir.mkdir()
        outcome = _serve.run(command, serve, env=app_environment(index, device, tmp / "data"), workdir=workdir,
                             inputs=inputs)
    steps = [f for f in outcome.failures if not f.step.startswith("probe ")]
    what = (f"started on 127.0.0.1 ({'$' + serve.port_env if serve.port_env else '{port}'}), GET {serve.ready} "
            f"2xx within {serve.ready_timeout:g} s, stopped by SIGTERM within {serve.stop_timeout:g} s")
    results = [CheckResult(model=app, check="app_serve", status=FAIL if steps else PASS, expected=what,
                           got="; ".join(f"{f.step}: {f.detail}" for f in steps) if steps else
                           f"port {outcome.port}, ready in {outcome.ready_s or 0:.1f} s, {len(serve.probes)} probe(s)",
                           seconds=time.perf_counter() - t0)]
    failed = {f.step: f for f in outcome.failures}
    for i, probe in enumerate(serve.probes, start=1):
        check = f"app_serve.probe{i}.{probe.input}"
        if f"probe {i}" in failed:
            results.append(CheckResult(model=app, check=check, status=FAIL, expected=f"{probe.describe()} answers "
                                       f"each {probe.input} input with a vector at {probe.vector!r}",
                                       got=f"probe {i}: {failed[f'probe {i}'].detail}"))
        elif i in outcome.vectors:
            part = probe.input
            results += compare(app, {part: built["labels"][part]}, {part: ref[part]}, {part: outcome.vectors[i]},
                               check_prefix=f"app_serve.probe{i}")
        elif probe.input not in ref:
            results.append(CheckResult(model=app, check=check, status=SKIP,
                                       got=f"the set has no model for {probe.input} inputs"))
        else:
            results.append(CheckResult(model=app, check=check, status=SKIP, got="not sent: the server did not get "
                                       "that far"))
    return results


def writes_check(app: str, bundle: Path, before: dict[str, tuple[int, int]]) -> CheckResult:
    """``app_writes``: the app's run left the bundle as it was (RECORD stays true)."""
    from mlfreeze_runtime.record import changes, snapshot

    found = changes(before, snapshot(bundle))
    more = f" (+{len(found) - 3} more)" if len(found) > 3 else ""
    return CheckResult(model=app, check="app_writes", status=FAIL if found else PASS,
                       expected=f"nothing written inside the bundle {bundle}; the app writes under "
                                f"mlfreeze_runtime.app.data_dir() (${DATA_ENV} in this run)",
                       got=(f"the app wrote inside the bundle: {', '.join(found[:3])}{more}; write to "
                            "mlfreeze_runtime.app.data_dir() instead") if found else "no file written")


def app_probe(command: list[str], index: ModelIndex, probes_dir: Path | None, *, device: str,
              providers: Sequence[str]) -> list[CheckResult]:
    app = app_label(command)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlfreeze-selftest-probe-") as tmp_s:
        tmp = Path(tmp_s)
        built = build_request(index, probes_dir, tmp)
        if not built["models"]:
            return [CheckResult(model=app, check="app_probe", status=SKIP, got="no model with a valid verify table")]
        ref = reference(built, device, providers)
        req_path = tmp / "request.json"
        req_path.write_text(json.dumps(built["request"]), encoding="utf-8")
        env = app_environment(index, device, tmp / "data")
        timeout = float(os.environ.get(APP_TIMEOUT_ENV, "600"))
        what = f"`{shlex.join(command)} {PROBE_FLAG} REQUEST.json` exits 0 with JSON"
        try:
            code, out, err = run_app(command, req_path, env=env, timeout=timeout)
        except OSError as exc:
            return [CheckResult(model=app, check="app_probe", status=FAIL, expected=what,
                                got=f"cannot start {command[0]}: {exc.strerror or exc}")]
        except subprocess.TimeoutExpired:
            return [CheckResult(model=app, check="app_probe", status=FAIL, expected=what,
                                got=f"no answer within {timeout:g} s")]
        if code != 0:
            last = (err.strip().splitlines() or ["(no output)"])[-1]
            return [CheckResult(model=app, check="app_probe", status=FAIL, expected=what,
                                got=f"exit {code}: {last}")]
        try:
            got = json.loads(out.strip().splitlines()[-1] if out.strip() else "")
            if not isinstance(got, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            return [CheckResult(model=app, check="app_probe", status=FAIL, expected=what,
                                got=f"stdout is not the probe JSON ({exc})")]
        results = compare(app, built["labels"], ref, got)
    seconds = time.perf_counter() - t0
    return [CheckResult(**{**r.__dict__, "seconds": seconds}) if i == 0 else r for i, r in enumerate(results)]


def main(argv: Sequence[str] | None = None) -> int:
    prog = prog_name()
    filter_known_warnings()
    ap = argparse.ArgumentParser(prog=prog, description="Functional self-test of the bundled models and the app.")
    ap.add_argument("--models-dir", default=None, metavar="DIR")
    ap.add_argument("--json", action="store_true", help="print one JSON report to stdout")
    ap.add_argument("--strict", action="store_true", help="warnings fail")
    ap.add_argument("--device", default=None, help="auto|cpu|cuda|cuda:N|mps")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--app", default=None, metavar="CMD",
                       help=f"the app command to probe (default ${APP_ENV}, else the <app> beside this executable)")
    group.add_argument("--no-app-probe", action="store_true", help="check the models only")
    ap.add_argument("--contract", default=None, metavar="FILE",
                    help=f"the app's {CONTRACT_FILE} (default: the one beside this executable when frozen)")
    args = ap.parse_args(argv)
    try:
        contract = contract_of(args.contract)
    except ContractError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2

    base = models_dir(args.models_dir)
    if base is None:
        print(f"{prog}: error: no models dir (pass --models-dir or set {MODELS_ENV})", file=sys.stderr)
        return 2
    from mlfreeze_runtime.modelindex import read_models_index
    from mlfreeze_runtime.verify.bundle import model_ref

    try:
        index = read_models_index(base, check_files=False)
    except ModelIndexError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    refs = [model_ref(m) for m in index.models]

    from mlfreeze_runtime.verify import gate, report
    from mlfreeze_runtime.verify.result import summarize

    if not refs:
        print(f"{prog}: error: {base / 'models.json'} lists no models: nothing would be checked", file=sys.stderr)
        return 2
    try:
        device = gate.runtime_device(args.device)
        providers = gate.runtime_providers(device)
    except ValueError as exc:  # DEVICE / ONNX_PROVIDERS name something this machine does not have
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    probes = base / PROBES_DIRNAME
    probes_dir = probes if probes.is_dir() else None
    run = gate.run(refs, device=device, providers=providers, expected_providers=list(index.expected_providers),
                   probes_dir=probes_dir, clip_path="auto")  # slim bundles: torch is absent, CLIP runs as ONNX
    results = list(run.results) + faiss_check()
    command = None if args.no_app_probe else app_command(args.app)
    if command is None:
        results.append(CheckResult(model="app", check="app_probe", status=SKIP,
                                   got=f"no app to probe (pass --app CMD or set {APP_ENV})"))
    else:
        bundle = Path(sys.executable).resolve().parent if getattr(sys, "frozen", False) else None
        from mlfreeze_runtime.record import snapshot

        before = snapshot(bundle) if bundle is not None else {}
        try:
            if contract.serve is not None:
                results += serve_probe(command, contract.serve, index, probes_dir, device=device,
                                       providers=providers)
            else:
                results += app_probe(command, index, probes_dir, device=device, providers=providers)
        except Exception as exc:  # the reference side broke: a failure, never a traceback
            results.append(CheckResult(model=app_label(command),
                                       check="app_probe" if contract.serve is None else "app_serve", status=FAIL,
                                       expected="reference embeddings of the probe inputs",
                                       got=f"{type(exc).__name__}: {exc}".splitlines()[0]))
        if bundle is not None:
            results.append(writes_check(app_label(command), bundle, before))
    s = summarize(results, strict=args.strict)
    if args.json:
        ctx = {"models_dir": str(base), "set": index.set_name, "device": device, "providers": providers,
               "app": None if command is None else shlex.join(command)}
        print(json.dumps(report.document(results, strict=args.strict, context=ctx), indent=2))
    else:
        print(report.table(results))
        print(f"{prog}: {s.checks} checks, {s.failed} failed, {s.warnings} warnings, {s.skipped} skipped")
    for line in report.failure_lines(results, strict=args.strict):
        print(f"FAILED {line}", file=sys.stderr)
    return 0 if s.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
