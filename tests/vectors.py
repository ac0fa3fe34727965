"""Shared test vectors: what the Python runtime computes on a fixed set of exports, images and texts,
written to a folder for the Rust crate's tests (and any other consumer's) to hold their own results to,
so every language answers to one truth. `write(root)` returns `root/vectors.json`, which names every file:

- `exports`: tiny-ViT and tiny-RN in fp32 and fp16 (visual and transformer graphs), each with Python's
  image and text embeddings (float32 little-endian, [N, D]) and its precision's tolerance;
- `images`: PNGs in every mode Pillow opens them in (RGB, L, LA, RGBA, P with and without
  transparency, 1-bit), odd and tall sizes, plus one JPEG and files that are not images;
- `all_images` and `all_pixels`: those PNGs and every other kind of file (JPEG baseline, 4:4:4,
  progressive, grey and CMYK; WebP lossy and lossless; GIF; TIFF; 16-bit PNGs) with Pillow's pixels;
  `bad_images`: an empty file, a truncated JPEG and a text file named `.png`;
- `pixels`: Python's float32 [N, 3, R, R] for the PNGs at several resolutions;
- `texts` and `token_ids` (int32 [N, 77], truncated), with whether `ftfy.fix_text` changes each text
  (`ftfy_changes`), and `html_texts`: texts ftfy leaves alone (HTML with tags) whose second unescape
  still changes them, so a consumer that unescapes once gets other ids;
- `broken`: folders with a missing external-data file, a truncated graph and a changed byte;
- `classify`: `clip-onnx classify`'s output for the PNGs.
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

CORPUS = Path(__file__).resolve().parent / "data" / "tokenizer_corpus.jsonl"
LONG_TEXT = " ".join(["a very long caption"] * 30)  # truncated to 75 tokens + start + end
TEXTS = ["a photo of an astronaut", "a cat", "Café &amp; CRÈME brûlée", "東京の夜景 🚀", "naïve façade 😺🎉", "",
         LONG_TEXT]
RESOLUTIONS = (32, 224, 301)  # besides the exports' own, more sizes for the resampler, upsampling included
LABELS = ["a photo of an astronaut", "a cat", "a cup of coffee", "a man with a camera"]


def _other_formats(folder: Path, photo: np.ndarray, rng: np.random.Generator) -> list[Path]:
    """JPEG (baseline 4:2:0, 4:4:4, progressive, grey, CMYK), WebP (lossy, lossless), GIF (with and
    without transparency), TIFF, and 16-bit PNGs (grey, RGB): what a consumer meets besides 8-bit PNGs."""
    image = Image.fromarray(photo)
    made = []

    def save(name: str, picture: Image.Image, **options) -> None:
        picture.save(folder / name, **options)
        made.append(folder / name)

    save("jpeg-420.jpg", image, quality=90)
    save("jpeg-444.jpg", image, quality=90, subsampling=0)
    save("jpeg-progressive.jpg", image, quality=85, progressive=True)
    save("jpeg-grey.jpg", image.convert("L"), quality=90)
    save("jpeg-cmyk.jpg", image.convert("CMYK"), quality=90)
    save("webp-lossy.webp", image, quality=80)
    save("webp-lossless.webp", image, lossless=True)
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    save("gif.gif", palette)
    save("gif-transparent.gif", palette, transparency=3)
    save("tiff.tiff", image)
    save("png-grey16.png", Image.fromarray(rng.integers(0, 300, (41, 57), dtype=np.uint16)))
    made.append(_rgb16(folder / "png-rgb16.png", rng))
    return made


def _rgb16(path: Path, rng: np.random.Generator) -> Path:
    """A 16-bit RGB PNG (Pillow cannot write one), written with the PNG layout by hand."""
    import struct
    import zlib

    height, width = 19, 23
    rows = b"".join(b"\0" + rng.integers(0, 65536, width * 3, dtype=np.uint16).astype(">u2").tobytes() for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def _images(folder: Path) -> tuple[list[Path], Path, list[Path], list[Path], list[Path]]:
    """(PNGs in every mode, one JPEG, files that are not images to the Rust crate, other formats, bad files)."""
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
    others = _other_formats(folder, photos["chelsea"], rng)
    Image.fromarray(photos["chelsea"]).save(folder / "chelsea.webp", format="WEBP")
    (folder / "notes.txt").write_text("not an image\n")
    truncated = folder / "truncated.png"
    truncated.write_bytes((folder / "chelsea.png").read_bytes()[:2000])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("a text file named .png\n")
    cut = folder / "truncated.jpg"
    cut.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    bad = [folder / "empty.png", cut, folder / "text.png"]
    return pngs, jpeg, [folder / "chelsea.webp", folder / "notes.txt", truncated], others, bad


def _save(array: np.ndarray, path: Path, dtype) -> str:
    np.ascontiguousarray(array, dtype=dtype).tofile(path)
    return str(path)


def _broken(folder: Path, root: Path) -> dict[str, str]:
    """Copies of an export: its visual graph's weights moved to an external-data file that is then
    deleted; its visual graph cut in half; one byte of its tokenizer changed."""
    cases = {}
    for case in ("missing-data", "truncated-graph", "changed-byte"):
        copy = root / case
        shutil.copytree(folder, copy)
        data = json.loads((copy / "manifest.json").read_text())
        visual = copy / data["graphs"]["visual"]["file"]
        if case == "missing-data":
            onnx.save_model(onnx.load(str(visual)), str(visual), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=f"{visual.name}.data", size_threshold=0)
            data["graphs"]["visual"]["external_data"] = [f"{visual.name}.data"]
            for path in (visual, copy / f"{visual.name}.data"):
                data["files"][path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            (copy / f"{visual.name}.data").unlink()
        elif case == "truncated-graph":
            visual.write_bytes(visual.read_bytes()[: visual.stat().st_size // 2])
        else:
            content = bytearray((copy / "tokenizer.json").read_bytes())
            content[-2] ^= 0x01
            (copy / "tokenizer.json").write_bytes(bytes(content))
        (copy / "manifest.json").write_text(json.dumps(data))
        cases[case] = str(copy)
    return cases


def write(root: Path) -> Path:
    root = Path(root)
    pngs, jpeg, not_images, others, bad = _images(root / "images")
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
        "images": [str(p) for p in pngs], "jpeg": str(jpeg), "not_images": [str(p) for p in not_images],
        "pixels": {str(r): _save(preprocess.load(pngs, r), root / f"pixels-{r}.bin", np.float32) for r in RESOLUTIONS},
        # every kind of file, Pillow's pixels at R = 224: what the Node example is held to, file by file
        "all_images": [str(p) for p in pngs + others],
        "all_pixels": _save(preprocess.load(pngs + others, 224), root / "all-pixels-224.bin", np.float32),
        "bad_images": [str(p) for p in bad],
        "jpeg_pixels": _save(preprocess.load([jpeg], 224), root / "jpeg-pixels.bin", np.float32),
        "texts": texts, "embedded_texts": TEXTS,
        "token_ids": _save(tokenizer.encode(model.tokenizer, texts, truncate=True), root / "token-ids.bin", np.int32),
        # the texts whose ids a consumer without ftfy must still match exactly: ftfy.fix_text changes nothing
        "ftfy_changes": [ftfy.fix_text(t) != t for t in texts],
        "html_texts": [t for t in texts if ftfy.fix_text(t) == t and html.unescape(html.unescape(t)) != html.unescape(t)],
        "broken": _broken(first, root / "broken"),
        "labels": LABELS, "classify": classify,
    }
    path = root / "vectors.json"
    path.write_text(json.dumps(vectors, indent=1, ensure_ascii=False))
    return path
