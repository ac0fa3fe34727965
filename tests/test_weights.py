"""Weight sources: checkpoint formats (written here), bad checkpoints, seeded random weights."""

from __future__ import annotations

import pathlib
import warnings

import pytest
import torch

from exporter import pipeline
from clip_onnx.errors import ClipOnnxError
from exporter.variants import Architecture, get_variant
from exporter.weights import load_checkpoint, random_weights


@pytest.fixture(scope="module")
def tiny():
    return random_weights(get_variant("tiny-RN"), seed=3).model


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def save_torchscript(model: torch.nn.Module, path: pathlib.Path) -> None:
    """A traced archive, as OpenAI ships its checkpoints."""
    image = torch.randn(1, 3, model.visual.input_resolution, model.visual.input_resolution)
    text = torch.zeros(1, 77, dtype=torch.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, (image, text), check_trace=False), str(path))


def test_torchscript_archive_round_trips(tiny, tmp_path):
    save_torchscript(tiny, tmp_path / "archive.pt")
    loaded = load_checkpoint(tmp_path / "archive.pt")
    assert same_weights(loaded.model, tiny)
    assert loaded.source["kind"] == "checkpoint" and len(loaded.source["sha256"]) == 64


def test_fp16_state_dict_round_trips_and_architecture_is_inferred(tiny, tmp_path):
    half = {k: v.half() if v.is_floating_point() else v for k, v in tiny.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    loaded = load_checkpoint(tmp_path / "half.pt").model
    assert Architecture.of(loaded) == get_variant("tiny-RN").architecture
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.equal(loaded.visual.conv1.weight, tiny.visual.conv1.weight.half().float())


def test_training_checkpoint_with_wrapped_prefixed_state_dict(tiny, tmp_path):
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in tiny.state_dict().items()}}
    torch.save(wrapped, tmp_path / "epoch3.pt")
    assert same_weights(load_checkpoint(tmp_path / "epoch3.pt").model, tiny)


@pytest.mark.parametrize("make,message", [
    (lambda p, sd: p.write_bytes(b"\x00garbage" * 100), "cannot read checkpoint"),
    (lambda p, sd: (torch.save(sd, p), p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])), "cannot read checkpoint"),
    (lambda p, sd: torch.save({"conv.weight": torch.zeros(3)}, p), "is not a CLIP checkpoint"),
    (lambda p, sd: torch.save({**sd, "text_projection": torch.zeros(5, 5)}, p), "does not fit any CLIP architecture"),
    (lambda p, sd: torch.save([1, 2, 3], p), "not a CLIP state dict"),
], ids=["corrupt", "truncated", "not-clip", "wrong-shapes", "not-a-dict"])
def test_bad_checkpoints_fail_with_a_clear_error(tiny, tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path, tiny.state_dict())
    with pytest.raises(ClipOnnxError, match=message):
        load_checkpoint(path)


class Payload:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"text_projection": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ClipOnnxError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ClipOnnxError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_random_weights_are_seeded():
    variant = get_variant("tiny-ViT")
    assert same_weights(random_weights(variant, 1).model, random_weights(variant, 1).model)
    assert not same_weights(random_weights(variant, 1).model, random_weights(variant, 2).model)


def test_random_weights_perturb_what_clip_leaves_degenerate():
    model = random_weights(get_variant("tiny-RN")).model
    bn3 = [p for n, p in model.named_parameters() if n.endswith("bn3.weight") and n.startswith("visual.layer")]
    assert bn3 and all(p.abs().min() > 0 for p in bn3)
    assert model.logit_scale.item() != pytest.approx(4.6052, abs=1e-3)


@pytest.mark.parametrize("fmt", ["torchscript", "state_dict"])
def test_checkpoint_export_round_trips_and_verifies(tiny, tmp_path, fmt):
    path = tmp_path / "finetuned.pt"
    save_torchscript(tiny, path) if fmt == "torchscript" else torch.save(tiny.state_dict(), path)
    folder = pipeline.export(load_checkpoint(path), "finetuned", tmp_path / "out", graphs=["visual"], log=lambda _: None)
    report = pipeline.verify_folder(folder, log=lambda _: None)
    assert report.passed and report.comparisons
    torch.save(random_weights(get_variant("tiny-RN"), seed=4).model.state_dict(), path)
    with pytest.raises(ClipOnnxError, match="not the checkpoint these graphs were exported from"):
        pipeline.verify_folder(folder, log=lambda _: None)
