// The integrity check: the files a graph needs (manifest.json's `graphs.<graph>.files`) are checked before
// use, tokenizer.json and preprocess.json by loadModel when they are there, each graph's files on its
// first use (encodeImage, encodeText, the CLI); a folder whose needed files differ from manifest.json is
// refused, naming the file in one line; an untouched copy loads. Then preprocess.json's check: a rule
// clip.mjs does not implement, does not know or lacks, and a malformed parameter, each refused in one
// line. The kind of each refusal, on the shared table's folders, is bad-inputs.test.mjs's; here the exact
// messages, the CLI and the options. Every altered export is a scratch copy (changes.mjs) of the export,
// whose graphs keep their weights in external-data files; the committed files stay as they were.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";

import { RULES, checkFiles, encodeImage, encodeText, loadModel, neededFiles, pixels } from "../clip.mjs";
import { scratchFolder, snapshot } from "./changes.mjs";
import { EXAMPLE, EXPORT, at, pixelsSha256, vectors } from "./vectors.mjs";

const before = snapshot();
const scratch = scratchFolder("clip-node-integrity-");
after(scratch.remove);

const SOURCE = EXPORT;
const MANIFEST = JSON.parse(readFileSync(path.join(SOURCE, "manifest.json"), "utf8"));
// the export's files by the names the exporter gives them (not read from the lists neededFiles reads)
const [NAME, PRECISION] = [MANIFEST.name, MANIFEST.precision];
const [FORWARD, VISUAL, TRANSFORMER] = [`${NAME}.onnx`, `${NAME}_visual.onnx`, `${NAME}_transformer.onnx`];
const [VISUAL_DATA, TRANSFORMER_DATA] = [`${NAME}_visual-${PRECISION}.onnx.data`, `${NAME}_transformer-${PRECISION}.onnx.data`];
const NEEDED = [VISUAL, VISUAL_DATA, "preprocess.json", TRANSFORMER, TRANSFORMER_DATA, "tokenizer.json"];
const AGAIN = "download or export the variant again";
// The folder of the shared table's case `name` (vectors.json `bad_inputs`), its changes made.
const tableFolder = (name) => {
  const found = vectors.bad_inputs.find((c) => c.name === name);
  assert.ok(found, `the vectors' bad_inputs has no case ${JSON.stringify(name)}`);
  return scratch.export(at(found.folder), found.changes);
};

// A copy of SOURCE with `changes` made.
const copy = (changes = []) => scratch.export(SOURCE, changes);

// One byte flipped in the middle of the file: same size, other content.
const flip = (name) => ({ op: "bytes", file: name, flip: statSync(path.join(SOURCE, name)).size >> 1 });
const manifestJson = (keys, ...value) => ({ op: "json", file: "manifest.json", path: keys, ...(value.length ? { value: value[0] } : {}) });

function cli(folder, ...extra) {
  return spawnSync(process.execPath, [path.join(EXAMPLE, "clip.mjs"), folder, "--image", at(vectors.images[0]), "--text", "a cat", ...extra],
    { encoding: "utf8", timeout: 120_000 });
}

// The folder loaded and both encoders run, as the CLI runs them (images, then texts).
async function use(folder, options) {
  const model = await loadModel(folder, options);
  await encodeImage(model, [at(vectors.images[0])]);
  await encodeText(model, ["a cat"]);
  return model;
}

// Using the folder rejects with exactly `message`, and the CLI exits 1 with it as its only output line.
async function refused(folder, message) {
  await assert.rejects(use(folder), (error) => {
    assert.equal(error.message, message);
    return true;
  });
  const result = cli(folder);
  assert.equal(result.status, 1, result.stderr);
  assert.equal(result.stderr, `${message}\n`);
  assert.equal(result.stdout, "");
}

