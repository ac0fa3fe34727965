"""int8 weights signed or unsigned, measured side by side in one run on this machine's CPU.

    python bench/int8_weights.py --variant ViT-B/32        # exports float32 with random weights first
    python bench/int8_weights.py --variant RN50 --rounds 5

`--precision int8` quantises with onnxruntime's dynamic quantisation (exporter/quantize.py). Its
activations are uint8; its weights can be int8 ("signed", onnxruntime's default) or uint8 ("unsigned",
what the exporter writes). On x86 CPUs without VNNI, onnxruntime multiplies uint8 by int8 in 16-bit
pairs that saturate, so the signed graph's outputs depend on the CPU; uint8 by uint8 is exact on every
CPU. The run quantises one float32 export both ways (the exporter's operators, one scale per tensor)
and prints, for the visual and the text graph at batch 1 and 8:
- the median time per call over `--rounds` fresh processes, the two weight types alternated (median of
  `--repeats` calls after two warm-up calls in each), and signed/unsigned;
- the lowest cosine of an output row to the float32 graph's on the same inputs (random pixels, token
  ids with their end token at several positions), and the largest difference relative to the largest
  float32 output.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.verify import row_cosine  # noqa: E402

BATCHES = (1, 8)
GRAPHS = ("visual", "transformer")
# In a fresh process: one graph on one input file; the median seconds per call, the outputs saved.
CHILD = """
import json, statistics, sys, time
import numpy as np, onnxruntime as ort
job = json.loads(sys.argv[1])
session = ort.InferenceSession(job["graph"], providers=["CPUExecutionProvider"])
feeds = {session.get_inputs()[0].name: np.load(job["input"])}
for _ in range(2):
    outputs = session.run(None, feeds)
times = []
for _ in range(job["repeats"]):
    start = time.perf_counter()
    session.run(None, feeds)
    times.append(time.perf_counter() - start)
np.save(job["output"], outputs[0])
print(json.dumps(statistics.median(times)))
"""


def run(graph: Path, inputs: Path, output: Path, repeats: int) -> float:
    job = {"graph": str(graph), "input": str(inputs), "output": str(output), "repeats": repeats}
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="ViT-B/32", help="exported with random weights (default: ViT-B/32)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per weight type and case (default: 3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls in each process (default: 10)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser advises a pre-processing pass it does not need

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from exporter import pipeline
    from exporter.quantize import OPTIONS
    from exporter.variants import folder_name, get_variant
    from exporter.weights import random_weights

    with tempfile.TemporaryDirectory(prefix="int8-weights-") as scratch:
        scratch = Path(scratch)
        print(f"exporting {args.variant} (fp32, random weights) ...", flush=True)
        folder = pipeline.export(random_weights(get_variant(args.variant)), folder_name(args.variant),
                                 scratch / "fp32", precision="fp32", verify=False, log=lambda _: None)
        manifest = json.loads((folder / "manifest.json").read_text())
        kinds = {"signed": QuantType.QInt8, "unsigned": QuantType.QUInt8}
        graphs = {("fp32", g): folder / manifest["graphs"][g]["file"] for g in GRAPHS}
        for kind, weight_type in kinds.items():
            for graph in GRAPHS:
                print(f"quantising {graph} with {kind} weights ...", flush=True)
                graphs[kind, graph] = scratch / f"{graph}-{kind}.onnx"
                quantize_dynamic(graphs["fp32", graph], graphs[kind, graph], weight_type=weight_type, **OPTIONS)

        rng = np.random.default_rng(0)
        resolution = manifest["preprocessing"]["resolution"]
        inputs = {}
        for batch in BATCHES:
            inputs["visual", batch] = scratch / f"image-{batch}.npy"
            np.save(inputs["visual", batch], rng.standard_normal((batch, 3, resolution, resolution), dtype=np.float32))
            text = np.zeros((batch, 77), np.int32)
            for row in range(batch):  # start token, words, end token at its own position per row
                end = 2 + (row * 9) % 60
                text[row, 0], text[row, 1:end], text[row, end] = 49406, rng.integers(1, 49406, end - 1), 49407
            inputs["transformer", batch] = scratch / f"text-{batch}.npy"
            np.save(inputs["transformer", batch], text)

        print(f"\n{manifest['name']} int8, weights signed (int8) against unsigned (uint8); "
              f"median of {args.rounds} processes x {args.repeats} calls; cosine and error against fp32")
        print(f"{'graph':12} {'batch':>5} {'signed ms':>10} {'unsigned ms':>12} {'s/u':>6}   "
              f"{'signed cos':>11} {'unsigned cos':>13} {'signed rel':>11} {'unsigned rel':>13}")
        for graph in GRAPHS:
            for batch in BATCHES:
                case = inputs[graph, batch]
                reference = scratch / "fp32.npy"
                run(graphs["fp32", graph], case, reference, 1)
                expected = np.load(reference)
                times = {kind: [] for kind in kinds}
                for _ in range(args.rounds):
                    for kind in kinds:  # alternated, so drift in the machine's speed hits both
                        times[kind].append(run(graphs[kind, graph], case, scratch / f"{kind}.npy", args.repeats))
                ms = {kind: statistics.median(values) * 1e3 for kind, values in times.items()}
                cos, rel = {}, {}
                for kind in kinds:
                    actual = np.load(scratch / f"{kind}.npy")
                    cos[kind] = row_cosine(actual, expected)
                    rel[kind] = np.abs(actual - expected).max() / np.abs(expected).max()
                print(f"{graph:12} {batch:5d} {ms['signed']:10.2f} {ms['unsigned']:12.2f} "
                      f"{ms['signed'] / ms['unsigned']:6.2f}   {cos['signed']:11.6f} {cos['unsigned']:13.6f} "
                      f"{rel['signed']:11.2e} {rel['unsigned']:13.2e}")


if __name__ == "__main__":
    main()
