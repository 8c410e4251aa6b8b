"""The torch-free tokenizer against open_clip's own, id for id (a test with a known answer).

The corpus (>= 200 strings) covers plain captions, unicode scripts, emoji (incl. ZWJ
sequences and skin tones), combining marks, punctuation runs, HTML entities and mojibake
(ftfy's part), whitespace oddities (tabs, NBSP, ideographic space, zero-width characters),
digits, contractions, the special-token strings and texts far longer than the context.
"""

from __future__ import annotations

import random

import pytest

open_clip = pytest.importorskip("open_clip")
np = pytest.importorskip("numpy")

from mlfreeze_runtime.tokenizer import ClipTokenizer  # noqa: E402

HAND = [
    "", " ", "a photo of a cat", "A PHOTO OF A CAT", "a cup of coffee on a saucer",
    "a portrait of an astronaut with the American flag", "it's the cat's toy, isn't it? we'll see; they'd've",
    "I'M SURE you've SEEN it", "naïve café résumé façade", "Ångström über straße ÆØÅ", "Zoë's coöperation",
    "日本語のテキスト、東京タワー", "中文字符测试：猫和狗", "한국어 문장입니다", "Привет, мир! Как дела?",
    "Γειά σου Κόσμε", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีชาวโลก", "ქართული ენა",
    "😀", "🐱🐶🐭", "👍🏽 thumbs up", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "I ❤️ NY", "✨✨✨ sparkle ✨",
    "🇯🇵🇺🇸🇫🇷", "a cat 🐈 on a mat 🧶", "e\u0301 combining acute", "o\u0308\u0304 stacked marks",
    "!!!", "?!?!?!", "...", "—–-", "hello!!! world???", "(((nested)))", "[brackets] {braces} <angles>",
    "@#$%^&*()_+", "a/b\\c|d", "~`'\"", "'''quoted'''", "\"double\" 'single'", "emails: x@y.com",
    "url https://example.com/a?b=c&d=e#f", "#hashtag @mention", "C++ and C# and F#", "3.14159 and 2,718",
    "1234567890", "12th of May, 2024", "$100.00 or €85,50 or £70", "100% sure", "x² + y² = z²", "½ ¼ ¾",
    "Ⅻ roman twelve", "①②③", "ﬁ ligature ﬂ", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ", "𝓯𝓪𝓷𝓬𝔂 𝕥𝕖𝕩𝕥",
    "&amp; &lt;tag&gt; &quot;q&quot;", "&amp;amp; double escaped", "&#39;numeric&#39; &#x263A;", "&nbsp;space&nbsp;",
    "cafÃ© mojibake", "â€œsmart quotesâ€\x9d", "Ã¼ber", "don\u2019t use curly apostrophes",
    "\u201cquoted\u201d", "tab\tseparated\tvalues", "new\nline\r\nwindows", "  leading and trailing  ",
    "multiple     spaces", "non\u00a0breaking\u00a0space", "ideographic\u3000space", "zero\u200bwidth\u200bspace",
    "zero\u200dwidth\u200djoiner", "byte\ufefforder mark", "soft\u00adhyphen", "\u2028line separator",
    "vertical\x0btab\x0cformfeed", "control\x01\x02chars", "emoji\ufe0fselector", "<start_of_text>",
    "<end_of_text>", "a <start_of_text> in the middle", "<END_OF_TEXT> upper", "<|endoftext|>",
    "a_b_c snake_case", "camelCaseWords", "kebab-case-words", "dots.in.words", "x" * 300,
    "ab" * 100, "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "A" + "a" * 50 + "h", "the " * 100, "🐱" * 90, "日本" * 60, "a, " * 60, "!? " * 40,
]
WORDS = ["cat", "dog", "the", "a", "photo", "of", "red", "blue", "car", "tree", "running", "jumped",
         "café", "Straße", "東京", "😀", "🚀", "!!", "...", "'s", "&amp;", "42", "3.5", "—", "\t", "  "]


def _generated(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.randrange(3)
        if kind == 0:  # word salad over the vocabulary above
            out.append(rng.choice([" ", "", "  "]).join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))))
        elif kind == 1:  # random code points from many blocks
            blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
                      (0x900, 0x97F), (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F300, 0x1F6FF),
                      (0x2000, 0x206F), (0xFF00, 0xFFEF)]
            chars = []
            for _ in range(rng.randint(1, 60)):
                lo, hi = rng.choice(blocks)
                chars.append(chr(rng.randint(lo, hi)))
            out.append("".join(chars))
        else:  # long text beyond the context
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 200))))
    return out


CORPUS = HAND + _generated(150, seed=14)


def test_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 200
    assert any(len(s) > 300 for s in CORPUS)


@pytest.mark.parametrize("arch", ["ViT-B-32", "ViT-B-32-quickgelu"])
def test_ids_match_open_clip(arch: str) -> None:
    reference = open_clip.get_tokenizer(arch)
    ours = ClipTokenizer(context_length=77)
    want = reference(CORPUS).numpy()
    got = ours(CORPUS)
    assert got.dtype == np.int64 and got.shape == want.shape == (len(CORPUS), 77)
    bad = [CORPUS[i] for i in range(len(CORPUS)) if not np.array_equal(got[i], want[i])]
    assert not bad, f"{len(bad)} strings differ, first: {bad[0]!r}"
    truncated = want[:, -1] != 0
    assert truncated.sum() >= 20  # the long texts really were cut, ending with EOT
    assert (want[truncated, -1] == ours.eot_token_id).all()


def test_short_context_matches_open_clip() -> None:
    """The demo CLIP's context (16): truncation at another length."""
    reference = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    want = reference(CORPUS).numpy()
    assert np.array_equal(ClipTokenizer(context_length=16)(CORPUS), want)
