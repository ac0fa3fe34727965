"""The ONNX-only runtime and its commands against CLIP's own PyTorch pipeline: image files through
`clip`'s torchvision preprocess, texts through `clip.tokenize`, float32 `encode_image`/`encode_text`."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from exporter import pipeline
from exporter._clip import clip
from exporter.cli import main
from clip_onnx import preprocess
from clip_onnx.errors import ClipOnnxError, UsageError
from clip_onnx.model import Model, logits
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.variants import get_variant
from exporter.verify import row_cosine
from exporter.weights import random_weights

FP32 = TOLERANCES["fp32"]
TEXTS = ["a photo of an astronaut", "a cat", "Café &amp; CRÈME brûlée", "東京の夜景 🚀", "",
         " ".join(["a very long caption"] * 30)]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A tiny-ViT export, image files of several formats and modes, and PyTorch's outputs on them."""
    root = tmp_path_factory.mktemp("runtime")
    images = []
    for name, kind in [("astronaut", "png"), ("chelsea", "jpg"), ("coffee", "png"), ("camera", "png")]:
        path = root / f"{name}.{kind}"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
        images.append(path)
    weights = random_weights(get_variant("tiny-ViT"), seed=3)
    model = weights.model
    preprocess = clip.clip._transform(model.visual.input_resolution)
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(p)) for p in images])
        tokens = clip.tokenize(TEXTS, truncate=True)
        expected = {"image": model.encode_image(pixels).numpy(), "text": model.encode_text(tokens).numpy(),
                    "logits": model(pixels, tokens)[0].numpy()}
    folder = pipeline.export(weights, "tiny-ViT", root / "dist", log=lambda _: None)
    return folder, images, expected


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == np.float32
    assert row_cosine(actual, expected) >= FP32.min_cosine
    assert np.abs(actual - expected).max() <= FP32.max_relative * np.abs(expected).max()


def test_encode_image_from_files_matches_clip(case):
    folder, images, expected = case
    actual = Model(folder).encode_image(images)
    assert_close(actual, expected["image"])
    unit = actual / np.linalg.norm(actual, axis=1, keepdims=True)
    similarity = unit @ unit.T - 2 * np.eye(len(images))
    assert similarity.max() < MAX_INPUT_COSINE  # different photos, clearly different embeddings


def test_encode_text_matches_clip(case):
    folder, _, expected = case
    actual = Model(folder).encode_text(TEXTS, truncate=True)
    assert_close(actual, expected["text"])
    unit = actual / np.linalg.norm(actual, axis=1, keepdims=True)
    assert (unit @ unit.T - 2 * np.eye(len(TEXTS))).max() < MAX_INPUT_COSINE


def test_logits_from_encoders_equals_forward_graph_and_clip(case):
    folder, images, expected = case
    model = Model(folder)
    per_image, _ = model.logits(images, TEXTS, truncate=True)
    graph_per_image, graph_per_text = model.forward(images, TEXTS, truncate=True)
    for actual in (per_image, graph_per_image):
        assert np.abs(actual - expected["logits"]).max() <= FP32.max_relative * model.logit_scale
        assert np.array_equal(actual.argmax(axis=1), expected["logits"].argmax(axis=1))
    assert np.array_equal(graph_per_text, graph_per_image.T)  # the forward graph's two outputs agree
    assert np.abs(per_image - graph_per_image).max() <= FP32.max_relative * model.logit_scale


def test_probabilities_are_clips_softmax_over_the_texts(case):
    folder, images, expected = case
    probabilities = Model(folder).probabilities(images, TEXTS, truncate=True)
    want = torch.from_numpy(expected["logits"]).softmax(dim=-1).numpy()  # CLIP's README: logits_per_image.softmax(dim=-1)
    assert probabilities.shape == want.shape and np.abs(probabilities - want).max() < 1e-3
    assert np.allclose(probabilities.sum(axis=1), 1)
    with pytest.raises(UsageError, match="probabilities over no texts"):
        Model(folder).probabilities(images, [])


