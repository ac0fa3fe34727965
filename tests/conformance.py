"""The conformance artifact: what the Python runtime computes on fixed exports, images and texts, as
files every language's own test suite holds itself to without Python (`rust/tests`, `cargo test`;
`examples/node/test`, `npm test`; `tests/test_conformance.py`, pytest). Committed under
`tests/conformance/`, written by one command:

    .venv/bin/python -m tests.conformance tests/conformance

`tests/test_conformance.py` fails when the committed files are not what this module writes now, so a
change here lands with the files it writes. `VERSION` rises with any change to `vectors.json`'s keys or
their meaning. Every path in `vectors.json` is relative to its folder. It holds:

- `exports`: tiny-ViT in fp16 (all three graphs, the forward graph reading the encoders' data files),
  with Python's image and text embeddings (float32 little-endian, [N, D]) and its precision's tolerance;
- `images`: PNGs in every 8-bit mode Pillow opens them in (RGB, L, LA, RGBA, P with and without
  transparency, 1-bit), odd and tall sizes; `pixels`: for each resolution, the SHA-256 of Python's
  float32 [3, R, R] (little-endian) of each, so a language's pixels are equal bit for bit or not;
- `all_images` and `all_pixels`: those PNGs and every other listed kind of file (tests/image_corpus.py:
  JPEG, PNG, WebP, GIF, BMP and TIFF kinds, colour profiles and EXIF orientation), hashed at R = 224;
  `more_pixels`: (file, R, hash) where the sizes or kinds above leave a case out; `unlisted_images`
  (formats outside the list) and `bad_images` (empty, not an image, truncated, over the pixel limit),
  which every consumer refuses;
- `texts` and `token_ids` (int32 [N, 77], truncated), `cleaned` (CLIP's cleaning of each), whether
  `ftfy.fix_text` changes each (`ftfy_changes`), and `html_texts`: texts ftfy leaves alone whose
  second unescape still changes them; `unescape`: Python's `html.unescape` on its hard cases;
- `cleaning`: CLIP's cleaning (ftfy, then two HTML unescapes) on ftfy's test cases, the corpus and
  10,000 generated strings, with the token ids of each (tests/ftfy_cases.py);
- `classify`: `clip-onnx classify`'s output lines for the PNGs and `labels`;
- `error_kinds` and `bad_inputs`: one table of bad inputs, each with the kind of error every language
  must raise (docs/consumers.md#errors). A case's folder is an export with `changes` applied to a
  scratch copy (`apply` below says what each change does; every language implements the same four);
- `partial_folders`: for each encoder, the `changes` that leave only the files its graph needs
  (`graphs.<graph>.files`) and the manifest: such a folder encodes with that graph as the whole folder
  does, and refuses the other encoder's input with `missing_file` naming `missing`;
- `large_file`: the size and SHA-256 of a file of zeros over 2 GiB, for streamed hashing.
"""

from __future__ import annotations

import hashlib
import html
import html.entities
import json
import shutil
import subprocess
import sys
from pathlib import Path

import ftfy
import numpy as np
import skimage.data
from PIL import Image

from clip_onnx import preprocess, tokenizer
from clip_onnx.integrity import sha256_file
from clip_onnx.model import Model
from exporter import pipeline
from exporter.tolerances import TOLERANCES
from exporter.variants import folder_name, get_variant
from exporter.weights import random_weights
from tests import ftfy_cases, image_corpus

VERSION = 2
COMMITTED = Path(__file__).resolve().parent / "conformance"
CORPUS = Path(__file__).resolve().parent / "data" / "tokenizer_corpus.jsonl"
LONG_TEXT = " ".join(["a very long caption"] * 30)  # truncated to 75 tokens + start + end
TEXTS = ["a photo of an astronaut", "a cat", "Café &amp; CRÈME brûlée", "東京の夜景 🚀", "naïve façade 😺🎉", "",
         LONG_TEXT]
