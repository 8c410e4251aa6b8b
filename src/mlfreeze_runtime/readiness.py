"""Liveness and readiness for a server bundle: ready means the models are the verified bytes.

A server built by mlfreeze (and the OCI image ``mlfreeze image`` makes of it) answers two probes:

``GET /livez``
    200 ``{"status": "alive"}`` as soon as the port is bound, whatever the models' state (a
    liveness probe restarts a process; a process waiting for, or refusing, its models must not be
    restarted in a loop).
``GET /readyz``
    503 ``{"status": "checking" | "failed", "reason": "<one line>", "files": [...]}`` until
    every file ``models.json`` lists matches its recorded sha256 and the bundle's self-test
    (``<app>-selftest --json``) has passed; then 200 ``{"status": "ready", "models": [ids]}``.
    A failure stays 503 with the reason naming the file (or the failing check): the process keeps
    serving ``/livez``, so an orchestrator shows the reason instead of a crash loop. When a
    model file changes after it was verified (size or mtime; checked at most once a second, when
    ``/readyz`` is asked), readiness drops back to 503 and the check runs again.

Nothing here downloads anything: models are in the bundle's ``models/`` or in the folder
``MLFREEZE_MODELS_DIR`` names (a volume filled by ``<app>-update models`` or an init container).

Two ways to serve the probes, both standard library only (no web framework):

* mount them in the app's own WSGI server: ``probes_middleware(app, readiness)`` answers the two
  paths and passes every other request to ``app``; :func:`make_server` is a threading WSGI
  server for apps that have none. An app on another framework calls
  :meth:`Readiness.readyz` / :meth:`Readiness.livez` (``(status code, document)``) from its
  own routes;
* or, for apps that do not mount them, :func:`serve_probes` starts a small threading
  ``http.server`` on its own port in a background thread.

Typical use in an app's ``serve`` command::

    readiness = Readiness().start()          # verification runs in a background thread
    host, port = listen_address()            # HOST (default 127.0.0.1), PORT (default 8080)
    serve_until_stopped(make_server(probes_middleware(my_wsgi_app, readiness), host, port))

The environment decides what the operator decides: ``PORT``/``HOST`` the address,
``MLFREEZE_MODELS_DIR`` the models, ``DEVICE``/``MODEL_DEVICE`` and ``ONNX_PROVIDERS`` the
device (:mod:`mlfreeze_runtime.device`), ``MLFREEZE_SELFTEST_TIMEOUT`` the self-test's limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from mlfreeze_runtime.modelindex import INDEX, ModelIndexError, file_sha256, find_models_dir, read_models_index

LIVEZ = "/livez"
READYZ = "/readyz"
PORT_ENV = "PORT"
HOST_ENV = "HOST"
DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
SELFTEST_TIMEOUT_ENV = "MLFREEZE_SELFTEST_TIMEOUT"
#: Set to "1" by ``<app>-selftest`` for the server it starts: that server's readiness then checks
#: the sha256 alone (the self-test is the check in progress; running it again would recurse).
UNDER_SELFTEST_ENV = "MLFREEZE_UNDER_SELFTEST"
DEFAULT_SELFTEST_TIMEOUT = 900.0
RESTAT_SECONDS = 1.0

CHECKING, READY, FAILED = "checking", "ready", "failed"

#: A self-test: returns None when it passed, else the one line saying what failed.
SelfTest = Callable[[], "str | None"]
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class ServeConfigError(ValueError):
    """PORT/HOST or a self-test setting is malformed (one line naming the variable)."""


def listen_address(environ: dict[str, str] | None = None, *, port_env: str = PORT_ENV,
                   default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``(host, port)`` from ``HOST`` (default 127.0.0.1; an image sets 0.0.0.0) and ``port_env``
    (default ``PORT``, 8080). ServeConfigError for a port that is not 1..65535."""
    env = os.environ if environ is None else environ
    raw = env.get(port_env, "").strip()
    if not raw:
        return env.get(HOST_ENV, "").strip() or DEFAULT_HOST, default_port
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ServeConfigError(f"{port_env}={raw!r} is not a TCP port (1-65535)")
    return env.get(HOST_ENV, "").strip() or DEFAULT_HOST, int(raw)


