"""CLIP's text tokenizer as consumers run it: `tokenizer.json` (written by `exporter.tokenizer`) plus
`clean`, the part of CLIP's text cleaning that the file cannot express. No torch, no `clip` package."""

from __future__ import annotations

import html
from collections.abc import Sequence

import ftfy
import numpy as np
from tokenizers import Tokenizer

from clip_onnx.errors import ClipOnnxError

TOKENIZER = "tokenizer.json"


def clean(text: str) -> str:
    """The part of CLIP's `basic_clean` that tokenizer.json cannot express: ftfy's repairs (mojibake,
    curly quotes, ligatures, width, NFC) and HTML unescaping, twice. Apply it before encoding."""
    return html.unescape(html.unescape(ftfy.fix_text(text)))


def encode(tokenizer: Tokenizer, texts: Sequence[str], truncate: bool = False) -> np.ndarray:
    """`clip.tokenize(texts, truncate=truncate)` as int32 [N, context_length], from a `build` tokenizer
    or its file. Over-length texts raise unless `truncate`, as in `clip.tokenize`, so none is cut silently."""
    context_length = tokenizer.padding["length"]
    encodings = tokenizer.encode_batch([clean(text) for text in texts])
    for text, encoding in zip(texts, encodings):
        if encoding.overflowing and not truncate:
            shown = text if len(text) <= 60 else text[:60] + "..."
            raise ClipOnnxError(
                f"Input {shown!r} is too long for context length {context_length}; shorten it or pass "
                f"truncate=True (--truncate on the command line) to keep its first {context_length - 2} tokens", "text_too_long"
            )
    return np.array([encoding.ids for encoding in encodings], dtype=np.int32).reshape(len(texts), context_length)
