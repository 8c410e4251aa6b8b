"""The torch-free tokenizer's own contract: pinned vocabulary, known ids, truncation."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("ftfy")
pytest.importorskip("regex")

from mlfreeze_runtime.tokenizer import ClipTokenizer, TokenizerError, default_vocab_path  # noqa: E402


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return ClipTokenizer()


def test_known_ids(tok: ClipTokenizer) -> None:
    # OpenAI CLIP's ids for this caption (49406 = <start_of_text>, 49407 = <end_of_text>)
    ids = tok("a photo of a cat")
    assert ids.shape == (1, 77) and ids.dtype == np.int64
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert not ids[0, 7:].any()
    assert tok.vocab_size == 49408


def test_truncation_keeps_end_token(tok: ClipTokenizer) -> None:
    ids = tok(["cat " * 100, "cat"], context_length=8)
    assert ids[0].tolist() == [49406] + [2368] * 6 + [49407]
    assert ids[1].tolist() == [49406, 2368, 49407, 0, 0, 0, 0, 0]


def test_html_and_whitespace_cleaning(tok: ClipTokenizer) -> None:
    assert np.array_equal(tok("  A&amp;B \t\n CAT "), tok("a&b cat"))


def test_vocabulary_must_be_the_pinned_file(tmp_path: Path) -> None:
    other = tmp_path / "vocab.txt.gz"
    lines = gzip.decompress(default_vocab_path().read_bytes()).decode().split("\n")
    lines[1], lines[2] = lines[2], lines[1]  # two merges swapped: other ids, same size
    other.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(TokenizerError, match="has sha256 .* expected 924691ac"):
        ClipTokenizer(vocab=other)
    with pytest.raises(TokenizerError, match="cannot be read"):
        ClipTokenizer(vocab=tmp_path / "missing.txt.gz")
