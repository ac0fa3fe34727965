"""Image files for the conformance artifact (tests/conformance.py): one file of every kind the consumers
read (`clip_onnx.preprocess` FORMATS: PNG, JPEG, WebP, GIF, BMP and TIFF kinds, with and without colour
profiles and EXIF orientation), files of formats outside that list, and damaged files. Python's pixels
for the first are the truth every language is held to; the other two must be refused by all three alike."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, features

from clip_onnx.preprocess import MAX_PIXELS

SKIMAGE = Path(skimage.data.__file__).parent


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(path: Path, width: int, height: int, depth: int, colour: int, rows: bytes) -> Path:
    """A PNG written chunk by chunk, for what Pillow cannot write (16-bit RGB, a huge image cheaply)."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
                     + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    return path


def _rgb16(path: Path, rng: np.random.Generator) -> Path:
    height, width = 19, 23
    rows = b"".join(b"\0" + rng.integers(0, 65536, width * 3, dtype=np.uint16).astype(">u2").tobytes() for _ in range(height))
    return _png(path, width, height, 16, 2, zlib.compress(rows))


def _over_the_limit(path: Path) -> Path:
    """A valid grey PNG one row taller than a square at MAX_PIXELS: 180 KB of zeros, refused by its size."""
    side = int(MAX_PIXELS**0.5) + 1
    compressor, row = zlib.compressobj(9), bytes(side + 1)
    rows = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return _png(path, side, side, 8, 0, rows)


def grey_profile(gamma: float = 1.0) -> bytes:
    """An ICC v2 grey display profile (desc, wtpt, kTRC, cprt) whose tone curve is `gamma`: a colour-managed
    decoder would change a grey image's values by it; Pillow (so CLIP) ignores it."""
    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def text_description(text: bytes) -> bytes:
        return b"desc" + bytes(4) + struct.pack(">I", len(text) + 1) + text + b"\0" + bytes(4 + 4 + 2 + 1 + 67)

    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"desc", text_description(b"clip-onnx test grey")), (b"wtpt", b"XYZ " + bytes(4) + d50),
            (b"kTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)),
            (b"cprt", b"text" + bytes(4) + b"public domain\0")]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + bytes(4) + bytes([2, 0x10, 0, 0]) + b"mntrGRAYXYZ " + bytes(12) + b"acsp"
              + bytes(4 + 4 + 4 + 4 + 8 + 4) + d50 + bytes(4 + 16 + 28))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def listed(folder: Path, photo: np.ndarray, rng: np.random.Generator) -> list[Path]:
    """Every listed kind besides the 8-bit PNG modes (tests/conformance.py makes those): JPEG (4:2:0, 4:2:2,
    4:4:4, progressive, grey, CMYK, EXIF orientation, colour profiles in RGB and grey, a camera photo with
    its profile), PNG (16-bit, colour profiles), WebP (lossy, lossless, alpha), GIF (still, transparent,
    animated), BMP (1, 8, 24, 32 bits) and TIFF (RGB and grey; uncompressed, LZW, deflate)."""
    image = Image.fromarray(photo)
    grey = image.convert("L")
    rgb_profile = Image.open(SKIMAGE / "hubble_deep_field.jpg").info["icc_profile"]
    made = []

    def save(name: str, picture: Image.Image, **options) -> None:
        picture.save(folder / name, **options)
        made.append(folder / name)

    save("jpeg-420.jpg", image, quality=90)
    save("jpeg-422.jpg", image, quality=90, subsampling=1)
    save("jpeg-444.jpg", image, quality=90, subsampling=0)
    save("jpeg-progressive.jpg", image, quality=85, progressive=True)
    save("jpeg-grey.jpg", grey, quality=90)
    save("jpeg-cmyk.jpg", image.convert("CMYK"), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display; Pillow's decoder does not
    save("jpeg-exif-rotated.jpg", image, quality=90, exif=exif)
    save("jpeg-icc.jpg", image, quality=90, icc_profile=rgb_profile)
    save("jpeg-grey-icc.jpg", grey, quality=90, icc_profile=grey_profile())
    (folder / "jpeg-camera-icc.jpg").write_bytes((SKIMAGE / "rocket.jpg").read_bytes())  # a camera photo, its own profile
    made.append(folder / "jpeg-camera-icc.jpg")
    save("png-icc.png", image, icc_profile=rgb_profile)
    save("png-grey-icc.png", grey, icc_profile=grey_profile())
    save("png-grey16.png", Image.fromarray(rng.integers(0, 300, (41, 57), dtype=np.uint16)))
    made.append(_rgb16(folder / "png-rgb16.png", rng))
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, photo.shape[:2], dtype=np.uint8)))
    save("webp-lossy.webp", image, quality=80)
    save("webp-lossless.webp", image, lossless=True)
    save("webp-alpha.webp", rgba, quality=80)
    save("webp-alpha-lossless.webp", rgba, lossless=True)
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    save("gif.gif", palette)
    save("gif-transparent.gif", palette, transparency=3)
    (folder / "gif-animated.gif").write_bytes((SKIMAGE / "no_time_for_that_tiny.gif").read_bytes())  # 24 frames
    made.append(folder / "gif-animated.gif")
    save("bmp-1.bmp", grey.convert("1"))
    save("bmp-8.bmp", palette)
    save("bmp-24.bmp", image)
    save("bmp-32.bmp", rgba)
    for compression in ("raw", "tiff_lzw", "tiff_adobe_deflate"):
        save(f"tiff-{compression}.tiff", image, compression=compression)
        save(f"tiff-grey-{compression}.tiff", grey, compression=compression)
    return made


