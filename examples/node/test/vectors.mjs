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
if (vectors.version !== 2) throw new Error(`${VECTORS} is version ${vectors.version}; these suites read version 2`);

export const at = (relative) => path.join(ROOT, relative);
// The export every suite runs (tiny-ViT in fp16), as an absolute folder.
export const EXPORT = at(vectors.exports[0].folder);

// The SHA-256 the artifact gives pixels: of the float32 values' little-endian bytes, as Python hashes them.
export const pixelsSha256 = (values) => createHash("sha256")
  .update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest("hex");

// A little-endian binary file of the vectors as a typed array (a copy, so aligned).
export const read = (file, Type) => new Type(new Uint8Array(readFileSync(at(file))).buffer);

const dot = (a, b) => a.reduce((sum, x, k) => sum + x * b[k], 0);
export const cosine = (a, b) => dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));

// The rows of `got` outside the export's tolerance (`reference`: an entry of `exports`, its `min_cosine`
// and `max_relative`) of Python's rows in `file` ([N, D] float32), each named by `names`: each row's
// cosine at least min_cosine, its largest difference at most max_relative of the reference's largest value.
export function outsideTolerance(got, file, names, reference) {
  const want = read(file, Float32Array);
  if (want.length % got.length !== 0) throw new Error(`${file} holds ${want.length} values, not rows for ${got.length} inputs`);
  const d = want.length / got.length;
  const wrong = [];
  for (const [n, row] of got.entries()) {
    if (row.length !== d) throw new Error(`${names[n]}: ${row.length} values where ${file} has ${d}`);
    const python = want.subarray(n * d, (n + 1) * d);
    const largest = Math.max(...python.map(Math.abs));
    const difference = Math.max(...row.map((x, k) => Math.abs(x - python[k])));
    const similarity = cosine(row, python);
    if (!(similarity >= reference.min_cosine && difference <= reference.max_relative * largest)) {
      wrong.push(`${names[n]}: cosine ${similarity.toFixed(6)}, largest difference ${difference.toExponential(2)} of ${largest.toExponential(2)}`);
    }
  }
  return wrong;
}
