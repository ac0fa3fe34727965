"""OpenAI's weights from the Hugging Face Hub: open_clip-layout safetensors served by the loopback Hub
and fetched with the real `huggingface_hub` client; hashed on every use; pinned; the fallback order
and its one-line error; a release that never falls back; the maintainer's pin command.

tiny-ViT stands in for an OpenAI variant: the tests give it a pin (and a URL in OpenAI's layout on a
loopback server), so the real code paths run on a 14 MB file."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi
from safetensors.torch import save

from clip_onnx.errors import ClipOnnxError
from exporter import cli, hub_weights, pipeline, variants, weights
from exporter.hub_weights import HubPin
from exporter.variants import get_variant
from tests.test_download import Server
from tests.test_weights import save_torchscript

REPO = "timm/tiny_vit_clip.openai"
TABLE = hub_weights.pins  # the real, cached reader; the tests replace it with one-variant tables
FILE = "open_clip_model.safetensors"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return weights.random_weights(get_variant("tiny-ViT"), seed=5).model


def save_safetensors(model: torch.nn.Module) -> bytes:
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


@pytest.fixture(scope="module")
def safetensors_bytes(model) -> bytes:
    return save_safetensors(model)


@pytest.fixture
def served(hub, safetensors_bytes, monkeypatch, tmp_path):
    """The loopback Hub holding the file at REPO; tiny-ViT pinned to it; the client's cache under tmp_path."""
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(REPO)
    commit = api.upload_file(path_or_fileobj=safetensors_bytes, path_in_repo=FILE, repo_id=REPO).oid
    pin = HubPin(REPO, FILE, commit, hashlib.sha256(safetensors_bytes).hexdigest(), len(safetensors_bytes))
    set_pin(monkeypatch, pin)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return pin


def set_pin(monkeypatch, pin: HubPin) -> None:
    monkeypatch.setattr(hub_weights, "pins", lambda: {"tiny-ViT": pin})


@pytest.fixture
def openai_url(monkeypatch):
    """OpenAI's URL layout for tiny-ViT on a loopback server that answers 404 unless told otherwise."""
    sha = "ab" * 32
    server = Server(b"", "/nothing")
    monkeypatch.setattr(variants, "_openai_urls", lambda: {"tiny-ViT": f"{variants.OPENAI_URL_BASE}/{sha}/tiny-ViT.pt"})
    monkeypatch.setattr(weights, "OPENAI_URL_BASE", server.base)
    yield server
    server.close()


def cached_revisions(cache: Path) -> set[str]:
    if not cache.exists():
        return set()
    return {r.commit_hash for repo in huggingface_hub.scan_cache_dir(cache).repos for r in repo.revisions}


def test_the_pinned_file_is_fetched_hashed_and_recorded(served, model, tmp_path):
    loaded = weights.load_variant(get_variant("tiny-ViT"), progress=False)
    assert loaded.source == {"kind": "hub", "repo": REPO, "file": FILE, "revision": served.revision,
                             "sha256": served.sha256, "bytes": served.bytes}
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))


def test_the_pinned_revision_is_fetched_when_main_holds_other_bytes(served, model, hub):
    """A second commit moves `main` to other weights of the same size: an export still takes the pinned
    commit's bytes, hashed and recorded as such, and `main`'s bytes differ from the pin's."""
    other = weights.random_weights(get_variant("tiny-ViT"), seed=6).model
    api = HfApi(endpoint=hub.url, token=hub.token)
    buffer = save_safetensors(other)
    assert len(buffer) == served.bytes
    moved = api.upload_file(path_or_fileobj=buffer, path_in_repo=FILE, repo_id=REPO, commit_message="newer").oid
    assert moved != served.revision and api.model_info(REPO).sha == moved
    loaded = weights.load_variant(get_variant("tiny-ViT"), progress=False)
    assert loaded.source["revision"] == served.revision and loaded.source["sha256"] == served.sha256
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))
    at_main = weights.load_variant(get_variant("tiny-ViT"), revision="main", progress=False)
    assert at_main.source["revision"] == moved and at_main.source["sha256"] == hashlib.sha256(buffer).hexdigest()


def test_same_weights_from_three_sources_give_byte_identical_graphs(served, model, tmp_path):
    """An OpenAI-style TorchScript archive, the Hub's safetensors, a plain state dict."""
    save_torchscript(model, tmp_path / "archive.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    sources = {"archive": weights.load_checkpoint(tmp_path / "archive.pt"),
               "hub": weights.load_variant(get_variant("tiny-ViT"), progress=False),
               "state": weights.load_checkpoint(tmp_path / "state.pt")}
    folders = {key: pipeline.export(w, "tiny-ViT", tmp_path / key, verify=False, log=lambda _: None)
               for key, w in sources.items()}
    names = sorted(p.name for p in folders["hub"].iterdir())
    assert len(names) == 8  # 3 graphs, 2 data files, 3 JSON
    for name in names:
        if name == "manifest.json":
            continue
        assert len({(folder / name).read_bytes() for folder in folders.values()}) == 1, name
    manifests = {key: json.loads((folder / "manifest.json").read_text()) for key, folder in folders.items()}
    assert {m["source"]["kind"] for m in manifests.values()} == {"checkpoint", "hub"}
    for manifest in manifests.values():
        manifest.pop("source")
    assert manifests["archive"] == manifests["hub"] == manifests["state"]


