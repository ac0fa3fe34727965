"""`Model.from_hub` (clip_onnx/hub.py) through the real `huggingface_hub` client against the loopback Hub
(tests/loopback_hub.py), on the conformance artifact's export released at a tag: only the chosen
graphs' files are requested, each is checked against the manifest, and a text-only download encodes
texts as the whole folder does."""

from __future__ import annotations

import json
import re

import pytest

from clip_onnx import hub
from clip_onnx.errors import ClipOnnxError
from clip_onnx.model import Model
from tests.conformance import COMMITTED
from tests.loopback_hub import LoopbackHub
from tests.released_hub import serve

VECTORS = json.loads((COMMITTED / "vectors.json").read_text())
EXPORT = COMMITTED / VECTORS["exports"][0]["folder"]
GRAPHS = json.loads((EXPORT / "manifest.json").read_text())["graphs"]


@pytest.fixture(scope="module")
def released():
    with LoopbackHub() as loopback:
        yield loopback, serve(loopback)


def fetched(loopback: LoopbackHub) -> set[str]:
    """The files the client asked the Hub for (HEAD and GET of `/resolve/`; LFS content then comes from the
    CDN it is redirected to), by name."""
    return {m[1] for _, path in loopback.requests for m in [re.search(r"/resolve/[^/]+/fp32/(.+)$", path)] if m}


@pytest.mark.parametrize("graphs", [["transformer"], ["visual"], None], ids=["text-only", "image-only", "all"])
def test_a_download_fetches_exactly_the_files_of_its_graphs(released, tmp_path, graphs):
    loopback, details = released
    loopback.clear_requests()
    model = Model.from_hub(details["repo"], details["tag"], graphs=graphs, cache_dir=tmp_path, endpoint=details["endpoint"])
    wanted = {"manifest.json", *(name for g in graphs or GRAPHS for name in GRAPHS[g]["files"])}
    assert fetched(loopback) == wanted
    assert {p.name for p in model.folder.iterdir()} == wanted
    if graphs != ["visual"]:
        texts = model.encode_text(VECTORS["embedded_texts"], truncate=True)
        assert texts.tobytes() == (COMMITTED / VECTORS["exports"][0]["text_embeds"]).read_bytes()
    if graphs != ["transformer"]:
        images = model.encode_image([COMMITTED / p for p in VECTORS["images"]])
        assert images.tobytes() == (COMMITTED / VECTORS["exports"][0]["image_embeds"]).read_bytes()
    if graphs == ["transformer"]:
        with pytest.raises(ClipOnnxError, match="_visual.onnx is missing") as refused:
            model.encode_image([COMMITTED / VECTORS["images"][0]])
        assert refused.value.kind == "missing_file"


def test_a_file_that_differs_from_the_manifest_is_refused_and_leaves_the_cache(released, tmp_path):
    loopback, details = released
    with pytest.raises(ClipOnnxError, match=r"fp32/tiny-ViT_visual.onnx does not match the SHA-256") as refused:
        hub.download(details["tampered_repo"], details["tag"], graphs=["visual"], cache_dir=tmp_path,
                     endpoint=details["endpoint"])
    assert refused.value.kind == "changed_file" and "\n" not in str(refused.value)
    left = {p.name for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()}
    assert "tiny-ViT_visual.onnx" not in left and not [p for p in tmp_path.rglob("*") if p.is_symlink() and not p.exists()]


@pytest.mark.parametrize("graphs,says", [(["text"], "'text'"), (["visual", "visual"], "name each once"), ([], "none")])
def test_graphs_that_the_release_lacks_or_repeats_are_a_usage_error_before_any_graph_is_fetched(
        released, tmp_path, graphs, says):
    loopback, details = released
    loopback.clear_requests()
    with pytest.raises(ClipOnnxError, match=says) as refused:
        hub.download(details["repo"], details["tag"], graphs=graphs, cache_dir=tmp_path, endpoint=details["endpoint"])
    assert refused.value.kind == "usage"
    assert fetched(loopback) == {"manifest.json"}


@pytest.mark.parametrize("repo,revision,kind,says", [
    ("org/clip-onnx-tiny-ViT", "", "usage", "give the revision"),
    ("org/clip-onnx-tiny-ViT", "v9.9.9", "missing_file", "has no revision v9.9.9"),
    ("org/absent", "v1.0.0", "missing_file", "has no repo org/absent"),
])
def test_an_unpinned_or_absent_release_is_refused_in_one_line(released, tmp_path, repo, revision, kind, says):
    _, details = released
    with pytest.raises(ClipOnnxError, match=says) as refused:
        hub.download(repo, revision, cache_dir=tmp_path, endpoint=details["endpoint"])
    assert refused.value.kind == kind and "\n" not in str(refused.value)


