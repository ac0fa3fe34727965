"""Weight sources: checkpoint formats (written here), bad checkpoints, seeded random weights."""

from __future__ import annotations

import json
import pathlib
import re
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
    (lambda p, sd: torch.save({**sd, "text_projection": torch.zeros(5, 5)}, p), "does not fit CLIP.s architecture"),
    (lambda p, sd: torch.save([1, 2, 3], p), "not a CLIP state dict"),
], ids=["corrupt", "truncated", "not-clip", "wrong-shapes", "not-a-dict"])
def test_bad_checkpoints_fail_with_a_clear_error(tiny, tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path, tiny.state_dict())
    with pytest.raises(ClipOnnxError, match=message) as error:
        load_checkpoint(path)
    # torch's own texts are not passed on: they advise weights_only=False, which would run pickled code
    assert "weights_only" not in str(error.value) and "miniz" not in str(error.value)


class Payload:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"text_projection": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ClipOnnxError, match="holds Python objects besides tensors, which clip-onnx does not "
                                            "unpickle") as error:
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists() and "weights_only" not in str(error.value)


def test_a_plain_pickle_that_would_run_code_is_named_as_such(tmp_path):
    """Not torch.save's zip layout but a bare pickle (protocol 4) of a code-running object."""
    import pickle

    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload(marker), protocol=4))
    with pytest.raises(ClipOnnxError, match="holds Python objects besides tensors, which clip-onnx does not unpickle"):
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


def save_safetensors(state: dict[str, torch.Tensor], path: pathlib.Path) -> pathlib.Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


OPEN_CLIP_CONFIG = {"model_cfg": {"embed_dim": 256, "quick_gelu": True,
                                  "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
                                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1,
                                               "layers": 2}},
                    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073]}}


def test_safetensors_checkpoints_in_open_clip_layout_with_their_config_load(tiny, tmp_path):
    path = save_safetensors(tiny.state_dict(), tmp_path / "open_clip_model.safetensors")
    (tmp_path / "open_clip_config.json").write_text(json.dumps(OPEN_CLIP_CONFIG))
    loaded = load_checkpoint(path)
    assert same_weights(loaded.model, tiny) and loaded.source["kind"] == "checkpoint"


@pytest.mark.parametrize("change,message", [
    ({"quick_gelu": False}, "quick_gelu is false .*only quick_gelu true exports"),
    ({"quick_gelu": None}, "quick_gelu is false .open_clip's default is false"),  # the key left out
    ({"text_cfg": {**OPEN_CLIP_CONFIG["model_cfg"]["text_cfg"], "heads": 2}}, "head width of 32, but CLIP's modules use 64"),
    ({"vision_cfg": {**OPEN_CLIP_CONFIG["model_cfg"]["vision_cfg"], "head_width": 32}}, r"vision_cfg.head_width = 32"),
    ({"vision_cfg": {**OPEN_CLIP_CONFIG["model_cfg"]["vision_cfg"], "ls_init_value": 1e-5}}, r"vision_cfg.ls_init_value"),
    ({"vision_cfg": {**OPEN_CLIP_CONFIG["model_cfg"]["vision_cfg"], "attentional_pool": True}}, "attentional_pool = true"),
    ({"text_cfg": {**OPEN_CLIP_CONFIG["model_cfg"]["text_cfg"], "hf_model_name": "roberta-base"}}, "text_cfg.hf_model_name"),
    ({"vision_cfg": {**OPEN_CLIP_CONFIG["model_cfg"]["vision_cfg"], "brand_new": 1}}, "brand_new .not a key CLIP has"),
], ids=["no-quick-gelu", "quick-gelu-missing", "text-heads", "vision-head-width", "layer-scale", "attention-pool",
        "hf-text", "unknown-key"])
def test_an_open_clip_config_clip_cannot_compute_is_refused(tiny, tmp_path, change, message):
    path = save_safetensors(tiny.state_dict(), tmp_path / "open_clip_model.safetensors")
    config = {**OPEN_CLIP_CONFIG, "model_cfg": {**OPEN_CLIP_CONFIG["model_cfg"], **change}}
    if change.get("quick_gelu", True) is None:
        del config["model_cfg"]["quick_gelu"]
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(ClipOnnxError, match=message):
        load_checkpoint(path)


def test_a_layer_scale_key_is_refused_by_name(tiny, tmp_path):
    state = {**tiny.state_dict(), "transformer.resblocks.0.ls_1.gamma": torch.ones(64)}
    with pytest.raises(ClipOnnxError, match=r"transformer.resblocks.0.ls_1.gamma \(layer scale\)"):
        load_checkpoint(save_safetensors(state, tmp_path / "ls.safetensors"))


def bad_safetensors(tiny, tmp_path, kind: str) -> pathlib.Path:
    state = dict(tiny.state_dict())
    path = tmp_path / f"{kind}.safetensors"
    if kind == "missing-key":
        del state["ln_final.weight"]
    elif kind == "extra-key":
        state["visual.extra.weight"] = torch.ones(3)
    elif kind == "wrong-dtype":
        state["ln_final.weight"] = state["ln_final.weight"].to(torch.int32)
    elif kind == "wrong-shape":
        state["transformer.resblocks.0.ln_1.weight"] = torch.ones(65)
    save_safetensors(state, path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:-1000])
    elif kind == "pickle":
        torch.save(tiny.state_dict(), path)
    return path


@pytest.mark.parametrize("kind,message", [
    ("missing-key", "lacks ln_final.weight"),
    ("extra-key", "does not fit CLIP's architecture: visual.extra.weight is not a CLIP weight"),
    ("wrong-dtype", "ln_final.weight is torch.int32, not a floating-point weight"),
    ("wrong-shape", r"does not fit CLIP's architecture: transformer.resblocks.0.ln_1.weight has shape \(65\) "
                    r"where .* needs \(64\)"),
    ("truncated", "cannot read .*truncated.safetensors: .*; it is truncated or not a safetensors file"),
    ("pickle", "cannot read .*pickle.safetensors: .*; it is truncated or not a safetensors file"),
])
def test_a_bad_safetensors_checkpoint_is_one_line_exit_1_and_nothing_written(tiny, tmp_path, capsys, kind, message):
    from exporter import cli

    path = bad_safetensors(tiny, tmp_path, kind)
    assert cli.main(["export", "--checkpoint", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["tiny-ViT", "tiny-RN", "RN50", "ViT-B/32"])
def test_architecture_inference_follows_clip_build_model(name):
    from exporter._clip import clip_model
    from exporter.checkpoints import infer_architecture

    state = get_variant(name).architecture.build().state_dict()
    assert infer_architecture(state) == Architecture.of(clip_model.build_model(dict(state))) == get_variant(name).architecture
