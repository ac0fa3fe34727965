"""Staging a release from verified exports: layout, checksums, parts under GitHub's limit, refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exporter import pipeline
from clip_onnx.errors import ClipOnnxError
from exporter.variants import get_variant
from exporter.weights import random_weights
from release import cards
from release import stage as staging


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    quiet = dict(log=lambda _: None, graphs=["visual", "transformer"])
    pipeline.export(random_weights(get_variant("tiny-ViT")), "tiny-ViT", root / "fp32", **quiet)
    pipeline.export(random_weights(get_variant("tiny-ViT")), "tiny-ViT", root / "fp16", precision="fp16", **quiet)
    return root


def test_stage_lays_out_hub_and_github_with_checksums(exports, tmp_path):
    result = subprocess.run([sys.executable, "-m", "release", "stage", "--exports", str(exports), "--tag", "v1.2.3",
                             "--hub-repo", "org/clip-onnx", "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    hub = sorted(str(p.relative_to(out / "hub")) for p in (out / "hub").rglob("*") if p.is_file())
    folder_files = ["manifest.json", "preprocess.json", "tiny-ViT_transformer.onnx", "tiny-ViT_visual.onnx",
                    "tokenizer.json"]
    assert hub == ["README.md", *(f"{folder}/{f}" for folder in ("tiny-ViT-fp16", "tiny-ViT") for f in folder_files)]
    assert (out / "github" / "tiny-ViT_visual-fp16.onnx").read_bytes() == (
        exports / "fp16" / "tiny-ViT-fp16" / "tiny-ViT_visual.onnx").read_bytes()
    assert (out / "github" / "tiny-ViT-fp16.tokenizer.json").read_bytes() == (
        exports / "fp16" / "tiny-ViT-fp16" / "tokenizer.json").read_bytes()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out / "github", capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 10
    release = json.loads((out / "release-manifest.json").read_text())
    visual16 = next(f for f in release["files"] if f["hub_path"] == "tiny-ViT-fp16/tiny-ViT_visual.onnx")
    assert visual16["graph"] == "visual" and visual16["precision"] == "fp16" and len(visual16["sha256"]) == 64


def test_files_over_the_asset_limit_are_split_and_join_back(exports, tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "PART_BYTES", 100_000)
    release = staging.stage(exports, "v1.0.0", tmp_path / "out")
    github = tmp_path / "out" / "github"
    split = [f for f in release["files"] if len(f["github_assets"]) > 1]
    assert split and all(all((github / a).stat().st_size <= 100_000 for a in f["github_assets"]) for f in split)
    for entry in split:
        joined = b"".join((github / a).read_bytes() for a in entry["github_assets"])
        (github / entry["joined_as"]).write_bytes(joined)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=github, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    checked = {line.rsplit(": ", 1)[0] for line in check.stdout.splitlines() if line.endswith(": OK")}
    for entry in split:  # a user who joins the parts can check the result
        assert entry["joined_as"] in checked and set(entry["github_assets"]) <= checked


def flip_last_byte(path) -> None:
    """Tamper with a file without changing its size, so only its SHA-256 can tell."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,message", [
    ("unverified", "was not verified"),
    ("replaced", "does not match the SHA-256"),
    ("graph-byte-flipped", "tiny-ViT_visual.onnx does not match the SHA-256"),
    ("tokenizer-byte-flipped", "tokenizer.json does not match the SHA-256"),
])
def test_only_verified_untouched_exports_are_staged(exports, tmp_path, damage, message):
    import shutil

    copy = tmp_path / "exports"
    shutil.copytree(exports / "fp32", copy / "fp32")
    folder = copy / "fp32" / "tiny-ViT"
    if damage == "unverified":
        data = json.loads((folder / "manifest.json").read_text())
        data["verification"] = {"skipped": True}
        (folder / "manifest.json").write_text(json.dumps(data))
    elif damage == "replaced":
        (folder / "tiny-ViT_visual.onnx").write_bytes(b"not the verified graph")
    else:
        flip_last_byte(folder / ("tiny-ViT_visual.onnx" if damage.startswith("graph") else "tokenizer.json"))
    with pytest.raises(ClipOnnxError, match=message):
        staging.stage(copy, "v1.0.0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tag_must_be_a_version(exports, tmp_path):
    with pytest.raises(ClipOnnxError, match="vX.Y.Z"):
        staging.stage(exports, "latest", tmp_path / "out")


def test_model_card_and_notes_carry_the_measured_figures(exports, tmp_path):
    out = tmp_path / "out"
    release = staging.stage(exports, "v2.0.0", out)
    card = cards.model_card(out, "org/clip-onnx", "v2.0.0")
    assert card.startswith("---\nlicense: mit\n") and "pipeline_tag: zero-shot-image-classification" in card
    manifest = json.loads((exports / "fp16" / "tiny-ViT-fp16" / "manifest.json").read_text())
    worst = min(c["min_cosine"] for c in manifest["verification"]["comparisons"] if c["graph"] == "visual")
    assert "| tiny-ViT-fp16 | visual | " in card and f"{worst:.7f}" in card
    assert 'revision="v2.0.0"' in card and '"v2.0.0".into()' in card
    notes = cards.release_notes(out, "org/clip-onnx", "v2.0.0")
    assert all(f["hub_path"] in notes and f["sha256"][:16] in notes for f in release["files"])
