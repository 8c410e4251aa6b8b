"""Resume after a cut at 50 %: bytes the server sends on the second run, as a share of the file
(target <= 55 %).

    PYTHONPATH=. /work/venv-ml/bin/python bench/bench_fetch_resume.py [--size-mib 512]

The first run reads from a URL whose server closes the connection after half the file
(retries off, so it stops there and leaves its partial file); the second run fetches the
same artifact from the full URL. Byte counts come from the server's own log.
"""

from __future__ import annotations

import argparse
import time

from bench_fetch_common import served_random_file

from mlfreeze.models.download import AllUrlsFailed, Policy, download


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    a = ap.parse_args()
    size = a.size_mib << 20
    with served_random_file(size) as served:
        sha, base, log, part = served.sha, served.base, served.log, served.work / "a.part"
        (served.work / "src" / ".cut-a.bin").write_text(str(size // 2))  # the server cuts the next answer once
        try:
            download([f"{base}/a.bin"], part, name="a.bin", size=size, sha256=sha,
                     policy=Policy(retries=0), progress=False, log=lambda _m: None)
            raise SystemExit("the first run was not cut")
        except AllUrlsFailed as exc:
            print(f"first run: {exc.attempts[0].reason}; partial file {part.stat().st_size:,} bytes")
        t = time.perf_counter()
        download([f"{base}/a.bin"], part, name="a.bin", size=size, sha256=sha, policy=Policy(),
                 progress=False)
        took = time.perf_counter() - t
        time.sleep(0.2)
        lines = [ln.split() for ln in log.read_text().splitlines()]
        path, rng, sent = lines[-1]
        print(f"second run: {path} Range {rng}, {int(sent):,} bytes sent in {took:.2f}s")
        print(f"second run transferred {int(sent) / size:.1%} of {size:,} bytes (target <= 55%)")


if __name__ == "__main__":
    main()