def _child_environment() -> dict[str, str]:
    """This process's environment for a child bundle executable: PyInstaller's bootloader put
    ``_internal/`` first on LD_LIBRARY_PATH and kept the caller's value in LD_LIBRARY_PATH_ORIG."""
    env = dict(os.environ)
    if "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    elif getattr(sys, "frozen", False):
        env.pop("LD_LIBRARY_PATH", None)
    return env


def command_selftest(cmd: Sequence[str], *, timeout: float | None = None) -> SelfTest:
    """A self-test that runs ``cmd`` (``<app>-selftest --json``) and reads its JSON report: passed
    when it exits 0 and reports ``"passed": true``; else the first failing check (or the exit
    status and the last line it printed). ``timeout`` (seconds): ``MLFREEZE_SELFTEST_TIMEOUT``,
    default 900."""
    if timeout is None:
        raw = os.environ.get(SELFTEST_TIMEOUT_ENV, "").strip()
        try:
            timeout = float(raw) if raw else DEFAULT_SELFTEST_TIMEOUT
        except ValueError:
            raise ServeConfigError(f"{SELFTEST_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    limit = timeout

    def run() -> str | None:
        name = Path(cmd[0]).name
        try:
            done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=limit,
                                  env=_child_environment(), stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            return f"self-test {name} did not finish in {limit:.0f} s ({SELFTEST_TIMEOUT_ENV})"
        except OSError as exc:
            return f"self-test {name} could not start: {exc}"
        report = _last_json(done.stdout)
        if done.returncode == 0 and report is not None and report.get("passed") is True:
            return None
        failing = [r for r in (report or {}).get("results") or []
                   if isinstance(r, dict) and r.get("status") == "fail"]
        if failing:
            first = failing[0]
            more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
            return (f"self-test failed: {first.get('model', '?')}: {first.get('check', '?')}: "
                    f"expected {first.get('expected', '?')}, got {first.get('got', '?')}{more}")
        tail = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        return f"self-test {name} failed (exit {done.returncode}): {tail[:300]}"

    return run


def _last_json(text: str) -> dict[str, Any] | None:
    for line in [text.strip(), *reversed(text.strip().splitlines())]:
        if line.strip().startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def bundle_selftest() -> SelfTest | None:
    """The frozen bundle's own self-test, ``<app>-selftest --json`` beside this executable; None
    in a checkout (not frozen), where readiness then rests on the sha256 check alone. In a frozen
    process whose sibling is missing, a self-test that always fails (a bundle without one is
    not verified). None too in the server that ``<app>-selftest`` itself started
    (``MLFREEZE_UNDER_SELFTEST=1``): that self-test is the check, and its server must not start another."""
    if not getattr(sys, "frozen", False) or os.environ.get(UNDER_SELFTEST_ENV) == "1":
        return None
    exe = Path(sys.executable).resolve()
    stem, suffix = (exe.stem, exe.suffix) if exe.suffix.lower() == ".exe" else (exe.name, "")
    sibling = exe.with_name(f"{stem}-selftest{suffix}")
    if not sibling.is_file():
        return lambda: f"{sibling.name} is missing beside {exe.name}: this bundle cannot be verified (a lite bundle?)"
    return command_selftest([str(sibling), "--json"])


@dataclass
class _State:
    status: str = CHECKING
    reason: str = "verifying the models' sha256 and running the self-test"
    files: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns) as verified
    checked_at: float = 0.0


