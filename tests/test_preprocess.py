"""`clip_onnx.preprocess` against CLIP's own torchvision transform: the same bits, not just close."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    Resize,
    ToTensor,
)
from torchvision.transforms.functional import _compute_resized_output_size

from clip_onnx import preprocess as pp
from tests import image_corpus
from exporter._clip import clip
from clip_onnx.errors import ClipOnnxError

RESOLUTIONS = [224, 288, 336, 384, 448]  # every OpenAI CLIP variant's input size


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Uniform random RGB: every rounding step of the resize shows in the output."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def clip_reference(image: Image.Image, resolution: int) -> np.ndarray:
    return clip.clip._transform(resolution)(image).numpy()


def assert_same_bits(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype == np.float32 and ours.shape == theirs.shape
    differing = ours != theirs
    assert not differing.any(), (
        f"{differing.sum()} of {differing.size} elements differ, max |diff| {np.abs(ours - theirs).max()}"
    )


def _with_alpha(mode: str) -> Callable[[Image.Image], Image.Image]:
    def make(rgb: Image.Image) -> Image.Image:
        alpha = np.random.default_rng(1).integers(0, 256, (rgb.height, rgb.width), dtype=np.uint8)
        alpha[::3] = 0  # fully transparent rows: Pillow's premultiplied resize blackens them
        image = rgb.convert("RGBA")
        image.putalpha(Image.fromarray(alpha))
        return image.convert(mode)

    return make


def _palette_transparent(rgb: Image.Image) -> Image.Image:
    image = rgb.quantize(64)
    image.info["transparency"] = 5
    return image


def _array(mode: str, low: float, high: float) -> Callable[[Image.Image], Image.Image]:
    """Values beyond 0..255: converting to RGB clamps them (16-bit is not rescaled)."""

    def make(rgb: Image.Image) -> Image.Image:
        values = np.random.default_rng(2).uniform(low, high, (rgb.height, rgb.width))
        if mode == "F":
            return Image.fromarray(values.astype(np.float32), "F")
        if mode == "I":
            return Image.fromarray(values.astype(np.int32), "I")
        return Image.fromarray(values.astype(np.uint16)).convert("I").convert(mode)

    return make


MODES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "RGB": lambda rgb: rgb,
    "L": lambda rgb: rgb.convert("L"),
    "LA": _with_alpha("LA"),
    "RGBA": _with_alpha("RGBA"),
    "P": lambda rgb: rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
    "P-transparency": _palette_transparent,
    "PA": lambda rgb: _with_alpha("RGBA")(rgb).convert("PA"),
    "CMYK": lambda rgb: rgb.convert("CMYK"),
    "YCbCr": lambda rgb: rgb.convert("YCbCr"),
    "1": lambda rgb: rgb.convert("1"),
    "I;16": _array("I;16", 0, 65536),
    "I;16-small": _array("I;16", 0, 300),
    "I;16B": _array("I;16B", 0, 65536),
    "I": _array("I", -1000, 1000),
    "F": _array("F", -20.0, 280.0),
}


def _noise_case(width: int, height: int, resolution: int):
    name = f"noise-{width}x{height}-R{resolution}"
    return pytest.param(lambda: noise(width, height, seed=width * height), resolution, id=name)


def _cases() -> list:
    cases = []
    for r in RESOLUTIONS:
        # exact fit, long side R+1 .. R+7 (crop offsets 0, 2, 2, 4: half to even), upscaling, and a tall image that
        # Pillow resizes vertical pass first
        sizes = [(r, r), (r + 1, r), (r, r + 1), (r + 3, r), (r, r + 3), (r + 5, r), (r + 7, r), (7, 5), (5, 7)]
        sizes += [(2 * r + 1, r + 2), (r - 1, 2 * r + 3), (r + r // 4, 4 * r)]
        sizes.append(tuple(int(v) for v in np.random.default_rng(r).integers(r // 2, 3 * r, 2)))
        cases += [_noise_case(w, h, r) for w, h in sizes]
        for name in ("astronaut", "chelsea"):
            cases.append(pytest.param(lambda n=name: Image.fromarray(getattr(skimage.data, n)()), r, id=f"{name}-R{r}"))
    cases += [_noise_case(w, h, r) for w, h, r in [(1, 500, 224), (500, 1, 224), (4000, 3000, 224), (3000, 4000, 336)]]
    for mode, make in MODES.items():
        for w, h, r in [(301, 257, 224), (7, 5, 224), (225, 227, 224)]:
            cases.append(pytest.param(lambda m=make, w=w, h=h: m(noise(w, h)), r, id=f"{mode}-{w}x{h}-R{r}"))
    return cases


@pytest.mark.parametrize(("make", "resolution"), _cases())
def test_bit_identical_to_clip(make: Callable[[], Image.Image], resolution: int):
    image = make()
    assert_same_bits(pp.preprocess(image, resolution), clip_reference(image, resolution))


def test_mode_clip_cannot_convert_fails_the_same_way():
    """Pillow's internal "La" has no conversion to RGB: CLIP raises ValueError, and so do we."""
    image = _with_alpha("RGBA")(noise(300, 250)).convert("RGBa").convert("La")
    with pytest.raises(ValueError, match="conversion from La"):
        clip_reference(image, 224)
    with pytest.raises(ValueError, match="conversion from La"):
        pp.preprocess(image, 224)


