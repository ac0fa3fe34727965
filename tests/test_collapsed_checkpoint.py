"""A user's checkpoint whose outputs barely depend on the input (a narrow ResNet with perturbed norms,
as a newcomer brought one): it exports, judged on the input-dependent part of its outputs; a wrong
graph of the same model still fails; a tower that ignores its input is "inconclusive", never "passed"."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from exporter import cli, pipeline
from exporter.variants import Architecture
from exporter.verify import References, check
from exporter.weights import load_checkpoint
from release import stage as staging

NARROW = Architecture(embed_dim=128, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
                      vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
                      transformer_heads=1, transformer_layers=2)


def narrow_model(seed: int = 0) -> torch.nn.Module:
    """CLIP's own initialisation (different photos come out at cosine 0.99999), norms perturbed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NARROW.build()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                    module.weight.add_(torch.randn_like(module.weight) * 0.05)
                    module.bias.add_(torch.randn_like(module.bias) * 0.05)
    return model


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    path = tmp_path_factory.mktemp("narrow") / "narrow.pt"
    torch.save(narrow_model().state_dict(), path)
    return path


def test_a_collapsed_checkpoint_exports_judged_on_its_input_dependent_part(narrow, tmp_path, capsys):
    assert cli.main(["export", "--checkpoint", str(narrow), "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "alike: judged on the input-dependent part" in out and "verdict: passed" in out
    verification = json.loads((tmp_path / "narrow" / "manifest.json").read_text())["verification"]
    assert verification["discrimination_max_cosine"]["photos"] >= 0.999
    assert verification["status"] == "passed" and verification["distinct_inputs_required"] is False


def test_a_wrong_graph_of_the_collapsed_model_still_fails(narrow, tmp_path):
    folder = pipeline.export(load_checkpoint(narrow), "narrow", tmp_path, graphs=["visual"], verify=False,
                             log=lambda _: None)
    other = copy.deepcopy(narrow_model())
    with torch.no_grad():
        other.visual.layer4[0].conv3.weight.mul_(1.01)  # a graph 1% off in one convolution
    report = check(References.compute(other, ["visual"]), {"visual": folder / "narrow_visual.onnx"}, "fp32",
                   log=lambda _: None, strict=False)
    assert report.status == "failed"
    assert "visual on" in report.problem() and "disagrees" in report.problem()


def test_a_tower_that_ignores_its_input_is_inconclusive_and_never_released(tmp_path, capsys):
    model = narrow_model()
    with torch.no_grad():
        model.visual.conv1.weight.zero_()  # every image now gives the same embedding
    path = tmp_path / "constant.pt"
    torch.save(model.state_dict(), path)
    exports = tmp_path / "exports"
    assert cli.main(["export", "--checkpoint", str(path), "-o", str(exports), "--graphs", "visual,transformer"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("clip-onnx: verification inconclusive: different photos give embeddings with cosine")
    assert "disagrees" not in err[-1] and f"The files are in {exports / 'constant'}" in err[-1]
    verification = json.loads((exports / "constant" / "manifest.json").read_text())["verification"]
    assert verification["passed"] is False and verification["status"] == "inconclusive"
    with pytest.raises(Exception, match="was not verified"):
        staging.stage(exports, "v1.0.0", tmp_path / "staged", "org")
