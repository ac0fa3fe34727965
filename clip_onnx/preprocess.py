"""CLIP's image preprocessing with Pillow and numpy only, bit-identical to `clip.clip._transform`.

CLIP's transform is torchvision `Resize(R, BICUBIC)`, `CenterCrop(R)`, `convert("RGB")`, `ToTensor()`,
`Normalize(MEAN, STD)` on a PIL image. The resize and crop are Pillow calls; the rest is float32
arithmetic that numpy rounds the same way torch does. So consumers need neither torch nor torchvision,
and `spec()` writes the same rules down for implementations in other languages.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image

from clip_onnx.errors import ClipOnnxError

PREPROCESS = "preprocess.json"

# The Normalize arguments in openai/CLIP `clip/clip.py` `_transform`, per RGB channel.
MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# The image files every consumer reads, by Pillow's format names; within TIFF, these modes and
# compressions. Any other file is refused alike by Python, Rust and Node; preprocess.json states the list.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
BMP_BITS = (1, 8, 24, 32)  # uncompressed (BI_RGB) only
TIFF_MODES = ("RGB", "L")
TIFF_COMPRESSIONS = ("raw", "tiff_lzw", "tiff_adobe_deflate")
# Pillow's decompression-bomb limit at its defaults (an error above 2 * Image.MAX_IMAGE_PIXELS), the one
# limit on width * height that every consumer enforces, whatever Image.MAX_IMAGE_PIXELS is set to here.
MAX_PIXELS = 2 * 89_478_485

def resized_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """torchvision's `Resize(int)`: shorter side to R, longer side `int(R * long / short)`, i.e. floored."""
    if width <= height:
        return resolution, resolution * height // width
    return resolution * width // height, resolution


def crop_offset(length: int, resolution: int) -> int:
    """torchvision's `center_crop`: `int(round((length - R) / 2))`, Python's round, so halves go to even."""
    return round((length - resolution) / 2)


# Every rule of the algorithm, by identifier: preprocess.json names these, and a reader refuses a file
# that names any other value or any other rule, in one line. docs/consumers.md#preprocessing-rules says
# what each identifier means; the three implementations (this module, rust/src/preprocess.rs,
# examples/node/clip.mjs) implement exactly these.
RULES: dict[str, str] = {
    "orientation": "exif_ignored",
    "color_profile": "ignored",
    "jpeg_decoder": "libjpeg_turbo_islow_fancy_upsampling",
    "webp_decoder": "libwebp",
    "gif_frame": "first",
    "resize_size": "shorter_edge_floor",
    "resize_filter": "pillow_bicubic_antialiased",
    "resize_arithmetic": "pillow_fixed_point_22",
    "resize_pass_order": "pillow_vertical_first_if_larger_cut",
    "resize_same_size": "skipped",
    "resize_palette": "nearest",
    "resize_alpha": "premultiplied",
    "resize_wide": "own_precision_then_clamped",
    "crop": "center_round_half_even",
    "to_rgb": "pillow_convert_alpha_dropped",
    "scale": "float32_divide_255",
    "normalize": "float32_subtract_then_divide",
    "layout": "NCHW",
    "color_order": "RGB",
    "dtype": "float32",
}


def spec(resolution: int) -> dict:
    """The content of `preprocess.json`: the parameters and the rule identifiers that reproduce
    `preprocess` bit for bit elsewhere, as data."""
    return {
        "resolution": resolution,
        "mean": list(MEAN),
        "std": list(STD),
        "rules": dict(RULES),
        "input": {
            "max_pixels": MAX_PIXELS,
            "formats": {
                "PNG": {}, "JPEG": {}, "WEBP": {}, "GIF": {},
                "BMP": {"bits": list(BMP_BITS), "compression": ["raw"]},
                "TIFF": {"modes": list(TIFF_MODES), "compression": list(TIFF_COMPRESSIONS)},
            },
        },
    }


