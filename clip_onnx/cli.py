"""The runtime's commands, `classify` and `embed`: exported folders used with onnxruntime alone.

`python -m clip_onnx` offers just these; the `clip-onnx` command (`exporter.cli`) adds the exporter's
commands to the same parser and runs every command through `run`, so errors read the same everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clip_onnx.errors import ClipOnnxError, VerificationError
from clip_onnx.model import Model, softmax, unit

EXAMPLES = """\
examples:
  clip-onnx classify cat.jpg dog.png -m ViT-B-32 --labels "a cat,a dog" --template "a photo of {}."
  clip-onnx embed -m ViT-B-32 --image cat.jpg --text "a cat" -o embeddings.npz
"""
# What the exporter's commands import that a runtime-only install lacks.
EXPORT_MODULES = ("torch", "torchvision", "clip", "onnx", "onnxscript")


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


def _classify(args: argparse.Namespace) -> None:
    if "{}" not in args.template:
        raise ClipOnnxError(f"--template {args.template!r} has no {{}} for the label")
    model = Model(args.model)
    per_image, _ = model.similarity(args.images, [args.template.format(label) for label in args.labels],
                                    args.truncate)
    for image, probabilities in zip(args.images, softmax(per_image)):
        best = probabilities.argsort()[::-1][:args.top]
        print(f"{image}: " + ", ".join(f"{args.labels[i]} {probabilities[i]:.3f}" for i in best))


def _embed(args: argparse.Namespace) -> None:
    if not args.image and not args.text:
        raise ClipOnnxError("nothing to embed; give --image FILE and/or --text CAPTION")
    if args.output is not None and args.output.suffix not in (".npz", ".json"):
        raise ClipOnnxError(f"--output {args.output}: name a .npz or .json file")
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


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add `classify` and `embed` to a parser's subcommands; returns their handlers by name."""
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
    return {"classify": _classify, "embed": _embed}


def parser(description: str = "Use exported CLIP folders with onnxruntime alone: zero-shot classification "
                                 "and embeddings.", examples: str = EXAMPLES
           ) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    root = argparse.ArgumentParser(prog="clip-onnx", description=description, epilog=examples,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return root, root.add_subparsers(dest="command", required=True, metavar="COMMAND")


def run(handler: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> int:
    """Run one command; expected failures become one line on stderr and an exit code."""
    try:
        handler(args)
    except VerificationError as error:
        print(f"clip-onnx: verification failed: {error}", file=sys.stderr)
        return 3
    except ClipOnnxError as error:
        print(f"clip-onnx: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        if error.name not in EXPORT_MODULES:
            raise
        print(f"clip-onnx: error: `clip-onnx {args.command}` needs {error.name}, which a runtime-only install "
              "lacks; pip install 'clip-onnx[export]'", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clip-onnx: interrupted; no partial file was left under a final name", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    root, commands = parser()
    handlers = add_commands(commands)
    args = root.parse_args(argv)
    return run(handlers[args.command], args)
