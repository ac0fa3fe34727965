"""Three graphs in the bytes of two, measured: one export laid out both ways, side by side in one run.

    python bench/shared_weights.py --variant ViT-B/32 --precision fp32      # exports random weights first
    python bench/shared_weights.py --folder dist/ViT-B-32                   # an existing export

"after" is the export as clip-onnx writes it (exporter/shared_weights.py: the forward graph reads the
encoders' data files). "before" is the same graphs with every tensor inside its own graph, each graph a
self-contained `.onnx` (or, over protobuf's limit, with a data file of its own): the layout exports had
before the weights were shared, rebuilt here from the same tensors. The run prints:

- bytes on disk of the graphs and their data, and what a text-only, an image-only and a full download
  fetch (the manifest's files for those graphs, and the manifest);
- for each graph alone and for all three in one process: the time to create the onnxruntime sessions
  and the process's peak resident memory after one inference, each in a fresh process, the two
  layouts alternated, median of `--rounds`;
- whether every graph's outputs are identical, bit for bit, in the two layouts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clip_onnx import integrity  # noqa: E402

PROTOBUF_LIMIT = 2**31 - 2**20  # bytes a self-contained graph may reach; over it, a data file of its own
SETS = {"text-only": ["transformer"], "image-only": ["visual"], "forward": ["forward"],
        "all three": ["visual", "transformer", "forward"]}

# In a fresh process: create the sessions, run each once, report seconds and the peak RSS in bytes.
CHILD = """
import json, sys, time
import numpy as np, onnxruntime as ort
jobs = json.loads(sys.argv[1])
start = time.perf_counter()
sessions = [ort.InferenceSession(path, providers=["CPUExecutionProvider"]) for path in jobs["graphs"]]
loaded = time.perf_counter() - start
outputs = []
for session in sessions:
    feeds = {i.name: np.load(jobs["inputs"][i.name]) for i in session.get_inputs()}
    outputs += [o.tobytes() for o in session.run(None, feeds)]
import hashlib
# VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's across fork and exec)
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": loaded, "peak": peak,
                  "outputs": [hashlib.sha256(o).hexdigest() for o in outputs]}))
"""


def rebuild_unshared(after: Path, before: Path) -> None:
    """The folder with every graph's tensors inside it (the layout before sharing), same tensors."""
    before.mkdir(parents=True)
    manifest = json.loads((after / "manifest.json").read_text())
    for spec in manifest["graphs"].values():
        model = onnx.load(str(after / spec["file"]))  # every tensor, from whichever data file holds it
        if model.ByteSize() < PROTOBUF_LIMIT:
            onnx.save_model(model, str(before / spec["file"]))
        else:
            onnx.save_model(model, str(before / spec["file"]), save_as_external_data=True,
                            location=f"{spec['file']}.data")
        del model
    for name in integrity.consumer_files(manifest) + ["manifest.json"]:
        shutil.copyfile(after / name, before / name)


def files_of(folder: Path, graphs: list[str]) -> list[Path]:
    """A graph set's files in `folder`: the graph, whatever data it refers to (the layouts differ there), the
    tokenizer and preprocessing files the manifest lists for it, and the manifest."""
    from exporter.onnx_files import external_files

    manifest = json.loads((folder / "manifest.json").read_text())
    found = []
    for graph in graphs:
        spec = manifest["graphs"][graph]
        path = folder / spec["file"]
        found += [path, *external_files(path)]
        found += [folder / name for name in spec["files"] if name in integrity.consumer_files(manifest)]
    return list(dict.fromkeys([*found, folder / "manifest.json"]))


def measure(folder: Path, graphs: list[str], inputs: dict[str, str]) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    jobs = {"graphs": [str(folder / manifest["graphs"][g]["file"]) for g in graphs], "inputs": inputs}
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(jobs)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="an export written by clip-onnx (default: export --variant)")
    parser.add_argument("--variant", default="ViT-B/32", help="exported with random weights when no --folder")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per layout and graph set (default: 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shared-weights-") as scratch:
        scratch = Path(scratch)
        after = args.folder
        if after is None:
            from exporter import pipeline
            from exporter.variants import folder_name, get_variant
            from exporter.weights import random_weights

            print(f"exporting {args.variant} ({args.precision}, random weights) ...", flush=True)
            after = pipeline.export(random_weights(get_variant(args.variant)), folder_name(args.variant),
                                    scratch / "after", precision=args.precision, verify=False, log=lambda _: None)
        before = scratch / "before"
        print("rebuilding the unshared layout ...", flush=True)
        rebuild_unshared(after, before)
        manifest = json.loads((after / "manifest.json").read_text())
        resolution = manifest["preprocessing"]["resolution"]
        rng = np.random.default_rng(0)
        inputs = {"image": str(scratch / "image.npy"), "text": str(scratch / "text.npy")}
        np.save(inputs["image"], rng.standard_normal((2, 3, resolution, resolution), dtype=np.float32))
        text = np.zeros((3, 77), np.int32)
        text[:, 0], text[:, 1:6], text[:, 6] = 49406, rng.integers(1, 49406, (3, 5)), 49407
        np.save(inputs["text"], text)

        print(f"\n{manifest['name']} {manifest['precision']}: bytes on disk")
        layouts = {"before": before, "after": after}
        size = {name: sum(p.stat().st_size for p in folder.iterdir() if p.name.endswith((".onnx", ".data")))
                for name, folder in layouts.items()}
        print(f"  graphs and data: before {size['before'] / 1e6:9.1f} MB, after {size['after'] / 1e6:9.1f} MB, "
              f"after/before {size['after'] / size['before']:.3f}")
        forward = manifest["graphs"]["forward"]["file"]
        own = sum(p.stat().st_size for p in files_of(after, ["forward"]) if p not in files_of(after, ["visual", "transformer"]))
        print(f"  {forward}'s own files beyond the encoders': {own / 1e6:.3f} MB")
        print("\ndownload (the graphs' files, tokenizer.json and/or preprocess.json, manifest.json)")
        for label, graphs in SETS.items():
            fetched = {name: sum(p.stat().st_size for p in files_of(folder, graphs)) for name, folder in layouts.items()}
            print(f"  {label:<11} before {fetched['before'] / 1e6:9.1f} MB, after {fetched['after'] / 1e6:9.1f} MB, "
                  f"after/before {fetched['after'] / fetched['before']:.3f}")

        print(f"\nload in a fresh process (median of {args.rounds}; the layouts alternated)")
        identical = True
        for label, graphs in SETS.items():
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                for name, folder in layouts.items():
                    runs[name].append(measure(folder, graphs, inputs))
            identical &= runs["before"][0]["outputs"] == runs["after"][0]["outputs"]
            seconds = {n: statistics.median(r["seconds"] for r in rs) for n, rs in runs.items()}
            peak = {n: statistics.median(r["peak"] for r in rs) for n, rs in runs.items()}
            print(f"  {label:<11} sessions {seconds['before']:6.2f} s -> {seconds['after']:6.2f} s "
                  f"({seconds['after'] / seconds['before']:.2f}x); peak memory {peak['before'] / 1e6:8.1f} MB -> "
                  f"{peak['after'] / 1e6:8.1f} MB ({peak['after'] / peak['before']:.3f}x)")
        print(f"\noutputs of every graph identical in the two layouts: {'yes' if identical else 'NO'}")


if __name__ == "__main__":
    main()
