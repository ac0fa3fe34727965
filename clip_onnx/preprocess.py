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
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import PIL
from PIL import Image, features

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

# torchvision's Normalize casts mean and std to the image's dtype before subtracting and dividing.
_MEAN32 = np.array(MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD32 = np.array(STD, dtype=np.float32).reshape(3, 1, 1)


def resized_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """torchvision's `Resize(int)`: shorter side to R, longer side `int(R * long / short)`, i.e. floored."""
    if width <= height:
        return resolution, resolution * height // width
    return resolution * width // height, resolution


def crop_offset(length: int, resolution: int) -> int:
    """torchvision's `center_crop`: `int(round((length - R) / 2))`, Python's round, so halves go to even."""
    return round((length - resolution) / 2)


def spec(resolution: int) -> dict:
    """The content of `preprocess.json`: every rule needed to reproduce `preprocess` bit for bit elsewhere."""
    return {
        "resolution": resolution,
        "steps": [
            {
                "op": "resize",
                "edge": "shorter",
                "size": resolution,
                "filter": "PIL BICUBIC with antialiasing (Image.resize)",
                "long_side": "floor(R * long / short) in exact integers (torchvision's int(R * long / short))",
                "output": "width <= height: (R, floor(R * height / width)); else (floor(R * width / height), R)",
                "unchanged": "an image already at the output size is not resampled (bicubic would be the identity)",
                "algorithm": {
                    "source": f"Pillow {PIL.__version__} src/libImaging/Resample.c (ImagingResample), 8-bit channels",
                    "passes": (
                        "separable, one pass per axis whose size changes, each writing uint8 (rounded, clamped); "
                        "vertical first if out_h < in_h and (in_h - out_h) > 2 * (in_w - out_w), else horizontal "
                        "first (this Pillow version's rule; other versions may order the passes differently)"
                    ),
                    "axis": (
                        "n_in -> n_out samples: scale = n_in / n_out, filterscale = max(scale, 1), "
                        "support = 2 * filterscale, in float64"
                    ),
                    "window": (
                        "output i: center = (i + 0.5) * scale; inputs j from max(0, trunc(center - support + 0.5)) "
                        "to min(n_in, trunc(center + support + 0.5)), exclusive"
                    ),
                    "kernel": (
                        "w_j = cubic((j - center + 0.5) * (1 / filterscale)); cubic is Keys' kernel with a = -0.5, "
                        "of x = |x|: x < 1: ((a + 2) * x - (a + 3)) * x * x + 1; "
                        "x < 2: (((x - 5) * x + 8) * x - 4) * a; else 0"
                    ),
                    "normalise": "w_j = w_j / sum(w), the sum accumulated in order of j; skipped if the sum is 0",
                    "fixed_point": "k_j = trunc(w_j * 2^22 + 0.5) if w_j >= 0 else trunc(w_j * 2^22 - 0.5)",
                    "output": "clamp((2^21 + sum(k_j * in_j)) >> 22, 0, 255) in integers; >> shifts arithmetically",
                },
            },
            {
                "op": "center_crop",
                "size": [resolution, resolution],
                "offset": (
                    "left = round_half_even((width - R) / 2), top = round_half_even((height - R) / 2) "
                    "(torchvision's int(round(...)), Python's round); for d = side - R that is "
                    "d // 2 + (1 if d % 4 == 3 else 0): d = 1 -> 0, 3 -> 2, 5 -> 2, 7 -> 4"
                ),
                "box": "pixels [left, left + R) x [top, top + R) of the resized image",
            },
            {
                "op": "convert",
                "to": "RGB",
                "note": "Pillow Image.convert('RGB'), after resize and crop; alpha is dropped, not composited",
            },
            {"op": "scale", "formula": "x = float32(pixel) / float32(255)", "range": [0.0, 1.0]},
            {
                "op": "normalize",
                "formula": "x = (x - float32(mean[c])) / float32(std[c]), per channel c in RGB order",
                "arithmetic": "float32, each operation rounded to nearest even: no fused multiply-add, no reciprocal",
            },
        ],
        "mean": list(MEAN),
        "std": list(STD),
        "color_order": "RGB",
        "layout": "NCHW",
        "dtype": "float32",
        "input": {
            "image": "the decoded image as it is: EXIF orientation is not applied",
            "color_profile": "ignored: an embedded ICC profile does not change the decoded values",
            "max_pixels": MAX_PIXELS,
            "formats": {
                "PNG": {"kinds": "every colour type and bit depth"},
                "JPEG": {"decoder": f"libjpeg-turbo {features.version('libjpeg_turbo')}", "idct": "islow",
                         "upsampling": "fancy", "kinds": "baseline, progressive, any subsampling, grey, CMYK"},
                "WEBP": {"decoder": f"libwebp {features.version('webp')}", "kinds": "lossy, lossless, alpha"},
                "GIF": {"frame": "first"},
                "BMP": {"bits": list(BMP_BITS), "compression": ["raw"]},
                "TIFF": {"modes": list(TIFF_MODES), "compression": list(TIFF_COMPRESSIONS)},
            },
            "modes": {
                "RGB": "8-bit channels, as above",
                "L": "8-bit grayscale, resized as one channel, then copied to R, G and B",
                "P, 1": "palette and bilevel images are resized with NEAREST (Pillow's rule), not bicubic",
                "LA, RGBA": (
                    "resized with colour premultiplied by alpha, then divided back; alpha is then dropped, so fully "
                    "transparent pixels turn black, unless the image needed no resize"
                ),
                "CMYK, YCbCr": "resized in their own channels, then converted to RGB by Pillow",
                "I, I;16, F": (
                    "resized at their own precision, then clamped to [0, 255] by the RGB conversion ('F' truncated): "
                    "16-bit values are not rescaled, so most 16-bit images come out nearly white"
                ),
            },
        },
    }


def write(folder: Path, resolution: int) -> Path:
    """Write `preprocess.json` beside the graphs, for consumers that do not run Python."""
    path = folder / PREPROCESS
    path.write_text(json.dumps(spec(resolution), indent=2) + "\n")
    return path


def preprocess(image: Image.Image, resolution: int) -> np.ndarray:
    """One PIL image as CLIP's visual input: float32 [3, R, R], the same bits as `clip.clip._transform(R)`."""
    if image.width == 0 or image.height == 0:
        raise ClipOnnxError(f"an image of {image.width} x {image.height} pixels has nothing to resize; pass an "
                            f"image with pixels", "unreadable_image")
    size = resized_size(*image.size, resolution)
    # Same call as torchvision: Pillow antialiases BICUBIC and forces NEAREST on "P" and "1" images.
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = crop_offset(size[0], resolution), crop_offset(size[1], resolution)
    image = image.crop((left, top, left + resolution, top + resolution)).convert("RGB")
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    return (pixels - _MEAN32) / _STD32


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


def _check_readable(image: Image.Image, source: object) -> None:
    """A file of a listed format and kind (`FORMATS`), within `MAX_PIXELS`, before any pixel is decoded."""
    if image.format not in FORMATS:
        raise ClipOnnxError(f"{_describe(source)} is in the {image.format} format; clip-onnx reads {', '.join(FORMATS)}: "
                            f"convert it to PNG", "unreadable_image")
    if image.format == "TIFF" and (image.mode not in TIFF_MODES or image.info.get("compression") not in TIFF_COMPRESSIONS):
        raise ClipOnnxError(f"{_describe(source)} is a TIFF of mode {image.mode} with {image.info.get('compression')} "
                            f"compression; clip-onnx reads 8-bit RGB or grey TIFF, uncompressed, LZW or deflate: "
                            f"convert it to PNG", "unreadable_image")
    if image.format == "BMP" and _bmp_kind(image) not in [(bits, 0) for bits in BMP_BITS]:
        bits, compression = _bmp_kind(image)
        raise ClipOnnxError(f"{_describe(source)} is a BMP of {bits} bits per pixel with compression {compression}; "
                            f"clip-onnx reads uncompressed BMP of {', '.join(map(str, BMP_BITS))} bits: convert it to "
                            f"PNG", "unreadable_image")
    if image.width * image.height > MAX_PIXELS:
        raise ClipOnnxError(f"{_describe(source)} has more than {MAX_PIXELS} pixels, the limit every clip-onnx "
                            f"consumer shares; resize it first", "unreadable_image")


def _load_file(source: str | Path | bytes | BinaryIO, resolution: int) -> np.ndarray:
    """A path, the bytes of a file, or a readable binary file object, decoded by Pillow."""
    opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(opened) as image:
            _check_readable(image, source)
            return preprocess(image, resolution)
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


def load(images: Iterable[ImageSource], resolution: int) -> np.ndarray:
    """Images as one float32 batch [N, 3, R, R], each through `preprocess`: file paths, the bytes of an
    image file, binary file objects, PIL images, or uint8 arrays [H, W, 3] (RGB) or [H, W] (grey)."""
    arrays = []
    for item in images:
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or not (item.ndim == 2 or (item.ndim == 3 and item.shape[2] == 3)):
                raise ClipOnnxError(f"an image array must be uint8 [H, W, 3] (RGB) or [H, W] (grey), not "
                                    f"{item.dtype} {list(item.shape)}; pass preprocessed pixels as one float32 "
                                    f"[N, 3, R, R] array instead")
            item = Image.fromarray(item)
        if isinstance(item, Image.Image):
            arrays.append(preprocess(item, resolution))
        elif isinstance(item, (str, Path, bytes, bytearray, memoryview)) or hasattr(item, "read"):
            arrays.append(_load_file(item, resolution))
        else:
            raise ClipOnnxError(f"cannot read an image from a {type(item).__name__}; pass a path, bytes, a binary "
                                f"file object, a PIL image or a uint8 array")
    return np.stack(arrays) if arrays else np.zeros((0, 3, resolution, resolution), dtype=np.float32)