def test_bytes_that_miss_the_pin_are_refused_and_leave_no_cache_entry(served, monkeypatch, tmp_path):
    wrong = HubPin(REPO, FILE, served.revision, "0" * 64, served.bytes)
    set_pin(monkeypatch, wrong)
    cache = tmp_path / "hf-cache"
    with pytest.raises(ClipOnnxError, match=f"{REPO}: {FILE} at {served.revision} has SHA-256 {served.sha256}.*"
                                            f"not the pinned 0000.*the cached copy was deleted"):
        weights.load_hub(get_variant("tiny-ViT"), progress=False)
    assert served.revision not in cached_revisions(cache)
    set_pin(monkeypatch, served)
    assert weights.load_hub(get_variant("tiny-ViT"), progress=False).source["sha256"] == served.sha256


def test_a_cache_hit_is_hashed_too_offline(served, monkeypatch, tmp_path):
    weights.load_hub(get_variant("tiny-ViT"), progress=False)  # fills the cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert weights.load_hub(get_variant("tiny-ViT"), progress=False).source["revision"] == served.revision
    blob = next((tmp_path / "hf-cache").glob("models--*/blobs/*"))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, other bytes
    blob.write_bytes(bytes(data))
    with pytest.raises(ClipOnnxError, match="not the pinned"):
        weights.load_hub(get_variant("tiny-ViT"), progress=False)


def test_a_connection_dropped_mid_file_is_recovered(served, hub):
    hub.cut_downloads(1)
    loaded = weights.load_hub(get_variant("tiny-ViT"), progress=False)
    assert loaded.source["sha256"] == served.sha256
    assert hub.count("GET", r"^/lfs/") >= 2


def test_partial_downloads_of_killed_runs_are_removed(served, tmp_path):
    blobs = tmp_path / "hf-cache" / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    orphan, live = blobs / "aa.1234abcd.incomplete", blobs / "bb.5678abcd.incomplete"
    orphan.write_bytes(b"half")
    live.write_bytes(b"being written")
    old = time.time() - hub_weights.ORPHAN_SECONDS - 60
    os.utime(orphan, (old, old))
    weights.load_hub(get_variant("tiny-ViT"), progress=False)
    assert not orphan.exists() and live.exists()


def test_when_every_source_fails_each_has_its_line(hub, openai_url, monkeypatch, tmp_path, capsys):
    set_pin(monkeypatch, HubPin(REPO, FILE, None, None, None))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    code = cli.main(["export", "tiny-ViT", "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 5, err  # the unpinned warning, then the error: a line per source, the advice
    assert err[0].startswith("clip-onnx: warning: tiny-ViT's Hub file is not pinned")
    assert err[1] == "clip-onnx: error: no source gave tiny-ViT's weights:"
    assert err[2].startswith(f"  - the Hub's {REPO}: ") and "404" in err[2]
    assert err[3].startswith(f"  - download of {openai_url.base}/{'ab' * 32}/tiny-ViT.pt failed after 0 bytes "
                             f"(Not Found)")
    assert err[4].startswith("  without them: --weights random")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "unresolvable"])
