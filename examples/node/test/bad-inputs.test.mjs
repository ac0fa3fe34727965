// The shared table of bad inputs (vectors.json `bad_inputs`, tests/conformance.py) through loadModel,
// encodeImage and encodeText: each case is a ClipError of the case's kind, in one line naming the input
// at fault, as the Python runtime (tests/test_bad_inputs.py) and the Rust crate raise for the same case.
// A case's folder is the export with its `changes` made on a scratch copy (changes.mjs). The table's
// command-line cases run `clip-onnx classify`, which Python and Rust have and clip.mjs has not;
// clip.mjs's own command line exits 2 on a usage error, 1 on any other, one line each. Beyond the table:
// every manifest key clip.mjs reads (a graph's `files` list included), the files `checkSha256: false`
// leaves to onnxruntime and Tokenizers.js, and empty inputs. The committed files stay as they were.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";

import { ClipError, ERROR_KINDS, encodeImage, encodeText, loadModel } from "../clip.mjs";
import { scratchFolder, snapshot } from "./changes.mjs";
import { EXAMPLE, EXPORT, at, vectors } from "./vectors.mjs";

const before = snapshot();
const table = vectors.bad_inputs;
const api = table.filter((c) => c.call !== "cli");
const scratch = scratchFolder("clip-node-bad-inputs-");
after(scratch.remove);

// The case's folder: the one named, or a scratch copy of it with the case's changes made ("absent-folder"
// does not exist, and is used as it is).
const folderOf = (c) => (c.changes.length ? scratch.export(at(c.folder), c.changes) : at(c.folder));

// The case's call through the API, after loading its folder with the SHA-256 check on (texts untruncated).
async function run(c) {
  const model = await loadModel(folderOf(c));
  if (c.call === "encode_image") await encodeImage(model, c.images.map(at));
  if (c.call === "encode_text") await encodeText(model, c.texts);
}

// What is wrong with the error a case gave (none, another kind, a message not naming the input or of
// several lines), or null if it is the case's.
function mismatch(c, error) {
  if (error === undefined) return "no error";
  if (!(error instanceof ClipError)) return `not a ClipError: ${error?.stack ?? error}`;
  if (error.kind !== c.kind) return `kind ${error.kind}, not ${c.kind}: ${error.message}`;
  if (!error.message.includes(c.names)) return `does not name ${JSON.stringify(c.names)}: ${error.message}`;
  if (error.message.includes("\n")) return `more than one line: ${JSON.stringify(error.message)}`;
  return null;
}

test("the vectors' error kinds are clip.mjs's, and the table holds every one but invalid_input", () => {
  assert.deepEqual(vectors.error_kinds, ERROR_KINDS);
  assert.deepEqual(new Set(table.map((c) => c.kind)), new Set(ERROR_KINDS.filter((kind) => kind !== "invalid_input")));
  assert.throws(() => new ClipError("x", "no_such_kind"), TypeError);
  assert.equal(new ClipError("x").kind, "invalid_input");
});

test("each API case of the table is a ClipError of its kind, in one line naming the input", async (t) => {
  assert.ok(api.length > 0, "the vectors hold no API case of bad_inputs");
  const wrong = {};
  for (const c of api) {
    let caught;
    try {
      await run(c);
    } catch (error) {
      caught = error;
    }
    const why = mismatch(c, caught);
    if (why) wrong[c.name] = why;
  }
  assert.deepEqual(wrong, {});
  t.diagnostic(`${api.length} bad-input cases ran, 0 differ, 0 skipped; ${table.length - api.length} command-line cases are Python's and Rust's`);
});

// clip.mjs's own command line on `args`: exit status, stderr lines, stdout.
function cli(...args) {
  const result = spawnSync(process.execPath, [path.join(EXAMPLE, "clip.mjs"), ...args], { encoding: "utf8", timeout: 120_000 });
  return { status: result.status, lines: result.stderr.trim().split("\n"), stdout: result.stdout };
}

