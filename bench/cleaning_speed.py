"""CLIP's text cleaning, `ftfy.fix_text` then two HTML unescapes, in Python, Rust and Node, side by side
in one run on the cleaning set's 10,000 generated texts (the conformance artifact's cleaning.json, from
tests/ftfy_cases.py): texts per second each, and the ratio of each port to Python. Best of five passes
each, after a warm-up.

    .venv/bin/python -m bench.cleaning_speed

Needs cargo (builds rust/ftfy's `ftfy_map` example in release mode) and the Node example's packages
(`npm ci` in examples/node)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from clip_onnx.tokenizer import clean
from tests.conformance import COMMITTED

ROOT = Path(__file__).resolve().parent.parent
NODE = """
import { readFileSync } from "node:fs";
import { clean } from "./clip.mjs";
const texts = JSON.parse(readFileSync(process.argv[1], "utf8")).sets.generated.map((c) => c.text);
clean("warm up Ã©");
let best = 0;
for (let pass = 0; pass < 5; pass++) {
  const start = process.hrtime.bigint();
  for (const text of texts) clean(text);
  best = Math.max(best, texts.length / (Number(process.hrtime.bigint() - start) / 1e9));
}
console.log(best);
"""


def python_rate(texts: list[str]) -> float:
    clean("warm up Ã©")
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for text in texts:
            clean(text)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def rust_rate(cases: Path) -> float:
    """fix_text alone (the two unescapes are a small part of the Rust clean)."""
    out = subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "ftfy_map", "--", "bench", str(cases),
                          "generated"], cwd=ROOT / "rust" / "ftfy", capture_output=True, text=True, check=True).stdout
    return max(float(rate) for rate in re.findall(r": (\d+) texts/s", out))


def node_rate(cases: Path) -> float:
    out = subprocess.run(["node", "--input-type=module", "-e", NODE, str(cases)], cwd=ROOT / "examples" / "node",
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def main() -> None:
    cases = COMMITTED / "cleaning.json"
    texts = [case["text"] for case in json.loads(cases.read_text())["sets"]["generated"]]
    rates = {"Python (ftfy + html.unescape x2)": python_rate(texts), "Rust (rust/ftfy fix_text)": rust_rate(cases),
             "Node (ftfy-js + htmlUnescape x2)": node_rate(cases)}
    python = next(iter(rates.values()))
    print(f"{len(texts)} generated texts, best of 5 passes")
    for name, rate in rates.items():
        print(f"{name:36} {rate:10,.0f} texts/s  {rate / python:5.2f}x Python")


if __name__ == "__main__":
    sys.exit(main())