RESOLUTIONS = (32, 224, 301)  # besides the export's own, more sizes for the resampler, upsampling included
LABELS = ["a photo of an astronaut", "a cat", "a cup of coffee", "a man with a camera"]
LARGE = 2**31 + 4096  # past every 32-bit size and Buffer limit
# The kinds of error every consumer names alike (Python `ClipOnnxError.kind`, Rust `Error::kind()`, Node
# `error.kind`): `bad_inputs` gives each case the kind all three must raise.
ERROR_KINDS = ("not_an_export", "bad_manifest", "unsupported_format", "missing_file", "changed_file",
               "unreadable_image", "text_too_long", "usage", "invalid_input")
# numeric references at every edge of html.unescape's rules: NUL, CR, Windows-1252, C0 and C1 controls,
# non-characters, surrogates, the last code point and past it, and numbers too long for any integer type
NUMBERS = [0, 9, 10, 13, 31, 38, 60, 65, 127, 128, 129, 141, 150, 159, 160, 233, 0xD7FF, 0xD800, 0xDFFF, 0xE000,
           0xFDCF, 0xFDD0, 0xFDEF, 0xFDF0, 0xFFFD, 0xFFFE, 0xFFFF, 0x1F600, 0x1FFFE, 0x10FFFD, 0x10FFFF, 0x110000,
           10**20]


def pixels_sha256(pixels: np.ndarray) -> str:
    """The hash a language compares its float32 [3, R, R] (little-endian bytes) with."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype="<f4").tobytes()).hexdigest()


def pixel_cases(vectors: dict) -> list[tuple[str, int, str]]:
    """Every pixel case of `vectors` as (file relative to its folder, R, SHA-256): `images` at each R of
    `pixels`, `all_images` at 224, the JPEG, and `more_pixels`."""
    cases = [(path, int(r), want) for r, hashes in vectors["pixels"].items()
             for path, want in zip(vectors["images"], hashes, strict=True)]
    cases += [(path, 224, want) for path, want in zip(vectors["all_images"], vectors["all_pixels"], strict=True)]
    cases += [(vectors["jpeg"], 224, vectors["jpeg_pixels"])]
    return cases + [(case["file"], case["resolution"], case["sha256"]) for case in vectors["more_pixels"]]


def apply(base: Path, changes: list[dict], scratch: Path, root: Path) -> Path:
    """A copy of the export `base` at `scratch` with `changes` made, as every language makes it: each file
    hard-linked, and a changed file unlinked before it is written, so the committed files never change.
    - `{"op": "delete", "file"}`;
    - `{"op": "write", "file", "text"}`: the file's whole content, UTF-8;
    - `{"op": "json", "file", "path", "value"}`: the JSON file with the value at `path` (keys) set, or
      removed when `value` is absent, written again as compact JSON;
    - `{"op": "bytes", "file", "flip" or "keep"}`: byte `flip` (negative: from the end) XOR 1, or only the
      first `keep` bytes;
    - `{"op": "copy", "file", "from"}`: the file replaced by `from`, a path relative to `root`;
    - `{"op": "rehash", "file"}`: the manifest's `files` entry of `file` set to its size and SHA-256."""
    scratch.mkdir(parents=True)
    for path in base.iterdir():
        (scratch / path.name).hardlink_to(path)
    for change in changes:
        target = scratch / change["file"]
        if change["op"] == "delete":
            target.unlink()
        elif change["op"] == "rehash":
            listed = json.loads((scratch / "manifest.json").read_text())
            listed["files"][change["file"]] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
            _replace(scratch / "manifest.json", json.dumps(listed).encode())
        elif change["op"] == "write":
            _replace(target, change["text"].encode())
        elif change["op"] == "json":
            data = json.loads(target.read_text())
            *keys, last = change["path"]
            inner = data
            for key in keys:
                inner = inner[key]
            if "value" in change:
                inner[last] = change["value"]
            else:
                del inner[last]
            _replace(target, json.dumps(data).encode())
        elif change["op"] == "bytes":
            content = bytearray(target.read_bytes())
            if "flip" in change:
                content[change["flip"]] ^= 0x01
            else:
                content = content[: change["keep"]]
            _replace(target, bytes(content))
        elif change["op"] == "copy":
            _replace(target, (root / change["from"]).read_bytes())
        else:
            raise ValueError(f"unknown change {change['op']!r}")
    return scratch


def _replace(path: Path, content: bytes) -> None:
    path.unlink(missing_ok=True)  # a hard link to a committed file: never write through it
    path.write_bytes(content)


