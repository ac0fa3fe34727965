"""The Rust crate (rust/) held to the Python runtime. Bare `cargo test --locked` in rust/ reads the
committed conformance artifact (tests/conformance/vectors.json, written by tests/conformance.py) by
itself; what only Python gives is a Hugging Face Hub on loopback. Here the artifact's export is released
on it at a tag (intact, and with one byte changed), its details go to the Rust tests in
`CLIP_ONNX_TEST_HUB`, `cargo test --workspace --locked -- --include-ignored` runs every test (the decode
speed measurement left out), with the libonnxruntime of the onnxruntime wheel these tests already use,
and the counts it prints are held to the artifact's.

Needs cargo; skipped without it, except on CI (CI=true), where a skip would hide a broken crate.

`python -m tests.test_rust DIR` serves the loopback Hub, writes DIR/hub.json and DIR/env (the environment
`cargo test -- --include-ignored` needs) and waits until interrupted: what rust/mutants.sh runs
cargo-mutants against."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest

from tests.conformance import COMMITTED, pixel_cases
from tests.loopback_hub import LoopbackHub
from tests.released_hub import serve
from tests.tools import required

CRATE = Path(__file__).resolve().parent.parent / "rust"
# the ignored test that is a measurement, not a check (rust/tests/decode_speed.rs)
CARGO_TEST = ["test", "--workspace", "--locked", "--", "--include-ignored", "--skip", "decode_speed"]


def ort_library() -> str:
    """The wheel's libonnxruntime; only its versioned name ships (libonnxruntime.so.1.x.y), so glob for it."""
    found = glob.glob(str(Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so*"))
    assert found, "the onnxruntime wheel ships no libonnxruntime.so.*"
    return sorted(found)[-1]


@pytest.fixture(scope="module")
def cargo() -> str:
    (found,) = required("cargo", purpose="the Rust crate needs a Rust toolchain")
    return found


def test_the_rust_crate_equals_the_python_runtime(cargo):
    vectors = json.loads((COMMITTED / "vectors.json").read_text())
    # the committed artifact and cases, not files another run pointed these at
    env = {k: v for k, v in os.environ.items() if k not in ("CLIP_ONNX_VECTORS", "CLIP_ONNX_FTFY_CASES")}
    with LoopbackHub() as hub:
        result = subprocess.run([cargo, *CARGO_TEST, "--nocapture", "--test-threads", "2"], cwd=CRATE, capture_output=True,
                                text=True, timeout=3000, env={**env, "CLIP_ONNX_TEST_HUB": json.dumps(serve(hub)),
                                                              "ORT_DYLIB_PATH": ort_library()})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    results = re.findall(r"test result: ok\. (\d+) passed; (\d+) failed; (\d+) ignored", output)
    assert sum(int(passed) for passed, _, _ in results) >= 40, output[-3000:]
    # the Hub's tests ran too: nothing ignored (the decode speed measurement is filtered out by name)
    assert results and all(failed == ignored == "0" for _, failed, ignored in results), output[-3000:]

    def count(pattern: str) -> int:
        found = re.findall(rf"^{pattern}$", output, re.MULTILINE)
        assert found, f"no line {pattern!r}: {output[-3000:]}"
        return sum(int(n) for n in found)

    # every case of the artifact ran, none differed: pixels, token ids and cleaning, embeddings, bad inputs
    cleaning = json.loads((COMMITTED / vectors["cleaning"]["file"]).read_text())["sets"]
    assert count(r"(\d+) pixel cases ran, 0 differ, 0 skipped") == len(pixel_cases(vectors))
    assert count(r"(\d+) token cases ran, 0 differ, 0 skipped") == len(vectors["texts"]) + sum(map(len, cleaning.values()))
    assert count(r"(\d+) embedding cases ran, 0 skipped") == len(vectors["exports"]) * (
        len(vectors["images"]) + len(vectors["embedded_texts"]))
    assert count(r"(\d+) (?:API|command-line) cases ran, 0 skipped") == len(vectors["bad_inputs"])
    assert count(r"(\d+) partial-folder cases ran, 0 skipped") == len(vectors["partial_folders"])
    # every listed kind of image file equals Pillow's pixels, and the unlisted and damaged ones are refused
    identical = re.search(r"^(\d+) of (\d+) image files bit-identical to Pillow, 0 skipped$", output, re.MULTILINE)
    assert identical and identical[1] == identical[2] == str(len(vectors["all_images"])), output[-3000:]
    # CLIP's cleaning: the ftfy port alone and the whole clean with token ids, on every set, 0 differing
    for set_name in vectors["cleaning"]["order"]:
        assert re.search(rf"^{set_name}: \d+ texts, 0 differ$", output, re.MULTILINE), output[-3000:]
        assert re.search(rf"^{set_name}: \d+ texts, 0 cleaned differ, 0 ids differ$", output, re.MULTILINE), output[-3000:]
    # the measured lines (JPEG decoding, the texts ftfy would change, memory) and the counts
    for line in output.splitlines():
        if (line.startswith(("JPEG:", "token ids:", "memory:"))
                or re.fullmatch(r"\d+ (API|command-line|partial-folder|pixel|token|embedding) cases ran, .*", line)
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
    """Serve the Hub, write root/hub.json and root/env (the environment for `cargo test -- --include-ignored`),
    wait."""
    import signal
    import threading

    root.mkdir(parents=True, exist_ok=True)
    with LoopbackHub() as hub:
        (root / "hub.json").write_text(json.dumps(serve(hub)))
        # the artifact named by its absolute path: cargo-mutants tests a copy of rust/ without the repository beside it
        (root / "env").write_text(f"export CLIP_ONNX_TEST_HUB={root / 'hub.json'}\nexport ORT_DYLIB_PATH={ort_library()}\n"
                                  f"export CLIP_ONNX_VECTORS={COMMITTED / 'vectors.json'}\n")
        print((root / "env").read_text(), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(Path(sys.argv[1]))