def test_comparison_detects_small_differences():
    """Each near miss (crop one pixel over, another filter, reciprocal instead of division) is caught."""
    r = 224
    image = noise(r + 2, r)  # no resize; CLIP crops columns 1 .. R
    reference = clip_reference(image, r)
    shifted = pp.preprocess(image.crop((0, 0, r + 1, r)), r)  # offset round(0.5) = 0: columns 0 .. R-1
    with pytest.raises(AssertionError):
        assert_same_bits(shifted, reference)

    photo = Image.fromarray(skimage.data.chelsea())
    bilinear = Compose([Resize(r, InterpolationMode.BILINEAR), CenterCrop(r), ToTensor(), Normalize(pp.MEAN, pp.STD)])
    with pytest.raises(AssertionError):
        assert_same_bits(pp.preprocess(photo, r), bilinear(photo).numpy())

    pixels = ToTensor()(photo.resize(pp.resized_size(*photo.size, r), Image.Resampling.BICUBIC)).numpy()
    top, left = pp.crop_offset(pixels.shape[1], r), pp.crop_offset(pixels.shape[2], r)
    pixels = pixels[:, top : top + r, left : left + r]
    mean, std = (np.array(v, dtype=np.float32).reshape(3, 1, 1) for v in (pp.MEAN, pp.STD))
    reciprocal = (pixels - mean) * (np.float32(1) / std)
    with pytest.raises(AssertionError):
        assert_same_bits(reciprocal, clip_reference(photo, r))


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_spec_matches_clip_transform(resolution: int, tmp_path):
    resize, crop, to_rgb, to_tensor, normalize = clip.clip._transform(resolution).transforms
    assert (resize.size, resize.interpolation, resize.max_size) == (resolution, InterpolationMode.BICUBIC, None)
    assert crop.size == (resolution, resolution) and to_rgb.__name__ == "_convert_image_to_rgb"
    assert isinstance(to_tensor, ToTensor) and torch.get_default_dtype() == torch.float32
    spec = pp.spec(resolution)
    assert spec["resolution"] == resolution
    assert spec["mean"] == list(normalize.mean) == list(pp.MEAN)
    assert spec["std"] == list(normalize.std) == list(pp.STD)
    assert spec["rules"] == pp.RULES and all(isinstance(v, str) for v in pp.RULES.values())
    assert pp.Preprocessing.parse(spec, "preprocess.json") == pp.Preprocessing.default(resolution)
    path = pp.write(tmp_path, resolution)
    assert path == tmp_path / "preprocess.json" and json.loads(path.read_text()) == spec


def test_size_rules_match_torchvision():
    """Floor of the long side (not round) and half-to-even crop offsets, over many shapes."""
    rng = np.random.default_rng(0)
    shapes = [(1, 500), (500, 1), (1, 1), (100_000, 3), (3, 100_000)]
    shapes += [tuple(v) for v in rng.integers(1, 5000, (2000, 2))]
    for r in RESOLUTIONS:
        for w, h in shapes:
            w, h = int(w), int(h)
            assert pp.resized_size(w, h, r) == tuple(_compute_resized_output_size((h, w), [r])[::-1]), (w, h, r)
        for d in range(0, 40):
            assert pp.crop_offset(r + d, r) == int(round(d / 2.0)) == d // 2 + (d % 4 == 3)
    assert [pp.crop_offset(224 + d, 224) for d in (1, 3, 5, 7)] == [0, 2, 2, 4]
    assert pp.resized_size(1000, 2999, 224) == (224, 671)  # 671.776: floored, not rounded


