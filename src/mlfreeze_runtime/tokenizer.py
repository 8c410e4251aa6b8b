"""CLIP's byte-level BPE tokenizer without torch: token ids identical to open_clip's.

A port of ``open_clip.tokenizer.SimpleTokenizer`` (itself OpenAI CLIP's ``simple_tokenizer``,
MIT) with the ``clean="lower"`` default: ``ftfy.fix_text``, HTML-unescape twice, collapse
whitespace, lower-case; split with the same ``regex`` pattern; BPE over the
``bpe_simple_vocab_16e6.txt.gz`` merges (the first 48,894 lines after the header); ids are
``[<start_of_text>] + tokens + [<end_of_text>]`` right-padded with 0 to ``context_length``,
and a text that is too long is cut to ``context_length`` ids whose last one is replaced by
``<end_of_text>`` (open_clip's truncation).

The vocabulary ships inside this package (``data/``) and is pinned by sha256
(:data:`VOCAB_SHA256`): a different file raises :class:`TokenizerError` instead of
producing other ids. Why a port and not Hugging Face ``tokenizers``: see
docs/architecture.md ("Torch-free CLIP").
"""

from __future__ import annotations

import gzip
import hashlib
import html
from functools import lru_cache
from pathlib import Path
from typing import Any

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49408
DEFAULT_CONTEXT_LENGTH = 77
SOT = "<start_of_text>"
EOT = "<end_of_text>"
_N_MERGES = 49152 - 256 - 2  # open_clip reads merges[1 : 49152 - 256 - 2 + 1]
_PATTERN = SOT + "|" + EOT + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


class TokenizerError(RuntimeError):
    """The tokenizer's vocabulary is missing or is not the pinned file."""


def default_vocab_path() -> Path:
    """The vocabulary packaged with mlfreeze_runtime (``data/bpe_simple_vocab_16e6.txt.gz``)."""
    return Path(__file__).parent / "data" / VOCAB_FILE


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def clean(text: str) -> str:
    """open_clip's ``clean="lower"``: ftfy, HTML-unescape twice, collapse whitespace, lower-case."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """Text -> CLIP token ids, as an ``(N, context_length)`` int64 numpy array.

    ``vocab``: path of ``bpe_simple_vocab_16e6.txt.gz`` (default: the packaged copy); its sha256
    must be :data:`VOCAB_SHA256` unless ``sha256=None`` is passed explicitly.
    Raises :class:`TokenizerError` if the file is missing or differs from the pin.
    """

    def __init__(self, context_length: int = DEFAULT_CONTEXT_LENGTH, *, vocab: Path | None = None,
                 sha256: str | None = VOCAB_SHA256) -> None:
        import regex

        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
        path = Path(vocab) if vocab is not None else default_vocab_path()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TokenizerError(f"CLIP tokenizer vocabulary {path} cannot be read ({exc.strerror}); "
                                 "reinstall mlfreeze or point vocab at the pinned file") from None
        if sha256 is not None and (digest := hashlib.sha256(raw).hexdigest()) != sha256:
            raise TokenizerError(f"CLIP tokenizer vocabulary {path} has sha256 {digest}, expected {sha256}")
        lines = gzip.decompress(raw).decode("utf-8").split("\n")[1:_N_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        units = list(bytes_to_unicode().values())
        vocab_list = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(vocab_list)}
        self.bpe_ranks: dict[tuple[str, ...], int] = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.cache: dict[str, str] = {SOT: SOT, EOT: EOT}
        self.pat = regex.compile(_PATTERN, regex.IGNORECASE)
        self.context_length = context_length
        self.sot_token_id = self.encoder[SOT]
        self.eot_token_id = self.encoder[EOT]
        self.vocab_size = len(self.encoder)

    def bpe(self, token: str) -> str:
        """The BPE pieces of one pre-token (space-separated), as open_clip computes them."""
        if token in self.cache:
            return self.cache[token]
        word: tuple[str, ...] = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = set(zip(word, word[1:], strict=False))
        if not pairs:
            return token + "</w>"
        inf = len(self.bpe_ranks) + 1
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, inf))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = set(zip(word, word[1:], strict=False))
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without start/end tokens or padding."""
        ids: list[int] = []
        for token in self.pat.findall(clean(text)):
            mapped = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(mapped).split(" "))
        return ids

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> Any:
        """``(len(texts), context_length)`` int64 ids: SOT, tokens, EOT, zero padding (truncated as open_clip)."""
        import numpy as np

        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = np.zeros((len(texts), n), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > n:
                ids = ids[:n]
                ids[-1] = self.eot_token_id
            out[row, :len(ids)] = ids
        return out