def test_offline_every_source_answers_from_its_cache_without_a_request(offline, hub, openai_url, monkeypatch,
                                                                      tmp_path, capsys):
    """No network (a host that does not resolve) or HF_HUB_OFFLINE: no source sends a request or retries;
    each says it is not cached and why, and the advice names --weights random and --checkpoint."""
    set_pin(monkeypatch, HubPin(REPO, FILE, None, None, None))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    if offline == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        reason = "HF_HUB_OFFLINE is set"
    else:
        monkeypatch.setenv("HF_ENDPOINT", "http://no-such-hub.invalid")
        monkeypatch.setattr(weights, "OPENAI_URL_BASE", "http://no-such-cdn.invalid")
        monkeypatch.setattr(variants, "_openai_urls",
                            lambda: {"tiny-ViT": f"{variants.OPENAI_URL_BASE}/{'ab' * 32}/tiny-ViT.pt"})
        reason = "cannot be resolved"
    code = cli.main(["export", "tiny-ViT", "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[1] == "clip-onnx: error: no source gave tiny-ViT's weights:", err
    assert err[2].startswith(f"  - the Hub's {REPO}: not in the local cache, and ") and reason in err[2]
    assert f"tiny-ViT.pt: not in {tmp_path / 'cache'}, and " in err[3] and reason in err[3]
    assert "--weights random" in err[4] and "--checkpoint FILE" in err[4]
    assert hub.requests == [] and openai_url.requests == []


def test_outside_a_release_the_openai_url_is_the_fallback(hub, monkeypatch, model, tmp_path):
    save_torchscript(model, tmp_path / "tiny-ViT.pt")
    payload = (tmp_path / "tiny-ViT.pt").read_bytes()
    sha = hashlib.sha256(payload).hexdigest()
    server = Server(payload, f"/{sha}/tiny-ViT.pt")
    try:
        monkeypatch.setattr(variants, "_openai_urls", lambda: {"tiny-ViT": f"{variants.OPENAI_URL_BASE}/{sha}/tiny-ViT.pt"})
        monkeypatch.setattr(weights, "OPENAI_URL_BASE", server.base)
        set_pin(monkeypatch, HubPin(REPO, FILE, "c" * 40, "d" * 64, 1))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        loaded = weights.load_variant(get_variant("tiny-ViT"), cache_dir=tmp_path / "cache", progress=False)
        assert loaded.source == {"kind": "openai", "url": f"{server.base}/{sha}/tiny-ViT.pt", "sha256": sha,
                                 "bytes": len(payload)}
        with pytest.raises(ClipOnnxError, match=f"^no source gave tiny-ViT's weights:\n  - the Hub's {REPO}: [^\n]*$"
                           ) as refused:
            weights.load_variant(get_variant("tiny-ViT"), release=True, progress=False)
        assert "tiny-ViT.pt" not in str(refused.value)
        assert len(server.requests) == 1, "a release run asked OpenAI's URL"
    finally:
        server.close()


def test_a_release_refuses_an_unpinned_variant_or_another_revision(monkeypatch):
    set_pin(monkeypatch, HubPin(REPO, FILE, "c" * 40, None, None))
    with pytest.raises(ClipOnnxError, match="no pinned Hub revision.*python -m release pin-weights"):
        weights.load_variant(get_variant("tiny-ViT"), release=True)
    set_pin(monkeypatch, HubPin(REPO, FILE, "c" * 40, "d" * 64, 1))
    with pytest.raises(ClipOnnxError, match="drop --revision"):
        weights.load_variant(get_variant("tiny-ViT"), release=True, revision="main")


def test_a_hub_file_of_another_architecture_is_refused(hub, monkeypatch, tmp_path):
    other = weights.random_weights(get_variant("tiny-RN")).model
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(REPO)
    commit = api.upload_file(path_or_fileobj=save_safetensors(other), path_in_repo=FILE, repo_id=REPO).oid
    set_pin(monkeypatch, HubPin(REPO, FILE, commit, None, None))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(ClipOnnxError, match=f"{REPO}/{FILE} is not tiny-ViT: embed_dim 256 where tiny-ViT has 64"):
        weights.load_hub(get_variant("tiny-ViT"), progress=False)


def test_verify_fetches_the_recorded_revision_again(served, tmp_path):
    folder = pipeline.export(weights.load_variant(get_variant("tiny-ViT"), progress=False), "tiny-ViT",
                             tmp_path / "out", graphs=["visual"], log=lambda _: None)
    assert pipeline.verify_folder(folder, log=lambda _: None).passed


def test_the_pin_command_records_commit_sha256_and_size(served, hub, monkeypatch, tmp_path):
    from release.__main__ import main as release_main

    pins = tmp_path / "weight_pins.json"
    pins.write_text(json.dumps({"tiny-ViT": {"repo": REPO, "file": FILE, "revision": None, "sha256": None,
                                             "bytes": None}}))
    monkeypatch.setattr(hub_weights, "PINS", pins)
    monkeypatch.setattr(hub_weights, "pins", TABLE)
    TABLE.cache_clear()
    try:
        assert release_main(["pin-weights", "--endpoint", hub.url]) == 0
        assert json.loads(pins.read_text()) == {"tiny-ViT": {"repo": REPO, "file": FILE, "revision": served.revision,
                                                             "sha256": served.sha256, "bytes": served.bytes}}
        assert TABLE()["tiny-ViT"] == served
    finally:
        TABLE.cache_clear()  # the next reader reads the package's own table again


def test_the_pin_table_names_every_openai_variant_and_only_those():
    from exporter._clip import clip

    table = json.loads(hub_weights.PINS.read_text())
    assert set(table) == set(clip.clip._MODELS)
    assert variants._openai_urls() == clip.clip._MODELS  # read from clip's file without importing it: the same table
    assert all(row["file"] == FILE and row["repo"].startswith("timm/") for row in table.values())