def _bmp(path: Path, bits: int, compression: int, width: int = 6, height: int = 4) -> Path:
    """A BMP of a kind Pillow reads and cannot write (4 or 16 bits, RLE8): every pixel 0 (RLE8: one run a row)."""
    colours = 1 << bits if bits <= 8 else 0
    data = bytes(((bits * width + 31) // 32) * 4 * height) if compression == 0 else (bytes([width, 0]) + b"\0\0") * height + b"\0\1"
    offset = 14 + 40 + 4 * colours
    path.write_bytes(b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
                     + struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(data), 0, 0, colours, 0)
                     + bytes(4 * colours) + data)
    return path


def unlisted(folder: Path, photo: np.ndarray) -> list[Path]:
    """Files Pillow opens whose format or kind is outside the list: every consumer refuses them alike."""
    image = Image.fromarray(photo)
    made = []
    for name, picture, options in [("icon.ico", image, {}), ("pixmap.ppm", image, {}), ("targa.tga", image, {}),
                                   ("paintbrush.pcx", image, {}), ("tiff-jpeg.tiff", image, {"compression": "jpeg"}),
                                   ("tiff-cmyk.tiff", image.convert("CMYK"), {}),
                                   ("tiff-16.tiff", Image.fromarray(np.zeros((9, 7), np.uint16)), {})]:
        picture.save(folder / name, **options)
        made.append(folder / name)
    made += [_bmp(folder / "bmp-4.bmp", 4, 0), _bmp(folder / "bmp-16.bmp", 16, 0), _bmp(folder / "bmp-rle8.bmp", 8, 1)]
    if features.check_codec("jpg_2000"):
        image.save(folder / "jpeg2000.jp2")
        made.append(folder / "jpeg2000.jp2")
    return made


def damaged(folder: Path, sources: list[Path]) -> list[Path]:
    """An empty file, a text file named .png, each source cut in half, and a PNG over MAX_PIXELS."""
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("a text file named .png\n")
    made = [folder / "empty.png", folder / "text.png"]
    for source in sources:
        cut = folder / f"truncated-{source.name}"
        cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        made.append(cut)
    return made + [_over_the_limit(folder / "over-the-limit.png")]
