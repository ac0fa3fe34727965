"""docs/consumers.md's API table ("One API in three languages") names, per language, the functions and
methods of one vocabulary; each name must exist in its implementation: Python's by import, Rust's and
Node's in their source (`pub fn`, `export`), so a renamed or removed function fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import clip_onnx
from clip_onnx import tokenizer
from clip_onnx.model import Model

ROOT = Path(__file__).resolve().parent.parent
RUST = ROOT / "rust" / "src"
NODE = ROOT / "examples" / "node" / "clip.mjs"


def rows() -> list[tuple[str, str, str]]:
    """(Python, Rust, Node) cells of the table, code spans only."""
    text = (ROOT / "docs" / "consumers.md").read_text()
    table = text.split("## One API in three languages", 1)[1].split("\n## ", 1)[0]
    cells = [line.split("|")[2:5] for line in table.splitlines() if line.startswith("| ") and "`" in line]
    return [tuple(re.findall(r"`([^`]+)`", cell)[0] for cell in row) for row in cells]


def name(call: str) -> str:
    """The function or attribute a cell calls: `model.encode_image(images)` -> encode_image."""
    return re.split(r"[.(:]+", call.split("(")[0].replace("::", "."))[-1] if "(" in call else call.rsplit(".", 1)[-1]


def test_the_table_covers_the_vocabulary():
    names = [name(python) for python, _, _ in rows()]
    assert {"encode_image", "encode_text", "logits", "probabilities", "clean", "kind"} <= set(names)


def test_every_python_name_exists():
    for python, _, _ in rows():
        if python.startswith("Model("):
            keywords = re.findall(r"(\w+)=", python)
            assert set(keywords) <= set(inspect.signature(Model).parameters), python
            continue
        owner = {"ClipOnnxError.kind": None, "clip_onnx.tokenizer.clean(text)": tokenizer}.get(python, Model)
        if owner is None:
            assert clip_onnx.ClipOnnxError("x").kind == "invalid_input"
        else:
            assert callable(getattr(owner, name(python))), python


def test_every_rust_name_is_a_public_function():
    source = "\n".join(path.read_text() for path in RUST.glob("*.rs"))
    for _, rust, _ in rows():
        assert re.search(rf"pub fn {re.escape(name(rust))}\b", source), rust


def test_every_node_name_is_exported():
    source = NODE.read_text()
    for _, _, node in rows():
        if node.startswith("error."):
            assert re.search(r"export class ClipError extends Error", source) and "this.kind = kind" in source
        else:
            declared = re.search(rf"export (async )?(function|const) {re.escape(name(node))}\b.*", source)
            assert declared, node
            for option in re.findall(r"\{ (\w+)", node):  # an options object's key is in the signature
                assert option in declared.group(0), node