test("the needed files: each graph's files list, the union of several in order, each name once", () => {
  assert.deepEqual(neededFiles(MANIFEST, ["visual", "transformer"]), NEEDED);
  assert.deepEqual(neededFiles(MANIFEST, ["transformer"]), [TRANSFORMER, TRANSFORMER_DATA, "tokenizer.json"]);
  assert.deepEqual(neededFiles(MANIFEST, ["visual", "visual"]), [VISUAL, VISUAL_DATA, "preprocess.json"]);
  // the forward graph reads the encoders' data files
  assert.deepEqual(neededFiles(MANIFEST, ["forward", "visual", "transformer"]),
    [FORWARD, TRANSFORMER_DATA, VISUAL_DATA, "tokenizer.json", "preprocess.json", VISUAL, TRANSFORMER]);
  assert.deepEqual(neededFiles(MANIFEST, []), []);
  // every file the export holds but manifest.json is one some graph needs
  const all = neededFiles(MANIFEST, Object.keys(MANIFEST.graphs));
  assert.deepEqual([...all].sort(), Object.keys(MANIFEST.files).sort());
  assert.throws(() => neededFiles(MANIFEST, ["text"]), { kind: "bad_manifest", message: "manifest.json lists no text graph; export the variant with it" });
  assert.throws(() => neededFiles({}, ["visual"]), { kind: "bad_manifest", message: "manifest.json lists no visual graph; export the variant with it" });
  assert.throws(() => neededFiles({ graphs: {} }, ["toString"]), { kind: "bad_manifest", message: "manifest.json lists no toString graph; export the variant with it" });
  const without = `manifest.json lists no files for the visual graph; ${AGAIN} with this clip-onnx`;
  for (const spec of [{ file: VISUAL }, { file: VISUAL, files: VISUAL }, { file: VISUAL, files: [VISUAL, null] }, { file: VISUAL, external_data: [VISUAL_DATA] }]) {
    assert.throws(() => neededFiles({ graphs: { visual: spec } }, ["visual"]), { kind: "bad_manifest", message: without });
  }
});

test("an untouched copy loads and runs, by the API and the CLI", async () => {
  for (const folder of [copy(), EXPORT]) {
    const model = await use(folder);
    assert.equal(model.manifest.name, MANIFEST.name);
    const result = cli(folder, "--json");
    assert.equal(result.status, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).logits_per_image.length, 1);
  }
});

for (const name of NEEDED) {
  test(`one changed byte in ${name} is refused by the API and the CLI`, async () => {
    const folder = copy([flip(name)]);
    await refused(folder, `${path.join(folder, name)} does not match its SHA-256 in manifest.json: it changed since export; ${AGAIN}`);
  });
}

test("tokenizer.json and preprocess.json are checked by loadModel; a graph's files on the graph's first use, once", async () => {
  for (const name of ["tokenizer.json", "preprocess.json"]) {
    const folder = copy([flip(name)]);
    await assert.rejects(loadModel(folder), { kind: "changed_file", message: `${path.join(folder, name)} does not match its SHA-256 in manifest.json: it changed since export; ${AGAIN}` });
  }
  // a changed visual graph: the folder loads and encodes texts; images are refused, each time
  const visual = copy([flip(VISUAL_DATA)]);
  const model = await loadModel(visual);
  assert.equal((await encodeText(model, ["a cat"])).length, 1);
  const message = `${path.join(visual, VISUAL_DATA)} does not match its SHA-256 in manifest.json: it changed since export; ${AGAIN}`;
  for (let twice = 0; twice < 2; twice++) {
    await assert.rejects(encodeImage(model, [at(vectors.images[0])]), { kind: "changed_file", message });
  }
  // a changed transformer graph: images encode, texts are refused
  const transformer = copy([flip(TRANSFORMER)]);
  const other = await loadModel(transformer);
  assert.equal((await encodeImage(other, [at(vectors.images[0])])).length, 1);
  await assert.rejects(encodeText(other, ["a cat"]), { kind: "changed_file", message: `${path.join(transformer, TRANSFORMER)} does not match its SHA-256 in manifest.json: it changed since export; ${AGAIN}` });
});