@dataclass(frozen=True)
class Preprocessing:
    """What one `preprocess.json` says, checked: the parameters, and the files that may be read."""

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    formats: dict
    max_pixels: int

    @classmethod
    def default(cls, resolution: int) -> "Preprocessing":
        """CLIP's own, as `spec` writes it: for images preprocessed without an exported folder."""
        return cls.parse(spec(resolution), PREPROCESS)

    @classmethod
    def read(cls, path: Path) -> "Preprocessing":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ClipOnnxError(f"{path} is missing; export the variant again with this clip-onnx", "missing_file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ClipOnnxError(f"{path} is not valid JSON ({error}); export the variant again", "bad_manifest") from None
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: object, path: object) -> "Preprocessing":
        """Refuse, in one line, a rule this module does not implement and a parameter out of shape."""
        def bad(key: str, should: str) -> ClipOnnxError:
            return ClipOnnxError(f"{path}: {key} must be {should}; export the variant again", "bad_manifest")

        if not isinstance(data, dict):
            raise bad("the file", "a JSON object")
        rules = data.get("rules")
        if not isinstance(rules, dict):
            raise bad("rules", "an object of rule identifiers")
        for rule, value in rules.items():
            if rule not in RULES:
                raise ClipOnnxError(f"{path}: rule {json.dumps(rule)} is not one this clip-onnx knows; pip install "
                                    f"--upgrade clip-onnx, or use files of a release it reads", "unsupported_format")
            if value != RULES[rule]:
                raise ClipOnnxError(f"{path}: rule {rule} is {json.dumps(value)}, which this clip-onnx does not "
                                    f"implement (it implements {json.dumps(RULES[rule])}); pip install --upgrade "
                                    f"clip-onnx, or use files of a release it reads", "unsupported_format")
        absent = [rule for rule in RULES if rule not in rules]
        if absent:
            raise ClipOnnxError(f"{path} lacks rule {absent[0]}; export the variant again with a clip-onnx that "
                                f"writes it", "unsupported_format")
        resolution = data.get("resolution")
        if type(resolution) is not int or resolution < 1:
            raise bad("resolution", "a positive integer")
        numbers = {}
        for key in ("mean", "std"):
            value = data.get(key)
            if (not isinstance(value, list) or len(value) != 3 or any(type(v) not in (int, float) for v in value)
                    or not all(np.isfinite(value)) or (key == "std" and 0 in value)):
                raise bad(key, "3 finite numbers, one per RGB channel" + (", none zero" if key == "std" else ""))
            numbers[key] = tuple(float(v) for v in value)
        source = data.get("input")
        if (not isinstance(source, dict) or not isinstance(source.get("formats"), dict)
                or not all(isinstance(kinds, dict) for kinds in source["formats"].values())):
            raise bad("input.formats", "an object of image formats")
        if type(source.get("max_pixels")) is not int or source["max_pixels"] < 1:
            raise bad("input.max_pixels", "a positive integer")
        for name, key in (("BMP", "bits"), ("BMP", "compression"), ("TIFF", "modes"), ("TIFF", "compression")):
            if not isinstance(source["formats"].get(name, {}).get(key, []), list):
                raise bad(f"input.formats.{name}.{key}", "a list")
        return cls(resolution, numbers["mean"], numbers["std"], source["formats"], source["max_pixels"])


def write(folder: Path, resolution: int) -> Path:
    """Write `preprocess.json` beside the graphs, for consumers that do not run Python."""
    path = folder / PREPROCESS
    path.write_text(json.dumps(spec(resolution), indent=2) + "\n")
    return path


def _preprocessing(rules: Preprocessing | int) -> Preprocessing:
    """A resolution alone stands for CLIP's own preprocessing at it."""
    return rules if isinstance(rules, Preprocessing) else Preprocessing.default(rules)


def preprocess(image: Image.Image, rules: Preprocessing | int) -> np.ndarray:
    """One PIL image as CLIP's visual input: float32 [3, R, R], the same bits as `clip.clip._transform(R)`
    (`rules`: a folder's preprocess.json, or R for CLIP's own)."""
    rules = _preprocessing(rules)
    resolution = rules.resolution
    if image.width == 0 or image.height == 0:
        raise ClipOnnxError(f"an image of {image.width} x {image.height} pixels has nothing to resize; pass an "
                            f"image with pixels", "unreadable_image")
    size = resized_size(*image.size, resolution)
    # Same call as torchvision: Pillow antialiases BICUBIC and forces NEAREST on "P" and "1" images.
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = crop_offset(size[0], resolution), crop_offset(size[1], resolution)
    image = image.crop((left, top, left + resolution, top + resolution)).convert("RGB")
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)  # HWC -> CHW
    # torchvision's Normalize casts mean and std to the image's dtype before subtracting and dividing
    mean, std = (np.array(v, dtype=np.float32).reshape(3, 1, 1) for v in (rules.mean, rules.std))
    return (pixels - mean) / std


def _describe(source: object) -> str:
    """How an error names an image: its path, or what was passed."""
    if isinstance(source, (str, Path)):
        return f"image {source}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"image bytes ({len(source)} bytes)"
    return f"image {getattr(source, 'name', type(source).__name__)}"


def _bmp_kind(image: Image.Image) -> tuple[int, int]:
    """(bits per pixel, compression) from the BMP's header: Pillow reads more kinds than the list holds.
    Pillow seeks to the pixels itself when it decodes, so reading the header here changes nothing."""
    image.fp.seek(14)
    header = image.fp.read(20)
    size = int.from_bytes(header[:4], "little")
    if size == 12:  # OS/2 BITMAPCOREHEADER: no compression field
        return int.from_bytes(header[10:12], "little"), 0
    return int.from_bytes(header[14:16], "little"), int.from_bytes(header[16:20], "little")


