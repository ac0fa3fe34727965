"""Texts for CLIP's cleaning, `html.unescape(html.unescape(ftfy.fix_text(text)))`, each with Python's result:
the conformance set the Rust and JavaScript ports of ftfy are held to (tests/conformance.py writes it).

- ftfy's own test cases: `tests/data/ftfy/test_cases.json`, from python-ftfy at tag v6.3.1 (commit
  5340af6746ff655a9cd7cb2b50c2fd0b35bb91d3), Apache-2.0 (its LICENSE.txt beside it);
- the tokenizer corpus (`tests/data/tokenizer_corpus.jsonl`);
- `COUNT` generated strings (seed `SEED`): random mixes of what ftfy repairs (mojibake made by encoding
  round trips through the codecs ftfy knows, HTML entities, curly quotes, ligatures, full-width forms,
  line breaks, control characters, terminal escapes, decomposed accents) and what it must leave alone
  (plain words in many scripts, emoji, symbols). Inputs are valid Unicode scalar values only."""

from __future__ import annotations

import html
import json
import random
from pathlib import Path

import ftfy

DATA = Path(__file__).resolve().parent / "data"
COUNT = 10_000
SEED = 24

WORDS = ["a photo of", "cat", "café", "naïve", "façade", "crème brûlée", "Straße", "smörgåsbord", "ĳssel",
         "Ελληνικά", "русский текст", "中文字符", "日本語のテキスト", "한국어", "العربية", "עברית", "हिन्दी",
         "ไทย", "Tiếng Việt", "Ærøskøbing", "Łódź", "Český Krumlov", "İstanbul", "größer", "œuvre", "½ cup",
         "€100", "£5", "©2024", "™", "°C", "µm", "×", "÷", "…", "—", "–", "•"]
REPAIRS = ["‘quoted’", "“double”", "don’t", "‚low‛", "„German“", "‹›«»", "ﬁsh", "ﬂower", "ﬀ ﬃ ﬄ ﬅ ﬆ",
           "Ĳ ĳ ǅ ǈ ǋ", "ＦＵＬＬ　ＷＩＤＴＨ", "１２３！？", "ｶﾀｶﾅ", "line\r\nbreak", "old\rmac", "para\u2029graph",
           "sep\u2028line", "next\x85line", "nul\x00byte", "bell\x07", "del\x7f", "\ufeffbom", "zero\u200bwidth",
           "\x1b[36mcolour\x1b[0m", "tab\there", "e\u0301", "a\u0308o\u0308u\u0308", "n\u0303", "Å", "\u212b",
           "&amp;", "&lt;b&gt;", "&eacute;", "&EACUTE;", "&#233;", "&#x1F600;", "&amp;amp;", "&nbsp;", "&quot;hi&quot;",
           "&ampx", "&#150;", "&#x80;", "&notit;", "&copy", "AT&T", "a & b", "<p>caf&eacute;</p>", "\ue000private",
           "\U000e0041tag", "\ufff9anno\ufffb", "\u206anat", "😺", "👩‍🔬", "🇫🇷", "👍🏽"]
CODECS = ["latin-1", "windows-1252", "sloppy-windows-1252", "windows-1250", "sloppy-windows-1250", "windows-1251",
          "sloppy-windows-1251", "iso-8859-2", "macroman", "cp437", "sloppy-windows-1253", "sloppy-windows-1254"]


def _mojibake(rng: random.Random, text: str) -> str:
    """UTF-8 bytes read in another codec, once or twice: what ftfy's encoding repair undoes."""
    for _ in range(rng.choice([1, 1, 1, 2])):
        try:
            text = text.encode("utf-8").decode(rng.choice(CODECS))
        except UnicodeDecodeError:
            break
    return text


def _piece(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(WORDS)
    if kind < 0.6:
        return rng.choice(REPAIRS)
    if kind < 0.85:
        return _mojibake(rng, rng.choice(WORDS + REPAIRS[:12]))
    # any scalar value from a few blocks, surrogates excluded
    block = rng.choice([(0x20, 0x7F), (0x80, 0x100), (0x100, 0x250), (0x370, 0x530), (0x2000, 0x2070),
                        (0x3000, 0x3100), (0xFF00, 0xFFF0), (0x1F300, 0x1F700)])
    return "".join(chr(rng.randrange(*block)) for _ in range(rng.randint(1, 4)))


def generated(count: int = COUNT, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(["", " ", "  "]).join(_piece(rng) for _ in range(rng.randint(1, 6))) for _ in range(count)]


def texts() -> dict[str, list[str]]:
    cases = json.loads((DATA / "ftfy" / "test_cases.json").read_text())
    corpus = [json.loads(line) for line in (DATA / "tokenizer_corpus.jsonl").read_text().splitlines() if line.strip()]
    return {"ftfy_test_cases": [case["original"] for case in cases], "tokenizer_corpus": corpus,
            "generated": generated()}


def write(path: Path) -> Path:
    """`{"ftfy": version, "sets": {name: [{"text", "fixed", "cleaned"}]}}` as JSON at `path`."""
    sets = {name: [{"text": text, "fixed": ftfy.fix_text(text),
                    "cleaned": html.unescape(html.unescape(ftfy.fix_text(text)))} for text in items]
            for name, items in texts().items()}
    path.write_text(json.dumps({"ftfy": ftfy.__version__, "sets": sets}, ensure_ascii=False))
    return path
