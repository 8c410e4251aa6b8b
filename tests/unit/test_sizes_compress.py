"""Compressed size: the sampled estimate against exact deflate and a real tar.gz."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

from mlfreeze.release.archives import GZIP_LEVEL
from mlfreeze.sizes.compress import compressed_sizes


def mixed(seed: int, size: int) -> bytes:
    """Half-compressible bytes: random runs from a small alphabet mixed with random noise."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += bytes(rnd.choice(b"abcdefgh") for _ in range(64)) if rnd.random() < 0.6 else rnd.randbytes(64)
    return bytes(out[:size])


def test_estimate_is_close_to_exact_and_exact_matches_a_real_tar_gz(tmp_path: Path) -> None:
    files = {"big.so": mixed(1, 3_000_000), "small.py": b"print('x')\n" * 300, "zero.bin": bytes(900_000),
             "rand.onnx": random.Random(2).randbytes(1_000_000)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    names = sorted(files)
    sizes = [len(files[n]) for n in names]
    est = compressed_sizes(tmp_path, names, sizes, archive_format="tar.gz", budget=500_000)
    exact = compressed_sizes(tmp_path, names, sizes, archive_format="tar.gz", exact=True)
    assert exact.exact and not est.exact
    assert abs(sum(est.sizes) - sum(exact.sizes)) / sum(exact.sizes) < 0.05
    assert est.read_bytes < exact.read_bytes
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=GZIP_LEVEL) as tar:  # as the release
        for n in names:
            tar.add(tmp_path / n, arcname=n)
    assert abs(sum(exact.sizes) - len(buf.getvalue())) / len(buf.getvalue()) < 0.01
    rand = names.index("rand.onnx")
    assert 1_000_000 <= exact.sizes[rand] < 1_001_000  # incompressible: stored cost only


def test_small_files_are_sampled_by_stratum(tmp_path: Path) -> None:
    names, sizes, groups = [], [], []
    for i in range(60):
        name = f"f{i:02}.py"
        data = mixed(100 + i, 20_000)
        (tmp_path / name).write_bytes(data)
        names.append(name)
        sizes.append(len(data))
        groups.append("torch")
    est = compressed_sizes(tmp_path, names, sizes, archive_format="zip", groups=groups, budget=120_000)
    exact = compressed_sizes(tmp_path, names, sizes, archive_format="zip", exact=True)
    assert est.read_bytes <= 10 * 20_000  # a tenth of the files, not all sixty
    assert abs(sum(est.sizes) - sum(exact.sizes)) / sum(exact.sizes) < 0.05
