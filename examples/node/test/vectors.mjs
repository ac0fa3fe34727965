// The conformance artifact the suites hold clip.mjs to: tests/conformance/vectors.json, committed and
// written by `.venv/bin/python -m tests.conformance tests/conformance` (tests/conformance.py says what
// each key means). CLIP_ONNX_VECTORS names another vectors.json. Every path in it is relative to its
// folder: `at` resolves one.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const EXAMPLE = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const VECTORS = path.resolve(process.env.CLIP_ONNX_VECTORS || path.join(EXAMPLE, "..", "..", "tests", "conformance", "vectors.json"));
export const ROOT = path.dirname(VECTORS);
export const vectors = JSON.parse(readFileSync(VECTORS, "utf8"));
// the artifact's layout this code reads (tests/conformance.py VERSION)
if (vectors.version !== 1) throw new Error(`${VECTORS} is version ${vectors.version}; these suites read version 1`);

export const at = (relative) => path.join(ROOT, relative);
// The export every suite runs (tiny-ViT in fp16), as an absolute folder.
export const EXPORT = at(vectors.exports[0].folder);

// The SHA-256 the artifact gives pixels: of the float32 values' little-endian bytes, as Python hashes them.
export const pixelsSha256 = (values) => createHash("sha256")
  .update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest("hex");

// A little-endian binary file of the vectors as a typed array (a copy, so aligned).
export const read = (file, Type) => new Type(new Uint8Array(readFileSync(at(file))).buffer);
