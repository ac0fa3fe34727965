"""Staging a release from verified exports: layout, checksums, parts under GitHub's limit, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from clip_onnx.errors import ClipOnnxError
from release import cards
from release import stage as staging


@pytest.fixture
def exports(release_exports):
    return release_exports


def test_stage_lays_out_one_hub_repo_per_variant_and_github_assets_with_checksums(exports, tmp_path):
    result = subprocess.run([sys.executable, "-m", "release", "stage", "--exports", str(exports), "--tag", "v1.2.3",
                             "--hub-org", "org", "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    hub = sorted(str(p.relative_to(out / "hub")) for p in (out / "hub").rglob("*") if p.is_file())
    folder_files = {p: sorted(["manifest.json", "preprocess.json", "tiny-ViT_transformer.onnx", "tiny-ViT_visual.onnx",
                               f"tiny-ViT_transformer{s}.onnx.data", f"tiny-ViT_visual{s}.onnx.data", "tokenizer.json"])
                    for p, s in (("fp16", "-fp16"), ("fp32", ""))}
    assert hub == ["tiny-ViT/LICENSE", "tiny-ViT/README.md",
                   *(f"tiny-ViT/{p}/{f}" for p in ("fp16", "fp32") for f in folder_files[p])]
    assert (out / "hub" / "tiny-ViT" / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2021 OpenAI")
    assert (out / "github" / "LICENSE-OpenAI-CLIP.txt").read_bytes() == (out / "hub" / "tiny-ViT" / "LICENSE").read_bytes()
    assert (out / "github" / "tiny-ViT_visual-fp16.onnx").read_bytes() == (
        exports / "fp16" / "tiny-ViT-fp16" / "tiny-ViT_visual.onnx").read_bytes()
    assert (out / "github" / "tiny-ViT-fp16.tokenizer.json").read_bytes() == (
        exports / "fp16" / "tiny-ViT-fp16" / "tokenizer.json").read_bytes()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out / "github", capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 15  # 2 x 7 files and the licence
    # the data files' names carry the precision: both precisions' sit in one flat list
    assert {"tiny-ViT_visual.onnx.data", "tiny-ViT_visual-fp16.onnx.data"} <= set(os.listdir(out / "github"))
    release = json.loads((out / "release-manifest.json").read_text())
    visual16 = next(f for f in release["files"] if f["hub_path"] == "fp16/tiny-ViT_visual.onnx")
    assert visual16["graph"] == "visual" and visual16["precision"] == "fp16" and len(visual16["sha256"]) == 64
    assert visual16["hub_repo"] == "org/clip-onnx-tiny-ViT"


@pytest.mark.parametrize("parts", [2, 12, 120])
def test_files_over_the_asset_limit_are_split_in_chunks_and_join_back(exports, tmp_path, monkeypatch, parts):
    """Joined as docs/releasing.md says, `cat <asset>.part-* > <asset>` (the shell's glob order), every
    split file matches SHA256SUMS, past 10 and 100 parts too."""
    monkeypatch.setattr(staging, "CHUNK", 4096)  # parts are copied in chunks, not read whole
    largest = max(p.stat().st_size for p in exports.glob("fp32/*/*") if p.name.endswith((".onnx", ".data")))
    part_bytes = -(-largest // parts)
    release = staging.stage(exports, "v1.0.0", tmp_path / "out", "org", part_bytes=part_bytes)
    github = tmp_path / "out" / "github"
    split = [f for f in release["files"] if len(f["github_assets"]) > 1]
    assert max(len(f["github_assets"]) for f in split) == parts
    assert split and all(all((github / a["name"]).stat().st_size <= part_bytes for a in f["github_assets"])
                         for f in split)
    for entry in split:
        joined = subprocess.run(["bash", "-c", 'cat "$1".part-* > "$1"', "join", entry["joined_as"]], cwd=github,
                                env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
        assert joined.returncode == 0
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=github, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    checked = {line.rsplit(": ", 1)[0] for line in check.stdout.splitlines() if line.endswith(": OK")}
    for entry in split:  # a user who joins the parts can check the result
        assert entry["joined_as"] in checked and {a["name"] for a in entry["github_assets"]} <= checked


def test_one_variant_is_staged_alone(exports, tmp_path):
    with pytest.raises(ClipOnnxError, match="no exported folders .* for ViT-B-32"):
        staging.stage(exports, "v1.0.0", tmp_path / "a", "org", variant="ViT-B-32")
    assert len(staging.stage(exports, "v1.0.0", tmp_path / "b", "org", variant="tiny-ViT")["files"]) == 15


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
        staging.stage(copy, "v1.0.0", tmp_path / "out", "org")
    assert not (tmp_path / "out").exists()


def test_tag_must_be_a_version(exports, tmp_path):
    with pytest.raises(ClipOnnxError, match="vX.Y.Z"):
        staging.stage(exports, "latest", tmp_path / "out", "org")


def test_model_card_and_notes_carry_the_measured_figures(exports, tmp_path):
    out = tmp_path / "out"
    release = staging.stage(exports, "v2.0.0", out, "org")
    card = cards.model_card(out / "hub" / "tiny-ViT", "org/clip-onnx-tiny-ViT", "v2.0.0")
    manifest = json.loads((exports / "fp16" / "tiny-ViT-fp16" / "manifest.json").read_text())
    worst = min(c["min_cosine"] for c in manifest["verification"]["comparisons"] if c["graph"] == "visual")
    assert "| fp16 | visual | " in card and f"{worst:.7f}" in card
    assert 'Model.from_hub("org/clip-onnx-tiny-ViT", revision="v2.0.0")' in card
    assert 'clip_onnx::hub::download("org/clip-onnx-tiny-ViT", "v2.0.0", "fp32"' in card
    # each graph's row: its data files and the file that feeds it, from the same folder
    assert ("| `fp16/tiny-ViT_transformer.onnx` | `tiny-ViT_transformer-fp16.onnx.data`, `tokenizer.json` |"
            in card)
    exported = [json.loads((out / "hub" / "tiny-ViT" / "fp32" / "manifest.json").read_text())]
    notes = cards.release_notes(release["files"], "v2.0.0", {"org/clip-onnx-tiny-ViT": "ab" * 20}, exported)
    assert all(f["hub_path"] in notes and f"`{f['sha256']}`" in notes for f in release["files"])
    assert f"| `org/clip-onnx-tiny-ViT` | `{'ab' * 20}` |" in notes
    assert "asset `LICENSE-OpenAI-CLIP.txt`" in notes and "gh release verify-asset v2.0.0" in notes
    assert f"Exported by clip-onnx commit `{exported[0]['versions']['clip-onnx-commit']}` with clip-onnx" in notes


def test_the_card_of_openais_weights_carries_licence_use_provenance_and_pins(exports, tmp_path):
    """Rendered from a staged release whose manifests record the pinned Hub file, as a release's do."""
    out = tmp_path / "out"
    staging.stage(exports, "v2.0.0", out, "org")
    hub_source = {"kind": "hub", "repo": "timm/vit_base_patch32_clip_224.openai", "file": "open_clip_model.safetensors",
                  "revision": "c" * 40, "sha256": "d" * 64, "bytes": 605}
    for path in (out / "hub" / "tiny-ViT").glob("*/manifest.json"):
        data = json.loads(path.read_text())
        data["source"] = hub_source
        path.unlink()  # staged files are hard links to the exports: replace, never write through
        path.write_text(json.dumps(data))
    card = cards.model_card(out / "hub" / "tiny-ViT", "org/clip-onnx-tiny-ViT", "v2.0.0",
                            pins={"v1.0.0": "1" * 40, "v2.0.0": "2" * 40}, github_repo="owner/clip-onnx")
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["license"] == "mit" and metadata["library_name"] == "onnx"
    assert metadata["base_model"] == "timm/vit_base_patch32_clip_224.openai"
    assert metadata["pipeline_tag"] == "zero-shot-image-classification"
    headings = [line for line in card.splitlines() if line.startswith("## ")]
    assert headings == ["## Licence", "## Intended use, out-of-scope uses and limitations, in OpenAI's words",
                        "## Provenance", "## Files and their contract", "## Preprocess and tokenize",
                        "## Verification (ONNX Runtime against PyTorch float32, worst case over all input sets)",
                        "## Pinned revisions", "## Download a pinned revision", "## Citation"]
    quoted = [line for line in cards.EXCERPT.read_text().splitlines()[1:] if line.strip()]
    assert len(quoted) > 8 and all(f"> {line}" in card for line in quoted)
    assert "**Any** deployed use case of the model" in card and "surveillance and facial recognition" in card
    assert cards.OPENAI_CARD in card and "/blob/main/" not in card and "`LICENSE`" in card
    assert (f"Weights: `open_clip_model.safetensors` of the Hub repo `timm/vit_base_patch32_clip_224.openai` at "
            f"commit `{'c' * 40}`, SHA-256 `{'d' * 64}`.") in card
    assert "- Toolchain: clip-onnx " in card and "torch " in card and "onnxruntime " in card
    assert "| `fp32/tiny-ViT_visual.onnx` | `tiny-ViT_visual.onnx.data`, `preprocess.json` |" in card
    assert f"| `v2.0.0` | `{'2' * 40}` |\n| `v1.0.0` | `{'1' * 40}` |" in card
    assert card.count(f'"{"2" * 40}"') == 2 and f"/resolve/{'2' * 40}/fp32" in card
    assert cards.rust_snippet("org/clip-onnx-tiny-ViT", "2" * 40) in card and 'ort = "2"' not in card
    assert f'clip_onnx::hub::download("org/clip-onnx-tiny-ViT", "{"2" * 40}", "fp32"' in card


def test_the_card_has_what_hub_users_look_for(exports, tmp_path):
    """Each item the card must carry, checked on a card rendered as publication renders it; the metadata's
    keys are fields the Hub documents (huggingface_hub's ModelCardData)."""
    import inspect

    from huggingface_hub import ModelCard, ModelCardData

    from clip_onnx.contract import OLDEST_ONNXRUNTIME

    out = tmp_path / "out"
    staging.stage(exports, "v2.0.0", out, "org")
    for path in (out / "hub" / "tiny-ViT").glob("*/manifest.json"):
        data = json.loads(path.read_text())
        data["variant"] = "ViT-B/32"  # a variant OpenAI publishes on the Hub itself
        path.unlink()
        path.write_text(json.dumps(data))
    commit = "2" * 40
    card = cards.model_card(out / "hub" / "tiny-ViT", "org/clip-onnx-tiny-ViT", "v2.0.0", pins={"v2.0.0": commit},
                            github_repo="owner/clip-onnx")
    metadata = ModelCard(card).data.to_dict()
    assert set(metadata) <= set(inspect.signature(ModelCardData.__init__).parameters)
    assert metadata["base_model"] == "openai/clip-vit-base-patch32" and metadata["language"] == ["en"]
    source = json.loads((out / "hub" / "tiny-ViT" / "fp32" / "manifest.json").read_text())["versions"]["clip-onnx-commit"]
    items = {
        "the source at its commit": f"https://github.com/owner/clip-onnx/tree/{source}",
        "the release": "https://github.com/owner/clip-onnx/releases/tag/v2.0.0",
        "SHA256SUMS": "https://github.com/owner/clip-onnx/releases/download/v2.0.0/SHA256SUMS",
        "the attestation check": "gh attestation verify tiny-ViT_visual.onnx --repo owner/clip-onnx",
        "clip_onnx.Model pinned by commit": f'Model.from_hub("org/clip-onnx-tiny-ViT", revision="{commit}")',
        "OpenAI's card at its commit": "https://github.com/openai/CLIP/blob/d05afc436d78f1c48dc0dbf8e5980a9d471f35f6/",
        "the minimum onnxruntime": f"onnxruntime {OLDEST_ONNXRUNTIME} or newer",
        "the citation": "title     = {Learning Transferable Visual Models From Natural Language Supervision}",
    }
    assert {name: text for name, text in items.items() if text not in card} == {}
    for precision in ("fp32", "fp16"):  # every file with its size and full SHA-256
        listed = json.loads((out / "hub" / "tiny-ViT" / precision / "manifest.json").read_text())["files"]
        assert all(f"| `{precision}/{name}` | {f['bytes']:,} | `{f['sha256']}` |" in card for name, f in listed.items())