test("a file of another size is refused by its size", async () => {
  const folder = copy([{ op: "write", file: "preprocess.json", text: `${readFileSync(path.join(SOURCE, "preprocess.json"), "utf8")} ` }]);
  const bytes = MANIFEST.files["preprocess.json"].bytes;
  await refused(folder, `${path.join(folder, "preprocess.json")} has ${bytes + 1} bytes where manifest.json records ${bytes}: it is incomplete or changed; ${AGAIN}`);
  const name = VISUAL;
  const cut = tableFolder(`${name} cut in half`);
  const graph = JSON.parse(readFileSync(path.join(cut, "manifest.json"), "utf8")).files[name];
  await refused(cut, `${path.join(cut, name)} has ${Math.floor(graph.bytes / 2)} bytes where manifest.json records ${graph.bytes}: it is incomplete or changed; ${AGAIN}`);
});

test("a missing file is refused when it is needed, an external-data file included", async () => {
  for (const name of NEEDED) {
    const folder = copy([{ op: "delete", file: name }]);
    await refused(folder, `${path.join(folder, name)} is missing; ${AGAIN}`);
  }
  const noData = tableFolder(`${VISUAL_DATA} missing`);
  await refused(noData, `${path.join(noData, VISUAL_DATA)} is missing; ${AGAIN}`);
});

test("checkSha256: false and --no-sha256-check skip the check; files no graph needs are never checked", async () => {
  const folder = copy([flip(VISUAL_DATA), flip(TRANSFORMER_DATA)]);
  assert.equal((await use(folder, { checkSha256: false })).manifest.name, MANIFEST.name);
  assert.equal(cli(folder, "--no-sha256-check").status, 0);
  // the forward graph is no encoder's: changed or absent, it is not checked
  const extra = copy([flip(FORWARD), manifestJson(["files", "absent_forward.onnx"], { sha256: "0".repeat(64), bytes: 1 })]);
  await use(extra);
  await use(copy([{ op: "delete", file: FORWARD }]));
});

test("a needed file the manifest does not list, or names outside the folder, is refused", async () => {
  const unlisted = copy([manifestJson(["files", "tokenizer.json"])]);
  await refused(unlisted, `${path.join(unlisted, "tokenizer.json")} is not listed in ${path.join(unlisted, "manifest.json")}; ${AGAIN}`);
  const folder = copy();
  const where = path.join(folder, "manifest.json");
  await assert.rejects(checkFiles(folder, {}, ["tokenizer.json"]), { message: `${path.join(folder, "tokenizer.json")} is not listed in ${where}; ${AGAIN}` });
  for (const name of ["../manifest.json", "sub/tokenizer.json", 7, null]) {
    await assert.rejects(checkFiles(folder, { files: { [name]: MANIFEST.files["tokenizer.json"] } }, [name]),
      { message: `${where} names ${JSON.stringify(name)}, not a file of the folder; ${AGAIN}` });
  }
});

test("a needed name that is a folder, or under a file, is refused", async () => {
  const folder = copy();
  mkdirSync(path.join(folder, "sub"));
  const facts = { sha256: "0".repeat(64), bytes: 4096 };
  await assert.rejects(checkFiles(folder, { files: { sub: facts } }, ["sub"]), { message: `${path.join(folder, "sub")} is not a file; ${AGAIN}` });
  const file = path.join(folder, "tokenizer.json");
  await assert.rejects(checkFiles(file, { files: { x: facts } }, ["x"]), { message: `${path.join(file, "x")} cannot be read (ENOTDIR); ${AGAIN}` });
});

test("a folder without a readable manifest.json is one line", async () => {
  const empty = path.join(scratch.folder, "empty");
  mkdirSync(empty);
  await assert.rejects(loadModel(empty), { message: `${empty} has no manifest.json; point at a folder written by \`clip-onnx export\`` });
  // the reason is JSON.parse's message, its first line only (newer V8 quote the text, newlines included)
  const text = "{ not\n json";
  const bad = copy([{ op: "write", file: "manifest.json", text }]);
  const reason = (() => { try { JSON.parse(text); } catch (error) { return error.message.split("\n")[0]; } })();
  assert.ok(reason.length > 1);
  await assert.rejects(loadModel(bad), { message: `${path.join(bad, "manifest.json")} cannot be read (${reason}); ${AGAIN}` });
});

