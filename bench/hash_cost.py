"""What checking a file's SHA-256 on load costs (`clip_onnx.Model(check_sha256=True)`, the default),
against only reading the same bytes, side by side in one run.

    python bench/hash_cost.py --megabytes 1024

Writes a scratch file of random bytes, reads it once to warm the page cache, then alternates plain
reads and `integrity.sha256_file` over it, and prints each rate and their ratio."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from clip_onnx.integrity import sha256_file

CHUNK = 1 << 20


def read_all(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(CHUNK):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=1024, help="scratch file size (default: 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "blob"
        with open(path, "wb") as f:
            for _ in range(args.megabytes):
                f.write(os.urandom(CHUNK))
        read_all(path)
        timings: dict[str, list[float]] = {"read": [], "sha256": []}
        for _ in range(args.rounds):
            for name, work in (("read", read_all), ("sha256", sha256_file)):
                start = time.perf_counter()
                work(path)
                timings[name].append(time.perf_counter() - start)
    gigabytes = args.megabytes * CHUNK / 1e9
    best = {name: min(values) for name, values in timings.items()}
    for name, seconds in best.items():
        print(f"{name:>7}: {seconds:.3f} s for {gigabytes:.2f} GB = {gigabytes / seconds:.2f} GB/s "
              f"({seconds / gigabytes:.2f} s per GB)")
    print(f"sha256 / read: {best['sha256'] / best['read']:.1f}x")


if __name__ == "__main__":
    main()
