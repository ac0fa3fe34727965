"""The runtime's commands, `classify` and `embed`: exported folders used with onnxruntime alone.

`python -m clip_onnx` offers just these; the `clip-onnx` command (`exporter.cli`) adds the exporter's
commands to the same parser and runs every command through `run`, so errors read the same everywhere."""

from __future__ import annotations

import argparse
import json
import os
import signal
import string
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clip_onnx.errors import ClipOnnxError, UsageError
from clip_onnx.model import Model, unit

EXAMPLES = """\
examples:
  clip-onnx classify cat.jpg dog.png -m ViT-B-32 --labels "a cat,a dog" --template "a photo of {}."
  clip-onnx embed -m ViT-B-32 --image cat.jpg --text "a cat" -o embeddings.npz
"""
# Expected failures, most specific first: the one line printed and the exit code.
EXITS = ((UsageError, "clip-onnx: error: {}", 2), (ClipOnnxError, "clip-onnx: error: {}", 1))
INTERRUPTED = "clip-onnx: interrupted ({})"


def _labels(value: str) -> list[str]:
    labels = [label.strip() for label in value.split(",") if label.strip()]
    if not labels:
        raise argparse.ArgumentTypeError(f"{value!r} names no label; give comma-separated labels")
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice:  # its probability would be split between the two
        raise argparse.ArgumentTypeError(f"{twice!r} is named twice; give each label once")
    return labels


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return number
    parse.__name__ = "whole number"  # what argparse calls it in "invalid whole number value"
    return parse


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", type=Path, required=True, metavar="FOLDER",
                        help="a folder written by `clip-onnx export`, e.g. dist/ViT-B-32")
    parser.add_argument("--truncate", action="store_true", help="cut texts longer than 77 tokens instead of failing")
    parser.add_argument("--no-sha256-check", action="store_true",
                        help="skip checking each file against the manifest's SHA-256 before loading it "
                             "(for files already checked; the check costs about a second per GB)")


def _template(value: str) -> str:
    fields = [field for _, field, _, _ in string.Formatter().parse(value) if field is not None]
    if fields != [""]:
        raise argparse.ArgumentTypeError(f"{value!r} must hold {{}} exactly once, where the label goes, and no "
                                         f"other {{...}} field; write a literal brace as {{{{ or }}}}")
    return value


def _open(args: argparse.Namespace) -> Model:
    model = Model(args.model, check_sha256=not args.no_sha256_check)
    if model.manifest.get("source", {}).get("kind") == "random":
        print(f"clip-onnx: note: {args.model} holds seeded random weights (a pipeline demo): its scores mean "
              f"nothing", file=sys.stderr)
    return model


def _classify(args: argparse.Namespace) -> None:
    model = _open(args)
    per_image = model.probabilities(args.images, [args.template.format(label) for label in args.labels],
                                    args.truncate)
    for image, probabilities in zip(args.images, per_image):
        best = probabilities.argsort()[::-1][:args.top]
        print(f"{image}: " + ", ".join(f"{args.labels[i]} {probabilities[i]:.3f}" for i in best))


def _embed(args: argparse.Namespace) -> None:
    if not args.image and not args.text:
        raise UsageError("nothing to embed; give --image FILE and/or --text CAPTION")
    if args.output is not None:
        if args.output.suffix.lower() not in (".npz", ".json"):
            raise UsageError(f"--output {args.output}: name a .npz or .json file")
        if not args.output.parent.is_dir():
            raise ClipOnnxError(f"--output {args.output}: the folder {args.output.parent} does not exist; create it "
                                f"or name another")
        if args.output.exists() and not args.output.is_file():
            raise ClipOnnxError(f"--output {args.output}: is not a regular file (a folder or a device); name a file")
    model = _open(args)
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
    elif args.output.suffix.lower() == ".npz":
        _write_whole(args.output, lambda f: np.savez(f, **arrays))
    else:
        _write_whole(args.output, lambda f: f.write((json.dumps(document) + "\n").encode()))


def _write_whole(path: Path, write: Callable) -> None:
    """`write(file)` into a hidden file beside `path`, renamed to `path` only once complete: a full disk,
    an error or Ctrl-C leaves no partial file under the name."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as f:
            write(f)
        os.replace(partial, path)
    except OSError as error:
        raise ClipOnnxError(f"--output {path}: cannot be written ({error.strerror or error}); choose another "
                            f"path, or free some space") from None
    finally:
        partial.unlink(missing_ok=True)


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add `classify` and `embed` to a parser's subcommands; returns their handlers by name."""
    classify = commands.add_parser(
        "classify", help="zero-shot classification of images with an exported folder (no PyTorch needed)",
        description="Scores every image against every label with the visual and transformer graphs and the "
                    "manifest's logit_scale (the forward graph is not needed), and prints each image's most "
                    "likely labels with softmax probabilities.")
    classify.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (any format Pillow reads)")
    classify.add_argument("--labels", required=True, type=_labels, help='comma-separated labels, e.g. "a cat,a dog"')
    classify.add_argument("--template", default="{}", type=_template,
                          help='caption made of each label, e.g. "a photo of {}." (default: the label as is)')
    _add_runtime_options(classify)
    classify.add_argument("--top", type=whole_number(1), default=5, help="labels shown per image (default: 5)")

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


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is: the work in progress is undone on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def run(handler: Callable[[argparse.Namespace], None], args: argparse.Namespace,
        exits: tuple = EXITS, interrupted: str = INTERRUPTED) -> int:
    """Run one command; expected failures become one line on stderr and an exit code (`exits`: error
    class, line, code, most specific first). SIGTERM and SIGHUP end it as Ctrl-C does, with 128 + the
    signal's number and the line `interrupted`."""
    previous = {signum: signal.signal(signum, _terminate) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run(handler, args, exits, interrupted)
    finally:
        for signum, handling in previous.items():
            signal.signal(signum, handling)


def _run(handler: Callable[[argparse.Namespace], None], args: argparse.Namespace, exits: tuple,
         interrupted: str) -> int:
    try:
        handler(args)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ClipOnnxError as error:
        line, code = next((line, code) for kind, line, code in exits if isinstance(error, kind))
        print(line.format(error), file=sys.stderr)
        return code
    except KeyboardInterrupt as interrupt:
        signum = interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
        print(interrupted.format(signal.Signals(signum).name), file=sys.stderr)
        # An object whose __init__ the interrupt cut short may fail in its __del__ as the process ends
        # (imageio's Pillow plugin does): that is not news to someone who has just interrupted it.
        sys.unraisablehook = lambda _unraisable: None
        return 128 + signum
    return 0


def main(argv: list[str] | None = None) -> int:
    root, commands = parser()
    handlers = add_commands(commands)
    args = root.parse_args(argv)
    return run(handlers[args.command], args)
