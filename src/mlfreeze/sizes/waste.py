"""The waste finder: known-unneeded content in a bundle, each finding with the bytes it would save.

Path rules are data (``RULES``); two finders read bytes: identical files at two paths
(grouped by size, then a partial hash, then a full hash, so only true candidates are read
whole) and unstripped ELF symbols (``.symtab``/``.strtab``/``.debug_*`` found by reading the
section headers; no subprocess).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mlfreeze.sizes.scan import KIND_SHARED, Classifier, FileEntry, Inventory

PARTIAL = 64 * 1024
MIN_DUPLICATE = 1024  # smaller identical files (empty __init__.py, licenses) are not worth a line
MAX_PATHS = 20  # paths listed per finding in reports (bytes always count every path)


@dataclass(frozen=True, kw_only=True)
class Rule:
    name: str
    why: str
    globs: tuple[str, ...]  # relative to the package root (_internal/ or site-packages/)
    when: Callable[[Inventory], bool] = field(default=lambda inv: True)


def _cpu(inv: Inventory) -> bool:
    """A build that cannot use CUDA: a non-cuda accelerator, or the lite flavor."""
    return inv.info.get("flavor") == "lite" or inv.info.get("accelerator") in ("cpu", "mps")


RULES: tuple[Rule, ...] = (
    Rule(name="triton", why="Triton compiles kernels for torch.compile; eager inference never loads it",
         globs=("triton/**", "triton-*.dist-info/**")),
    Rule(name="torch-tests", why="test suites and C++ test binaries",
         globs=("torch/test/**", "torch/testing/_internal/**", "**/tests/**", "caffe2/test/**")),
    Rule(name="headers", why="C/C++/CUDA headers are for compiling extensions",
         globs=("**/include/**", "**/*.h", "**/*.hpp", "**/*.cuh", "**/*.inl")),
    Rule(name="static-libs", why="static and import libraries are for linking",
         globs=("**/*.a", "**/*.lib", "**/*.cmake", "torch/share/cmake/**")),
    Rule(name="debug-files", why="separate debug symbol files", globs=("**/*.pdb", "**/*.debug")),
    Rule(name="cuda-in-cpu-build", why="CUDA libraries in a build that runs on the CPU only",
         globs=("nvidia/**", "torch/lib/*cuda*", "torch/lib/*cudnn*", "torch/lib/*cublas*",
                "torch/lib/*nccl*", "onnxruntime/capi/*cuda*", "onnxruntime/capi/*tensorrt*"),
         when=_cpu),
)

# Members of known model packs the search app never loads (used when models.json does not say).
UNLOADED_MODEL_FILES = ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx")
MODEL_META = ("golden.json", "models.json")


@dataclass(frozen=True, kw_only=True)
class Finding:
    rule: str
    why: str
    bytes: int
    paths: tuple[str, ...]  # at most MAX_PATHS
    files: int


@dataclass(frozen=True, kw_only=True)
class Waste:
    findings: tuple[Finding, ...]
    total: int  # bytes saved by acting on every finding; a file is counted once
    hashed_bytes: int  # bytes read for duplicate detection


def _package_path(inv: Inventory, rel: str) -> str | None:
    if inv.source == "bundle":
        return rel[len("_internal/"):] if rel.startswith("_internal/") else None
    marker = "site-packages/"
    i = rel.find(marker)
    return rel[i + len(marker):] if i >= 0 else None


def _finding(rule: str, why: str, savings: dict[str, int]) -> Finding:
    paths = sorted(savings, key=lambda p: (-savings[p], p))
    return Finding(rule=rule, why=why, bytes=sum(savings.values()), paths=tuple(paths[:MAX_PATHS]),
                   files=len(paths))


def path_findings(inv: Inventory, rules: Sequence[Rule] = RULES) -> list[tuple[Rule, dict[str, int]]]:
    active = [r for r in rules if r.when(inv)]
    if not active:
        return []
    classifier = Classifier([(g, str(i)) for i, r in enumerate(active) for g in r.globs], "")
    hits: dict[int, dict[str, int]] = defaultdict(dict)
    for f in inv.files:
        pkg = _package_path(inv, f.path)
        if pkg is None:
            continue
        which = classifier.component(pkg)
        if which:
            hits[int(which)][f.path] = f.size
    return [(active[i], hits[i]) for i in sorted(hits)]


def model_findings(inv: Inventory, models_doc: dict[str, object]) -> dict[str, int]:
    """Files under models/<id>/ the app does not load (not in models.json's ``files``)."""
    loaded: dict[str, set[str]] = {}
    models = models_doc.get("models")
    for m in models if isinstance(models, list) else []:
        if isinstance(m, dict) and isinstance(m.get("files"), dict):
            loaded[str(m.get("id"))] = {str(v).split("/")[-1] for v in m["files"].values()}
    out: dict[str, int] = {}
    for f in inv.files:
        parts = f.path.split("/")
        if len(parts) < 3 or parts[0] != "models" or parts[-1] in MODEL_META:
            continue
        known = loaded.get(parts[1])
        unneeded = parts[-1] not in known if known is not None else parts[-1] in UNLOADED_MODEL_FILES
        if unneeded:
            out[f.path] = f.size
    return out


def _hash(path: Path, size: int, partial: bool) -> bytes:
    """sha256 of the whole file, or (``partial``) of its first and last ``PARTIAL`` bytes."""
    h = hashlib.sha256()
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError:
        return b"unreadable:" + str(path).encode()  # never equal to another file's digest
    with f:
        if partial and size > 2 * PARTIAL:
            h.update(f.read(PARTIAL))
            f.seek(size - PARTIAL)
            h.update(f.read(PARTIAL))
        else:
            while block := f.read(1 << 20):
                h.update(block)
    return h.digest()


def _regroup(pool: ThreadPoolExecutor, root: Path, groups: list[tuple[int, list[str]]],
             partial: bool) -> tuple[list[tuple[int, list[str]]], int]:
    jobs = [(size, p) for size, paths in groups for p in paths]
    digests = pool.map(lambda j: _hash(root / j[1], j[0], partial), jobs)
    buckets: dict[tuple[int, bytes], list[str]] = defaultdict(list)
    for (size, p), d in zip(jobs, digests, strict=True):
        buckets[(size, d)].append(p)
    read = sum(min(s, 2 * PARTIAL) if partial else s for s, _ in jobs)
    return [(size, ps) for (size, _), ps in buckets.items() if len(ps) > 1], read


def duplicates(root: Path, files: Iterable[FileEntry], *, min_size: int = MIN_DUPLICATE,
               workers: int | None = None) -> tuple[list[list[str]], int]:
    """Groups of identical files (each sorted; the first is the one to keep) and the bytes read.

    Same size first; then a hash of the first and last 64 KiB (the whole file when smaller);
    then, only for files still colliding, a hash of the whole file.
    """
    by_size: dict[int, list[str]] = defaultdict(list)
    for f in files:
        if f.size >= min_size:
            by_size[f.size].append(f.path)
    candidates = [(size, paths) for size, paths in by_size.items() if len(paths) > 1]
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        candidates, read = _regroup(pool, root, candidates, partial=True)
        done = [(s, ps) for s, ps in candidates if s <= 2 * PARTIAL]
        big, read2 = _regroup(pool, root, [(s, ps) for s, ps in candidates if s > 2 * PARTIAL], partial=False)
    groups = sorted((sorted(ps) for _, ps in done + big), key=lambda g: g[0])
    return groups, read + read2


# ---- ELF symbols ----------------------------------------------------------------------

_STRIPPABLE = (".symtab", ".strtab")


def elf_strippable(path: Path) -> int:
    """Bytes of .symtab, .strtab and .debug_* sections of an ELF file (0 when stripped or not ELF)."""
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 52 or ident[:4] != b"\x7fELF":
                return 0
            is64 = ident[4] == 2
            end = "<" if ident[5] == 1 else ">"
            if is64:
                shoff, = struct.unpack_from(end + "Q", ident, 0x28)
                shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", ident, 0x3A)
                fmt, name_i, off_i, size_i = end + "IIQQQQIIQQ", 0, 4, 5
            else:
                shoff, = struct.unpack_from(end + "I", ident, 0x20)
                shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", ident, 0x2E)
                fmt, name_i, off_i, size_i = end + "IIIIIIIIII", 0, 4, 5
            if shoff == 0 or shnum == 0 or shentsize < struct.calcsize(fmt) or shstrndx >= shnum:
                return 0
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            if len(table) < shentsize * shnum:
                return 0
            sections = [struct.unpack_from(fmt, table, i * shentsize) for i in range(shnum)]
            strtab = sections[shstrndx]
            f.seek(strtab[off_i])
            names = f.read(min(strtab[size_i], 1 << 20))
    except (OSError, struct.error):
        return 0
    total = 0
    has_symtab = False
    for s in sections:
        start = s[name_i]
        name = names[start:names.find(b"\0", start)].decode("ascii", "replace") if start < len(names) else ""
        if name == ".symtab":
            has_symtab = True
        if name in _STRIPPABLE or name.startswith(".debug_") or name.startswith(".zdebug_"):
            total += s[size_i]
    return total if has_symtab or total else 0


def unstripped_why(inv: Inventory, symbols: dict[str, int]) -> str:
    """The unstripped-symbols row's reason, saying how much of it the freeze leaves on purpose: the
    CUDA libraries (mlfreeze.bundle.freeze.CUDA_UNSTRIPPED), until a frozen self-test on a CUDA GPU
    proves their stripped copies, and auditwheel's patched copies, which strip corrupts."""
    from mlfreeze.bundle.freeze import AUDITWHEEL_GRAFTED, CUDA_UNSTRIPPED
    from mlfreeze.globs import compile_glob
    from mlfreeze.units import format_size

    cuda_globs = [compile_glob(g) for g in CUDA_UNSTRIPPED]
    cuda = grafted = 0
    for path, size in symbols.items():
        pkg = _package_path(inv, path) or path
        if any(g.match(pkg) for g in cuda_globs):
            cuda += size
        elif AUDITWHEEL_GRAFTED.search(pkg.rsplit("/", 1)[-1]) or any(p.endswith(".libs") for p in pkg.split("/")):
            grafted += size
    why = "ELF .symtab/.strtab/.debug_* sections (strip --strip-unneeded)"
    if cuda:
        why += (f"; {format_size(cuda)} in CUDA libraries, left unstripped by the freeze until a frozen "
                "self-test on a CUDA GPU proves them stripped")
    if grafted:
        why += f"; {format_size(grafted)} in auditwheel's patched copies (*.libs), which strip corrupts"
    return why


def find_waste(inv: Inventory, *, check_duplicates: bool = True, workers: int | None = None) -> Waste:
    per_file: dict[str, int] = defaultdict(int)
    findings: list[Finding] = []

    def add(rule: str, why: str, savings: dict[str, int]) -> None:
        savings = {p: b for p, b in savings.items() if b > 0}
        if savings:
            findings.append(_finding(rule, why, savings))
            for p, b in savings.items():
                per_file[p] = max(per_file[p], b)

    for rule, savings in path_findings(inv):
        add(rule.name, rule.why, savings)
    if inv.source == "bundle":
        models_doc = _read_models_json(inv.root)
        add("unloaded-model-files", "model files the app never loads (not in models.json's files)",
            model_findings(inv, models_doc))
    hashed = 0
    if check_duplicates:
        groups, hashed = duplicates(inv.root, inv.files, workers=workers)
        size = {f.path: f.size for f in inv.files}
        for g in groups:
            add("duplicate", f"identical to {g[0]}", {p: size[p] for p in g[1:]})
    shared = [f for f in inv.files if f.kind == KIND_SHARED and f.size >= 4096]
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        found = pool.map(lambda f: elf_strippable(inv.root / f.path), shared)
        stripped = dict(zip((f.path for f in shared), found, strict=True))
    add("unstripped-symbols", unstripped_why(inv, stripped), stripped)
    findings = _merge_duplicates(findings)
    return Waste(findings=tuple(sorted(findings, key=lambda x: (-x.bytes, x.rule))), total=sum(per_file.values()),
                 hashed_bytes=hashed)


def _merge_duplicates(findings: list[Finding]) -> list[Finding]:
    """One 'duplicate' finding per group is noisy for reports; keep them, but cap at 50 groups."""
    dups = sorted((f for f in findings if f.rule == "duplicate"), key=lambda f: -f.bytes)
    return [f for f in findings if f.rule != "duplicate"] + dups[:50]


def _read_models_json(root: Path) -> dict[str, object]:
    from mlfreeze_runtime.modelindex import ModelIndexError, read_models_index

    try:
        return dict(read_models_index(root / "models", check_files=False).document)
    except ModelIndexError:  # absent or malformed: the known model packs say what is unloaded
        return {}
