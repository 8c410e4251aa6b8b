"""Run a server the way its contract says (:mod:`mlfreeze_runtime.contract`) and ask it the probes.

Four steps, each of which can fail by name (:class:`StepFailed`):

* **start**: the executable with the contract's ``args``/``env`` on 127.0.0.1 and a free port
  (``{port}`` in args/env, and ``port_env`` set to it), its output to a log file; it fails when it
  cannot be started or exits before it is ready;
* **readiness**: ``GET http://127.0.0.1:<port><ready>`` every 0.2 s until it answers 2xx, for at
  most ``ready_timeout`` seconds (default 120);
* **probe N**: one HTTP request per probe input (``request_timeout`` each, default 300 s); the
  answer must be JSON holding a vector of numbers where ``vector`` says;
* **stop**: SIGTERM (``terminate()``; TerminateProcess on Windows), then SIGKILL after
  ``stop_timeout`` seconds (default 10); a server that had to be killed, or had already died,
  fails this step. On POSIX the server runs in its own session and whatever is left of its
  process group is killed afterwards.

The build's lite check and the frozen self-test both run servers through :func:`run`; the caller
passes the process starter (the builder's ``mlfreeze._proc.spawn``; by default
:class:`subprocess.Popen`). Standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import mimetypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from mlfreeze_runtime.contract import Probe, Serve, fill, locate

HOST = "127.0.0.1"
POLL_S = 0.2
LOG_TAIL = 400  # characters of the server's log quoted in a failure


class Process(Protocol):
    """What :func:`run` needs of a started process (:class:`subprocess.Popen` has it)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


Spawn = Callable[..., Process]  # spawn(cmd, *, env, cwd, stdout) -> Process


class StepFailed(Exception):
    """``step`` (start, readiness, probe N, stop) did not work; ``detail`` says why."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


@dataclass(kw_only=True)
class Outcome:
    """What a run of the contract gave: the failures by step, the vectors by probe, the timings.

    ``vectors[i]`` holds one row per input of probe ``i`` (a list of floats, or None where a face
    probe's answer had no face); a probe that failed has no entry."""

    failures: list[StepFailed] = field(default_factory=list)
    vectors: dict[int, list[list[float] | None]] = field(default_factory=dict)
    port: int = 0
    ready_s: float | None = None
    log_tail: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def popen(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path, stdout: IO[bytes]) -> Process:
    """The default starter: its own session on POSIX (so the whole group can be killed)."""
    return subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, start_new_session=os.name == "posix")


def tail(path: Path, limit: int = LOG_TAIL) -> str:
    """The last ``limit`` characters of a log, on one line."""
    try:
        text = path.read_bytes()[-4 * limit:].decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())[-limit:]


def _with_log(detail: str, log: Path) -> str:
    last = tail(log)
    return f"{detail}; its output ends: {last}" if last else f"{detail}; it printed nothing"


