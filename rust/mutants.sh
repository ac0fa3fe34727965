#!/usr/bin/env bash
# The mutation run over the code that decides "untampered", the download and the token ids:
# src/manifest.rs, src/hub.rs, src/tokenize.rs and Model::load's check in src/model.rs (the rest of
# model.rs, and preprocess.rs, are not in it). Its last result: docs/mutation.md's Rust section, or the
# report of issue 21.
#
# From a clean checkout (Python 3.10+, Rust 1.92+):
#   python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
#   cargo install cargo-mutants --locked
#   rust/mutants.sh [DIR] [cargo-mutants options, e.g. -F tokenize]
# The tests read the committed conformance artifact (tests/conformance/) themselves; a loopback Hugging Face
# Hub (python -m tests.test_rust DIR, DIR default /tmp/clip-onnx-mutants) serves the releases the download
# tests need while cargo-mutants runs, and is stopped after. Results: DIR/mutants.out/ (outcomes.json,
# caught.txt, missed.txt...).
#
# Each mutant runs `cargo test --include-ignored` (the Hub's tests included) with every test but four that
# call no code in these files: the decode speed measurement, the 2 GiB streaming test (it guards memory,
# which no mutant here changes; 20 s of disk writes) and the two pixel tests.
set -euo pipefail
crate=$(cd "$(dirname "$0")" && pwd)
dir=${1:-/tmp/clip-onnx-mutants}
shift || true
mkdir -p "$dir"
rm -f "$dir/env"
(cd "$crate/.." && exec .venv/bin/python -m tests.test_rust "$dir") > "$dir/hub.log" 2>&1 &
hub=$!
trap 'kill $hub 2>/dev/null; wait $hub 2>/dev/null || true' EXIT
until [ -s "$dir/env" ]; do
    kill -0 $hub 2>/dev/null || { cat "$dir/hub.log"; exit 1; }
    sleep 2
done
source "$dir/env"  # CLIP_ONNX_TEST_HUB, ORT_DYLIB_PATH and CLIP_ONNX_VECTORS (the copy cargo-mutants tests is rust/ alone)
cd "$crate"
time cargo mutants --output "$dir" --test-tool cargo -j 1 --timeout 240 --build-timeout 900 --copy-target=true \
    --file src/manifest.rs --file src/hub.rs --file src/tokenize.rs --file src/model.rs \
    -E 'src/model.rs.*(Model::(run|encode_image|encode_text|logits|similarity|classify)|environment|ort_error)' \
    "$@" \
    -- --locked -- --test-threads 2 --include-ignored --skip decode_speed --skip files_over_2_gib --skip pixels_equal \
    --skip jpeg_pixels