class Readiness:
    """Verification of one models folder, run in a background thread; thread-safe answers.

    ``models_dir``: the folder holding models.json (default: :func:`find_models_dir`, i.e.
    ``MLFREEZE_MODELS_DIR`` or the bundle's ``models/``). ``selftest``: a :data:`SelfTest`
    (default: :func:`bundle_selftest`; ``None`` to rely on sha256 alone, e.g. in a checkout).
    """

    def __init__(self, models_dir: str | Path | None = None, *,
                 selftest: SelfTest | None | Literal["bundle"] = "bundle",
                 log: Callable[[str], None] | None = None) -> None:
        self._explicit = models_dir
        self._selftest: SelfTest | None = bundle_selftest() if isinstance(selftest, str) else selftest
        self._lock = threading.Lock()
        self._state = _State()
        self._thread: threading.Thread | None = None
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    # ---- running the check ----
    def start(self) -> Readiness:
        """Start (or restart, when none is running) the check in a daemon thread; returns self."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._state = _State()
            self._thread = threading.Thread(target=self.check, name="mlfreeze-readiness", daemon=True)
            self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> str:
        """Block until the running check ends (or ``timeout`` seconds); the status then."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._state.status

    def check(self) -> str:
        """Verify now, in this thread: sha256 of every listed file, then the self-test. The status."""
        failure, files, models, stats = self._verify()
        with self._lock:
            state = _State(status=READY if failure is None else FAILED, reason=failure or "", files=files,
                           models=models, stats=stats, checked_at=time.monotonic())
            self._state = state
        self._log(f"readiness: ready: models {', '.join(models)}" if failure is None else f"readiness: {failure}")
        return state.status

    def _verify(self) -> tuple[str | None, list[str], list[str], dict[str, tuple[int, int]]]:
        directory, _ = find_models_dir(self._explicit)
        if directory is None:
            return ("no models folder: set MLFREEZE_MODELS_DIR to a folder holding models.json "
                    "(a volume filled by `<app>-update models` or an init container)", [], [], {})
        try:
            index = read_models_index(directory)
        except ModelIndexError as exc:
            return str(exc), [], [], {}
        stats = {str(directory / INDEX): _stat(directory / INDEX)}
        bad: list[str] = []
        first = ""
        for entry in index.models:
            for rel in sorted(set(entry.files.values())):
                path = entry.path(rel)
                members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
                for member in members:
                    mrel = member.relative_to(directory).as_posix()
                    want = entry.sha256.get(mrel)
                    try:
                        stats[str(member)] = _stat(member)
                        got = file_sha256(member) if want else ""
                    except OSError as exc:
                        bad.append(mrel)
                        first = first or f"{member}: unreadable ({exc.strerror or exc})"
                        continue
                    if not want:
                        bad.append(mrel)
                        first = first or (f"{member}: models.json records no sha256 for {mrel}, so it cannot be "
                                          "verified; rebuild the bundle with `mlfreeze freeze`")
                    elif got != want:
                        bad.append(mrel)
                        first = first or (f"{member}: sha256 {got} does not match models.json ({want}): the file "
                                          "is damaged or not the verified one; restore it (`<app>-update models`, "
                                          "or the image's own models)")
        models = [m.id for m in index.models]
        if bad:
            more = f" (+{len(bad) - 1} more file(s))" if len(bad) > 1 else ""
            return first + more, bad, models, stats
        if not index.models:
            return f"{directory / INDEX} lists no model", [], [], stats
        if self._selftest is not None:
            failure = self._selftest()
            if failure is not None:
                return failure, [], models, stats
        return None, [], models, stats

    def _changed(self, state: _State) -> str | None:
        for path, seen in state.stats.items():
            try:
                now = _stat(Path(path))
            except OSError:
                return path
            if now != seen:
                return path
        return None

    # ---- the answers ----
    def readyz(self) -> tuple[int, dict[str, Any]]:
        """``(200, {"status": "ready", "models": [ids]})`` or ``(503, {"status", "reason", "files"})``."""
        with self._lock:
            state = self._state
        if state.status == READY and time.monotonic() - state.checked_at >= RESTAT_SECONDS:
            changed = self._changed(state)
            with self._lock:
                state.checked_at = time.monotonic()
            if changed is not None:
                self._log(f"readiness: {changed} changed since it was verified; verifying again")
                self.start()
                return 503, {"status": CHECKING, "reason": f"{changed} changed since it was verified; verifying "
                                                           "again", "files": [changed]}
        if state.status == READY:
            return 200, {"status": READY, "models": list(state.models)}
        return 503, {"status": state.status, "reason": state.reason, "files": list(state.files)}

    def livez(self) -> tuple[int, dict[str, Any]]:
        """``(200, {"status": "alive"})``: the process answers, whatever the models' state."""
        return 200, {"status": "alive"}

    def answer(self, path: str, *, livez: str = LIVEZ, readyz: str = READYZ) -> tuple[int, dict[str, Any]] | None:
        """The probe answer for a request path (query string ignored), None for another path."""
        path = path.split("?", 1)[0]
        if path == livez:
            return self.livez()
        if path == readyz:
            return self.readyz()
        return None


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _body(code: int, doc: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    body = (json.dumps(doc) + "\n").encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store")]
    if code == 503:
        headers.append(("Retry-After", "5"))
    return f"{code} {_REASONS.get(code, 'Status')}", headers, body


# ---- WSGI: mount the probes in the app's own server ----
def probes_middleware(app: WSGIApp | None, readiness: Readiness, *, livez: str = LIVEZ,
                      readyz: str = READYZ) -> WSGIApp:
    """A WSGI app answering ``livez`` and ``readyz`` (GET/HEAD) and passing every other request to
    ``app`` (404 JSON when ``app`` is None)."""

    def wsgi(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        answer = readiness.answer(environ.get("PATH_INFO", "") or "/", livez=livez, readyz=readyz)
        if answer is None and app is not None:
            return app(environ, start_response)
        if answer is None:
            answer = (404, {"error": f"not found; the probes are {livez} and {readyz}"})
        elif environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            answer = (405, {"error": "use GET"})
        status, headers, body = _body(*answer)
        start_response(status, headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return wsgi


class _QuietWSGIHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.path.split("?", 1)[0] not in (LIVEZ, READYZ):  # probes every few seconds: not logged
            super().log_request(code, size)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per request (a slow request never blocks a probe)."""

    daemon_threads = True
    allow_reuse_address = True


def make_server(app: WSGIApp, host: str, port: int) -> ThreadingWSGIServer:
    """A bound threading WSGI server for ``app`` (``serve_forever()`` to run it). The port is
    bound when this returns, so ``/livez`` answers from the first request."""
    server = ThreadingWSGIServer((host, port), _QuietWSGIHandler)
    server.set_app(app)
    return server


def serve_until_stopped(server: ThreadingWSGIServer | ThreadingHTTPServer) -> int:
    """Run ``server`` in this (main) thread until SIGTERM or SIGINT, then close it; exit code 0.
    A container's process is PID 1, for which the kernel ignores a signal without a handler,
    so without this ``podman stop`` waits its whole timeout and then kills."""
    import signal

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


# ---- a stand-alone probe endpoint for apps that do not mount them ----
def serve_probes(readiness: Readiness, host: str, port: int, *, livez: str = LIVEZ,
                 readyz: str = READYZ) -> ThreadingHTTPServer:
    """Serve ``livez`` and ``readyz`` on ``host:port`` from a daemon thread (threading
    ``http.server``); returns the server (``shutdown()`` stops it). OSError when the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, with_body: bool) -> None:
            answer = readiness.answer(self.path, livez=livez, readyz=readyz)
            if answer is None:
                answer = (404, {"error": f"not found; the probes are {livez} and {readyz}"})
            status, headers, body = _body(*answer)
            self.send_response(int(status.split()[0]))
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._send(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._send(False)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mlfreeze-probes", daemon=True).start()
    return server