test("a manifest whose format_version this consumer does not read is refused, the CLI included", async () => {
  for (const version of [999, 1, "2", undefined]) {
    const folder = copy([version === undefined ? manifestJson(["format_version"]) : manifestJson(["format_version"], version)]);
    const message = `${path.join(folder, "manifest.json")}: format_version ${JSON.stringify(version ?? null)}, but this clip.mjs reads 2; `
      + "update clip.mjs from the release that made the files";
    await assert.rejects(loadModel(folder, { checkSha256: false }), { message });
    const result = cli(folder);
    assert.equal(result.status, 1);
    assert.deepEqual(result.stderr.trim().split("\n"), [message]);
  }
});

// A copy whose preprocess.json is `change`d (an object to edit, or one returned in its place), with its
// size and SHA-256 in manifest.json to match, so only the content is at fault.
function withPreprocess(change) {
  const data = JSON.parse(readFileSync(path.join(SOURCE, "preprocess.json"), "utf8"));
  const text = JSON.stringify(change(data) ?? data);
  return copy([{ op: "write", file: "preprocess.json", text }, { op: "rehash", file: "preprocess.json" }]);
}

test("the rules clip.mjs implements are the ones Python writes, and an untouched copy loads them", async () => {
  const written = JSON.parse(readFileSync(path.join(SOURCE, "preprocess.json"), "utf8"));
  assert.deepEqual(written.rules, RULES);
  assert.equal(Object.keys(RULES).length, 20);
  assert.deepEqual((await loadModel(copy())).preprocess.rules, RULES);
});

test("a rule of another identifier, an unknown rule and a lacking one are refused in one line, the CLI included", async () => {
  const update = "update clip.mjs from the release that made the files";
  const cases = [
    [(d) => { d.rules.resize_filter = "lanczos"; }, (file) => `${file}: rule resize_filter is "lanczos", which clip.mjs does not `
      + `implement (it implements "pillow_bicubic_antialiased"); ${update}`],
    [(d) => { d.rules.dtype = 16; }, (file) => `${file}: rule dtype is 16, which clip.mjs does not implement (it implements "float32"); ${update}`],
    [(d) => { d.rules.foo = "bar"; }, (file) => `${file}: rule "foo" is not one clip.mjs knows; ${update}`],
    [(d) => { d.rules = { "a\nb": "x", ...d.rules }; }, (file) => `${file}: rule "a\\nb" is not one clip.mjs knows; ${update}`],
    [(d) => { d.rules = { ...d.rules, toString: "x" }; }, (file) => `${file}: rule "toString" is not one clip.mjs knows; ${update}`],
    [(d) => { delete d.rules.resize_filter; }, (file) => `${file} lacks rule resize_filter; export the variant again with a clip-onnx that writes it`],
    [(d) => { d.rules = {}; }, (file) => `${file} lacks rule orientation; export the variant again with a clip-onnx that writes it`],
  ];
  for (const [change, message] of cases) {
    const folder = withPreprocess(change);
    const expected = message(path.join(folder, "preprocess.json"));
    await assert.rejects(loadModel(folder), { kind: "unsupported_format", message: expected });
    await refused(folder, expected);
  }
});