def _http(url: str, *, method: str = "GET", body: bytes | None = None, headers: Mapping[str, str] | None = None,
          timeout: float) -> tuple[int, bytes]:
    """``(status, body)``; an HTTP error status is returned, a connection failure raises OSError."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_ready(process: Process, serve: Serve, port: int, log: Path, *,
               clock: Callable[[], float] = time.monotonic) -> float:
    """Seconds until ``GET <ready>`` answered 2xx. StepFailed("start") when the process exits first,
    StepFailed("readiness") after ``serve.ready_timeout`` seconds."""
    started = clock()
    url = f"http://{HOST}:{port}{serve.ready}"
    last = "no answer yet"
    while True:
        code = process.poll()
        if code is not None:
            raise StepFailed("start", _with_log(f"the server exited with code {code} before it was ready", log))
        try:
            status, _ = _http(url, timeout=min(5.0, serve.ready_timeout))
            if 200 <= status < 300:
                return clock() - started
            last = f"HTTP {status}"
        except (OSError, ValueError) as exc:  # refused while it starts; a reset; a timeout
            reason = getattr(exc, "reason", exc)
            last = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
        if clock() - started > serve.ready_timeout:
            raise StepFailed("readiness", _with_log(f"GET {serve.ready} answered no 2xx within "
                                                    f"{serve.ready_timeout:g} s (last: {last})", log))
        time.sleep(POLL_S)


def _multipart(field_name: str, path: Path) -> tuple[bytes, str]:
    boundary = f"mlfreeze-{uuid.uuid4().hex}"
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: {kind}\r\n\r\n").encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request_values(probe: Probe, item: str | Path) -> dict[str, str]:
    """The placeholder values for one input: ``{text}``, or ``{image_path}``/``{image_base64}``."""
    if probe.input == "text":
        return {"text": str(item)}
    path = Path(item)
    values = {"image_path": str(path)}
    if "image_base64" in str(probe.json) + str(probe.query) + probe.path:
        values["image_base64"] = base64.b64encode(path.read_bytes()).decode("ascii")
    return values


def ask(probe: Probe, item: str | Path, port: int, *, timeout: float) -> list[float] | None:
    """Send ``probe`` for one input; the vector of the answer (None: a face probe found no face).
    ValueError (one line) for an error status, an answer that is not JSON, or no vector of numbers."""
    values = request_values(probe, item)
    path = fill(probe.path, {k: urllib.parse.quote(v, safe="") for k, v in values.items()})
    query = urllib.parse.urlencode(fill(dict(probe.query), values))
    url = f"http://{HOST}:{port}{path}" + (("&" if "?" in path else "?") + query if query else "")
    body, headers = None, {"Accept": "application/json"}
    if probe.json is not None:
        body, headers["Content-Type"] = json.dumps(fill(probe.json, values)).encode(), "application/json"
    elif probe.upload is not None:
        body, headers["Content-Type"] = _multipart(probe.upload, Path(item))
    try:
        status, raw = _http(url, method=probe.method, body=body, headers=headers, timeout=timeout)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"no answer ({type(reason).__name__}: {reason})") from None
    text = raw.decode("utf-8", "replace")
    if not 200 <= status < 300:
        first = " ".join(text.split())[:200]
        raise ValueError(f"HTTP {status}: {first or 'empty body'}")
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(f"the answer is not JSON: {' '.join(text.split())[:120]!r}") from None
    try:
        vector = locate(doc, probe.vector)
    except LookupError as exc:
        if probe.input == "face":
            return None  # no face: an empty list of faces has no first one
        raise ValueError(str(exc)) from None
    if vector is None and probe.input == "face":
        return None
    if not isinstance(vector, list) or not vector or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
        raise ValueError(f"{probe.vector!r} in the answer is not a list of numbers ({type(vector).__name__})")
    return [float(x) for x in vector]


def stop(process: Process, serve: Serve, log: Path) -> None:
    """SIGTERM, then SIGKILL after ``serve.stop_timeout``; StepFailed("stop") when the server had
    already exited or had to be killed. On POSIX the rest of its process group is killed afterwards."""
    problem = None
    code = process.poll()
    if code is not None:
        problem = _with_log(f"the server had already exited (code {code}) before it was stopped", log)
    else:
        process.terminate()  # SIGTERM on POSIX
        try:
            process.wait(timeout=serve.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
            problem = f"the server did not exit within {serve.stop_timeout:g} s of SIGTERM and was killed " \
                      "(handle SIGTERM: finish the requests in flight, then exit)"
    if os.name == "posix" and process.pid > 0:  # its own session: the group id is its pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # workers it left behind
    if problem is not None:
        raise StepFailed("stop", problem)


def run(command: Sequence[str], serve: Serve, *, env: Mapping[str, str], workdir: Path,
        inputs: Mapping[str, Sequence[str | Path]] | None = None, spawn: Spawn | None = None,
        log_name: str = "server.log") -> Outcome:
    """Start the server, wait until it is ready, send every probe for each of ``inputs[probe.input]``
    (a kind without inputs is not probed: the lite check passes none), stop it. Never raises for a
    server that misbehaves: every failure is in the outcome, by step. ``workdir`` is its working
    directory and holds its log."""
    spawn = spawn or popen
    out = Outcome(port=free_port())
    values = {"host": HOST, "port": str(out.port)}
    cmd = [*command, *(fill(a, values) for a in serve.args)]
    full_env = {**env, **fill(dict(serve.env), values)}
    if serve.port_env:
        full_env[serve.port_env] = str(out.port)
    log = workdir / log_name
    with open(log, "wb") as sink:
        try:
            process = spawn(cmd, env=full_env, cwd=workdir, stdout=sink)
        except OSError as exc:
            out.failures.append(StepFailed("start", f"cannot start {cmd[0]}: {exc.strerror or exc}"))
            return out
        try:
            out.ready_s = wait_ready(process, serve, out.port, log)
            for i, probe in enumerate(serve.probes, start=1):
                items = list((inputs or {}).get(probe.input, ()))
                rows: list[list[float] | None] = []
                for item in items:
                    shown = repr(item) if probe.input == "text" else Path(item).name
                    try:
                        rows.append(ask(probe, item, out.port, timeout=serve.request_timeout))
                    except ValueError as exc:
                        out.failures.append(StepFailed(f"probe {i}", f"{probe.describe()} for {shown}: {exc}"))
                        break
                else:
                    if items:
                        out.vectors[i] = rows
        except StepFailed as exc:
            out.failures.append(exc)
        finally:
            try:
                stop(process, serve, log)
            except StepFailed as exc:
                if not any(f.step == "start" for f in out.failures):  # a crash is already the start's failure
                    out.failures.append(exc)
    out.log_tail = tail(log)
    return out
