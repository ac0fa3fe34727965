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
