"""How a bundle's executable is run for its checks: the server contract and the smoke command.

A project declares them in ``[tool.mlfreeze]`` (``serve`` and ``smoke``, docs/your-app.md
"Servers and smoke commands"); the builder validates them with :func:`parse_contract` and freezes
them into the bundle as ``app-contract.json`` beside the executables (covered by RECORD). The
frozen self-test and the build's check of every flavor read that file
(:func:`read_contract`). Shapes::

    {"serve": {"args": [str], "env": {str: str}, "port_env": str | null, "ready": "/path",
               "live": "/path" | null, "ready_timeout": s, "stop_timeout": s, "request_timeout": s,
               "probes": [{"input": "text" | "image" | "face", "method": "POST", "path": "/path",
                           "json": <any> | null, "upload": str | null, "query": {str: str},
                           "vector": "/json/pointer" | "dotted.path"}]} | null,
     "smoke": {"args": [str], "exit_code": int, "env": {str: str}, "timeout": s} | null}

Placeholders, replaced when the contract is run: ``{host}`` and ``{port}`` in ``serve.args`` and
``serve.env`` values; ``{text}``, ``{image_path}`` and ``{image_base64}`` in a
probe's ``path``, ``json`` strings and ``query`` values. The host is always 127.0.0.1 and the
port a free one, so both are explicit data: ``port_env`` names the variable that carries the
port (an OCI image's entrypoint sets the same variable), ``ready`` the readiness URL path (2xx once
the app can answer its probes; an app that mounts :mod:`mlfreeze_runtime.readiness` names its
``/readyz`` here, 2xx only once its models matched their sha256 and the self-test passed), ``live``
the liveness URL path (2xx as soon as the server answers, whatever its models' state; default:
``ready``). ``mlfreeze image`` turns ``args``, ``env``, ``port_env``, ``ready`` and ``live`` into the
image's command, environment and probe paths; the build's check of a lite bundle (no models, so
never verified-ready) waits for ``live``.

A vector is found in the JSON answer by an RFC 6901 JSON pointer (``/data/0/embedding``) or a
dotted path (``data.0.embedding``; list indexes are numbers). Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTRACT_FILE = "app-contract.json"
INPUTS = ("text", "image", "face")  # the gate's probe inputs a request can carry
METHODS = ("GET", "POST", "PUT")
SERVE_PLACEHOLDERS = ("host", "port")
TEXT_PLACEHOLDERS = ("text",)
IMAGE_PLACEHOLDERS = ("image_path", "image_base64")
DEFAULT_READY_TIMEOUT = 120.0
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_REQUEST_TIMEOUT = 300.0
DEFAULT_SMOKE_TIMEOUT = 120.0
MAX_TIMEOUT = 3600.0
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

SERVE_KEYS = ("args", "env", "port_env", "ready", "live", "ready_timeout", "stop_timeout", "request_timeout", "probes")
PROBE_KEYS = ("input", "method", "path", "json", "upload", "query", "vector")
SMOKE_KEYS = ("args", "exit_code", "env", "timeout")


class ContractError(ValueError):
    """A contract that cannot be run. ``key``: the dotted key (``serve.probes[0].vector``);
    ``problem``: what is wrong with it; ``known``: the allowed keys when the key is unknown."""

    def __init__(self, key: str, problem: str, known: Sequence[str] = ()) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem
        self.known = tuple(known)


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One HTTP request per probe input of ``input``'s kind; ``vector`` locates its embedding."""

    input: str
    path: str
    vector: str
    method: str = "POST"
    json: Any = None
    upload: str | None = None  # multipart/form-data field that carries the image file
    query: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, kw_only=True)
class Serve:
    """How the executable starts its server, when it is ready, and what to ask it."""

    ready: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    port_env: str | None = None
    live: str | None = None  # the liveness path; None: the same as ready
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Smoke:
    """A command line of a CLI app and the exit code it must return."""

    args: tuple[str, ...] = ()
    exit_code: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_SMOKE_TIMEOUT


