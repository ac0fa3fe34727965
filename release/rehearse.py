"""The whole release, offline, in one command: what the release workflow does for a tag, on random
weights, published to a Hugging Face Hub on loopback (`tests/loopback_hub.py`, run from a checkout) instead of the real one.

Export + verify every (variant, precision) as the matrix jobs do, re-verify the written folders as the
workflow's pytest step does, stage, render the model card and release notes, publish to the loopback
Hub twice (the second run must find everything in place and change nothing), download every file at
the tag with `hf_hub_download` and check it against the release manifest, and list the GitHub Release
uploads (GitHub itself is not rehearsed: `gh` talks only to github.com).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from huggingface_hub import hf_hub_download

from exporter import pipeline
from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file
from exporter.variants import folder_name, get_variant
from exporter.weights import random_weights
from release import github, hub
from release.cards import write_texts
from tests.loopback_hub import LoopbackHub
from release.stage import stage

TAG = "v0.0.0"
HUB_REPO = "clip-onnx/rehearsal"


def rehearse(out: Path, variants: list[str], precisions: list[str], log: Callable[[str], None] = print) -> dict:
    """Run the release into the new folder `out`; return the staged release manifest."""
    out = Path(out)
    if out.exists():
        raise ClipOnnxError(f"{out} already exists; rehearse into a new folder")
    exports = out / "exports"
    for name in variants:
        for precision in precisions:
            log(f"== export {name} {precision} (random weights)")
            pipeline.export(random_weights(get_variant(name)), folder_name(name), exports / precision,
                            precision=precision, log=log)
    for folder in sorted(p.parent for p in exports.glob("*/*/manifest.json")):
        log(f"== re-verify {folder}")
        if not pipeline.verify_folder(folder, log=log).passed:
            raise ClipOnnxError(f"{folder} no longer verifies")
    staged = out / "staged"
    release = stage(exports, TAG, staged)
    write_texts(staged, HUB_REPO, TAG)
    log(f"== staged {len(release['files'])} files in {staged}")
    with LoopbackHub() as server:
        first = hub.publish(staged, release, HUB_REPO, endpoint=server.url, token=server.token, log=log)
        commits = server.commits(HUB_REPO)
        again = hub.publish(staged, release, HUB_REPO, endpoint=server.url, token=server.token, log=log)
        if again != first or server.commits(HUB_REPO) != commits:
            raise ClipOnnxError("publishing the same release twice changed the Hub")
        for entry in release["files"]:
            path = hf_hub_download(HUB_REPO, entry["hub_path"], revision=TAG, endpoint=server.url,
                                   cache_dir=out / "downloads")
            if sha256_file(Path(path)) != entry["sha256"]:
                raise ClipOnnxError(f"{entry['hub_path']} downloaded at {TAG} differs from what was staged")
        log(f"== hub: {len(release['files'])} files downloaded at {TAG} match their SHA-256")
    for name, digest in github.checksums(staged).items():
        log(f"github release asset (not uploaded): {name}  sha256 {digest}")
    log(f"rehearsal passed: {out}")
    return release
