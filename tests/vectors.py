"""Shared test vectors: what the Python runtime computes on a fixed set of exports, images and texts,
written to a folder for the Rust crate's tests (and any other consumer's) to hold their own results to,
so every language answers to one truth. `write(root)` returns `root/vectors.json`, which names every file:

- `exports`: tiny-ViT and tiny-RN in fp32 and fp16 (visual and transformer graphs), each with Python's
  image and text embeddings (float32 little-endian, [N, D]) and its precision's tolerance;
- `images`: PNGs in every 8-bit mode Pillow opens them in (RGB, L, LA, RGBA, P with and without
  transparency, 1-bit), odd and tall sizes, plus one JPEG;
- `all_images` and `all_pixels`: those PNGs and every other listed kind of file (tests/image_corpus.py:
  JPEG, PNG, WebP, GIF, BMP and TIFF kinds, colour profiles and EXIF orientation) with Pillow's pixels;
  `unlisted_images` (formats outside the list) and `bad_images` (empty, not an image, truncated, over
  the pixel limit), which every consumer refuses;
- `pixels`: Python's float32 [N, 3, R, R] for the PNGs at several resolutions;
- `texts` and `token_ids` (int32 [N, 77], truncated), with whether `ftfy.fix_text` changes each text
  (`ftfy_changes`), and `html_texts`: texts ftfy leaves alone (HTML with tags) whose second unescape
  still changes them, so a consumer that unescapes once gets other ids;
- `classify`: `clip-onnx classify`'s output for the PNGs.
- `cleaning`: CLIP's text cleaning (ftfy, then two HTML unescapes) on ftfy's test cases, the corpus and
  10,000 generated strings, with the token ids of each (tests/ftfy_cases.py);
- `error_kinds` and `bad_inputs`: one table of bad inputs (every file of an export missing or changed,
  broken manifests, unreadable images, an over-long text, bad `--top` and `--labels`), each with the
  kind of error every language must raise (docs/consumers.md#errors).
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import ftfy
import numpy as np
import onnx
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

CORPUS = Path(__file__).resolve().parent / "data" / "tokenizer_corpus.jsonl"
LONG_TEXT = " ".join(["a very long caption"] * 30)  # truncated to 75 tokens + start + end
TEXTS = ["a photo of an astronaut", "a cat", "Café &amp; CRÈME brûlée", "東京の夜景 🚀", "naïve façade 😺🎉", "",
         LONG_TEXT]
RESOLUTIONS = (32, 224, 301)  # besides the exports' own, more sizes for the resampler, upsampling included
LABELS = ["a photo of an astronaut", "a cat", "a cup of coffee", "a man with a camera"]


def _images(folder: Path) -> tuple[list[Path], Path, list[Path], list[Path], list[Path]]:
    """(PNGs in every 8-bit mode, one JPEG, every other listed kind of file, files outside the list,
    damaged files): tests/image_corpus.py makes the last three."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    photos = {name: getattr(skimage.data, name)() for name in ("astronaut", "chelsea", "coffee", "camera")}
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


def _save(array: np.ndarray, path: Path, dtype) -> str:
    np.ascontiguousarray(array, dtype=dtype).tofile(path)
    return str(path)


# The kinds of error every consumer names alike (Python `ClipOnnxError.kind`, Rust `Error::kind()`, Node
# `error.kind`): `bad_inputs` below gives each case the kind all three must raise.
ERROR_KINDS = ("not_an_export", "bad_manifest", "unsupported_format", "missing_file", "changed_file",
               "unreadable_image", "text_too_long", "usage", "invalid_input")


def _flip_last_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[-2] ^= 0x01  # same size, other bytes (the last byte of a JSON file is often a newline)
    path.write_bytes(bytes(content))