@dataclass(frozen=True, kw_only=True)
class AppContract:
    serve: Serve | None = None
    smoke: Smoke | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``app-contract.json`` document (module docstring)."""
        serve = None
        if self.serve is not None:
            s = self.serve
            serve = {"args": list(s.args), "env": dict(s.env), "port_env": s.port_env, "ready": s.ready,
                     "live": s.live,
                     "ready_timeout": s.ready_timeout, "stop_timeout": s.stop_timeout,
                     "request_timeout": s.request_timeout,
                     "probes": [{"input": p.input, "method": p.method, "path": p.path, "json": p.json,
                                 "upload": p.upload, "query": dict(p.query), "vector": p.vector} for p in s.probes]}
        smoke = None
        if self.smoke is not None:
            smoke = {"args": list(self.smoke.args), "exit_code": self.smoke.exit_code, "env": dict(self.smoke.env),
                     "timeout": self.smoke.timeout}
        return {"serve": serve, "smoke": smoke}

    @property
    def empty(self) -> bool:
        return self.serve is None and self.smoke is None


# ---- validation (the builder's config and the frozen self-test share it) ----
def _table(value: Any, key: str, known: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ContractError(key, f"must be a table, got {type(value).__name__}")
    for name in value:
        if name not in known:
            raise ContractError(f"{key}.{name}", "is not a known key", known)
    return {k: v for k, v in value.items() if v is not None}


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ContractError(key, "must be a list of strings")
    return tuple(value)


def _string_map(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ContractError(key, "must be a table of strings (NAME = \"value\")")
    return dict(value)


def _seconds(value: Any, key: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise ContractError(key, f"must be a number of seconds, more than 0 and at most {MAX_TIMEOUT:g}")
    return float(value)


def placeholders(value: Any) -> set[str]:
    """The ``{name}`` placeholders in a string, or in every string of a JSON value."""
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def _allow(value: Any, key: str, allowed: Sequence[str]) -> set[str]:
    found = placeholders(value)
    unknown = sorted(found - set(allowed))
    if unknown:
        raise ContractError(key, f"uses the placeholder {{{unknown[0]}}}; known here: "
                                 f"{', '.join('{' + a + '}' for a in allowed)}")
    return found


def _url_path(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "://" in value or any(c.isspace() for c in value):
        raise ContractError(key, f"must be a URL path starting with '/' (e.g. \"/healthz\"), got {value!r}")
    return value


def parse_probe(value: Any, key: str) -> Probe:
    t = _table(value, key, PROBE_KEYS)
    if "input" not in t:
        raise ContractError(f"{key}.input", f"is missing; one of {', '.join(INPUTS)}")
    kind = t["input"]
    if kind not in INPUTS:
        raise ContractError(f"{key}.input", f"is {kind!r}; allowed: {', '.join(INPUTS)}")
    method = t.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ContractError(f"{key}.method", f"is {method!r}; allowed: {', '.join(METHODS)}")
    method = method.upper()
    if "path" not in t:
        raise ContractError(f"{key}.path", "is missing (the request's URL path, e.g. \"/embed/text\")")
    path = _url_path(t["path"], f"{key}.path")
    if "vector" not in t:
        raise ContractError(f"{key}.vector", "is missing (where the embedding is in the JSON answer, e.g. "
                                             "\"/embedding\" or \"data.0.embedding\")")
    vector = t["vector"]
    if not isinstance(vector, str) or not vector.strip() or vector.strip("/.") == "":
        raise ContractError(f"{key}.vector", "must name a place in the answer: a JSON pointer (\"/embedding\") "
                                             "or a dotted path (\"data.0.embedding\")")
    upload = t.get("upload")
    if upload is not None and (not isinstance(upload, str) or not upload):
        raise ContractError(f"{key}.upload", "must be the name of the multipart form field that carries the image")
    body = t.get("json")
    query = _string_map(t.get("query", {}), f"{key}.query")
    if body is not None and upload is not None:
        raise ContractError(key, "has both json and upload; a request has one body")
    if method == "GET" and (body is not None or upload is not None):
        raise ContractError(key, "is a GET with a body (json or upload); send it with method = \"POST\"")
    allowed = TEXT_PLACEHOLDERS if kind == "text" else IMAGE_PLACEHOLDERS
    if upload is not None and kind == "text":
        raise ContractError(f"{key}.upload", "uploads an image file, but the probe's input is text")
    used = _allow(path, f"{key}.path", allowed) | _allow(body, f"{key}.json", allowed) \
        | _allow(query, f"{key}.query", allowed)
    if not used and upload is None:
        how = "{text}" if kind == "text" else "upload = \"<field>\", {image_path} or {image_base64}"
        raise ContractError(key, f"never sends its {kind} input: put {how} in its path, json or query")
    return Probe(input=kind, method=method, path=path, json=body, upload=upload, query=query, vector=vector)


def parse_serve(value: Any, key: str = "serve") -> Serve:
    t = _table(value, key, SERVE_KEYS)
    if "ready" not in t:
        raise ContractError(f"{key}.ready", "is missing (the readiness URL path: GET answers 2xx once the app "
                                            "serves, e.g. \"/healthz\")")
    ready = _url_path(t["ready"], f"{key}.ready")
    _allow(ready, f"{key}.ready", ())
    live = t.get("live")
    if live is not None:
        live = _url_path(live, f"{key}.live")
        _allow(live, f"{key}.live", ())
    args = _strings(t.get("args", []), f"{key}.args")
    env = _string_map(t.get("env", {}), f"{key}.env")
    port_env = t.get("port_env")
    if port_env is not None and (not isinstance(port_env, str)
                                 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", port_env)):
        raise ContractError(f"{key}.port_env", f"must be an environment variable name, got {port_env!r}")
    used = _allow(list(args), f"{key}.args", SERVE_PLACEHOLDERS) | _allow(env, f"{key}.env", SERVE_PLACEHOLDERS)
    if port_env is None and "port" not in used:
        raise ContractError(key, "never tells the app its port: set port_env = \"PORT\" (the variable the app "
                                 "reads) or put {port} in args")
    raw = t.get("probes", [])
    if not isinstance(raw, list):
        raise ContractError(f"{key}.probes", "must be a list of tables ([[tool.mlfreeze.serve.probes]])")
    probes = tuple(parse_probe(p, f"{key}.probes[{i}]") for i, p in enumerate(raw))
    return Serve(ready=ready, live=live, args=args, env=env, port_env=port_env,
                 ready_timeout=_seconds(t.get("ready_timeout"), f"{key}.ready_timeout", DEFAULT_READY_TIMEOUT),
                 stop_timeout=_seconds(t.get("stop_timeout"), f"{key}.stop_timeout", DEFAULT_STOP_TIMEOUT),
                 request_timeout=_seconds(t.get("request_timeout"), f"{key}.request_timeout",
                                          DEFAULT_REQUEST_TIMEOUT),
                 probes=probes)


def parse_smoke(value: Any, key: str = "smoke") -> Smoke:
    """``smoke = ["--version"]`` (exit code 0) or ``smoke = {args = [...], exit_code = 0, env, timeout}``."""
    if isinstance(value, list):
        return Smoke(args=_strings(value, key))
    t = _table(value, key, SMOKE_KEYS)
    code = t.get("exit_code", 0)
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
        raise ContractError(f"{key}.exit_code", f"must be an exit code from 0 to 255, got {code!r}")
    return Smoke(args=_strings(t.get("args", []), f"{key}.args"), exit_code=code,
                 env=_string_map(t.get("env", {}), f"{key}.env"),
                 timeout=_seconds(t.get("timeout"), f"{key}.timeout", DEFAULT_SMOKE_TIMEOUT))


def parse_contract(doc: Any) -> AppContract:
    """An :class:`AppContract` from ``{"serve": ..., "smoke": ...}`` (either may be absent or null);
    :class:`ContractError` naming the key on any problem."""
    t = _table(doc, "contract", ("serve", "smoke"))
    serve = parse_serve(t["serve"]) if t.get("serve") is not None else None
    smoke = parse_smoke(t["smoke"]) if t.get("smoke") is not None else None
    return AppContract(serve=serve, smoke=smoke)


def write_contract(folder: Path, contract: AppContract) -> Path | None:
    """Write ``folder/app-contract.json`` (None and nothing written for an empty contract)."""
    if contract.empty:
        return None
    path = folder / CONTRACT_FILE
    path.write_text(json.dumps(contract.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_contract(folder: Path) -> AppContract:
    """The contract frozen into a bundle (an empty one when the bundle has none); ContractError
    when the file is unreadable or invalid."""
    path = Path(folder) / CONTRACT_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AppContract()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ContractError(CONTRACT_FILE, f"is not readable JSON ({exc})") from None
    return parse_contract(doc)


# ---- running it ----
def fill(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with every ``{name}`` of ``values`` replaced, in a string or every string of a JSON value."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, Mapping):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    return value


def locate(doc: Any, where: str) -> Any:
    """The value at ``where`` in a JSON document: an RFC 6901 pointer (``/a/0/b``, ``~1`` is ``/``,
    ``~0`` is ``~``) or a dotted path (``a.0.b``). LookupError naming the first step that fails."""
    if where.startswith("/"):
        steps = [s.replace("~1", "/").replace("~0", "~") for s in where[1:].split("/")]
    else:
        steps = where.split(".")
    value, seen = doc, ""
    for step in steps:
        seen += f"/{step}" if where.startswith("/") else (f".{step}" if seen else step)
        if isinstance(value, Mapping):
            if step not in value:
                raise LookupError(f"no {seen!r} in the answer")
            value = value[step]
        elif isinstance(value, list):
            if not step.isdigit() or int(step) >= len(value):
                raise LookupError(f"no {seen!r} in the answer (a list of {len(value)})")
            value = value[int(step)]
        else:
            raise LookupError(f"no {seen!r} in the answer ({type(value).__name__} above it)")
    return value
