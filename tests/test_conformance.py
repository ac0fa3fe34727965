"""The Python runtime against the committed conformance artifact (tests/conformance.py), as the Rust
and Node suites hold themselves to it: pixels bit for bit, token ids, cleaning, embeddings within the
precision's tolerance, `classify`'s lines. And the artifact is current: what `python -m
tests.conformance` writes now, so a change to the vectors' code lands with the files it writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from clip_onnx import preprocess, tokenizer
from clip_onnx.errors import ClipOnnxError
from clip_onnx.model import Model
from tests import conformance

ROOT = conformance.COMMITTED


@pytest.fixture(scope="module")
def vectors() -> dict:
    return json.loads((ROOT / "vectors.json").read_text())


def test_pixels_equal_the_committed_hashes_bit_for_bit(vectors):
    """Every case through the parameters and rules of the export's preprocess.json, at the case's R."""
    rules = preprocess.Preprocessing.read(ROOT / vectors["exports"][0]["folder"] / "preprocess.json")
    cases = conformance.pixel_cases(vectors)
    wrong = [f"{path} at R={r}" for path, r, want in cases
             if conformance.pixels_sha256(preprocess.load([ROOT / path], replace(rules, resolution=r))[0]) != want]
    assert not wrong, wrong
    print(f"{len(cases)} pixel cases ran, 0 differ, 0 skipped")


def test_token_ids_and_cleaning_equal_the_committed_ones(vectors):
    model = Model(ROOT / vectors["exports"][0]["folder"])
    ids = np.fromfile(ROOT / vectors["token_ids"], dtype="<i4").reshape(-1, 77)
    assert np.array_equal(tokenizer.encode(model.tokenizer, vectors["texts"], truncate=True), ids)
    assert [tokenizer.clean(t) for t in vectors["texts"]] == vectors["cleaned"]
    sets = json.loads((ROOT / vectors["cleaning"]["file"]).read_text())["sets"]
    texts = [case["text"] for name in vectors["cleaning"]["order"] for case in sets[name]]
    assert [tokenizer.clean(t) for t in texts] == [case["cleaned"] for name in vectors["cleaning"]["order"]
                                                   for case in sets[name]]
    cleaning_ids = np.fromfile(ROOT / vectors["cleaning"]["token_ids"], dtype="<i4").reshape(-1, 77)
    assert np.array_equal(tokenizer.encode(model.tokenizer, texts, truncate=True), cleaning_ids)
    print(f"{len(vectors['texts']) + len(texts)} token cases ran, 0 differ, 0 skipped")


def test_embeddings_are_within_the_precisions_tolerance(vectors):
    for export in vectors["exports"]:
        model = Model(ROOT / export["folder"])
        for name, actual in (("image_embeds", model.encode_image([ROOT / p for p in vectors["images"]])),
                             ("text_embeds", model.encode_text(vectors["embedded_texts"], truncate=True))):
            expected = np.fromfile(ROOT / export[name], dtype="<f4").reshape(actual.shape)
            cosine = (actual * expected).sum(1) / np.linalg.norm(actual, axis=1) / np.linalg.norm(expected, axis=1)
            assert cosine.min() >= export["min_cosine"], name
            assert np.abs(actual - expected).max() <= export["max_relative"] * np.abs(expected).max(), name
    print(f"{len(vectors['exports']) * (len(vectors['images']) + len(vectors['embedded_texts']))} embedding cases ran, "
          f"0 skipped")


def test_a_folder_of_one_graphs_files_encodes_with_it_and_refuses_the_other(vectors, tmp_path):
    """Each `partial_folders` case: only the files its graph needs and the manifest (a text-only or
    image-only download) give the whole folder's committed embeddings, here bit for bit, and the other
    encoder is refused, naming the first file it lacks."""
    export = vectors["exports"][0]
    inputs = {"encode_text": vectors["embedded_texts"], "encode_image": [ROOT / p for p in vectors["images"]]}
    for n, case in enumerate(vectors["partial_folders"]):
        folder = conformance.apply(ROOT / export["folder"], case["changes"], tmp_path / str(n), ROOT)
        model = Model(folder)
        name = "text_embeds" if case["call"] == "encode_text" else "image_embeds"
        kwargs = {"truncate": True} if case["call"] == "encode_text" else {}
        actual = getattr(model, case["call"])(inputs[case["call"]], **kwargs)
        assert actual.tobytes() == (ROOT / export[name]).read_bytes(), case["graph"]
        with pytest.raises(ClipOnnxError) as refused:
            getattr(model, case["refuses"])(inputs[case["refuses"]])
        assert refused.value.kind == "missing_file" and case["missing"] in str(refused.value), str(refused.value)
    print(f"{len(vectors['partial_folders'])} partial-folder cases ran, 0 skipped")


def test_classify_prints_the_committed_lines(vectors):
    result = subprocess.run([sys.executable, "-m", "clip_onnx", "classify", *vectors["images"], "-m",
                             vectors["exports"][0]["folder"], "--labels", ",".join(vectors["labels"]), "--top", "9"],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    scores = re.compile(r" (\d\.\d{3})(?=,|$)")
    for line, want in zip(result.stdout.splitlines(), vectors["classify"], strict=True):
        assert scores.sub("", line) == scores.sub("", want)  # the images and the labels' order
        assert np.allclose([float(s) for s in scores.findall(line)], [float(s) for s in scores.findall(want)], atol=0.0011)


def test_the_committed_artifact_is_what_the_module_writes(tmp_path, vectors):
    """Every committed file byte for byte, except where torch's exporter decides the bytes (the graphs and
    what hashes them, which differ with the checkout's path): those are held to the embeddings above
    instead, and vectors.json is compared without them."""
    written = json.loads(conformance.write(tmp_path / "written").read_text())

    def comparable(data: dict) -> dict:
        data = json.loads(json.dumps(data))
        data.pop("exports")
        for case in data["bad_inputs"]:
            case["changes"] = [c for c in case["changes"] if c["op"] != "json" or c["path"][0] != "files"]
            for change in case["changes"]:
                change.pop("keep", None)
        return data

    assert comparable(written) == comparable(vectors), "run: .venv/bin/python -m tests.conformance tests/conformance"
    ours = {p.relative_to(tmp_path / "written") for p in (tmp_path / "written").rglob("*") if p.is_file()}
    committed = {p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file()}
    assert ours == committed
    graphs = {p for p in ours if p.parts[0] == "exports" or p.name.endswith("-embeds.bin")
              or p.name == "vectors.json"}
    differ = [str(p) for p in sorted(ours - graphs) if (tmp_path / "written" / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not differ, f"{differ}: run .venv/bin/python -m tests.conformance tests/conformance"
