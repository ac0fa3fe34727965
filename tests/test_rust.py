"""The Rust crate (rust/) held to the Python runtime: `cargo test --locked` against the shared test
vectors (tests/vectors.py) and a Hugging Face Hub on loopback, with the libonnxruntime of the
onnxruntime wheel these tests already use.

Needs cargo; skipped without it, except on CI (CI=true), where a skip would hide a broken crate.

`python -m tests.test_rust DIR` writes the vectors to DIR (once), serves the loopback Hub and prints the
environment `cargo test` needs, until interrupted: what rust/mutants.sh runs cargo-mutants against."""

from __future__ import annotations

import glob
import html
import html.entities
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from clip_onnx.integrity import sha256_file
from tests.loopback_hub import LoopbackHub

CRATE = Path(__file__).resolve().parent.parent / "rust"
# numeric references at every edge of html.unescape's rules: NUL, CR, Windows-1252, C0 and C1 controls,
# non-characters, surrogates, the last code point and past it, and numbers too long for any integer type
NUMBERS = [0, 9, 10, 13, 31, 38, 60, 65, 127, 128, 129, 141, 150, 159, 160, 233, 0xD7FF, 0xD800, 0xDFFF, 0xE000,
           0xFDCF, 0xFDD0, 0xFDEF, 0xFDF0, 0xFFFD, 0xFFFE, 0xFFFF, 0x1F600, 0x1FFFE, 0x10FFFD, 0x10FFFF, 0x110000,
           10**20]


def unescape_cases() -> list[list[str]]:
    """Texts and Python's `html.unescape` of each: every HTML5 name with and without `;` and followed by a
    letter, numeric references at every edge, and the odd cases (unknown names, prefixes, no digits)."""
    names = sorted(html.entities.html5)
    texts = [" ".join(f"&{name}" for name in names), " ".join(f"&{name}x" for name in names),
             "".join(f"&{name}" for name in names if name.endswith(";"))]
    for n in NUMBERS:
        texts += [f"&#{n};", f"&#{n}", f"&#{n}x", f"&#x{n:x};", f"&#X{n:X}", f"&#x{n:x}g", f"&#00{n};"]
    texts += ["&", "&;", "&#", "&#;", "&#x", "&#x;", "&#xg;", "&&amp;", "&amp;amp;", "&ampamp;", "&notit;", "&notin;",
              "&noti", "&copy2019", "&AMP;AMP;", "&a", "&ab;", "&zzzz;", "& amp;", "&am p;", "&amp", "x&lt y&gt;z",
              "&" + "a" * 40 + ";", "&" + "é" * 40, "&é;", "&ampé", "&notéx", "&nbsp\t&nbsp\n&nbsp\x0c&nbsp<&nbsp#",
              "&lt\r;", "caf&eacute &eacute; &Eacute;&EACUTE;", "&#x1F600;&#128512;", "&#128512", "a&b&c;d&#e"]
    return [[text, html.unescape(text)] for text in texts]


def ort_library() -> str:
    """The wheel's libonnxruntime; only its versioned name ships (libonnxruntime.so.1.x.y), so glob for it."""
    found = glob.glob(str(Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so*"))
    assert found, "the onnxruntime wheel ships no libonnxruntime.so.*"
    return sorted(found)[-1]


def _publish(hub: LoopbackHub, folder: Path, repo: str, tamper: bool) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo)
    operations = []
    for path in sorted(folder.iterdir()):
        content = path.read_bytes()
        if tamper and path.name.endswith("_visual.onnx"):
            content = content[:-1] + bytes([content[-1] ^ 1])  # same size, other bytes
        operations.append(CommitOperationAdd(f"fp32/{path.name}", content))
    commit = api.create_commit(repo, operations, commit_message="release")
    api.create_tag(repo, tag="v1.0.0", revision=commit.oid)


def _with_external_data(folder: Path, copy: Path) -> Path:
    """A copy of an export whose visual graph keeps its weights in an external-data file, listed in the
    manifest (graphs.visual.external_data and files), as the large variants ship: intact, so it loads."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    data = json.loads((copy / "manifest.json").read_text())
    visual = copy / data["graphs"]["visual"]["file"]
    external = copy / f"{visual.name}.data"
    onnx.save_model(onnx.load(str(visual)), str(visual), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=external.name)
    data["graphs"]["visual"]["external_data"] = [external.name]
    for path in (visual, external):
        data["files"][path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(data))
    return copy


def prepare(vectors: Path, hub: LoopbackHub, root: Path) -> Path:
    """The shared vectors plus what only the Rust tests use: the Hub's releases (one intact, one with a
    changed byte), an export with external data, and Python's html.unescape on its hard cases."""
    data = json.loads(Path(vectors).read_text())
    _publish(hub, Path(data["exports"][0]["folder"]), "org/clip-onnx-tiny-ViT", tamper=False)
    _publish(hub, Path(data["exports"][0]["folder"]), "org/tampered", tamper=True)
    data["hub"] = {"endpoint": hub.url, "repo": "org/clip-onnx-tiny-ViT", "tampered_repo": "org/tampered",
                   "tag": "v1.0.0"}
    data["external_data"] = str(_with_external_data(Path(data["exports"][0]["folder"]), root / "external-data"))
    data["unescape"] = unescape_cases()
    path = root / "vectors.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


