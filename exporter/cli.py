"""`clip-onnx` (also `python -m exporter`): list variants, export them, verify exported folders, and use
exported folders (classify, embed) with onnxruntime alone.

Only `list`, `export` and `verify` need PyTorch (the `export` extra); they import it when they run, so
`classify` and `embed` work in a runtime-only install."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exporter.contract import DEFAULT_OPSET, GRAPHS, MIN_OPSET, PRECISIONS
from exporter.errors import ExporterError, VerificationError
from exporter.tolerances import TOLERANCES
from exporter.variants import VARIANTS, folder_name, get_variant

EXAMPLES = """\
examples:
  clip-onnx list
  clip-onnx export ViT-B/32 -o dist/                    # OpenAI weights: downloaded, cached, SHA-256 checked
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
    return graphs


def _add_weight_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where downloaded checkpoints are kept (default: $CLIP_ONNX_CACHE or ~/.cache/clip)")
    parser.add_argument("--url-base", default=None,
                        help="download from this mirror instead of OpenAI's URL base; files are fetched as "
                             "<base>/<sha256>/<file> (default: $CLIP_ONNX_URL_BASE or OpenAI's)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="run PyTorch and onnxruntime on this device (default: cpu)")
    parser.add_argument("--text", action="append", default=None, metavar="CAPTION",
                        help="also verify on this caption (repeatable)")
    parser.add_argument("--truncate", action="store_true",
                        help="cut --text captions longer than 77 tokens instead of failing")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="clip-onnx",
        description="Export OpenAI CLIP to three ONNX graphs (forward, visual, transformer) and prove each "
                    "matches PyTorch.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="the known variants, their resolutions and sizes")

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
    export.add_argument("--seed", type=int, default=0, help="seed of --weights random (default: 0)")
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

    classify = commands.add_parser(
        "classify", help="zero-shot classification of images with an exported folder (no PyTorch needed)",
        description="Scores every image against every label with the visual and transformer graphs and the "
                    "manifest's logit_scale (the forward graph is not needed), and prints each image's most "
                    "likely labels with softmax probabilities.")
    classify.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (any format Pillow reads)")
    classify.add_argument("--labels", required=True, type=_labels, help='comma-separated labels, e.g. "a cat,a dog"')
    classify.add_argument("--template", default="{}",
                          help='caption made of each label, e.g. "a photo of {}." (default: the label as is)')
    _add_runtime_options(classify)
    classify.add_argument("--top", type=_positive, default=5, help="labels shown per image (default: 5)")

    embed = commands.add_parser(
        "embed", help="embeddings of images and texts with an exported folder (no PyTorch needed)",
        description="Runs the visual graph on --image files and the transformer graph on --text captions. "
                    "Writes an .npz (arrays image_embeds, text_embeds) or .json file with -o, else JSON on stdout.")
    embed.add_argument("--image", action="append", type=Path, default=[], metavar="FILE", help="an image file (repeatable)")
    embed.add_argument("--text", action="append", default=[], metavar="CAPTION", help="a caption (repeatable)")
    _add_runtime_options(embed)
    embed.add_argument("--normalize", action="store_true", help="scale every embedding to unit length")
    embed.add_argument("-o", "--output", type=Path, help="write FILE.npz or FILE.json instead of printing JSON")
    return root


def _labels(value: str) -> list[str]:
    labels = [label.strip() for label in value.split(",") if label.strip()]
    if not labels:
        raise argparse.ArgumentTypeError(f"{value!r} names no label; give comma-separated labels")
    return labels


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return number


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", type=Path, required=True, metavar="FOLDER",
                        help="a folder written by `clip-onnx export`, e.g. dist/ViT-B-32")
    parser.add_argument("--truncate", action="store_true", help="cut texts longer than 77 tokens instead of failing")


def _list() -> None:
    print(f"{'name':<16} {'family':<7} {'resolution':>10} {'embed':>6} {'parameters':>11} {'fp32 MB':>8}  weights")
    for variant in VARIANTS.values():
        arch = variant.architecture
        count = arch.parameter_count()
        print(f"{variant.name:<16} {arch.family:<7} {arch.image_resolution:>10} {arch.embed_dim:>6} "
              f"{count / 1e6:>10.1f}M {count * 4 / 1e6:>8.0f}  "
              f"{'OpenAI' if variant.published else 'random only (test configuration)'}")


