"""Export variants with random weights, one child process each, and print the table of docs/measurements.md.

    python bench/export_table.py --variants ViT-B/32 RN50 --precisions fp32 fp16 -o /tmp/bench-dist

Peak RSS is the child's own (os.wait4), so runs do not see each other's memory; it covers the whole
run (weights, references, three exports, verification), or with `--no-verify` the exports alone
(weights and the three graphs, no references and no onnxruntime). Per-graph export seconds are parsed from the
CLI's progress lines; file size (graph plus its external data) from disk; max abs diff and min
cosine from the verification in the manifest the export wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from exporter.onnx_files import external_files
from exporter.variants import VARIANTS, folder_name


def run(variant: str, precision: str, out: Path, options: Sequence[str] = ()) -> tuple[int, float, float, list[float]]:
    """Exit code, wall seconds, peak RSS in GB and each graph's export seconds of one export."""
    command = [sys.executable, "-m", "exporter", "export", variant, "--weights", "random", "--precision", precision,
               "-o", str(out / precision), "--force", *options]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        log.seek(0)
        text = log.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(text[-3000:])
    seconds = [float(s) for s in re.findall(r"done in ([0-9.]+) s", text)]
    return code, wall, usage.ru_maxrss * 1024 / 1e9, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=[v.name for v in VARIANTS.values() if v.published])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    parser.add_argument("-o", "--output", type=Path, default=Path("/tmp/clip-onnx-bench"))
    parser.add_argument("--no-verify", action="store_true", help="export only: peak RSS of the exports alone")
    args = parser.parse_args()
    options = ["--no-verify"] if args.no_verify else []
    print("| variant | precision | graph | file MB | export s | whole run s | peak RSS GB | max abs diff | min cosine |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for variant in args.variants:
        for precision in args.precisions:
            code, wall, rss, seconds = run(variant, precision, args.output, options)
            folder = args.output / precision / folder_name(variant)
            if code != 0:
                print(f"| {variant} | {precision} | (failed, exit {code}) | | | {wall:.0f} | {rss:.2f} | | |", flush=True)
                continue
            manifest = json.loads((folder / "manifest.json").read_text())
            for (key, graph), export_seconds in zip(manifest["graphs"].items(), seconds):
                path = folder / graph["file"]
                size = sum(f.stat().st_size for f in [path, *external_files(path)])
                rows = [c for c in manifest["verification"].get("comparisons", []) if c["graph"] == key]
                accuracy = (f"{max(c['max_abs_diff'] for c in rows):.1e} | {min(c['min_cosine'] for c in rows):.7f}"
                            if rows else "not verified | not verified")
                print(f"| {variant} | {precision} | {key} | {size / 1e6:.0f} | {export_seconds:.0f} | {wall:.0f} | {rss:.2f} | "
                      f"{accuracy} |", flush=True)


if __name__ == "__main__":
    main()