@pytest.fixture(scope="module")
def cargo() -> str:
    found = shutil.which("cargo")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cargo is not on PATH; CI must run the Rust tests, so install Rust in the workflow")
        pytest.skip("cargo is not on PATH: the Rust crate needs a Rust toolchain")
    return found


def test_the_rust_crate_equals_the_python_runtime(cargo, shared_vectors, tmp_path):
    with LoopbackHub() as hub:
        path = prepare(shared_vectors, hub, tmp_path)
        cleaning = json.loads(path.read_text())["cleaning"]["file"]  # the ftfy port's own conformance test reads it
        result = subprocess.run([cargo, "test", "--workspace", "--locked", "--", "--nocapture", "--test-threads", "2"],
                                cwd=CRATE, capture_output=True, text=True, timeout=3000,
                                env={**os.environ, "CLIP_ONNX_VECTORS": str(path), "ORT_DYLIB_PATH": ort_library(),
                                     "CLIP_ONNX_FTFY_CASES": cleaning})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    passed = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", output))
    assert passed >= 37 and "0 failed" in output, output[-3000:]
    # every listed kind of image file equals Pillow's pixels, and the unlisted and damaged ones are refused
    identical = re.search(r"^(\d+) of (\d+) image files bit-identical to Pillow, 0 skipped$", output, re.MULTILINE)
    assert identical and identical[1] == identical[2] and int(identical[1]) > 0, output[-3000:]
    # CLIP's cleaning: the ftfy port alone and the whole clean with token ids, on every set, 0 differing
    for set_name in ("ftfy_test_cases", "tokenizer_corpus", "generated"):
        assert re.search(rf"^{set_name}: \d+ texts, 0 differ$", output, re.MULTILINE), output[-3000:]
        assert re.search(rf"^{set_name}: \d+ texts, 0 cleaned differ, 0 ids differ$", output, re.MULTILINE), output[-3000:]
    # the measured lines (JPEG decoding, the texts ftfy would change, memory) and the counts of the image
    # files and of the bad_inputs table's cases
    for line in output.splitlines():
        if (line.startswith(("JPEG:", "token ids:", "memory:")) or re.fullmatch(r"\d+ (API|command-line) cases ran, 0 skipped", line)
                or re.fullmatch(r"\d+ of \d+ image files bit-identical to Pillow, 0 skipped", line)
                or re.fullmatch(r"\d+ unlisted and \d+ bad image files refused as .*", line)
                or re.fullmatch(r"\w+: \d+ texts, 0 (cleaned )?differ.*", line)):
            print(line)


def test_the_ftfy_ports_tables_are_the_ones_its_script_generates_from_ftfy():
    """rust/ftfy/src/tables.rs is generated from the pinned ftfy and Python's Unicode data; a change of
    either (or of the script) without regenerating it fails here."""
    generated = subprocess.run([sys.executable, str(CRATE / "ftfy" / "scripts" / "gen_tables.py")], capture_output=True,
                               text=True, check=True).stdout
    assert generated == (CRATE / "ftfy" / "src" / "tables.rs").read_text()


def test_the_documented_rust_example_is_the_one_cargo_compiles():
    """docs/consumers.md and every model card show the crate's doctest, which `cargo test` compiles."""
    from release.cards import rust_snippet

    docs = (CRATE.parent / "docs" / "consumers.md").read_text()
    assert rust_snippet("org/clip-onnx-ViT-B-32", "<commit>") in docs


def main(root: Path) -> None:
    """Write the vectors to `root`, serve the Hub, print the environment for `cargo test`, wait."""
    import signal
    import threading

    from tests import vectors

    root.mkdir(parents=True, exist_ok=True)
    written = root / "shared" / "vectors.json"  # written once: delete DIR to write them again
    if not written.exists():
        vectors.write(written.parent)
    with LoopbackHub() as hub:
        path = prepare(written, hub, root)
        (root / "env").write_text(f"export CLIP_ONNX_VECTORS={path}\nexport ORT_DYLIB_PATH={ort_library()}\n")
        print((root / "env").read_text(), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(Path(sys.argv[1]))
