"""Compare the Rust port with Python beyond the conformance file: NFC on every code point and on
random sequences of combining characters (including characters assigned after Unicode 14), and
fix_text on random mojibake. Run from the repository root:

    .venv/bin/python rust/ftfy/scripts/compare_with_python.py

It builds `examples/ftfy_map.rs` (release) with CARGO_TARGET_DIR (default /tmp/ftfy-target).
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import ftfy
from ftfy import chardata

HERE = Path(__file__).resolve().parent.parent
TARGET = os.environ.get("CARGO_TARGET_DIR", "/tmp/ftfy-target")
subprocess.run(["cargo", "build", "-j1", "--release", "--example", "ftfy_map"], cwd=HERE, check=True,
               env={**os.environ, "CARGO_TARGET_DIR": TARGET})
BINARY = Path(TARGET) / "release" / "examples" / "ftfy_map"
rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 7)


def run(which, texts):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(texts))
        subprocess.run([BINARY, which, src, dst], check=True)
        return json.loads(dst.read_text())


def report(name, texts, expected, got):
    bad = [(t, e, g) for t, e, g in zip(texts, expected, got) if e != g]
    print(f"{name}: {len(texts)} texts, {len(bad)} differ")
    for t, e, g in bad[:5]:
        print(f"  text {t!r:.200}\n  py   {e!r:.200}\n  rust {g!r:.200}")
    return len(bad)


scalars = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
pool = [c for c in scalars if unicodedata.combining(chr(c)) or unicodedata.decomposition(chr(c))]
pool += list(range(0x1100, 0x1200)) + list(range(0x16100, 0x16140)) + list(range(0x1E4D0, 0x1E4FA)) + [0x61, 0x41, 0x65]
nfc_texts = [chr(c) for c in scalars]
nfc_texts += ["".join(chr(rng.choice(pool)) for _ in range(rng.randint(1, 8))) for _ in range(200_000)]
failures = report("nfc", nfc_texts, [unicodedata.normalize("NFC", t) for t in nfc_texts], run("nfc", nfc_texts))

sys.path.insert(0, str(HERE.parent.parent))
from tests import ftfy_cases  # noqa: E402

texts = []
for seed in range(100, 105):
    texts += ftfy_cases.generated(10_000, seed)
chars = sorted(set().union(*(set(bytes(range(0x80, 0x100)).decode(e)) for e in chardata.CHARMAP_ENCODINGS)))
chars += list("aeiou AEIOU.,!?'\"-\n\r<&;#") + ["\ufffd", "\xa0", "\x1a", "\u2028", "\x85", "\x1b[", "&amp;", "&#x41;"]
encodings = list(chardata.CHARMAP_ENCODINGS) + ["windows-1252", "utf-8"]
hot = [0xC0, 0x80, 0xED, 0xA0, 0xBD, 0xB2, 0xA9, 0xC2, 0xC3, 0xE2, 0x9C, 0x9D, 0x1A, 0x3F, 0x20, 0x0A, 0xF0, 0x9F, 0x85]
for _ in range(50_000):
    texts.append("".join(rng.choice(chars) for _ in range(rng.randint(1, 12))))
    raw = bytes(rng.choice(hot) if rng.random() < 0.6 else rng.randrange(256) for _ in range(rng.randint(1, 14)))
    raw = rng.choice(ftfy_cases.WORDS + ftfy_cases.REPAIRS).encode() + raw
    texts.append(raw.decode(rng.choice(encodings), errors="replace"))
texts = [t for t in texts if not any(0xD800 <= ord(c) <= 0xDFFF for c in t)]
failures += report("fix_text", texts, [ftfy.fix_text(t) for t in texts], run("fix_text", texts))
sys.exit(1 if failures else 0)