def _export(args: argparse.Namespace) -> None:
    from exporter import pipeline, weights

    if args.checkpoint and args.variant:
        raise ExporterError("give a variant or --checkpoint, not both")
    if args.checkpoint:
        name = args.name or args.checkpoint.stem
        loaded = weights.load_checkpoint(args.checkpoint)
    elif args.variant:
        variant = get_variant(args.variant)
        name = variant.name
        if args.weights == "random":
            loaded = weights.random_weights(variant, args.seed)
        else:
            loaded = weights.load_openai(variant, args.cache_dir, args.url_base)
    else:
        raise ExporterError("name a variant (see `clip-onnx list`) or pass --checkpoint FILE")
    if loaded.source["kind"] == "random":
        print(f"note: {name} gets seeded random weights (seed {args.seed}): a pipeline demo, not a usable model")
    pipeline.export(loaded, folder_name(name), args.output, precision=args.precision, opset=args.opset,
                    graphs=args.graphs, verify=args.verify, force=args.force, device=args.device,
                    extra_texts=args.text, truncate=args.truncate)


def _verify(args: argparse.Namespace) -> None:
    from exporter import pipeline

    report = pipeline.verify_folder(args.folder, args.checkpoint, args.cache_dir, args.url_base, args.device,
                                    args.text, args.truncate)
    if not report.passed:
        raise VerificationError(f"{args.folder}: onnxruntime disagrees with PyTorch beyond the "
                                f"{report.precision} tolerance (table above)")
    print(f"{args.folder}: verified")


def _classify(args: argparse.Namespace) -> None:
    from exporter.runtime import Model, softmax

    if "{}" not in args.template:
        raise ExporterError(f"--template {args.template!r} has no {{}} for the label")
    model = Model(args.model)
    per_image, _ = model.similarity(args.images, [args.template.format(label) for label in args.labels],
                                    args.truncate)
    for image, probabilities in zip(args.images, softmax(per_image)):
        best = probabilities.argsort()[::-1][:args.top]
        print(f"{image}: " + ", ".join(f"{args.labels[i]} {probabilities[i]:.3f}" for i in best))


def _embed(args: argparse.Namespace) -> None:
    import numpy as np

    from exporter.runtime import Model, unit

    if not args.image and not args.text:
        raise ExporterError("nothing to embed; give --image FILE and/or --text CAPTION")
    if args.output is not None and args.output.suffix not in (".npz", ".json"):
        raise ExporterError(f"--output {args.output}: name a .npz or .json file")
    model = Model(args.model)
    arrays = {}
    if args.image:
        arrays["image_embeds"] = model.encode_image(args.image)
    if args.text:
        arrays["text_embeds"] = model.encode_text(args.text, args.truncate)
    if args.normalize:
        arrays = {k: unit(v) for k, v in arrays.items()}
    inputs = {"image_embeds": [str(p) for p in args.image], "text_embeds": args.text}
    document = {key: [{"input": i, "embedding": row.tolist()} for i, row in zip(inputs[key], value)]
                for key, value in arrays.items()}
    if args.output is None:
        json.dump(document, sys.stdout)
        print()
    elif args.output.suffix == ".npz":
        np.savez(args.output, **arrays)
    else:
        args.output.write_text(json.dumps(document) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    commands = {"list": lambda a: _list(), "export": _export, "verify": _verify, "classify": _classify, "embed": _embed}
    try:
        commands[args.command](args)
    except VerificationError as error:
        print(f"clip-onnx: verification failed: {error}", file=sys.stderr)
        return 3
    except ExporterError as error:
        print(f"clip-onnx: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        if error.name not in ("torch", "torchvision", "clip", "onnx", "onnxscript"):
            raise
        print(f"clip-onnx: error: `clip-onnx {args.command}` needs {error.name}, which a runtime-only install "
              "lacks; pip install 'clip-onnx[export]'", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clip-onnx: interrupted; no partial file was left under a final name", file=sys.stderr)
        return 130
    return 0