# An implementation of preprocess.json's rules in numpy, from docs/consumers.md's meaning of each identifier alone,
# as another language would do it.
def _cubic(x: float) -> float:
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _fixed_point_weights(n_in: int, n_out: int) -> np.ndarray:
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = np.zeros((n_out, n_in), dtype=np.int64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo, hi = max(0, int(center - support + 0.5)), min(n_in, int(center + support + 0.5))
        w = [_cubic((j - center + 0.5) * (1.0 / filterscale)) for j in range(lo, hi)]
        total = 0.0
        for value in w:
            total += value
        w = [value / total for value in w] if total != 0.0 else w
        weights[i, lo:hi] = [int(v * 2**22 + 0.5) if v >= 0 else int(v * 2**22 - 0.5) for v in w]
    return weights


def _resample(pixels: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    # float64 for BLAS speed; still exact, as every product and sum is an integer far below 2^53
    weights = _fixed_point_weights(pixels.shape[axis], n_out).astype(np.float64)
    sums = np.moveaxis(np.tensordot(weights, np.moveaxis(pixels, axis, 0), axes=1), 0, axis).astype(np.int64)
    return np.clip((sums + 2**21) >> 22, 0, 255)


# The rules _from_spec implements (for 8-bit RGB input), by preprocess.json's identifiers.
_IMPLEMENTED = {"resize_size": "shorter_edge_floor", "resize_filter": "pillow_bicubic_antialiased",
                "resize_arithmetic": "pillow_fixed_point_22", "resize_pass_order": "pillow_vertical_first_if_larger_cut",
                "resize_same_size": "skipped", "crop": "center_round_half_even", "scale": "float32_divide_255",
                "normalize": "float32_subtract_then_divide", "layout": "NCHW", "color_order": "RGB", "dtype": "float32"}


def _from_spec(rgb: np.ndarray, spec: dict) -> np.ndarray:
    assert {rule: spec["rules"][rule] for rule in _IMPLEMENTED} == _IMPLEMENTED
    r = spec["resolution"]
    height, width, _ = rgb.shape
    short, long = min(width, height), max(width, height)
    new_long = r * long // short
    new_w, new_h = (r, new_long) if width <= height else (new_long, r)
    passes = [(1, width, new_w), (0, height, new_h)]
    if new_h < height and height - new_h > 2 * (width - new_w):
        passes.reverse()
    pixels = rgb.astype(np.int64)
    for axis, n_in, n_out in passes:
        if n_in != n_out:
            pixels = _resample(pixels, axis, n_out)
    left, top = ((d // 2 + (d % 4 == 3)) for d in (new_w - r, new_h - r))
    pixels = pixels[top : top + r, left : left + r].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    mean, std = (np.array(spec[k], dtype=np.float32).reshape(3, 1, 1) for k in ("mean", "std"))
    return (pixels - mean) / std


@pytest.mark.parametrize(
    ("make", "resolution"),
    [
        pytest.param(lambda: noise(640, 480), 224, id="noise-640x480-R224"),
        pytest.param(lambda: noise(7, 5), 336, id="noise-7x5-R336"),
        pytest.param(lambda: noise(451, 903), 288, id="noise-451x903-R288-vertical-first"),
        pytest.param(lambda: noise(500, 600), 224, id="noise-500x600-R224-horizontal-first"),
        pytest.param(lambda: Image.fromarray(skimage.data.chelsea()), 448, id="chelsea-R448"),
    ],
)
def test_spec_text_is_enough_to_reproduce_clip(make: Callable[[], Image.Image], resolution: int):
    image = make()
    assert_same_bits(_from_spec(np.asarray(image), pp.spec(resolution)), clip_reference(image, resolution))


def test_load_files_and_images(tmp_path):
    photo = Image.fromarray(skimage.data.astronaut())
    photo.save(tmp_path / "astronaut.png")
    gray = noise(300, 200).convert("L")
    batch = pp.load([tmp_path / "astronaut.png", str(tmp_path / "astronaut.png"), gray], 224)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    assert_same_bits(batch[0], clip_reference(photo, 224))
    assert_same_bits(batch[1], batch[0])
    assert_same_bits(batch[2], clip_reference(gray, 224))
    assert pp.load([], 336).shape == (0, 3, 336, 336)


def test_load_missing_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ClipOnnxError, match=r"nope\.jpg does not exist; check the path"):
        pp.load([missing], 224)


def test_load_not_an_image(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(ClipOnnxError, match=r"notes\.jpg could not be read .*; it is damaged, truncated or not an image: clip-onnx reads PNG, JPEG"):
        pp.load([text], 224)
    with pytest.raises(ClipOnnxError, match="is a folder, not an image; name an image file"):
        pp.load([tmp_path], 224)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], list[Path], list[Path]]:
    folder = tmp_path_factory.mktemp("corpus")
    listed = image_corpus.listed(folder, skimage.data.chelsea(), np.random.default_rng(0))
    unlisted = image_corpus.unlisted(folder, skimage.data.chelsea())
    return listed, unlisted, image_corpus.damaged(folder, [p for p in listed if p.stem.endswith(("420", "lossy"))]
                                                  + [folder / "gif.gif", folder / "bmp-24.bmp", folder / "tiff-raw.tiff"])


def test_every_listed_kind_of_file_gives_clips_bits(corpus):
    listed, _, _ = corpus
    formats = set()
    for path in listed:
        with Image.open(path) as image:
            formats.add(image.format)
            assert_same_bits(pp.load([path], 224)[0], clip_reference(image, 224))
    assert formats == set(pp.FORMATS) == set(pp.spec(224)["input"]["formats"])  # a file of every listed format


def test_files_outside_the_list_and_damaged_files_are_refused_naming_them(corpus):
    _, unlisted, damaged = corpus
    for path in unlisted + damaged:
        with pytest.raises(ClipOnnxError) as caught:
            pp.load([path], 224)
        assert caught.value.kind == "unreadable_image" and str(path) in str(caught.value), path


def test_the_pixel_limit_holds_whatever_pillows_own_limit_is(corpus, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own check off
    with Image.open(corpus[2][-1]) as huge:  # just over the limit: a square one pixel less a side is within it
        assert huge.width * huge.height > pp.MAX_PIXELS >= (huge.width - 1) * (huge.height - 1)
    with pytest.raises(ClipOnnxError, match=f"has more than {pp.MAX_PIXELS} pixels, the limit every clip-onnx"):
        pp.load([corpus[2][-1]], 224)


def _edited(change: Callable[[dict], object]) -> dict:
    data = pp.spec(224)
    change(data)
    return data


@pytest.mark.parametrize(("change", "kind", "line"), [
    (lambda d: d["rules"].update(resize_filter="lanczos"), "unsupported_format",
     'p.json: rule resize_filter is "lanczos", which this clip-onnx does not implement (it implements '
     '"pillow_bicubic_antialiased"); pip install --upgrade clip-onnx, or use files of a release it reads'),
    (lambda d: d["rules"].update(foo="bar"), "unsupported_format",
     'p.json: rule "foo" is not one this clip-onnx knows; pip install --upgrade clip-onnx, or use files of a release it reads'),
    (lambda d: d["rules"].pop("crop"), "unsupported_format",
     "p.json lacks rule crop; export the variant again with a clip-onnx that writes it"),
    (lambda d: d.update(rules=[]), "bad_manifest", "p.json: rules must be an object of rule identifiers; export the variant again"),
    (lambda d: d.update(resolution="224"), "bad_manifest", "p.json: resolution must be a positive integer; export the variant again"),
    (lambda d: d.update(resolution=0), "bad_manifest", "p.json: resolution must be a positive integer; export the variant again"),
    (lambda d: d.update(mean=[0.5, 0.5]), "bad_manifest",
     "p.json: mean must be 3 finite numbers, one per RGB channel; export the variant again"),
    (lambda d: d.update(mean=[0.5, 0.5, True]), "bad_manifest",
     "p.json: mean must be 3 finite numbers, one per RGB channel; export the variant again"),
    (lambda d: d.update(std=[0.5, 0, 0.5]), "bad_manifest",
     "p.json: std must be 3 finite numbers, one per RGB channel, none zero; export the variant again"),
    (lambda d: d["input"].update(formats=[]), "bad_manifest",
     "p.json: input.formats must be an object of image formats; export the variant again"),
    (lambda d: d["input"].pop("max_pixels"), "bad_manifest",
     "p.json: input.max_pixels must be a positive integer; export the variant again"),
    (lambda d: d["input"]["formats"]["TIFF"].update(modes="RGB"), "bad_manifest",
     "p.json: input.formats.TIFF.modes must be a list; export the variant again"),
], ids=lambda value: value if isinstance(value, str) and len(value) < 20 else None)
def test_a_preprocess_json_this_runtime_does_not_implement_is_refused_in_one_line(change, kind, line):
    with pytest.raises(ClipOnnxError) as caught:
        pp.Preprocessing.parse(_edited(change), "p.json")
    assert (caught.value.kind, str(caught.value)) == (kind, line)


def test_the_files_read_are_the_ones_preprocess_json_lists(tmp_path):
    """A narrower list in the file narrows what is read: BMP without 24 bits, no WebP."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.bmp")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.webp")
    narrow = pp.Preprocessing.parse(_edited(lambda d: (d["input"]["formats"]["BMP"].update(bits=[1, 8]),
                                                       d["input"]["formats"].pop("WEBP"))), "p.json")
    assert pp.load([tmp_path / "a.bmp", tmp_path / "a.webp"], 224).shape == (2, 3, 224, 224)
    with pytest.raises(ClipOnnxError, match="a.bmp is a BMP of 24 bits per pixel with compression 0; clip-onnx reads "
                                            "uncompressed BMP of 1, 8 bits"):
        pp.load([tmp_path / "a.bmp"], narrow)
    with pytest.raises(ClipOnnxError, match="a.webp is in the WEBP format; clip-onnx reads PNG, JPEG, GIF, BMP, TIFF"):
        pp.load([tmp_path / "a.webp"], narrow)
