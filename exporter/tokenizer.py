"""Where `tokenizer.json` is made: CLIP's text tokenizer in Hugging Face `tokenizers` format, so that
Rust, JavaScript and Python consumers get the ids of `clip.tokenize` without OpenAI's Python code.

The file holds every step of `clip.tokenize` that `tokenizers` can express. What it cannot (ftfy and
HTML unescaping) is `clip_onnx.tokenizer.clean`, which a consumer applies to each text before encoding.
It reads the BPE vocabulary shipped in the `clip` package without importing it (that imports torch).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers.models import BPE

from clip_onnx.errors import ClipOnnxError
from clip_onnx.tokenizer import TOKENIZER

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
START, END = "<|startoftext|>", "<|endoftext|>"
PAD_ID = 0  # clip.tokenize pads with zeros; the text model finds the end token by argmax, so 0 is safe
# clip/simple_tokenizer.py reads this many lines of the vocabulary file, the first being a header.
MERGES_END = 49152 - 256 - 2 + 1
# CLIP's pattern without its two special-token alternatives (those are added tokens here). CLIP
# compiles it with IGNORECASE, on text it has already lowercased, where that changes two things,
# spelled out here instead of an inline (?i) (older JavaScript engines reject it, and regex engines
# fold case differently): "'ſ" (long s) matches 's, and U+0345 (folds to the letter ι but is not a
# letter) matches no alternative, so CLIP drops it like whitespace.
PATTERN = r"""'[sſ]|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}""" + "\u0345]+"
# Python's str.lower() (unlike `tokenizers`' Lowercase, which maps one character at a time) writes
# a capital sigma that ends a word as final sigma ς: Unicode's Final_Sigma context, where the nearest
# character on each side that is not Case_Ignorable is Cased before the sigma and not Cased after it.
# Some characters (ʰ, U+0345) are both, hence the class [^\P{Cased}\p{Case_Ignorable}] for "Cased and
# not Case_Ignorable": a form Oniguruma and JavaScript's u-mode both read.
CASED = r"[^\P{Cased}\p{Case_Ignorable}]"
FINAL_SIGMA = rf"(?<={CASED}\p{{Case_Ignorable}}*)Σ(?!\p{{Case_Ignorable}}*{CASED})"


def vocab_path() -> Path:
    """The BPE file inside the installed `clip` package, found without importing it (that imports torch)."""
    spec = importlib.util.find_spec("clip")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    where = f"in {', '.join(folders)}" if folders else "(the `clip` package is not installed)"
    raise ClipOnnxError(f"CLIP's BPE vocabulary {VOCAB_FILE} not found {where}; run `pip install openai-clip==1.0.1`")


@functools.cache
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Ids in clip.simple_tokenizer.SimpleTokenizer's order: bytes, bytes + "</w>", merges, specials.
    Read once per process (`build` and `special_ids` both need it); callers must not modify it."""
    lines = gzip.open(vocab_path()).read().decode("utf-8").split("\n")[1:MERGES_END]
    merges = [tuple(line.split()) for line in lines]
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [START, END]
    return {token: i for i, token in enumerate(tokens)}, merges


def special_ids() -> tuple[int, int]:
    """The ids of the start and end tokens."""
    vocab, _ = _vocab_and_merges()
    return vocab[START], vocab[END]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table in CLIP's order: printable Latin-1 bytes first, then the rest."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(rest)}


def build(context_length: int = 77) -> Tokenizer:
    """`clip.tokenize(texts, context_length, truncate=True)` for texts already passed through `clean`.

    Laid out like Hugging Face's CLIPTokenizerFast (transformers' CLIPConverter), with what that one
    lacks for id equality: final sigma, CLIP's case-insensitive pattern (long s, U+0345), zero padding
    to `context_length`, truncation that keeps the end token, and a decoder that turns "</w>" into spaces.
    """
    vocab, merges = _vocab_and_merges()
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", fuse_unk=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            # ftfy's NFC (in `clean` too) for consumers that skip `clean`
            normalizers.NFC(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
            normalizers.Replace(Regex(FINAL_SIGMA), "ς"),
            normalizers.Lowercase(),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # keep the pattern's matches, drop what lies between (whitespace)
            pre_tokenizers.Split(Regex(PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # Matched after normalization, as CLIP matches them in lowercased text.
    tokenizer.add_special_tokens([AddedToken(token, normalized=True, special=True) for token in (START, END)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}", special_tokens=[(START, vocab[START]), (END, vocab[END])]
    )
    tokenizer.enable_truncation(max_length=context_length)
    tokenizer.enable_padding(length=context_length, pad_id=PAD_ID, pad_token=tokenizer.id_to_token(PAD_ID))
    # clip.simple_tokenizer.decode: bytes back to text, then every "</w>" becomes a space.
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    return tokenizer


def write(folder: Path, context_length: int = 77) -> Path:
    """Writes `<folder>/tokenizer.json` and returns its path."""
    path = folder / TOKENIZER
    build(context_length).save(str(path))
    return path