def test_logits_scale_unit_vectors():
    image = np.array([[3.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    text = np.array([[1.0, 1.0]], dtype=np.float32)
    per_image, per_text = logits(image, text, 100.0)
    assert np.allclose(per_image, [[100 / np.sqrt(2)], [100 / np.sqrt(2)]]) and per_text.shape == (1, 2)


def test_over_length_text_needs_truncate(case, capsys):
    with pytest.raises(ClipOnnxError, match="truncate=True"):
        Model(case[0]).encode_text(TEXTS)
    assert main(["embed", "-m", str(case[0]), "--text", TEXTS[-1]]) == 1
    assert "--truncate" in capsys.readouterr().err


def test_missing_graph_and_files_are_named(case, tmp_path):
    folder = case[0]
    with pytest.raises(ClipOnnxError, match="manifest.json"):
        Model(tmp_path)
    with pytest.raises(ClipOnnxError, match="nowhere.png"):
        Model(folder).encode_image([tmp_path / "nowhere.png"])
    partial = tmp_path / "partial"
    partial.mkdir()
    data = json.loads((folder / "manifest.json").read_text())
    del data["graphs"]["forward"]
    (partial / "manifest.json").write_text(json.dumps(data))
    alone = Model(partial)  # a folder need not hold every file: what is missing is named when it is needed
    with pytest.raises(ClipOnnxError, match=f"{data['graphs']['transformer']['file']} is missing") as missing:
        alone.encode_text("a cat")
    assert missing.value.kind == "missing_file"
    for name in ("tokenizer.json", "preprocess.json"):
        (partial / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(ClipOnnxError, match="no forward graph"):
        Model(partial).forward(np.zeros((1, 3, 32, 32), np.float32), ["x"])


def test_classify_command(case, capsys):
    folder, images, _ = case
    labels = ["an astronaut", "a cat", "a cup of coffee"]
    assert main(["classify", *map(str, images[:2]), "-m", str(folder), "--labels", ",".join(labels),
                 "--template", "a photo of {}.", "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    per_image, _ = Model(folder).logits(images[:2], [f"a photo of {label}." for label in labels])
    assert len(lines) == 2
    for line, image, row in zip(lines, images, per_image):
        assert line.startswith(f"{image}: {labels[row.argmax()]} ")
        assert len(line.split(", ")) == 2


@pytest.mark.parametrize("template", ["x", "{x} {}", "{} and {}", "{0}"])
def test_classify_rejects_a_template_without_exactly_one_slot(case, capsys, template):
    with pytest.raises(SystemExit) as usage:
        main(["classify", str(case[1][0]), "-m", str(case[0]), "--labels", "a,b", "--template", template])
    assert usage.value.code == 2 and "--template" in capsys.readouterr().err


def test_classify_says_when_the_weights_are_random(case, capsys):
    folder, images, _ = case
    assert main(["classify", str(images[0]), "-m", str(folder), "--labels", "a,b"]) == 0
    assert "holds seeded random weights" in capsys.readouterr().err


def test_one_text_or_image_is_a_batch_of_one_and_an_empty_batch_is_empty(case):
    folder, images, _ = case
    model = Model(folder)
    assert np.array_equal(model.encode_text("a cat"), model.encode_text(["a cat"]))
    assert np.array_equal(model.encode_image(str(images[0])), model.encode_image(images[:1]))
    assert np.array_equal(model.encode_image(Image.open(images[0])), model.encode_image(images[:1]))
    assert model.encode_text([]).shape == model.encode_image([]).shape == (0, model.embed_dim)


def test_images_come_as_paths_bytes_file_objects_pil_images_or_uint8_arrays(case):
    folder, images, _ = case
    model = Model(folder)
    path = images[1]  # a JPEG
    expected = model.encode_image(path)
    with open(path, "rb") as f:
        from_file = model.encode_image(f)
    with Image.open(path) as image:
        from_array = model.encode_image(np.asarray(image.convert("RGB")))
    for got in (model.encode_image(path.read_bytes()), from_file, from_array, model.encode_image([str(path)])):
        assert np.array_equal(got, expected)
    grey = np.asarray(Image.open(images[3]))  # camera: mode L
    assert np.array_equal(model.encode_image(grey), model.encode_image(images[3]))
    pixels = model.pixels([path, path])
    assert pixels.dtype == np.float32 and np.array_equal(model.encode_image(pixels), model.encode_image([path, path]))


@pytest.mark.parametrize("bad,message", [
    (np.zeros((4, 4, 3), dtype=np.float64), "an image array must be uint8 [H, W, 3] (RGB) or [H, W] (grey), not float64"),
    (np.zeros((4, 4, 4), dtype=np.uint8), "not uint8 [4, 4, 4]"),
    (np.zeros((1, 3, 31, 32), dtype=np.float32), "preprocessed pixels must be float32 [N, 3, 32, 32], not [1, 3, 31, 32]"),
    (12, "cannot read an image from a int"),
    (b"not an image", "image bytes (12 bytes) could not be read"),
])
def test_what_is_not_an_image_is_one_clip_onnx_error(case, bad, message):
    with pytest.raises(ClipOnnxError) as error:
        Model(case[0]).encode_image(bad)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("call,kind,message", [
    (lambda m: m.encode_text(None), "invalid_input", "texts are a str or a sequence of str, not NoneType"),
    (lambda m: m.encode_text(5), "invalid_input", "not int"),
    (lambda m: m.encode_text([["a"]]), "invalid_input", "not list"),
    (lambda m: m.encode_text([b"a cat"]), "invalid_input", "not bytes; decode bytes first"),
    (lambda m: m.encode_text(["a", None]), "invalid_input", "not NoneType"),
    (lambda m: m.encode_text(["a"], truncate="no"), "invalid_input", "truncate is True or False, not 'no'"),
    (lambda m: m.encode_image([Image.new("RGB", (0, 7))]), "unreadable_image", "an image of 0 x 7 pixels"),
    (lambda m: m.encode_image([m.folder]), "unreadable_image", "is a folder, not an image"),
    (lambda m: m.probabilities(None, None), "invalid_input", "cannot read an image from a NoneType"),
])
def test_what_python_users_pass_wrongly_is_one_clip_onnx_error_of_its_kind(case, call, kind, message):
    with pytest.raises(ClipOnnxError) as caught:
        call(Model(case[0]))
    assert caught.value.kind == kind and message in str(caught.value) and "\n" not in str(caught.value)


def test_a_closed_file_object_is_one_clip_onnx_error(case, tmp_path):
    Image.new("RGB", (9, 9)).save(tmp_path / "x.png")
    with open(tmp_path / "x.png", "rb") as f:
        pass
    with pytest.raises(ClipOnnxError, match="could not be read .*; pass an open binary file"):
        Model(case[0]).encode_image([f])


@pytest.mark.parametrize("folder,message", [
    (None, "a model folder is a path, not a NoneType"), (5, "not a int"), (b"/tmp", "not a bytes"),
])
def test_a_model_folder_that_is_not_a_path_is_refused(folder, message):
    with pytest.raises(ClipOnnxError, match=message):
        Model(folder)


def test_a_folder_that_does_not_exist_or_is_a_file_is_named(case, tmp_path):
    with pytest.raises(ClipOnnxError, match=f"{tmp_path / 'absent'} does not exist; point at a folder") as caught:
        Model(tmp_path / "absent")
    assert caught.value.kind == "not_an_export"
    with pytest.raises(ClipOnnxError, match="manifest.json is a file; pass the folder that holds manifest.json"):
        Model(Path(case[0]) / "manifest.json")


def test_an_image_past_pillows_bomb_limit_is_one_line(case, tmp_path, capsys, monkeypatch):
    """Pillow refuses images over twice MAX_IMAGE_PIXELS as decompression bombs (a 20000 x 20000 PNG by
    default); here the limit is lowered so a small file crosses it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "huge.png"
    Image.new("RGB", (30, 30)).save(path)
    with pytest.raises(ClipOnnxError, match=f"image {path} is too large to decode safely .*; resize it first"):
        Model(case[0]).encode_image(path)
    assert main(["classify", str(path), "-m", str(case[0]), "--labels", "a,b"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"clip-onnx: error: image {path} is too large to decode safely")


def test_files_are_checked_against_the_manifest_before_they_are_loaded(case, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(case[0], folder)
    graph = folder / "tiny-ViT_visual.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF  # same size: only the SHA-256 can tell
    graph.write_bytes(bytes(data))
    model = Model(folder)
    assert model.encode_text("a cat").shape == (1, model.embed_dim)  # the untouched graph runs
    with pytest.raises(ClipOnnxError, match="tiny-ViT_visual.onnx does not match the SHA-256"):
        model.encode_image(case[1][:1])
    tokenizer_file = folder / "tokenizer.json"
    tokenizer_file.write_text(tokenizer_file.read_text() + "\n")  # still a valid tokenizer file
    with pytest.raises(ClipOnnxError, match="tokenizer.json does not match the SHA-256"):
        Model(folder)
    unchecked = Model(folder, check_sha256=False)  # a caller that checked the files itself
    assert unchecked.encode_text("a cat").shape == (1, unchecked.embed_dim)


def test_the_tokenizer_loaded_is_the_file_the_manifest_names_and_the_check_covers(case, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(case[0], folder)
    (folder / "tokenizer.json").rename(folder / "tok.json")
    (folder / "tokenizer.json").write_text("not a tokenizer, and not checked")
    data = json.loads((folder / "manifest.json").read_text())
    data["tokenizer"]["file"] = "tok.json"
    data["files"]["tok.json"] = data["files"].pop("tokenizer.json")
    for graph in data["graphs"].values():
        graph["files"] = [("tok.json" if name == "tokenizer.json" else name) for name in graph["files"]]
    (folder / "manifest.json").write_text(json.dumps(data))
    assert np.array_equal(Model(folder).encode_text("a cat"), Model(case[0]).encode_text("a cat"))


def test_pixels_take_every_parameter_from_the_folders_preprocess_json(case, tmp_path):
    """Mean and std as preprocess.json gives them (here 0 and 1: the scaled pixels themselves)."""
    folder = tmp_path / "copy"
    shutil.copytree(case[0], folder)
    path = folder / "preprocess.json"
    spec = json.loads(path.read_text())
    spec.update(mean=[0, 0, 0], std=[1, 1, 1])
    path.write_text(json.dumps(spec))
    image = Image.open(case[1][0])
    pixels = Model(folder, check_sha256=False).pixels(image)[0]
    assert pixels.min() >= 0 and pixels.max() <= 1 and not np.array_equal(pixels, Model(case[0]).pixels(image)[0])
    resolution = pixels.shape[-1]
    unnormalised = replace(preprocess.Preprocessing.default(resolution), mean=(0, 0, 0), std=(1, 1, 1))
    assert np.array_equal(pixels, preprocess.preprocess(image, unnormalised))


def test_a_manifest_whose_texts_another_ftfy_cleans_is_refused(case, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(case[0], folder)
    data = json.loads((folder / "manifest.json").read_text())
    data["tokenizer"]["ftfy"] = "6.2.0"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ClipOnnxError, match=r'manifest.json: tokenizer.ftfy is "6.2.0", but this environment cleans '
                                            r"texts with ftfy 6.3.1, so token ids could differ") as caught:
        Model(folder)
    assert caught.value.kind == "invalid_input"


def test_a_corrupt_graph_is_one_line_not_a_traceback(case, tmp_path, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(case[0], folder)
    (folder / "tiny-ViT_visual.onnx").write_bytes(b"not a protobuf at all")
    code = main(["classify", str(case[1][0]), "-m", str(folder), "--labels", "a,b", "--no-sha256-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("clip-onnx: error: onnxruntime cannot load ")
    assert "download or export it again" in err[-1]


def test_embed_names_a_missing_output_folder_before_any_work(case, tmp_path, capsys):
    assert main(["embed", "-m", str(case[0]), "--text", "a cat", "-o", str(tmp_path / "no" / "e.npz")]) == 1
    assert "the folder " + str(tmp_path / "no") + " does not exist" in capsys.readouterr().err


def test_embed_into_a_closed_pipe_exits_quietly(case):
    folder = case[0]
    texts = [arg for n in range(400) for arg in ("--text", f"caption {n}")]  # far more than a pipe buffers
    command = [sys.executable, "-m", "clip_onnx", "embed", "-m", str(folder), *texts]
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.read(50)
    producer.stdout.close()  # as `| head -c 50` does
    err = producer.stderr.read().decode()
    assert producer.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err


def test_embed_command_writes_npz_and_json(case, tmp_path, capsys):
    folder, images, _ = case
    model = Model(folder)
    npz = tmp_path / "e.npz"
    assert main(["embed", "-m", str(folder), "--image", str(images[0]), "--text", "a cat", "-o", str(npz)]) == 0
    with np.load(npz) as arrays:
        assert np.array_equal(arrays["image_embeds"], model.encode_image(images[:1]))
        assert np.array_equal(arrays["text_embeds"], model.encode_text(["a cat"]))
    assert main(["embed", "-m", str(folder), "--text", "a cat", "--normalize"]) == 0
    document = json.loads(capsys.readouterr().out)
    row = np.array(document["text_embeds"][0]["embedding"])
    assert document["text_embeds"][0]["input"] == "a cat" and abs(np.linalg.norm(row) - 1) < 1e-6
    assert main(["embed", "-m", str(folder)]) == 2
    assert "nothing to embed" in capsys.readouterr().err
    assert main(["embed", "-m", str(folder), "--text", "a cat", "-o", str(tmp_path / "e.txt")]) == 2
    assert ".npz or .json" in capsys.readouterr().err and not (tmp_path / "e.txt").exists()


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_embed_output_that_cannot_be_written_is_one_line_and_leaves_no_file(case, tmp_path, capsys, monkeypatch,
                                                                             failure):
    """A full disk, a read-only file system, no permission: one line, exit 1, nothing under the name and
    no hidden partial file beside it."""
    folder, images, _ = case

    def fail(file, **arrays):
        file.write(b"PK partial bytes")
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(np, "savez", fail)
    code = main(["embed", "-m", str(folder), "--text", "a cat", "-o", str(tmp_path / "e.npz")])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the note that the weights are random
    assert code == 1 and err.startswith(f"clip-onnx: error: --output {tmp_path / 'e.npz'}: cannot be written "
                                        f"({os.strerror(failure)})")
    assert os.listdir(tmp_path) == []


def test_ctrl_c_while_embed_writes_exits_130_and_leaves_no_file(case, tmp_path, capsys, monkeypatch):
    def interrupted(file, **arrays):
        file.write(b"PK partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    code = main(["embed", "-m", str(case[0]), "--text", "a cat", "-o", str(tmp_path / "e.npz")])
    assert code == 130 and capsys.readouterr().err.strip().splitlines()[-1].startswith("clip-onnx: interrupted (SIGINT)")
    assert os.listdir(tmp_path) == []


def test_embed_output_that_is_a_folder_is_refused_before_any_work(case, tmp_path, capsys):
    (tmp_path / "x.npz").mkdir()
    assert main(["embed", "-m", str(case[0]), "--text", "a cat", "-o", str(tmp_path / "x.npz")]) == 1
    assert "is not a regular file" in capsys.readouterr().err
    assert os.listdir(tmp_path / "x.npz") == []


def test_runtime_and_its_commands_need_no_torch(case):
    """A runtime-only install: torch, torchvision, clip and onnx cannot be imported at all."""
    folder, images, _ = case
    blocked = "import sys\nfor m in ('torch', 'torchvision', 'clip', 'onnx', 'onnxscript'): sys.modules[m] = None\n"
    classify = f"from exporter.cli import main\nsys.exit(main(['classify', {str(images[1])!r}, '-m', {str(folder)!r}, '--labels', 'a cat,a dog']))"
    result = subprocess.run([sys.executable, "-c", blocked + classify], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{images[1]}: ")
    export = "from exporter.cli import main\nsys.exit(main(['export', 'tiny-ViT', '--weights', 'random']))"
    result = subprocess.run([sys.executable, "-c", blocked + export], capture_output=True, text=True)
    assert result.returncode == 1
    assert "clip-onnx[export]" in result.stderr and "Traceback" not in result.stderr
    listing = "from exporter.cli import main\nsys.exit(main(['list']))"
    result = subprocess.run([sys.executable, "-c", blocked + listing], capture_output=True, text=True)
    assert result.returncode == 0 and "ViT-B/32" in result.stdout, result.stderr  # parameters counted without torch