test("a preprocess.json of malformed parameters is bad_manifest, one line naming the key", async () => {
  const three = "3 finite numbers, one per RGB channel";
  const cases = [
    [() => [], "the file", "a JSON object"],
    [(d) => { d.rules = ["orientation"]; }, "rules", "an object of rule identifiers"],
    [(d) => { delete d.rules; }, "rules", "an object of rule identifiers"],
    [(d) => { d.resolution = 0; }, "resolution", "a positive integer"],
    [(d) => { d.resolution = 224.5; }, "resolution", "a positive integer"],
    [(d) => { d.resolution = "224"; }, "resolution", "a positive integer"],
    [(d) => { d.mean = d.mean.slice(0, 2); }, "mean", three],
    [(d) => { d.mean = [...d.mean, 0.5]; }, "mean", three],
    [(d) => { d.mean[1] = "0.45"; }, "mean", three],
    [(d) => { d.mean = { 0: 0.5, 1: 0.5, 2: 0.5, length: 3 }; }, "mean", three],
    [(d) => { d.std[2] = 0; }, "std", `${three}, none zero`],
    [(d) => { d.std[0] = true; }, "std", `${three}, none zero`],
    [(d) => { delete d.std; }, "std", `${three}, none zero`],
    [(d) => { delete d.input; }, "input.formats", "an object of image formats"],
    [(d) => { d.input.formats = ["PNG"]; }, "input.formats", "an object of image formats"],
    [(d) => { d.input.formats.PNG = "every kind"; }, "input.formats", "an object of image formats"],
    [(d) => { d.input.max_pixels = 0; }, "input.max_pixels", "a positive integer"],
    [(d) => { delete d.input.max_pixels; }, "input.max_pixels", "a positive integer"],
    [(d) => { d.input.formats.BMP.bits = 24; }, "input.formats.BMP.bits", "a list"],
    [(d) => { d.input.formats.TIFF.compression = "raw"; }, "input.formats.TIFF.compression", "a list"],
  ];
  for (const [change, key, should] of cases) {
    const folder = withPreprocess(change);
    const expected = `${path.join(folder, "preprocess.json")}: ${key} must be ${should}; ${AGAIN}`;
    await assert.rejects(loadModel(folder), { kind: "bad_manifest", message: expected });
  }
  const notJson = copy([{ op: "write", file: "preprocess.json", text: "{ not json" }]);
  await assert.rejects(loadModel(notJson, { checkSha256: false }), (error) => {
    assert.equal(error.kind, "bad_manifest");
    assert.ok(error.message.startsWith(`${path.join(notJson, "preprocess.json")} cannot be read (`), error.message);
    return true;
  });
});

test("resolution, mean and std are preprocess.json's: other values give the pixels they define", async () => {
  const [mean, std] = [[0.25, 0.5, 0.75], [0.5, 0.25, 2]];
  const folder = withPreprocess((d) => Object.assign(d, { resolution: 32, mean, std }));
  const model = await loadModel(folder);
  const images = vectors.images.map(at);
  const got = await pixels(model, images);
  // Python's pixels at R = 32 (the export's own mean and std; clip.mjs's hash to them, so they are
  // Python's) give each sample's 0..255 value back; normalised with these mean and std in float32, as
  // pixels() does, they must be clip.mjs's bit for bit
  const size = 3 * 32 * 32;
  const defaultModel = await loadModel(SOURCE);
  const python = await pixels({ ...defaultModel, preprocess: { ...defaultModel.preprocess, resolution: 32 } }, images);
  const hashes = images.map((_, n) => pixelsSha256(python.subarray(n * size, (n + 1) * size)));
  assert.deepEqual(hashes, vectors.pixels["32"]);
  const defaults = JSON.parse(readFileSync(path.join(SOURCE, "preprocess.json"), "utf8"));
  assert.equal(got.length, python.length);
  let differ = 0;
  for (let k = 0; k < got.length; k++) {
    const c = Math.floor((k % size) / (32 * 32));
    const value = Math.round((python[k] * defaults.std[c] + defaults.mean[c]) * 255);
    const want = Math.fround(Math.fround(Math.fround(value / 255) - Math.fround(mean[c])) / Math.fround(std[c]));
    if (got[k] !== want) differ++;
  }
  assert.equal(differ, 0);
});

test("the committed files are as they were: every change went to a scratch copy", () => {
  assert.deepEqual(snapshot(), before);
});