def _check_readable(image: Image.Image, source: object, rules: Preprocessing) -> None:
    """A file of a format and kind preprocess.json lists (`input.formats`), within its `input.max_pixels`,
    before any pixel is decoded; what it lists beyond `FORMATS` and their kinds is refused too."""
    listed = [name for name in rules.formats if name in FORMATS]
    if image.format not in listed:
        raise ClipOnnxError(f"{_describe(source)} is in the {image.format} format; clip-onnx reads {', '.join(listed)}: "
                            f"convert it to PNG", "unreadable_image")
    kinds = rules.formats[image.format]
    if image.format == "TIFF":
        modes = [m for m in kinds.get("modes", []) if m in TIFF_MODES]
        compressions = [c for c in kinds.get("compression", []) if c in TIFF_COMPRESSIONS]
        if image.mode not in modes or image.info.get("compression") not in compressions:
            raise ClipOnnxError(f"{_describe(source)} is a TIFF of mode {image.mode} with "
                                f"{image.info.get('compression')} compression; clip-onnx reads TIFF of mode "
                                f"{', '.join(modes)} with {', '.join(compressions)} compression: convert it to PNG",
                                "unreadable_image")
    if image.format == "BMP":
        bits_read = [b for b in kinds.get("bits", []) if b in BMP_BITS] if "raw" in kinds.get("compression", []) else []
        bits, compression = _bmp_kind(image)
        if compression != 0 or bits not in bits_read:
            raise ClipOnnxError(f"{_describe(source)} is a BMP of {bits} bits per pixel with compression "
                                f"{compression}; clip-onnx reads uncompressed BMP of "
                                f"{', '.join(map(str, bits_read))} bits: convert it to PNG", "unreadable_image")
    if image.width * image.height > rules.max_pixels:
        raise ClipOnnxError(f"{_describe(source)} has more than {rules.max_pixels} pixels, the limit every clip-onnx "
                            f"consumer shares; resize it first", "unreadable_image")


def _load_file(source: str | Path | bytes | BinaryIO, rules: Preprocessing) -> np.ndarray:
    """A path, the bytes of a file, or a readable binary file object, decoded by Pillow."""
    opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(opened) as image:
            _check_readable(image, source, rules)
            return preprocess(image, rules)
    except FileNotFoundError:
        raise ClipOnnxError(f"{_describe(source)} does not exist; check the path", "missing_file") from None
    except IsADirectoryError:
        raise ClipOnnxError(f"{_describe(source)} is a folder, not an image; name an image file",
                            "unreadable_image") from None
    except ValueError as error:  # a closed file object
        raise ClipOnnxError(f"{_describe(source)} could not be read ({error}); pass an open binary file",
                            "unreadable_image") from None
    except Image.DecompressionBombError as error:  # Pillow's check at open: MAX_PIXELS, unless Image.MAX_IMAGE_PIXELS is changed
        raise ClipOnnxError(f"{_describe(source)} is too large to decode safely ({error}); resize it first",
                            "unreadable_image") from None
    except OSError as error:  # Pillow's UnidentifiedImageError, truncated files, folders, permissions
        raise ClipOnnxError(f"{_describe(source)} could not be read ({error}); it is damaged, truncated or not an "
                            f"image: clip-onnx reads {', '.join(FORMATS)}", "unreadable_image") from None


ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image, np.ndarray]


def load(images: Iterable[ImageSource], rules: Preprocessing | int) -> np.ndarray:
    """Images as one float32 batch [N, 3, R, R], each through `preprocess`: file paths, the bytes of an
    image file, binary file objects, PIL images, or uint8 arrays [H, W, 3] (RGB) or [H, W] (grey)."""
    rules = _preprocessing(rules)
    arrays = []
    for item in images:
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or not (item.ndim == 2 or (item.ndim == 3 and item.shape[2] == 3)):
                raise ClipOnnxError(f"an image array must be uint8 [H, W, 3] (RGB) or [H, W] (grey), not "
                                    f"{item.dtype} {list(item.shape)}; pass preprocessed pixels as one float32 "
                                    f"[N, 3, R, R] array instead")
            item = Image.fromarray(item)
        if isinstance(item, Image.Image):
            arrays.append(preprocess(item, rules))
        elif isinstance(item, (str, Path, bytes, bytearray, memoryview)) or hasattr(item, "read"):
            arrays.append(_load_file(item, rules))
        else:
            raise ClipOnnxError(f"cannot read an image from a {type(item).__name__}; pass a path, bytes, a binary "
                                f"file object, a PIL image or a uint8 array")
    return np.stack(arrays) if arrays else np.zeros((0, 3, rules.resolution, rules.resolution), dtype=np.float32)