def test_the_precision_must_be_one_a_release_could_publish(released, tmp_path):
    _, details = released
    with pytest.raises(ClipOnnxError, match="has no fp16/manifest.json") as refused:
        hub.download(details["repo"], details["tag"], precision="fp16", cache_dir=tmp_path, endpoint=details["endpoint"])
    assert refused.value.kind == "missing_file"
    assert not list(tmp_path.glob("*/snapshots/*/fp16"))  # nothing fetched for it


def _table(details: dict, **changes) -> dict:
    """The release table `serve` pins, with its variant's `hub_repo` or one file's SHA-256 changed."""
    release = json.loads(json.dumps(details["release"]))
    variant = release["variants"][details["name"]]
    variant["hub_repo"] = changes.get("hub_repo", variant["hub_repo"])
    if "sha256_of" in changes:
        variant["files"][changes["sha256_of"]]["sha256"] = "0" * 64
    return release


def test_a_release_table_downloads_its_release_by_tag_alone(released, tmp_path):
    loopback, details = released
    folder = hub.download_release(details["name"], release=details["release"], cache_dir=tmp_path,
                                  endpoint=details["endpoint"])
    assert folder == hub.download(details["repo"], details["tag"], cache_dir=tmp_path, endpoint=details["endpoint"])
    model = Model.from_release(details["name"], graphs=["transformer"], cache_dir=tmp_path / "text",
                               endpoint=details["endpoint"], release=details["release"])
    texts = model.encode_text(VECTORS["embedded_texts"], truncate=True)
    assert texts.tobytes() == (COMMITTED / VECTORS["exports"][0]["text_embeds"]).read_bytes()


def test_a_moved_tag_is_refused_although_its_files_match_their_manifest(released, tmp_path):
    loopback, details = released
    hub.download(details["moved_repo"], details["tag"], cache_dir=tmp_path / "plain", endpoint=details["endpoint"])
    loopback.clear_requests()
    with pytest.raises(ClipOnnxError) as refused:
        hub.download_release(details["name"], release=_table(details, hub_repo=details["moved_repo"]),
                             cache_dir=tmp_path, endpoint=details["endpoint"])
    assert refused.value.kind == "changed_file" and "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"{details['moved_repo']} at revision v1.0.0: fp32/manifest.json is not the "
                                         f"file this clip-onnx pins for release v1.0.0")
    assert fetched(loopback) == {"manifest.json"}
    assert not [p for p in (tmp_path / "models--org--moved").rglob("manifest.json") if p.exists()]  # not kept


def test_a_file_pinned_otherwise_than_its_manifest_says_is_refused_before_it_is_fetched(released, tmp_path):
    loopback, details = released
    loopback.clear_requests()
    with pytest.raises(ClipOnnxError, match="fp32/tiny-ViT_visual.onnx is not the file this clip-onnx pins") as refused:
        hub.download_release(details["name"], graphs=["visual"], cache_dir=tmp_path, endpoint=details["endpoint"],
                             release=_table(details, sha256_of="fp32/tiny-ViT_visual.onnx"))
    assert refused.value.kind == "changed_file"
    assert "tiny-ViT_visual.onnx" not in fetched(loopback)


@pytest.mark.parametrize("name,precision,release,kind,says", [
    ("tiny-ViT", "fp32", None, "usage", "this clip-onnx pins no release (it was installed from a checkout"),
    ("ViT-B-32", "fp32", "served", "usage", "release v1.0.0 has no variant 'ViT-B-32'; choose one of tiny-ViT"),
    ("tiny-ViT", "fp16", "served", "usage", "release v1.0.0 has no fp16 files of tiny-ViT; choose one of fp32"),
    ("tiny-ViT", "fp32", {"format_version": 2}, "unsupported_format", "format_version 2, but this clip-onnx reads 1"),
    ("tiny-ViT", "fp32", {"format_version": 1, "tag": "v1.0.0", "variants": {"tiny-ViT": {"hub_repo": "org/x"}}},
     "bad_manifest", "release.json: variant 'tiny-ViT' lacks hub_repo or files"),
])
def test_a_release_the_package_does_not_pin_is_refused_in_one_line(released, tmp_path, name, precision, release,
                                                                   kind, says):
    loopback, details = released
    loopback.clear_requests()
    with pytest.raises(ClipOnnxError, match=re.escape(says)) as refused:
        hub.download_release(name, precision=precision, cache_dir=tmp_path, endpoint=details["endpoint"],
                             release=details["release"] if release == "served" else release)
    assert refused.value.kind == kind and "\n" not in str(refused.value)
    assert not loopback.requests
