"""PyTorch eager against our ONNX Runtime graphs, side by side in one run, with the ratios.

    python bench/speed.py --variant ViT-B/32 --precision fp32          # exports with random weights first
    python bench/speed.py --folder dist/ViT-B-32                       # an existing export (its manifest's weights)
    python bench/speed.py --variant ViT-B/32 --device cuda             # CUDA: torch on the GPU, onnxruntime-gpu
    python bench/speed.py --variant ViT-B/32 --peer /tmp/peer-vit-b-32 # and optimum's export (bench/peer.py)

What one run measures, on the same inputs (scikit-image's photos through CLIP's preprocessing; captions
"a photo of a <label>"):
- each graph (visual, transformer, forward) at batch 1 and 8 in PyTorch eager (`torch.inference_mode`,
  CLIP's own float32 `encode_image` / `encode_text` / `forward`) and in onnxruntime (the exported file,
  default session options): median of `--repeats` runs after `--warmup` runs;
- fairness: onnxruntime's and PyTorch's worker threads spin after each run and slow whatever runs next
  in the same process, so each implementation runs in a process of its own, one after the other,
  `--rounds` times alternating, and each timing is the median over the rounds; spinning stays on (each
  library's default);
- the cosine of every output row to PyTorch's (so a fast but wrong graph shows);
- GFLOP per call, counted by `torch.utils.flop_counter` on the very modules that were exported (the text
  graph's count follows the cut after the longest end token), and the GFLOP/s each achieved, against
  a float32 reference rate measured in the same run: PyTorch's 4096x4096 matrix product (140-161
  GFLOP/s on this project's 2 vCPUs). It is a yardstick, not the hardware's ceiling: onnxruntime's
  blocked convolutions exceed it (RN50's visual graph at batch 8: 131% of it);
- when it exports: the export's wall time and peak RSS (child process), and each graph's file size.

- with `--peer FOLDER`: the forward graph of Hugging Face's CLIPModel of the same architecture as
  exported and optimised by optimum (`bench/peer.py` writes the folder), in a third process, on the
  same token ids: padded to 77 as our graphs get them, and cut after the longest end token as a
  Hugging Face tokenizer with `padding=True` gives them. Its weights are other random weights, so
  no cosine is reported for it.

fp16 graphs are compared with PyTorch float32 (CPU PyTorch has no fast fp16 path); int8 likewise.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip_onnx import manifest  # noqa: E402
from clip_onnx.contract import GRAPHS  # noqa: E402
from exporter.onnx_files import external_files  # noqa: E402
from exporter.variants import folder_name  # noqa: E402
from exporter.verify import row_cosine  # noqa: E402

LABELS = ("cat", "dog", "car", "rocket", "cup of coffee", "astronaut", "camera", "tree")
BATCHES = (1, 8)
REFERENCE_SIZE = 4096  # of the square float32 matrix product whose rate is the reference


@functools.cache
def _photos(resolution: int) -> np.ndarray:
    from exporter.verify import photos

    return photos(resolution).numpy()


def inputs(resolution: int, batch: int) -> dict[str, np.ndarray]:
    from exporter.verify import tokenize

    images = _photos(resolution)
    return {"image": np.resize(images, (batch, *images.shape[1:])),
            "text": tokenize([f"a photo of a {label}" for label in LABELS[:batch]]).numpy()}


def median_ms(call, warmup: int, repeats: int) -> float:
    import time

    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def child_torch(folder: Path, args: argparse.Namespace) -> dict:
    """PyTorch eager: timings, outputs (saved for the cosines) and the FLOP count of each exported module."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from exporter import export, pipeline

    data = manifest.read(folder)
    model = pipeline.load_source(data["source"], data.get("variant"), progress=False).model.to(args.device)
    calls = {"visual": lambda f: model.encode_image(f["image"]), "transformer": lambda f: model.encode_text(f["text"]),
             "forward": lambda f: model(f["image"], f["text"])[0]}
    results = {}
    for batch in BATCHES:
        feeds = {k: torch.from_numpy(v).to(args.device) for k, v in inputs(model.visual.input_resolution, batch).items()}
        for key, call in calls.items():
            def run():
                with torch.inference_mode():
                    out = call(feeds)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                return out
            ms = median_ms(run, args.warmup, args.repeats)
            counter = FlopCounterMode(display=False)
            with counter, torch.inference_mode():
                export.WRAPPERS[key](model)(*(feeds[n] for n in GRAPHS[key].inputs))
            np.save(args.scratch / f"torch-{key}-{batch}.npy", run().float().cpu().numpy())
            results[f"{key}/{batch}"] = {"ms": ms, "gflop": counter.get_total_flops() / 1e9}
    a, b = torch.randn(REFERENCE_SIZE, REFERENCE_SIZE), torch.randn(REFERENCE_SIZE, REFERENCE_SIZE)
    results["reference_gflops"] = 2 * REFERENCE_SIZE**3 / median_ms(lambda: a @ b, 2, 5) / 1e6
    return results


def child_onnx(folder: Path, args: argparse.Namespace) -> dict:
    """onnxruntime: the exported graphs, one session at a time."""
    data = manifest.read(folder)
    results = {}
    for key, graph in data["graphs"].items():  # one session at a time: it is freed when the function returns
        results.update(_time_graph(key, folder / graph["file"], data["preprocessing"]["resolution"], args))
    return results