def unescape_cases() -> list[list[str]]:
    """Texts and Python's `html.unescape` of each: every HTML5 name with and without `;` and followed by a
    letter, numeric references at every edge, and the odd cases (unknown names, prefixes, no digits)."""
    names = sorted(html.entities.html5)
    texts = [" ".join(f"&{name}" for name in names), " ".join(f"&{name}x" for name in names),
             "".join(f"&{name}" for name in names if name.endswith(";"))]
    for n in NUMBERS:
        texts += [f"&#{n};", f"&#{n}", f"&#{n}x", f"&#x{n:x};", f"&#X{n:X}", f"&#x{n:x}g", f"&#00{n};"]
    texts += ["&", "&;", "&#", "&#;", "&#x", "&#x;", "&#xg;", "&&amp;", "&amp;amp;", "&ampamp;", "&notit;", "&notin;",
              "&noti", "&copy2019", "&AMP;AMP;", "&a", "&ab;", "&zzzz;", "& amp;", "&am p;", "&amp", "x&lt y&gt;z",
              "&" + "a" * 40 + ";", "&" + "é" * 40, "&é;", "&ampé", "&notéx", "&nbsp\t&nbsp\n&nbsp\x0c&nbsp<&nbsp#",
              "&lt\r;", "caf&eacute &eacute; &Eacute;&EACUTE;", "&#x1F600;&#128512;", "&#128512", "a&b&c;d&#e"]
    return [[text, html.unescape(text)] for text in texts]


