"""The real download path against a loopback HTTP server: cache, SHA-256, resume, mirrors."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import threading

import pytest
import torch

from clip_onnx.errors import ClipOnnxError
from exporter.variants import get_variant
from exporter import cli, weights
from exporter.weights import download, random_weights


class Server:
    """Serves `payload` at `path`; honours Range unless `ignore_range`; `cut` ends the first N responses
    halfway; `send_length` False sends no Content-Length (the body ends when the connection closes)."""

    def __init__(self, payload: bytes, path: str):
        self.payload, self.path, self.cut, self.requests = payload, path, 0, []
        self.ignore_range, self.send_length = False, True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path != server.path:
                    self.send_error(404)
                    return
                ranged = self.headers.get("Range") and not server.ignore_range
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if ranged else 0
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if server.send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True
                self.end_headers()
                if server.cut:
                    server.cut -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save(random_weights(get_variant("tiny-ViT")).model.state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture
def serve(checkpoint):
    servers = []

    def start(path: str, payload: bytes | None = None) -> Server:
        servers.append(Server(checkpoint if payload is None else payload, path))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_download_checks_sha_and_caches(serve, checkpoint, tmp_path):
    sha = hashlib.sha256(checkpoint).hexdigest()
    server = serve(f"/{sha}/tiny.pt")
    path = download(f"{server.base}/{sha}/tiny.pt", sha, tmp_path / "cache", progress=False)
    assert path.read_bytes() == checkpoint and path.name == "tiny.pt"
    download(f"{server.base}/{sha}/tiny.pt", sha, tmp_path / "cache", progress=False)
    assert len(server.requests) == 1, "a cached file with the right SHA-256 is not fetched again"


def test_a_wrong_file_already_in_the_cache_is_fetched_again(serve, checkpoint, tmp_path):
    """The cache is shared with the `clip` package: a same-named, same-sized file with other bytes is
    hashed, not trusted, and replaced by the served one."""
    sha = hashlib.sha256(checkpoint).hexdigest()
    server = serve(f"/{sha}/tiny.pt")
    cache = tmp_path / "cache"
    cache.mkdir()
    tampered = bytearray(checkpoint)
    tampered[len(tampered) // 2] ^= 0x01
    (cache / "tiny.pt").write_bytes(bytes(tampered))
    with pytest.warns(UserWarning, match="does not match its SHA-256"):
        path = download(f"{server.base}/{sha}/tiny.pt", sha, cache, progress=False)
    assert path.read_bytes() == checkpoint
    assert len(server.requests) == 1


def test_interrupted_download_resumes(serve, checkpoint, tmp_path):
    sha = hashlib.sha256(checkpoint).hexdigest()
    server = serve(f"/{sha}/tiny.pt")
    server.cut = 1
    url = f"{server.base}/{sha}/tiny.pt"
    with pytest.raises(ClipOnnxError, match="run the same command again to resume"):
        download(url, sha, tmp_path, progress=False)
    assert not (tmp_path / "tiny.pt").exists()
    partial = (tmp_path / "tiny.pt.part").stat().st_size
    assert 0 < partial < len(checkpoint)
    path = download(url, sha, tmp_path, progress=False)
    assert path.read_bytes() == checkpoint
    assert server.requests[-1][1] == f"bytes={partial}-"
    assert not (tmp_path / "tiny.pt.part").exists()


def test_a_server_that_ignores_range_restarts_the_file_instead_of_appending(serve, checkpoint, tmp_path):
    sha = hashlib.sha256(checkpoint).hexdigest()
    server = serve(f"/{sha}/tiny.pt")
    server.cut, server.ignore_range = 1, True
    url = f"{server.base}/{sha}/tiny.pt"
    with pytest.raises(ClipOnnxError, match="run the same command again to resume"):
        download(url, sha, tmp_path, progress=False)
    assert (tmp_path / "tiny.pt.part").stat().st_size > 0
    assert download(url, sha, tmp_path, progress=False).read_bytes() == checkpoint


def test_a_response_without_content_length_is_read_to_its_end(serve, checkpoint, tmp_path):
    sha = hashlib.sha256(checkpoint).hexdigest()
    server = serve(f"/{sha}/tiny.pt")
    server.send_length = False
    cache = tmp_path / "not" / "yet" / "there"
    assert download(f"{server.base}/{sha}/tiny.pt", sha, cache, progress=False).read_bytes() == checkpoint


def test_sha_mismatch_deletes_the_download(serve, checkpoint, tmp_path):
    wrong = "0" * 64
    server = serve(f"/{wrong}/tiny.pt")
    with pytest.raises(ClipOnnxError, match="SHA-256 mismatch"):
        download(f"{server.base}/{wrong}/tiny.pt", wrong, tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(ClipOnnxError, match=r"download of http://127.0.0.1:9/x/none.pt failed after 0 bytes "
                                            r"\(\[Errno 111\] Connection refused\); run the same command again"):
        download("http://127.0.0.1:9/x/none.pt", "0" * 64, tmp_path, progress=False)


def test_cli_falls_back_to_a_mirror_and_rejects_a_wrong_file(serve, checkpoint, hub, tmp_path, monkeypatch, capsys):
    """The CLI's source order: the Hub (on loopback, without the repo), OpenAI's URL (a loopback server
    answering 404), then the --url-base mirror in OpenAI's layout, whose file is not RN50's."""
    variant = get_variant("RN50")
    openai = serve("/nothing-here")
    mirror = serve(f"/{variant.sha256}/RN50.pt")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(weights, "OPENAI_URL_BASE", openai.base)
    code = cli.main(["export", "RN50", "-o", str(tmp_path / "out"), "--url-base", mirror.base,
                     "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert openai.requests[0][0] == mirror.requests[0][0] == f"/{variant.sha256}/RN50.pt"
    assert err[-5:] == [  # each source on its own line, then what to do
        "clip-onnx: error: no source gave RN50's weights:",
        "  - the Hub's timm/resnet50_clip.openai: 404 Client Error.",
        f"  - download of {openai.base}/{variant.sha256}/RN50.pt failed after 0 bytes (Not Found); run the same "
        f"command again, or point --url-base at a mirror",
        err[-2], "  without them: --weights random (a pipeline demo), --checkpoint FILE (weights you have), or "
                 "--url-base MIRROR"]
    assert err[-2].startswith(f"  - SHA-256 mismatch for {mirror.base}/{variant.sha256}/RN50.pt: ")
    assert os.listdir(tmp_path / "cache") == [] and not (tmp_path / "out").exists()


def test_a_cache_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    for cache in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        with pytest.raises(ClipOnnxError, match=f"^the cache folder {cache} cannot be made .*; pass --cache-dir "
                                                f"FOLDER or set CLIP_ONNX_CACHE"):
            download("http://127.0.0.1:9/x/none.pt", "0" * 64, cache, progress=False)
