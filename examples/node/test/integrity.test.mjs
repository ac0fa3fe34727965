// The integrity check: loadModel (and the CLI) refuse a folder whose needed files differ from
// manifest.json, naming the file in one line; an untouched copy loads. The kind of each refusal, on the
// shared table's folders, is bad-inputs.test.mjs's; here the exact messages, the CLI and the options.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";

import { checkFiles, loadModel, neededFiles } from "../clip.mjs";
import { EXAMPLE, vectors } from "./vectors.mjs";

// An export whose visual graph keeps its weights in `<file>.data`, the manifest updated to match.
const SOURCE = vectors.node.external_data;
const MANIFEST = JSON.parse(readFileSync(path.join(SOURCE, "manifest.json"), "utf8"));
const VISUAL = MANIFEST.graphs.visual.file;
const NEEDED = [VISUAL, `${VISUAL}.data`, MANIFEST.graphs.transformer.file, "tokenizer.json", "preprocess.json"];
const AGAIN = "download or export the variant again";
// The folder of the shared table's case `name` (tests/vectors.py `bad_inputs`).
const tableFolder = (name) => {
  const found = vectors.bad_inputs.find((c) => c.name === name);
  assert.ok(found, `the vectors' bad_inputs has no case ${JSON.stringify(name)}`);
  return found.folder;
};

