"""`clip-onnx` (also `python -m exporter`): the exporter's commands (list variants, export them, verify
exported folders) beside the runtime's (`clip_onnx.cli`: classify, embed).

Only `list`, `export` and `verify` need PyTorch (the `export` extra); they import it when they run, so
`classify` and `embed` work in a runtime-only install."""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from clip_onnx.contract import DEFAULT_OPSET, GRAPHS, MIN_OPSET, PRECISIONS
from clip_onnx.errors import UsageError
from clip_onnx import cli as runtime_cli
from exporter.errors import (EXITS, INTERRUPTED, InconclusiveError, VerificationError, needs_export_extra,
                             require_export_modules)
from exporter.tolerances import TOLERANCES
from exporter.variants import VARIANTS, folder_name, get_variant

DESCRIPTION = ("Export OpenAI CLIP to three ONNX graphs (forward, visual, transformer), prove each matches "
               "PyTorch, and use them with onnxruntime alone.")
EXAMPLES = """\
examples:
  clip-onnx list
  clip-onnx export ViT-B/32 -o dist/                    # OpenAI weights from the Hub: cached, SHA-256 checked
  clip-onnx export ViT-B/32 --weights random -o dist/   # offline pipeline demo: real architecture, random weights
  clip-onnx export --checkpoint finetuned.pt -o dist/   # any CLIP checkpoint; the architecture is inferred
  clip-onnx export RN50 --precision fp16 --graphs visual,transformer -o dist/
  clip-onnx verify dist/ViT-B-32                        # re-run the PyTorch comparison on exported files
  clip-onnx classify cat.jpg dog.png -m dist/ViT-B-32 --labels "a cat,a dog"   # zero-shot, no torch needed
  clip-onnx embed -m dist/ViT-B-32 --image cat.jpg --text "a cat" -o embeddings.npz
"""


def _opset(value: str) -> int:
    import onnx

    opset = int(value)
    highest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= highest:
        raise argparse.ArgumentTypeError(
            f"{opset} is outside {MIN_OPSET}..{highest}: torch's exporter writes opset {MIN_OPSET} or newer, "
            f"onnx {onnx.__version__} knows up to {highest}")
    return opset


def _graphs(value: str) -> list[str]:
    graphs = [g.strip() for g in value.split(",") if g.strip()]
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown or not graphs:
        raise argparse.ArgumentTypeError(f"{value!r}: choose a comma-separated subset of {','.join(GRAPHS)}")
    twice = next((g for g in graphs if graphs.count(g) > 1), None)
    if twice:
        raise argparse.ArgumentTypeError(f"{value!r} names {twice} twice; name each graph once, from {','.join(GRAPHS)}")
    return graphs


def _url(value: str) -> str:
    """--url-base: an http or https URL with a host."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http(s) URL; give e.g. https://mirror.example/clip")
    return value


def _add_weight_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where checkpoints from OpenAI's URL or a mirror are kept (default: $CLIP_ONNX_CACHE "
                             "or ~/.cache/clip); Hub files stay in huggingface_hub's cache ($HF_HOME)")
    parser.add_argument("--url-base", default=None, type=_url,
                        help="a mirror of OpenAI's URLs, tried after the Hub and OpenAI's URL; files are fetched "
                             "as <base>/<sha256>/<file> (default: $CLIP_ONNX_URL_BASE, else none)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="run PyTorch and onnxruntime on this device (default: cpu)")
    parser.add_argument("--text", action="append", default=None, metavar="CAPTION",
                        help="also verify on this caption (repeatable)")
    parser.add_argument("--truncate", action="store_true",
                        help="cut --text captions longer than 77 tokens instead of failing")


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add `list`, `export` and `verify` to a parser's subcommands; returns their handlers by name."""
    listing = commands.add_parser("list", help="the OpenAI variants, their resolutions and sizes")
    listing.add_argument("--all", action="store_true",
                         help="also list the small test configurations (random weights only)")

    export = commands.add_parser(
        "export", help="export a variant or checkpoint to ONNX and verify it", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Writes <output>/<name>/{<name>.onnx, <name>_visual.onnx, <name>_transformer.onnx, "
                    "manifest.json}. Files appear under that folder only after verification passed.")
    export.add_argument("variant", nargs="?", help=f"one of: {', '.join(VARIANTS)}")
    export.add_argument("--checkpoint", type=Path,
                        help="a local CLIP checkpoint (TorchScript archive or state dict) instead of a variant")
    export.add_argument("--name", help="folder and file name for a --checkpoint export (default: the file's stem)")
    export.add_argument("--weights", choices=["openai", "random"], default="openai",
                        help="openai: the published weights (default); random: seeded random weights, for "
                             "offline pipeline demos and tests; the graphs are not a usable model")
    export.add_argument("--seed", type=runtime_cli.whole_number(0), default=0, help="seed of --weights random, 0 or more (default: 0)")
    export.add_argument("--revision", metavar="COMMIT",
                        help="the Hub revision (commit id, branch or tag) of the weights instead of the pinned one")
    export.add_argument("--release", action="store_true",
                        help="a release build: the pinned Hub file only, no other source, no --revision")
    export.add_argument("-o", "--output", type=Path, default=Path("dist"), help="output folder (default: dist)")
    export.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp16: weights and compute in half precision (LayerNorm in float32); int8: "
                             "onnxruntime's dynamic quantisation of the float32 graphs' MatMul/Gemm/embedding weights "
                             "(convolutions stay float32), smaller and faster on CPU; inputs and outputs stay float32 "
                             "in every precision; verified against PyTorch float32 with these tolerances: "
                             + ", ".join(f"{p} cosine >= {t.min_cosine}" for p, t in TOLERANCES.items()))
    export.add_argument("--opset", type=_opset, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default: {DEFAULT_OPSET}; the graphs are IR version 10, read by onnxruntime >= 1.18)")
    export.add_argument("--graphs", type=_graphs, default=list(GRAPHS),
                        help=f"comma-separated subset of {','.join(GRAPHS)} (default: all three)")
    export.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the PyTorch comparison (the manifest then says so)")
    export.add_argument("--force", action="store_true", help="replace an existing <output>/<name> folder")
    _add_weight_options(export)

    verify = commands.add_parser("verify", help="re-run the PyTorch comparison on an exported folder")
    verify.add_argument("folder", type=Path, help="a folder written by `clip-onnx export`, e.g. dist/ViT-B-32")
    verify.add_argument("--checkpoint", type=Path,
                        help="the checkpoint a --checkpoint export came from, if it moved since")
    _add_weight_options(verify)
    return {name: needs_export_extra(name, handler) for name, handler in
            (("list", _list), ("export", _export), ("verify", _verify))}