def _images(folder: Path) -> tuple[list[Path], Path, list[Path], list[Path], list[Path]]:
    """(PNGs in every 8-bit mode, one JPEG, every other listed kind of file, files outside the list,
    damaged files): tests/image_corpus.py makes the last three. The photos are halved, to keep the
    committed files small; every kind and mode is still there."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    photos = {name: np.asarray(Image.fromarray(getattr(skimage.data, name)()).reduce(2))
              for name in ("astronaut", "chelsea", "coffee", "camera")}
    made = {f"{name}.png": Image.fromarray(array) for name, array in photos.items()}  # RGB, and camera is L
    made["odd-rgb.png"] = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    made["tall-rgb.png"] = Image.fromarray(rng.integers(0, 256, (301, 64, 3), dtype=np.uint8))  # height > 2x width
    made["rgba.png"] = Image.fromarray(rng.integers(0, 256, (97, 131, 4), dtype=np.uint8))
    made["la.png"] = Image.fromarray(rng.integers(0, 256, (61, 45, 2), dtype=np.uint8), mode="LA")
    made["palette.png"] = Image.fromarray(photos["chelsea"]).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    transparent = made["palette.png"].copy()
    transparent.info["transparency"] = 3
    made["palette-transparent.png"] = transparent
    made["bilevel.png"] = Image.fromarray(photos["camera"]).convert("1")
    pngs = []
    for name, image in made.items():
        image.save(folder / name, **({"transparency": 3} if name == "palette-transparent.png" else {}))
        pngs.append(folder / name)
    jpeg = folder / "chelsea.jpg"
    Image.fromarray(photos["chelsea"]).save(jpeg, quality=90)
    listed = image_corpus.listed(folder, photos["chelsea"], rng)
    cut = [folder / name for name in ("chelsea.png", "chelsea.jpg", "webp-lossy.webp", "gif.gif", "bmp-24.bmp",
                                      "tiff-raw.tiff")]
    return pngs, jpeg, listed, image_corpus.unlisted(folder, photos["chelsea"]), image_corpus.damaged(folder, cut)


def _more_images(folder: Path, pngs: list[Path]) -> list[tuple[Path, int]]:
    """Cases the images above leave out: an image whose shorter side already is R (LA and RGBA: Pillow
    does not resize, so nothing is premultiplied), sizes where both resampling pass orders are candidates
    (height - h == 2 * (width - w)), CMYK with black (Pillow's RGB->CMYK writes K = 0 only), and BMPs
    beyond the corpus's: a grey palette (Pillow opens it as "L", so bicubic, not NEAREST), a two-colour
    1-bit palette other than black and white ("P"), top-down rows (a negative height) at 8, 24, 32 bits."""
    rng = np.random.default_rng(1)
    named = {path.name: path for path in pngs}
    cmyk = folder / "cmyk-black.jpg"  # a CMYK JPEG: CMYK TIFF is outside the list of files consumers read
    Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), mode="CMYK").save(cmyk, quality=95)
    cases = [(named["rgba.png"], 97), (named["la.png"], 45), (named["odd-rgb.png"], 36), (named["rgba.png"], 96),
             (named["la.png"], 44), (cmyk, 224), (cmyk, 40)]
    made = []

    def save(name: str, image: Image.Image) -> Path:
        image.save(folder / name)
        made.append(folder / name)
        return folder / name

    def top_down(source: Path, name: str) -> None:
        data = bytearray(source.read_bytes())
        offset, height = int.from_bytes(data[10:14], "little"), int.from_bytes(data[22:26], "little", signed=True)
        stride = (len(data) - offset) // height
        rows = [data[offset + stride * y: offset + stride * (y + 1)] for y in range(height)]
        data[offset:] = b"".join(reversed(rows))
        data[22:26] = (-height).to_bytes(4, "little", signed=True)
        (folder / name).write_bytes(bytes(data))
        made.append(folder / name)

    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (43, 61, 3), dtype=np.uint8))
    save("bmp-grey.bmp", rgb.convert("L"))
    two = bytearray(save("bmp-1-colours.bmp", rgb.convert("1")).read_bytes())
    two[54:62] = bytes([200, 30, 10, 0, 20, 180, 90, 0])  # the palette: two colours, not black and white
    (folder / "bmp-1-colours.bmp").write_bytes(bytes(two))
    for bits, image in (("8", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)), ("24", rgb),
                        ("32", rgb.convert("RGBA"))):
        top_down(save(f"bmp-{bits}-bottom-up.bmp", image), f"bmp-{bits}-top-down.bmp")
    return cases + [(path, 32) for path in made]


def _partial_folders(export: Path) -> list[dict]:
    """Per encoder: the folder reduced to that graph's files and the manifest, and what it must refuse."""
    graphs = json.loads((export / "manifest.json").read_text())["graphs"]
    cases = []
    for graph, other in (("transformer", "visual"), ("visual", "transformer")):
        keep = set(graphs[graph]["files"]) | {"manifest.json"}
        absent = [name for name in graphs[other]["files"] if name not in keep]
        cases.append({"graph": graph, "call": "encode_text" if graph == "transformer" else "encode_image",
                      "changes": [{"op": "delete", "file": p.name} for p in sorted(export.iterdir()) if p.name not in keep],
                      "refuses": "encode_image" if graph == "transformer" else "encode_text", "missing": absent[0]})
    return cases


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _bad_inputs(export: Path, root: Path, images: Path, bad_images: list[Path]) -> list[dict]:
    """One table of bad inputs, each with the kind of error all three languages must raise and a text its
    message must contain (the file, the text or the argument at fault). A case runs `call` through each
    language's API: "load" (the folder), "encode_image" (`images`), "encode_text" (`texts`, no truncation),
    each after loading the folder with the SHA-256 check on. `cli` cases run `clip-onnx classify` (Python
    and Rust) with `labels` and `top` as given and expect `exit` and one line on stderr."""
    data = json.loads((export / "manifest.json").read_text())
    visual, transformer = data["graphs"]["visual"]["file"], data["graphs"]["transformer"]["file"]
    visual_data = data["graphs"]["visual"]["files"][1]
    base = _rel(export, root)
    chelsea = _rel(images / "chelsea.png", root)
    cases: list[dict] = []

    def case(name: str, call: str, kind: str, names: str, changes: list[dict] | None = None, folder: str = base,
             **inputs) -> None:
        cases.append({"name": name, "call": call, "kind": kind, "names": names, "folder": folder,
                      "changes": changes or [], "images": [], "texts": [], **inputs})

    def edit(file: str, path: list[str], *value) -> dict:
        """The value at `path` in the JSON file set, or removed when no value is given."""
        return {"op": "json", "file": file, "path": path, **({"value": value[0]} if value else {})}

    def manifest(path: list[str], *value) -> list[dict]:
        return [edit("manifest.json", path, *value)]

    def rules(path: list[str], *value) -> list[dict]:
        """preprocess.json edited and listed again with its new SHA-256, so only its content is at fault."""
        return [edit("preprocess.json", path, *value), {"op": "rehash", "file": "preprocess.json"}]

    case("no manifest.json", "load", "not_an_export", "manifest.json", [{"op": "delete", "file": "manifest.json"}])
    case("manifest.json not JSON", "load", "bad_manifest", "manifest.json",
         [{"op": "write", "file": "manifest.json", "text": "{\"format_version\": "}])
    case("manifest.json without files", "load", "bad_manifest", "files", manifest(["files"]))
    case("manifest.json a JSON array", "load", "bad_manifest", "not a JSON object",
         [{"op": "write", "file": "manifest.json", "text": "[1, 2]"}])
    case("format_version true", "load", "unsupported_format", "format_version true", manifest(["format_version"], True))
    case("format_version as a string", "load", "unsupported_format", 'format_version "2"',
         manifest(["format_version"], "2"))
    case("a folder that does not exist", "load", "not_an_export", "absent-folder", folder="absent-folder")
    case("an unknown format_version", "load", "unsupported_format", "999", manifest(["format_version"], 999))
    # a file is missing only for what needs it: the tokenizer for texts, preprocess.json for images
    for file_name, call in ((visual, "encode_image"), (transformer, "encode_text"), ("tokenizer.json", "encode_text"),
                            ("preprocess.json", "encode_image"), (visual_data, "encode_image")):
        case(f"{file_name} missing", call, "missing_file", file_name, [{"op": "delete", "file": file_name}],
             images=[chelsea], texts=["a cat"])
        case(f"{file_name} with one byte changed", call, "changed_file", file_name,
             [{"op": "bytes", "file": file_name, "flip": -2}],  # the last byte of a JSON file is often a newline
             images=[chelsea], texts=["a cat"])
    case(f"{visual} cut in half", "encode_image", "changed_file", visual,
         [{"op": "bytes", "file": visual, "keep": (export / visual).stat().st_size // 2}], images=[chelsea])
    case("a file the manifest does not list", "load", "changed_file", "tokenizer.json", manifest(["files", "tokenizer.json"]))
    case("preprocess.json with an unknown rule value", "load", "unsupported_format", "resize_filter",
         rules(["rules", "resize_filter"], "lanczos"))
    case("preprocess.json with an unknown rule", "load", "unsupported_format", "resize_gamma",
         rules(["rules", "resize_gamma"], "srgb"))
    case("preprocess.json without a rule", "load", "unsupported_format", "crop", rules(["rules", "crop"]))
    case("preprocess.json mean of two numbers", "load", "bad_manifest", "mean",
         rules(["mean"], preprocess.spec(1)["mean"][:2]))
    for path in bad_images:
        case(f"image {path.name}", "encode_image", "unreadable_image", path.name, images=[_rel(path, root)])
    case("an image folder", "encode_image", "unreadable_image", "images", images=[_rel(images, root)])
    case("an image that does not exist", "encode_image", "missing_file", "absent.png",
         images=[_rel(images / "absent.png", root)])
    long_text = " ".join(["too long"] * 60)
    case("a text over 77 tokens", "encode_text", "text_too_long", long_text[:20], texts=[long_text])
    for top, says in (("0", "--top"), ("-1", "--top"), ("two", "--top")):
        case(f"--top {top}", "cli", "usage", says, images=[chelsea], labels="a cat,a dog", top=top, exit=2)
    case("--labels with no label", "cli", "usage", "--labels", images=[chelsea], labels=" , ", top="1", exit=2)
    case("--labels with a label twice", "cli", "usage", "'a cat' is named twice", images=[chelsea],
         labels="a cat,a dog, a cat", top="1", exit=2)
    case("classify a missing image", "cli", "missing_file", "absent.png", images=[_rel(images / "absent.png", root)],
         labels="a cat", top="1", exit=1)
    case("classify an unknown format_version", "cli", "unsupported_format", "999", manifest(["format_version"], 999),
         images=[chelsea], labels="a cat", top="1", exit=1)
    assert all(c["kind"] in ERROR_KINDS for c in cases)
    return cases


def _save(array: np.ndarray, path: Path, dtype, root: Path) -> str:
    np.ascontiguousarray(array, dtype=dtype).tofile(path)
    return _rel(path, root)


def _hashes(paths: list[Path], rules: int) -> list[str]:
    return [pixels_sha256(preprocess.load([path], rules)[0]) for path in paths]


def write(root: Path) -> Path:
    """The artifact in `root` (emptied first); returns `root/vectors.json`."""
    root = Path(root).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    pngs, jpeg, others, unlisted, bad = _images(root / "images")
    more = _more_images(root / "images", pngs)
    corpus = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    texts = TEXTS + corpus
    precision = "fp16"  # the smaller files; its graphs' inputs and outputs are float32 as fp32's are
    export = pipeline.export(random_weights(get_variant("tiny-ViT"), seed=0), folder_name("tiny-ViT"), root / "exports",
                             precision=precision, verify=False, log=lambda _: None)
    model = Model(export)
    tolerance = TOLERANCES[precision]
    # run in `root` with relative paths, as each language's test runs it
    classify = subprocess.run([sys.executable, "-m", "clip_onnx", "classify", *(_rel(p, root) for p in pngs),
                               "-m", _rel(export, root), "--labels", ",".join(LABELS), "--top", str(len(LABELS))],
                              capture_output=True, text=True, check=True, cwd=root).stdout.splitlines()
    sets = json.loads(ftfy_cases.write(root / "cleaning.json").read_text())["sets"]
    cleaning_texts = [case["text"] for cases in sets.values() for case in cases]
    vectors = {
        "version": VERSION,
        "exports": [{
            "folder": _rel(export, root), "precision": precision,
            "image_embeds": _save(model.encode_image(pngs), root / "image-embeds.bin", np.float32, root),
            "text_embeds": _save(model.encode_text(TEXTS, truncate=True), root / "text-embeds.bin", np.float32, root),
            "min_cosine": tolerance.min_cosine, "max_relative": tolerance.max_relative,
        }],
        "images": [_rel(p, root) for p in pngs], "jpeg": _rel(jpeg, root),
        "pixels": {str(r): _hashes(pngs, r) for r in RESOLUTIONS},
        # every kind of file, Pillow's pixels at R = 224: what each language is held to, file by file
        "all_images": [_rel(p, root) for p in pngs + others],
        "all_pixels": _hashes(pngs + others, 224),
        "jpeg_pixels": _hashes([jpeg], 224)[0],
        "more_pixels": [{"file": _rel(path, root), "resolution": r, "sha256": _hashes([path], r)[0]} for path, r in more],
        # outside the list, and damaged: refused alike by every consumer (also cases of `bad_inputs`)
        "unlisted_images": [_rel(p, root) for p in unlisted], "bad_images": [_rel(p, root) for p in bad],
        "texts": texts, "embedded_texts": TEXTS,
        "token_ids": _save(tokenizer.encode(model.tokenizer, texts, truncate=True), root / "token-ids.bin", np.int32, root),
        "cleaned": [tokenizer.clean(t) for t in texts],
        # the texts whose ids a consumer without ftfy must still match exactly: ftfy.fix_text changes nothing
        "ftfy_changes": [ftfy.fix_text(t) != t for t in texts],
        "html_texts": [t for t in texts if ftfy.fix_text(t) == t and html.unescape(html.unescape(t)) != html.unescape(t)],
        "unescape": unescape_cases(),
        "cleaning": {"file": "cleaning.json", "order": list(sets),  # the sets in the ids' order
                     "token_ids": _save(tokenizer.encode(model.tokenizer, cleaning_texts, truncate=True),
                                        root / "cleaning-ids.bin", np.int32, root)},
        "labels": LABELS, "classify": classify,
        "error_kinds": list(ERROR_KINDS),
        "bad_inputs": _bad_inputs(export, root, root / "images", unlisted + bad),
        "partial_folders": _partial_folders(export),
        "large_file": {"bytes": LARGE, "sha256": _zeros_sha256(LARGE)},
    }
    path = root / "vectors.json"
    path.write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n")
    return path


def _zeros_sha256(size: int) -> str:
    digest, block = hashlib.sha256(), bytes(1 << 20)
    for _ in range(size // len(block)):
        digest.update(block)
    digest.update(bytes(size % len(block)))
    return digest.hexdigest()


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