def child_peer(folder: Path, args: argparse.Namespace) -> dict:
    """optimum's export of Hugging Face's CLIPModel: its forward graph, 77 tokens and cut."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model_optimized.onnx"), providers=["CPUExecutionProvider"])
    resolution = json.loads((folder / "config.json").read_text())["vision_config"]["image_size"]
    results = {}
    for batch in BATCHES:
        feeds = inputs(resolution, batch)
        ids = feeds["text"].astype(np.int64)
        for name, cut in (("77 tokens", ids.shape[1]), ("cut", int(ids.argmax(1).max()) + 1)):
            peer_feeds = {"input_ids": ids[:, :cut], "attention_mask": (ids[:, :cut] != 0).astype(np.int64),
                          "pixel_values": feeds["image"]}
            results[f"{name}/{batch}"] = {"ms": median_ms(lambda: session.run(None, peer_feeds), args.warmup, args.repeats)}
    return results


def _time_graph(key: str, path: Path, resolution: int, args: argparse.Namespace) -> dict:
    import onnxruntime as ort

    from exporter.verify import providers

    session = ort.InferenceSession(str(path), providers=providers(args.device))
    results = {}
    for batch in BATCHES:
        feeds = {k: v for k, v in inputs(resolution, batch).items() if k in GRAPHS[key].inputs}
        results[f"{key}/{batch}"] = {"ms": median_ms(lambda: session.run(None, feeds), args.warmup, args.repeats)}
        np.save(args.scratch / f"onnx-{key}-{batch}.npy", session.run(None, feeds)[0])
    return results


def in_child(kind: str, folder: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--folder", str(args.peer if kind == "peer" else folder),
               "--scratch", str(args.scratch),
               "--device", args.device, "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {kind} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def export(args: argparse.Namespace, out: Path) -> Path:
    from export_table import run

    code, wall, rss, seconds = run(args.variant, args.precision, out, args.export_option)
    if code != 0:
        sys.exit(f"exporting {args.variant} ({args.precision}) failed with exit code {code}")
    print(f"export of {args.variant} {args.precision} (random weights, child process): {wall:.0f} s wall, "
          f"peak RSS {rss:.2f} GB; per graph {', '.join(f'{s:.0f} s' for s in seconds)}")
    return out / args.precision / folder_name(args.variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="ViT-B/32", help="exported with random weights (seed 0) before measuring")
    parser.add_argument("--precision", default="fp32", help="precision of that export")
    parser.add_argument("--export-option", action="append", default=[], metavar="ARG",
                        help="extra argument for `clip-onnx export`, e.g. --export-option=--seed=1")
    parser.add_argument("--folder", type=Path, help="measure this exported folder instead of exporting one")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two processes")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--peer", type=Path, help="also time optimum's export in this folder (see bench/peer.py)")
    parser.add_argument("--child", choices=("torch", "onnx", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure = {"torch": child_torch, "onnx": child_onnx, "peer": child_peer}[args.child]
        print(json.dumps(measure(args.folder, args)))
        return
    with tempfile.TemporaryDirectory(prefix="clip-onnx-bench-") as scratch:
        args.scratch = Path(scratch)
        folder = args.folder or export(args, args.scratch)
        data = manifest.read(folder)
        rounds = {"torch": [], "onnx": [], **({"peer": []} if args.peer else {})}
        for index in range(args.rounds):
            for kind in rounds:
                rounds[kind].append(in_child(kind, folder, args))
                print(f"round {index + 1}/{args.rounds}: {kind} measured", file=sys.stderr, flush=True)
        keys = [k for k in rounds["torch"][0] if k != "reference_gflops"]
        torch_ms = {k: float(np.median([r[k]["ms"] for r in rounds["torch"]])) for k in keys}
        onnx_ms = {k: float(np.median([r[k]["ms"] for r in rounds["onnx"]])) for k in keys}
        reference = float(np.median([r["reference_gflops"] for r in rounds["torch"]]))
        cosines = {k: row_cosine(np.load(args.scratch / f"onnx-{k.replace('/', '-')}.npy"),
                             np.load(args.scratch / f"torch-{k.replace('/', '-')}.npy")) for k in keys}
        gflop = {k: rounds["torch"][0][k]["gflop"] for k in keys}
        print(f"\n{data['name']} {data['precision']} on {args.device}, {os.cpu_count()} CPUs; each implementation in its own "
              f"process, {args.rounds} alternating rounds, median of {args.repeats} runs after {args.warmup} warm-up; "
              f"spinning on (defaults). Reference float32 rate (PyTorch {REFERENCE_SIZE}x{REFERENCE_SIZE} matrix "
              f"product): {reference:.0f} GFLOP/s\n")
        print("| graph | batch | PyTorch ms | ONNX Runtime ms | speed-up | GFLOP | ORT GFLOP/s | % of reference | min cosine | file MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, graph in data["graphs"].items():
            path = folder / graph["file"]
            size = sum(f.stat().st_size for f in [path, *external_files(path)]) / 1e6
            for batch in BATCHES:
                k = f"{key}/{batch}"
                rate = gflop[k] / onnx_ms[k] * 1000
                print(f"| {key} | {batch} | {torch_ms[k]:.1f} | {onnx_ms[k]:.1f} | {torch_ms[k] / onnx_ms[k]:.2f}x | "
                      f"{gflop[k]:.2f} | {rate:.0f} | {100 * rate / reference:.0f}% | {cosines[k]:.6f} | {size:.0f} |")
        if args.peer:
            print("\n| forward graph | batch | ours ms | optimum, 77 tokens ms | optimum, cut ms | our speed-up over 77 | over cut |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for batch in BATCHES:
                ours = onnx_ms[f"forward/{batch}"]
                peer = {name: float(np.median([r[f"{name}/{batch}"]["ms"] for r in rounds["peer"]]))
                        for name in ("77 tokens", "cut")}
                print(f"| {data['name']} | {batch} | {ours:.1f} | {peer['77 tokens']:.1f} | {peer['cut']:.1f} | "
                      f"{peer['77 tokens'] / ours:.2f}x | {peer['cut'] / ours:.2f}x |")


if __name__ == "__main__":
    main()
