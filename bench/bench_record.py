"""What RECORD checks cost: the full check (every file re-hashed) against the quick one (sizes, mtimes).

    PYTHONPATH=$PWD python bench/bench_record.py [--dir DIR] [--repeat N]

DIR defaults to the torch package of the running interpreter (real shared libraries, the bulk of a
full bundle). Works read-only: RECORD is rendered in memory, never written into DIR. Prints files,
bytes, the best-of-N seconds of scan (hash every file, what freeze and `mlfreeze audit` do), of the
quick check (stat every recorded file, what the incremental skip does) and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from mlfreeze_runtime import record


def _default_dir() -> Path:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        sys.exit("no --dir given and torch is not importable; pass --dir")
    return Path(spec.origin).parent


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    root = (args.dir or _default_dir()).resolve()
    entries = record.scan(root)
    parsed = record.parse(record.render(entries))
    assert len(parsed) == len(entries)
    total = sum(e.size for e in entries)
    full = _best(lambda: record.scan(root), args.repeat)

    def quick() -> None:
        for rel, entry in parsed.items():
            if (root / rel).stat().st_size != entry.size:
                raise SystemExit(f"{rel} changed while measuring")

    fast = _best(quick, args.repeat)
    print(f"{root}: {len(entries)} files, {total / 1e9:.2f} GB")
    print(f"full check (sha256 of every file): {full:.2f} s ({total / 1e6 / full:.0f} MB/s)")
    print(f"quick check (size of every file):  {fast * 1000:.1f} ms  ({full / fast:.0f}x faster)")


if __name__ == "__main__":
    main()