def _bad_inputs(folder: Path, root: Path, images: Path, bad_images: list[Path]) -> list[dict]:
    """One table of bad inputs, each with the kind of error all three languages must raise and a text its
    message must contain (the file, the text or the argument at fault). A case runs `call` through each
    language's API: "load" (the folder), "encode_image" (`images`), "encode_text" (`texts`, no truncation),
    each after loading `folder` with the SHA-256 check on. `cli` cases run `clip-onnx classify` (Python
    and Rust) with `labels` and `top` as given and expect `exit` and one line on stderr."""
    data = json.loads((folder / "manifest.json").read_text())
    visual, transformer = data["graphs"]["visual"]["file"], data["graphs"]["transformer"]["file"]
    cases: list[dict] = []

    def copy(name: str, change) -> str:
        target = root / name
        shutil.copytree(folder, target)
        change(target)
        return str(target)

    def manifest(change):
        def edit(target: Path) -> None:
            edited = json.loads((target / "manifest.json").read_text())
            change(edited)
            (target / "manifest.json").write_text(json.dumps(edited))
        return edit

    def case(name: str, call: str, kind: str, names: str, folder_: str | None = None, **inputs) -> None:
        cases.append({"name": name, "call": call, "kind": kind, "names": names, "folder": folder_ or str(folder),
                      "images": [], "texts": [], **inputs})

    case("no manifest.json", "load", "not_an_export", "manifest.json",
         copy("no-manifest", lambda t: (t / "manifest.json").unlink()))
    case("manifest.json not JSON", "load", "bad_manifest", "manifest.json",
         copy("manifest-not-json", lambda t: (t / "manifest.json").write_text("{\"format_version\": ")))
    case("manifest.json without files", "load", "bad_manifest", "files",
         copy("manifest-without-files", manifest(lambda m: m.pop("files"))))
    case("manifest.json a JSON array", "load", "bad_manifest", "not a JSON object",
         copy("manifest-array", lambda t: (t / "manifest.json").write_text("[1, 2]")))
    case("format_version true", "load", "unsupported_format", "format_version true",
         copy("format-true", manifest(lambda m: m.update(format_version=True))))
    case("format_version as a string", "load", "unsupported_format", 'format_version "1"',
         copy("format-string", manifest(lambda m: m.update(format_version="1"))))
    case("a folder that does not exist", "load", "not_an_export", "absent-folder", str(root / "absent-folder"))
    case("an unknown format_version", "load", "unsupported_format", "999",
         copy("format-999", manifest(lambda m: m.update(format_version=999))))
    for file_name, call in ((visual, "encode_image"), (transformer, "encode_text"), ("tokenizer.json", "load"),
                            ("preprocess.json", "load")):
        case(f"{file_name} missing", call, "missing_file", file_name,
             copy(f"missing-{file_name}", lambda t, f=file_name: (t / f).unlink()),
             images=[str(images / "chelsea.png")], texts=["a cat"])
        case(f"{file_name} with one byte changed", call, "changed_file", file_name,
             copy(f"changed-{file_name}", lambda t, f=file_name: _flip_last_byte(t / f)),
             images=[str(images / "chelsea.png")], texts=["a cat"])
    case(f"{visual} cut in half", "encode_image", "changed_file", visual,
         copy("truncated-graph", lambda t: (t / visual).write_bytes((t / visual).read_bytes()[: (t / visual).stat().st_size // 2])),
         images=[str(images / "chelsea.png")])

    def move_to_external_data(target: Path) -> None:
        graph = target / visual
        onnx.save_model(onnx.load(str(graph)), str(graph), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{visual}.data", size_threshold=0)
        edited = json.loads((target / "manifest.json").read_text())
        edited["graphs"]["visual"]["external_data"] = [f"{visual}.data"]
        for path in (graph, target / f"{visual}.data"):
            edited["files"][path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        (target / "manifest.json").write_text(json.dumps(edited))
        (target / f"{visual}.data").unlink()
    case("external data missing", "encode_image", "missing_file", f"{visual}.data",
         copy("missing-data", move_to_external_data), images=[str(images / "chelsea.png")])
    case("a file the manifest does not list", "load", "changed_file", "tokenizer.json",
         copy("unlisted", manifest(lambda m: m["files"].pop("tokenizer.json"))))
    for path in bad_images:
        case(f"image {path.name}", "encode_image", "unreadable_image", path.name, images=[str(path)])
    case("an image folder", "encode_image", "unreadable_image", "images", images=[str(images)])
    case("an image that does not exist", "encode_image", "missing_file", "absent.png", images=[str(images / "absent.png")])
    long_text = " ".join(["too long"] * 60)
    case("a text over 77 tokens", "encode_text", "text_too_long", long_text[:20], texts=[long_text])
    chelsea = str(images / "chelsea.png")
    for top, says in (("0", "--top"), ("-1", "--top"), ("two", "--top")):
        case(f"--top {top}", "cli", "usage", says, images=[chelsea], labels="a cat,a dog", top=top, exit=2)
    case("--labels with no label", "cli", "usage", "--labels", images=[chelsea], labels=" , ", top="1", exit=2)
    case("classify a missing image", "cli", "missing_file", "absent.png", images=[str(images / "absent.png")],
         labels="a cat", top="1", exit=1)
    case("classify an unknown format_version", "cli", "unsupported_format", "999", str(root / "format-999"),
         images=[chelsea], labels="a cat", top="1", exit=1)
    assert all(c["kind"] in ERROR_KINDS for c in cases)
    return cases


def _cleaning(root: Path, model: Model) -> dict:
    """CLIP's cleaning on ftfy's test cases, the corpus and generated strings (tests/ftfy_cases.py), and
    the token ids of every text in the file's order (int32 [N, 77], truncated)."""
    path = ftfy_cases.write(root / "cleaning.json")
    sets = json.loads(path.read_text())["sets"]
    texts = [case["text"] for cases in sets.values() for case in cases]
    return {"file": str(path), "order": list(sets),  # the sets in the ids' order (a JSON object may not keep it)
            "token_ids": _save(tokenizer.encode(model.tokenizer, texts, truncate=True), root / "cleaning-ids.bin", np.int32)}


def write(root: Path) -> Path:
    root = Path(root)
    pngs, jpeg, others, unlisted, bad = _images(root / "images")
    corpus = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    texts = TEXTS + corpus
    exports = []
    for variant in ("tiny-ViT", "tiny-RN"):
        for precision in ("fp32", "fp16"):
            folder = pipeline.export(random_weights(get_variant(variant), seed=0), folder_name(variant),
                                     root / "exports" / precision, precision=precision, graphs=["visual", "transformer"],
                                     verify=False, log=lambda _: None)
            model = Model(folder)
            name = f"{variant}-{precision}"
            tolerance = TOLERANCES[precision]
            exports.append({
                "folder": str(folder), "precision": precision,
                "image_embeds": _save(model.encode_image(pngs), root / f"{name}.image.bin", np.float32),
                "text_embeds": _save(model.encode_text(TEXTS, truncate=True), root / f"{name}.text.bin", np.float32),
                "min_cosine": tolerance.min_cosine, "max_relative": tolerance.max_relative,
            })
    first = Path(exports[0]["folder"])
    model = Model(first)
    classify = subprocess.run([sys.executable, "-m", "clip_onnx", "classify", *map(str, pngs), "-m", str(first),
                               "--labels", ",".join(LABELS), "--top", str(len(LABELS))],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    vectors = {
        "exports": exports,
        "images": [str(p) for p in pngs], "jpeg": str(jpeg),
        "not_images": [str(root / "images" / name) for name in ("webp-lossy.webp", "text.png", "truncated-chelsea.png")],
        "pixels": {str(r): _save(preprocess.load(pngs, r), root / f"pixels-{r}.bin", np.float32) for r in RESOLUTIONS},
        # every kind of file, Pillow's pixels at R = 224: what the Node example is held to, file by file
        "all_images": [str(p) for p in pngs + others],
        "all_pixels": _save(preprocess.load(pngs + others, 224), root / "all-pixels-224.bin", np.float32),
        # outside the list, and damaged: refused alike by every consumer (also cases of `bad_inputs`)
        "unlisted_images": [str(p) for p in unlisted], "bad_images": [str(p) for p in bad],
        "jpeg_pixels": _save(preprocess.load([jpeg], 224), root / "jpeg-pixels.bin", np.float32),
        "texts": texts, "embedded_texts": TEXTS,
        "token_ids": _save(tokenizer.encode(model.tokenizer, texts, truncate=True), root / "token-ids.bin", np.int32),
        # the texts whose ids a consumer without ftfy must still match exactly: ftfy.fix_text changes nothing
        "ftfy_changes": [ftfy.fix_text(t) != t for t in texts],
        "html_texts": [t for t in texts if ftfy.fix_text(t) == t and html.unescape(html.unescape(t)) != html.unescape(t)],
        "cleaning": _cleaning(root, model),
        "error_kinds": list(ERROR_KINDS),
        "bad_inputs": _bad_inputs(first, root / "bad-inputs", root / "images", unlisted + bad),
        "labels": LABELS, "classify": classify,
    }
    path = root / "vectors.json"
    path.write_text(json.dumps(vectors, indent=1, ensure_ascii=False))
    return path