test("the command line: a usage error exits 2, any other ClipError 1, each one line on stderr", () => {
  const folder = EXPORT;
  const image = at(vectors.images[0]);
  const usage = [[], [folder, "--image", image], [folder, "--text", "a cat"], [folder, folder, "--image", image, "--text", "a cat"],
    [folder, "--image", image, "--text", "a cat", "--top", "1"], [folder, "--image"]];
  for (const args of usage) {
    const { status, lines, stdout } = cli(...args);
    assert.deepEqual([status, lines.length, stdout], [2, 1, ""], `${args.join(" ")}: ${lines.join("\n")}`);
    assert.match(lines[0], /usage: node clip\.mjs FOLDER --image/);
  }
  const format = vectors.bad_inputs.find((c) => c.call === "load" && c.kind === "unsupported_format");
  const absent = vectors.bad_inputs.find((c) => c.call === "encode_image" && c.kind === "missing_file" && !c.changes.length);
  for (const [where, names] of [[folderOf(format), format.names], [folder, absent.names]]) {
    const { status, lines, stdout } = cli(where, "--image", at(absent.images[0]), "--text", "a cat");
    assert.deepEqual([status, lines.length, stdout], [1, 1, ""], lines.join("\n"));
    assert.ok(lines[0].includes(names), lines[0]);
  }
});

const VISUAL = JSON.parse(readFileSync(path.join(EXPORT, "manifest.json"), "utf8")).graphs.visual.file;
const manifest = (keys, ...value) => ({ op: "json", file: "manifest.json", path: keys, ...(value.length ? { value: value[0] } : {}) });

test("beyond the table: every key clip.mjs reads, and files { checkSha256: false } leaves unchecked", async () => {
  const cases = [
    ["bad_manifest", "tokenizer.file", [manifest(["tokenizer", "file"])]],
    ["bad_manifest", "preprocessing", [manifest(["preprocessing"], "preprocess.json")]],
    ["bad_manifest", "logit_scale.exp", [manifest(["logit_scale", "exp"])]],
    ["bad_manifest", "graphs, architecture", [manifest(["graphs"]), manifest(["architecture"])]],
    ["bad_manifest", "transformer graph", [manifest(["graphs", "transformer"])]],
    ["bad_manifest", "files for the visual graph", [manifest(["graphs", "visual", "files"])]],
    ["bad_manifest", "files for the transformer graph", [manifest(["graphs", "transformer", "files"], ["tokenizer.json", 7])]],
    ["missing_file", "_visual.onnx", [{ op: "delete", file: VISUAL }]],
    ["missing_file", "tokenizer.json", [{ op: "delete", file: "tokenizer.json" }]],
    ["invalid_input", "_visual.onnx", [{ op: "write", file: VISUAL, text: "not a graph" }]],
    ["invalid_input", "tokenizer.json", [{ op: "write", file: "tokenizer.json", text: "{}" }]],
  ];
  const wrong = {};
  for (const [kind, names, changes] of cases) {
    let caught;
    // a graph's files are its session's, made on the graph's first use: both encoders run after loading
    await loadModel(scratch.export(EXPORT, changes), { checkSha256: false })
      .then(async (model) => {
        await encodeImage(model, [at(vectors.images[0])]);
        await encodeText(model, ["a cat"]);
      })
      .catch((error) => { caught = error; });
    const why = mismatch({ kind, names }, caught);
    if (why) wrong[`${kind} ${names}`] = why;
  }
  assert.deepEqual(wrong, {});
});

test("no images and no texts are no embeddings, not an error", async () => {
  const model = await loadModel(EXPORT);
  assert.deepEqual([await encodeImage(model, []), await encodeText(model, [])], [[], []]);
});

test("the committed files are as they were: every change went to a scratch copy", () => {
  assert.deepEqual(snapshot(), before);
});