def _list(args: argparse.Namespace) -> None:
    shown = [v for v in VARIANTS.values() if v.published or args.all]  # reads the pins: fails before printing
    counts = [v.architecture.parameter_count() for v in shown]
    print(f"{'name':<16} {'family':<7} {'resolution':>10} {'embed':>6} {'parameters':>11} {'fp32 MB':>8}  weights")
    for variant, count in zip(shown, counts):
        arch = variant.architecture
        print(f"{variant.name:<16} {arch.family:<7} {arch.image_resolution:>10} {arch.embed_dim:>6} "
              f"{count / 1e6:>10.1f}M {count * 4 / 1e6:>8.0f}  "
              f"{'OpenAI' if variant.published else 'random only (test configuration)'}")


def _export(args: argparse.Namespace) -> None:
    if args.checkpoint and args.variant:
        raise UsageError("give a variant or --checkpoint, not both")
    if args.checkpoint and args.weights == "random":
        raise UsageError("--checkpoint gives the weights; drop --weights random")
    if args.name is not None and not args.name.strip():
        raise UsageError("--name is empty; give the folder's name, or leave it out to use the checkpoint's")
    if args.release and (args.checkpoint or args.weights == "random"):
        raise UsageError("--release exports OpenAI's pinned weights of a variant; drop --checkpoint or --weights random")
    if not args.checkpoint and not args.variant:
        raise UsageError("name a variant (see `clip-onnx list`) or pass --checkpoint FILE")
    variant = get_variant(args.variant) if args.variant else None  # refused before torch is imported
    require_export_modules()
    from exporter import weights  # the exporter itself (onnx, onnxscript) only once the weights are here

    if args.checkpoint:
        name = args.name or args.checkpoint.stem
        loaded = weights.load_checkpoint(args.checkpoint)
    else:
        name = variant.name
        if args.weights == "random":
            loaded = weights.random_weights(variant, args.seed)
        else:
            loaded = weights.load_variant(variant, release=args.release, revision=args.revision,
                                          cache_dir=args.cache_dir, url_base=args.url_base)
    if loaded.source["kind"] == "random":
        print(f"note: {name} gets seeded random weights (seed {args.seed}): a pipeline demo, not a usable model")
    from exporter import pipeline

    pipeline.export(loaded, folder_name(name), args.output, precision=args.precision, opset=args.opset,
                    graphs=args.graphs, verify=args.verify, force=args.force, device=args.device,
                    extra_texts=args.text, truncate=args.truncate)


def _verify(args: argparse.Namespace) -> None:
    from exporter import pipeline

    report = pipeline.verify_folder(args.folder, args.checkpoint, args.cache_dir, args.url_base, args.device,
                                    args.text, args.truncate)
    if report.status == "failed":
        raise VerificationError(f"{args.folder}: {report.problem()}")
    if report.status == "inconclusive":
        raise InconclusiveError(f"{args.folder}: {report.problem()}")
    print(f"{args.folder}: verified")


def main(argv: list[str] | None = None) -> int:
    root, commands = runtime_cli.parser(DESCRIPTION, EXAMPLES)
    handlers = {**add_commands(commands), **runtime_cli.add_commands(commands)}
    args = root.parse_args(argv)
    return runtime_cli.run(handlers[args.command], args, EXITS + runtime_cli.EXITS, INTERRUPTED)
