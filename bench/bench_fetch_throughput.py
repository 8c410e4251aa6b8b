"""Download throughput of a 1 GiB artifact from a local server, as a ratio to curl (target >= 0.9).

    PYTHONPATH=. /work/venv-ml/bin/python bench/bench_fetch_throughput.py [--size-mib 1024] [--rounds 3]

Both write the file to the same directory; ours also hashes while streaming and fsyncs before
returning (the atomic publish needs durable bytes); curl does neither, so a third figure times
curl followed by ``sync FILE``.
The random source file lives in a temporary directory under /tmp and is deleted afterwards.
Prints the best time of each over ``--rounds`` alternating rounds and the throughput ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import time

from bench_fetch_common import served_random_file

from mlfreeze.models.download import Policy, download


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    size = a.size_mib << 20
    with served_random_file(size) as served:
        sha, url, out = served.sha, f"{served.base}/a.bin", served.work / "out"
        out.mkdir()
        ours, ours_nosync, curl, curl_sync = [], [], [], []
        for _ in range(a.rounds):
            t = time.perf_counter()
            subprocess.run(["curl", "-sS", "-o", str(out / "curl.bin"), url], check=True)
            curl.append(time.perf_counter() - t)
            (out / "curl.bin").unlink()
            t = time.perf_counter()  # curl plus the fsync that our atomic publish does
            subprocess.run(["curl", "-sS", "-o", str(out / "curl.bin"), url], check=True)
            subprocess.run(["sync", str(out / "curl.bin")], check=True)
            curl_sync.append(time.perf_counter() - t)
            (out / "curl.bin").unlink()
            t = time.perf_counter()
            download([url], out / "ours.part", name="a.bin", size=size, sha256=sha, policy=Policy(),
                     progress=False)
            ours.append(time.perf_counter() - t)
            (out / "ours.part").unlink()
            t = time.perf_counter()
            download([url], out / "ours.part", name="a.bin", size=size, sha256=sha, policy=Policy(fsync=False),
                     progress=False)
            ours_nosync.append(time.perf_counter() - t)
            (out / "ours.part").unlink()
        mib = size / (1 << 20)
        print(f"size {mib:.0f} MiB, rounds {a.rounds}, best of each")
        for label, times in (("curl", curl), ("curl + sync FILE", curl_sync), ("mlfreeze download()", ours),
                             ("  ... fsync=False", ours_nosync)):
            all_ = ", ".join(f"{x:.2f}" for x in times)
            print(f"{label:20s} {min(times):6.2f}s {mib / min(times):6.0f} MiB/s  (all: {all_})")
        print(f"throughput ratio mlfreeze/curl: {min(curl) / min(ours):.2f} (target >= 0.9)")
        print(f"throughput ratio mlfreeze/(curl + sync): {min(curl_sync) / min(ours):.2f}")
        print(f"throughput ratio mlfreeze(fsync=False)/curl: {min(curl) / min(ours_nosync):.2f}")


if __name__ == "__main__":
    main()