const scratch = mkdtempSync(path.join(os.tmpdir(), "clip-node-integrity-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

let copies = 0;
function copy(change = () => {}) {
  const folder = path.join(scratch, String(copies++));
  cpSync(SOURCE, folder, { recursive: true });
  change(folder);
  return folder;
}

// One byte flipped in the middle of the file: same size, other content.
function flip(file) {
  const bytes = readFileSync(file);
  bytes[bytes.length >> 1] ^= 0x01;
  writeFileSync(file, bytes);
}

function cli(folder, ...extra) {
  return spawnSync(process.execPath, [path.join(EXAMPLE, "clip.mjs"), folder, "--image", vectors.images[0], "--text", "a cat", ...extra],
    { encoding: "utf8", timeout: 120_000 });
}

// loadModel rejects with exactly `message`, and the CLI exits 1 with it as its only output line.
async function refused(folder, message) {
  await assert.rejects(loadModel(folder), (error) => {
    assert.equal(error.message, message);
    return true;
  });
  const result = cli(folder);
  assert.equal(result.status, 1, result.stderr);
  assert.equal(result.stderr, `${message}\n`);
  assert.equal(result.stdout, "");
}

test("the needed files: each graph's file and external data, tokenizer.json, preprocess.json", () => {
  assert.deepEqual(neededFiles(MANIFEST, ["visual", "transformer"]), NEEDED);
  assert.deepEqual(neededFiles(MANIFEST, ["transformer"]), [MANIFEST.graphs.transformer.file, "tokenizer.json", "preprocess.json"]);
  assert.deepEqual(neededFiles(MANIFEST, ["visual", "visual"]), [VISUAL, `${VISUAL}.data`, "tokenizer.json", "preprocess.json"]);
  assert.throws(() => neededFiles(MANIFEST, ["forward"]), { message: "manifest.json lists no forward graph; export the variant with it" });
  assert.throws(() => neededFiles({}, ["visual"]), { message: "manifest.json lists no visual graph; export the variant with it" });
});

test("an untouched copy loads, with and without external data, and runs", async () => {
  for (const folder of [copy(), vectors.exports[0].folder]) {
    const model = await loadModel(folder);
    assert.equal(model.manifest.name, MANIFEST.name);
    const result = cli(folder, "--json");
    assert.equal(result.status, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).logits_per_image.length, 1);
  }
});

for (const name of NEEDED) {
  test(`one changed byte in ${name} is refused by loadModel and the CLI`, async () => {
    const folder = copy((at) => flip(path.join(at, name)));
    await refused(folder, `${path.join(folder, name)} does not match its SHA-256 in manifest.json: it changed since export; ${AGAIN}`);
  });
}

test("a file of another size is refused by its size", async () => {
  const folder = copy((at) => appendFileSync(path.join(at, "preprocess.json"), " "));
  const bytes = MANIFEST.files["preprocess.json"].bytes;
  await refused(folder, `${path.join(folder, "preprocess.json")} has ${bytes + 1} bytes where manifest.json records ${bytes}: it is incomplete or changed; ${AGAIN}`);
  const name = `${path.basename(vectors.exports[0].folder)}_visual.onnx`;
  const cut = tableFolder(`${name} cut in half`);
  const graph = JSON.parse(readFileSync(path.join(cut, "manifest.json"), "utf8")).files[name];
  await refused(cut, `${path.join(cut, name)} has ${Math.floor(graph.bytes / 2)} bytes where manifest.json records ${graph.bytes}: it is incomplete or changed; ${AGAIN}`);
});

test("a missing file is refused, an external-data file included", async () => {
  const folder = copy((at) => rmSync(path.join(at, "preprocess.json")));
  await refused(folder, `${path.join(folder, "preprocess.json")} is missing; ${AGAIN}`);
  const noData = tableFolder("external data missing");
  const visual = JSON.parse(readFileSync(path.join(noData, "manifest.json"), "utf8")).graphs.visual.file;
  await refused(noData, `${path.join(noData, `${visual}.data`)} is missing; ${AGAIN}`);
});

test("checkSha256: false and --no-sha256-check skip the check; files no graph needs are never checked", async () => {
  const folder = copy((at) => flip(path.join(at, `${VISUAL}.data`)));
  assert.equal((await loadModel(folder, { checkSha256: false })).manifest.name, MANIFEST.name);
  assert.equal(cli(folder, "--no-sha256-check").status, 0);
  const extra = copy((at) => {
    const manifest = { ...MANIFEST, files: { ...MANIFEST.files, "absent_forward.onnx": { sha256: "0".repeat(64), bytes: 1 } } };
    writeFileSync(path.join(at, "manifest.json"), JSON.stringify(manifest));
  });
  await loadModel(extra);
});

test("a needed file the manifest does not list, or names outside the folder, is refused", async () => {
  const unlisted = copy((at) => {
    const { "tokenizer.json": _, ...files } = MANIFEST.files;
    writeFileSync(path.join(at, "manifest.json"), JSON.stringify({ ...MANIFEST, files }));
  });
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
  const folder = copy((at) => mkdirSync(path.join(at, "sub")));
  const facts = { sha256: "0".repeat(64), bytes: 4096 };
  await assert.rejects(checkFiles(folder, { files: { sub: facts } }, ["sub"]), { message: `${path.join(folder, "sub")} is not a file; ${AGAIN}` });
  const file = path.join(folder, "tokenizer.json");
  await assert.rejects(checkFiles(file, { files: { x: facts } }, ["x"]), { message: `${path.join(file, "x")} cannot be read (ENOTDIR); ${AGAIN}` });
});

test("a folder without a readable manifest.json is one line", async () => {
  const empty = path.join(scratch, "empty");
  mkdirSync(empty);
  await assert.rejects(loadModel(empty), { message: `${empty} has no manifest.json; point at a folder written by \`clip-onnx export\`` });
  // the reason is JSON.parse's message, its first line only (newer V8 quote the text, newlines included)
  const text = "{ not\n json";
  const bad = copy((at) => writeFileSync(path.join(at, "manifest.json"), text));
  const reason = (() => { try { JSON.parse(text); } catch (error) { return error.message.split("\n")[0]; } })();
  assert.ok(reason.length > 1);
  await assert.rejects(loadModel(bad), { message: `${path.join(bad, "manifest.json")} cannot be read (${reason}); ${AGAIN}` });
});

test("a manifest whose format_version this consumer does not read is refused, the CLI included", async () => {
  for (const version of [999, "1", undefined]) {
    const folder = copy((at) => {
      const data = JSON.parse(readFileSync(path.join(at, "manifest.json"), "utf8"));
      data.format_version = version;
      writeFileSync(path.join(at, "manifest.json"), JSON.stringify(data));
    });
    const message = `${path.join(folder, "manifest.json")}: format_version ${JSON.stringify(version ?? null)}, but this clip.mjs reads 1; `
      + "update clip.mjs from the release that made the files";
    await assert.rejects(loadModel(folder, { checkSha256: false }), { message });
    const result = cli(folder);
    assert.equal(result.status, 1);
    assert.deepEqual(result.stderr.trim().split("\n"), [message]);
  }
});
