"""Where onnxruntime spends its time in an exported folder's graphs: share of kernel time per operator.

    python bench/op_profile.py dist/ViT-B-32                 # batch 1, the bench's photos and captions
    python bench/op_profile.py dist/ViT-B-32 --batch 8

Each graph gets one session with onnxruntime's profiler on (default session options, so the
operators are those after onnxruntime's own fusions), 3 warm-up runs whose profile is dropped, then
`--runs` runs whose kernel times are summed per operator type. What the matrix products (MatMul,
Gemm, FusedMatMul, Conv and their integer forms) take bounds what any graph rewrite short of
changing them can gain: the rest of the time, at most.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip_onnx import manifest  # noqa: E402
from clip_onnx.contract import GRAPHS  # noqa: E402

PRODUCTS = {"MatMul", "Gemm", "FusedMatMul", "Conv", "FusedConv", "MatMulInteger", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "ConvInteger", "QLinearConv"}
WARMUP = 3


def kernel_shares(path: Path, feeds: dict, runs: int) -> collections.Counter:
    """Kernel microseconds per operator type over `runs` profiled runs."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="clip-onnx-profile-") as scratch:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(WARMUP + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    # the first WARMUP runs are dropped: they include the session's first-run costs
    per_run = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = per_run[WARMUP]["ts"] if len(per_run) > WARMUP else 0
    times: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start:
            times[event["args"]["op_name"]] += event["dur"]
    return times


def main() -> None:
    from speed import inputs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="an exported folder (clip-onnx export ... -o dist)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20, help="profiled runs per graph")
    parser.add_argument("--top", type=int, default=8, help="operator types listed per graph")
    args = parser.parse_args()
    data = manifest.read(args.folder)
    feeds_all = inputs(data["preprocessing"]["resolution"], args.batch)
    print(f"{data['name']} {data['precision']}, batch {args.batch}, {args.runs} profiled runs per graph\n")
    print("| graph | matrix products | operators by share of kernel time |")
    print("|---|---:|---|")
    for key, graph in data["graphs"].items():
        feeds = {k: v for k, v in feeds_all.items() if k in GRAPHS[key].inputs}
        times = kernel_shares(args.folder / graph["file"], feeds, args.runs)
        total = sum(times.values())
        products = sum(v for k, v in times.items() if k in PRODUCTS)
        rest = ", ".join(f"{op} {100 * v / total:.1f}%" for op, v in times.most_common(args.top))
        print(f"| {key} | {100 * products / total:.1f}% | {rest} |")


if __name__ == "__main__":
    main()
