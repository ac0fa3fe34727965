// The test vectors the suites hold clip.mjs to: `node-vectors.json`, written by the Python side
// (tests/test_node_example.py's write_node_vectors: the shared vectors of tests/vectors.py plus
// "node": an external-data copy of an export, a sparse file over 2 GiB, Python's html.unescape twice).
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const EXAMPLE = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

const where = process.env.CLIP_ONNX_VECTORS;
if (!where) {
  throw new Error("set CLIP_ONNX_VECTORS to the node-vectors.json that `.venv/bin/python -m tests.test_node_example OUT` "
    + "prints (run from the repository root); see test/README.md");
}
export const vectors = JSON.parse(readFileSync(where, "utf8"));

// A little-endian binary file of the vectors as a typed array (a copy, so aligned).
export const read = (file, Type) => new Type(new Uint8Array(readFileSync(file)).buffer);
