// download(): a release's files from a Hub at a pinned revision, `{endpoint}/{repo}/resolve/{revision}/
// {precision}/{path}`, each checked against the release's manifest.json before it is kept; and
// downloadRelease(): a variant of the release a package pins (its release table, release.json), each file
// also checked against the table's pin. Every case runs against two Hubs, each serving the conformance
// export released at a tag as `fp32/<file>`, intact, with one byte of its visual graph changed (tampered),
// and with that byte changed and its manifest rewritten to match (moved: only a pin tells it from the
// release): a server in this process (always; it also counts the files fetched, and serves the faults the
// cases below the table need), and the loopback Hub of tests/loopback_hub.py (huggingface_hub's own server
// fake, redirecting graphs and data files to its CDN as huggingface.co does) when CLIP_ONNX_TEST_HUB names
// it: JSON {endpoint, repo, tampered_repo, moved_repo, tag, name, release}, or a file holding it, as
// tests/test_node_example.py serves it (tests/released_hub.py) and the Rust tests read it. Without the
// variable the loopback Hub's cases are skipped, so a bare `npm test` passes offline; the count line says
// how many ran.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";

import { ClipError, download, downloadRelease, embeddedRelease, encodeImage, encodeText, loadModel } from "../clip.mjs";
import { scratchFolder, snapshot } from "./changes.mjs";
import { EXAMPLE, EXPORT, at, outsideTolerance, vectors } from "./vectors.mjs";

const before = snapshot();
const scratch = scratchFolder("clip-node-download-");
after(scratch.remove);

const MANIFEST = JSON.parse(readFileSync(path.join(EXPORT, "manifest.json"), "utf8"));
const [NAME, PRECISION] = [MANIFEST.name, MANIFEST.precision];
const VISUAL = `${NAME}_visual.onnx`;
const TEXT_ONLY = ["manifest.json", `${NAME}_transformer.onnx`, `${NAME}_transformer-${PRECISION}.onnx.data`, "tokenizer.json"].sort();
const VISUAL_ONLY = ["manifest.json", VISUAL, `${NAME}_visual-${PRECISION}.onnx.data`, "preprocess.json"].sort();
const EVERY = ["manifest.json", ...readdirSync(EXPORT).filter((name) => name !== "manifest.json")].sort();
const TAG = "v1.0.0";
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
// The export's visual graph with its last byte changed, as tests/released_hub.py changes it.
const flipped = (bytes) => Buffer.concat([bytes.subarray(0, -1), Buffer.from([bytes.at(-1) ^ 1])]);

// The release table a package would pin for the export released at `repo` (tests/released_hub.py's
// `release`, release/table.py's build): its manifest's bytes and every file it lists, under `fp32/`.
function releaseOf(repo) {
  const manifest = readFileSync(path.join(EXPORT, "manifest.json"));
  const files = { "fp32/manifest.json": { sha256: sha256(manifest), bytes: manifest.length } };
  for (const [name, facts] of Object.entries(MANIFEST.files)) files[`fp32/${name}`] = { sha256: facts.sha256, bytes: facts.bytes };
  return { format_version: 1, tag: TAG, variants: { [NAME]: { hub_repo: repo, files } } };
}

// A copy of `release` with `change` made to it (a function given the copy).
function edited(release, change) {
  const copy = structuredClone(release);
  change(copy);
  return copy;
}

// The loopback Hub, from CLIP_ONNX_TEST_HUB (JSON, or a path to a JSON file), or null.
function loopbackHub() {
  const given = process.env.CLIP_ONNX_TEST_HUB;
  if (!given) return null;
  const json = given.trimStart().startsWith("{") ? given : readFileSync(given, "utf8");
  const hub = JSON.parse(json);
  for (const key of ["endpoint", "repo", "tampered_repo", "moved_repo", "tag", "name"]) {
    assert.equal(typeof hub[key], "string", `CLIP_ONNX_TEST_HUB lacks ${key}`);
  }
  assert.equal(typeof hub.release, "object", "CLIP_ONNX_TEST_HUB lacks release");
  return hub;
}

// The export released at TAG as `fp32/<file>` by a server of this process: org/intact, org/tampered (the
// visual graph's last byte changed, as tests/released_hub.py changes it), org/moved (that, and its
// manifest's SHA-256 of the graph changed to match), org/private (only with
// `Authorization: Bearer secret`), org/longer and org/shorter (preprocess.json a byte longer or shorter
// than its manifest says), org/not-json (a manifest that is not JSON), org/escape (a manifest naming a
// file outside the folder). Graphs and data files are
// redirected to /cdn/, as the Hub sends them to its CDN. `fetched` lists the files served, by repo.
async function localHub() {
  const fetched = [];
  const served = (repo, name) => {
    let bytes = readFileSync(path.join(EXPORT, name));
    if ((repo === "org/tampered" || repo === "org/moved") && name === VISUAL) bytes = flipped(bytes);
    if (repo === "org/moved" && name === "manifest.json") {
      const manifest = JSON.parse(bytes);
      manifest.files[VISUAL].sha256 = sha256(flipped(readFileSync(path.join(EXPORT, VISUAL))));
      bytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    }
    if (repo === "org/longer" && name === "preprocess.json") bytes = Buffer.concat([bytes, Buffer.from(" ")]);
    if (repo === "org/shorter" && name === "preprocess.json") bytes = bytes.subarray(0, -1);
    if (repo === "org/not-json" && name === "manifest.json") bytes = Buffer.from("{ not json");
    if (repo === "org/escape" && name === "manifest.json") {
      const manifest = JSON.parse(bytes);
      manifest.graphs.transformer.files.unshift("../escaped.onnx");
      manifest.files["../escaped.onnx"] = manifest.files[VISUAL];
      bytes = Buffer.from(JSON.stringify(manifest));
    }
    return bytes;
  };
  const server = createServer((request, response) => {
    const url = new URL(request.url, "http://localhost");
    const resolve = url.pathname.match(/^\/(org\/[^/]+)\/resolve\/([^/]+)\/fp32\/([^/]+)$/);
    const cdn = url.pathname.match(/^\/cdn\/(org\/[^/]+)\/([^/]+)$/);
    const [repo, revision, name] = resolve ? [resolve[1], decodeURIComponent(resolve[2]), decodeURIComponent(resolve[3])]
      : cdn ? [cdn[1], TAG, decodeURIComponent(cdn[2])] : [];
    const repos = ["org/intact", "org/tampered", "org/moved", "org/private", "org/longer", "org/shorter", "org/not-json", "org/escape"];
    if (!repos.includes(repo) || revision !== TAG || !existsSync(path.join(EXPORT, name)) || name.includes("..")) {
      response.writeHead(404, { "content-type": "text/plain" }).end("Entry not found");
      return;
    }
    if (repo === "org/private" && resolve && request.headers.authorization !== "Bearer secret") {
      response.writeHead(401, { "content-type": "text/plain" }).end("Invalid credentials");
      return;
    }
    if (resolve && /\.(onnx|data)$/.test(name)) {
      response.writeHead(302, { location: `/cdn/${repo}/${encodeURIComponent(name)}` }).end();
      return;
    }
    fetched.push(`${repo}/${name}`);
    const bytes = served(repo, name);
    response.writeHead(200, { "content-type": "application/octet-stream", "content-length": bytes.length });
    // in pieces, as a large file comes
    for (let start = 0; start < bytes.length; start += 65536) response.write(bytes.subarray(start, start + 65536));
    response.end();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`, repo: "org/intact", tampered_repo: "org/tampered", moved_repo: "org/moved",
    tag: TAG, name: NAME, release: releaseOf("org/intact"), fetched,
  };
}

const HUB = loopbackHub();
const LOCAL = await localHub();
const SKIP = HUB ? false : "CLIP_ONNX_TEST_HUB is not set: tests/test_node_example.py serves the loopback Hub";
const SOURCES = [["a server of this process", LOCAL, false], ["the loopback Hub", HUB ?? {}, SKIP]];
const ran = { count: 0, skipped: 0 };
const HUB_CASES = 7; // the cases of each source below

// Python's text embeddings of the whole folder (truncated embedded_texts), and the whole folder's own.
const texts = vectors.embedded_texts;
const full = await loadModel(EXPORT);
const fullTexts = await encodeText(full, texts, { truncate: true });
const sorted = (folder) => readdirSync(folder).sort();
const same = (folder, name) => readFileSync(path.join(folder, name)).equals(readFileSync(path.join(EXPORT, name)));

// download() rejects with a ClipError of `kind`, one line, containing every one of `parts`.
const refused = (promise, kind, ...parts) => refusedBy(ClipError, promise, kind, ...parts);
// The same, for a copy of clip.mjs, whose ClipError is its own class.
async function refusedBy(Class, promise, kind, ...parts) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof Class, error?.stack ?? String(error));
    assert.equal(error.kind, kind, error.message);
    assert.ok(!error.message.includes("\n"), JSON.stringify(error.message));
    for (const part of parts) assert.ok(error.message.includes(part), `${error.message} does not say ${part}`);
    return true;
  });
}

// A copy of the package in `folder` carrying `table` as its release.json (text as it is, an object as JSON),
// as the release workflow writes it before publishing: clip.mjs beside it, node_modules linked. Returns
// its clip.mjs.
function packageWith(folder, table) {
  mkdirSync(folder, { recursive: true });
  copyFileSync(path.join(EXAMPLE, "clip.mjs"), path.join(folder, "clip.mjs"));
  symlinkSync(path.join(EXAMPLE, "node_modules"), path.join(folder, "node_modules"), "dir");
  writeFileSync(path.join(folder, "release.json"), typeof table === "string" ? table : JSON.stringify(table));
  return path.join(folder, "clip.mjs");
}

// clip.mjs's command line (or `script`'s, a copy of it): its exit status, stdout and stderr. Not
// spawnSync, which would stop this process's server from answering.
const cli = (...args) => cliOf(path.join(EXAMPLE, "clip.mjs"), ...args);
function cliOf(script, ...args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { timeout: 120_000 });
    const [stdout, stderr] = [[], []];
    child.stdout.on("data", (chunk) => stdout.push(chunk));
    child.stderr.on("data", (chunk) => stderr.push(chunk));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() }));
  });
}

for (const [where, hub, skip] of SOURCES) {
  // a case of this source, counted for the loopback Hub's count line
  const hubTest = (name, body) => test(`${where}: ${name}`, { skip }, async () => {
    await body();
    if (hub !== LOCAL) ran.count++;
  });
  if (skip) ran.skipped += HUB_CASES;
  const target = (name) => path.join(scratch.folder, `${where.split(" ").at(-1)}-${name}`);

  hubTest("a text-only download keeps the transformer's files and the manifest, and encodes as the whole folder", async () => {
    const folder = await download({ repo: hub.repo, revision: hub.tag, graphs: ["transformer"], target: target("text"), endpoint: hub.endpoint });
    assert.equal(folder, path.resolve(target("text"), "fp32"));
    assert.deepEqual(sorted(folder), TEXT_ONLY);
    for (const name of TEXT_ONLY) assert.ok(same(folder, name), name);
    const model = await loadModel(folder);
    const got = await encodeText(model, texts, { truncate: true });
    assert.deepEqual(got, fullTexts);
    assert.deepEqual(outsideTolerance(got, vectors.exports[0].text_embeds, texts, vectors.exports[0]), []);
    await refused(encodeImage(model, [at(vectors.images[0])]), "missing_file", VISUAL, "missing");
  });

  hubTest("the default download gets every file, byte for byte, and the folder loads and runs; the CLI's too", async () => {
    const folder = await download({ repo: hub.repo, revision: hub.tag, target: target("all"), endpoint: hub.endpoint });
    assert.deepEqual(sorted(folder), EVERY);
    for (const name of EVERY) assert.ok(same(folder, name), name);
    const model = await loadModel(folder);
    assert.equal((await encodeImage(model, [at(vectors.images[0])])).length, 1);
    assert.deepEqual(await encodeText(model, texts, { truncate: true }), fullTexts);
    const result = await cli("download", hub.repo, "--revision", hub.tag, "-o", target("cli"), "--graphs", "visual", "--endpoint", hub.endpoint);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, `${path.resolve(target("cli"), "fp32")}\n`);
    assert.deepEqual(sorted(result.stdout.trim()), VISUAL_ONLY);
  });

  hubTest("the tampered release is refused naming its visual graph, nothing kept under its name, by the API and the CLI", async () => {
    const into = target("tampered");
    await refused(download({ repo: hub.tampered_repo, revision: hub.tag, target: into, endpoint: hub.endpoint }),
      "changed_file", `${hub.tampered_repo}@${hub.tag}: fp32/${VISUAL} does not match the SHA-256 in its manifest`);
    const left = sorted(path.join(into, "fp32"));
    assert.ok(!left.includes(VISUAL) && !left.includes("manifest.json"), left.join(", "));
    assert.deepEqual(left.filter((name) => name.endsWith(".partial")), []);
    const result = await cli("download", hub.tampered_repo, "--revision", hub.tag, "-o", target("tampered-cli"), "--endpoint", hub.endpoint);
    assert.equal(result.status, 1);
    assert.equal(result.stdout, "");
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.ok(result.stderr.includes(`fp32/${VISUAL} does not match the SHA-256`), result.stderr);
    assert.ok(!existsSync(path.join(target("tampered-cli"), "fp32", VISUAL)));
    // the text graph's files are not the changed one: a text-only download of the same release succeeds
    const text = await download({ repo: hub.tampered_repo, revision: hub.tag, graphs: ["transformer"], target: target("tampered-text"), endpoint: hub.endpoint });
    assert.deepEqual(sorted(text), TEXT_ONLY);
  });

  hubTest("a file already there is kept if it matches (the tampered file is never fetched), replaced if not", async () => {
    const into = target("again");
    const folder = await download({ repo: hub.repo, revision: hub.tag, target: into, endpoint: hub.endpoint });
    assert.equal(await download({ repo: hub.tampered_repo, revision: hub.tag, target: into, endpoint: hub.endpoint }), folder);
    assert.ok(same(folder, VISUAL), "the matching visual graph was replaced");
    // a same-size changed copy of the visual graph where the download puts it is downloaded again
    const bytes = readFileSync(path.join(EXPORT, VISUAL));
    bytes[bytes.length >> 1] ^= 1;
    writeFileSync(path.join(folder, VISUAL), bytes);
    await download({ repo: hub.repo, revision: hub.tag, target: into, endpoint: hub.endpoint });
    assert.ok(same(folder, VISUAL), "the changed visual graph was kept");
    await loadModel(folder).then((model) => encodeImage(model, [at(vectors.images[0])]));
  });

  hubTest("downloadRelease by the release table gets what download at the tag gets, and encodes the same; the CLI by name too", async () => {
    assert.equal(hub.release.variants[hub.name].hub_repo, hub.repo);
    const folder = await downloadRelease({ name: hub.name, target: target("release"), endpoint: hub.endpoint, release: hub.release });
    assert.equal(folder, path.resolve(target("release"), "fp32"));
    const plain = await download({ repo: hub.repo, revision: hub.release.tag, target: target("release-plain"), endpoint: hub.endpoint });
    assert.deepEqual(sorted(folder), sorted(plain));
    assert.deepEqual(sorted(folder), EVERY);
    for (const name of EVERY) assert.ok(same(folder, name), name);
    const [model, reference] = [await loadModel(folder), await loadModel(plain)];
    const image = [at(vectors.images[0])];
    assert.deepEqual(await encodeImage(model, image), await encodeImage(reference, image));
    assert.deepEqual(await encodeText(model, texts, { truncate: true }), fullTexts);
    // a package carrying the table: the CLI downloads by the variant's name, no repo, no revision
    const script = packageWith(target("package"), hub.release);
    const result = await cliOf(script, "download", hub.name, "-o", target("release-cli"), "--graphs", "transformer", "--endpoint", hub.endpoint);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, `${path.resolve(target("release-cli"), "fp32")}\n`);
    assert.deepEqual(sorted(result.stdout.trim()), TEXT_ONLY);
  });

  hubTest("the release moved (its manifest rewritten to match a changed graph) is refused by the pin of fp32/manifest.json, nothing kept; download at the tag accepts it", async () => {
    const moved = edited(hub.release, (table) => { table.variants[hub.name].hub_repo = hub.moved_repo; });
    const into = target("moved");
    const says = `${hub.moved_repo}@${hub.tag}: fp32/manifest.json is not the file this clip-onnx pins for release ${hub.tag}`;
    if (hub === LOCAL) LOCAL.fetched.length = 0;
    await refused(downloadRelease({ name: hub.name, target: into, endpoint: hub.endpoint, release: moved }), "changed_file", says, "tag was moved");
    assert.deepEqual(sorted(path.join(into, "fp32")), []);
    if (hub === LOCAL) assert.deepEqual(LOCAL.fetched, ["org/moved/manifest.json"]);
    // the CLI of a package pinning the intact release, pointed at the moved one: one line, exit 1
    const result = await cliOf(packageWith(target("package-moved"), moved), "download", hub.name, "-o", target("moved-cli"), "--endpoint", hub.endpoint);
    assert.deepEqual([result.status, result.stdout, result.stderr.trim().split("\n").length], [1, "", 1], result.stderr);
    assert.ok(result.stderr.includes(says), result.stderr);
    assert.deepEqual(sorted(path.join(target("moved-cli"), "fp32")), []);
    // its files agree with its own manifest: only the pin refuses it
    const accepted = await download({ repo: hub.moved_repo, revision: hub.tag, target: target("moved-plain"), endpoint: hub.endpoint });
    assert.deepEqual(sorted(accepted), EVERY);
    assert.ok(!same(accepted, VISUAL), "the moved release's visual graph is the intact one");
  });

  hubTest("a file whose pin differs from the manifest's entry (SHA-256, size, or none) is refused naming it, before any file is fetched", async () => {
    const key = `fp32/${VISUAL}`;
    const other = (hex) => (hex[0] === "0" ? "1" : "0") + hex.slice(1);
    const cases = [
      [VISUAL, edited(hub.release, (table) => { table.variants[hub.name].files[key].sha256 = other(table.variants[hub.name].files[key].sha256); })],
      [VISUAL, edited(hub.release, (table) => { table.variants[hub.name].files[key].bytes += 1; })],
      ["tokenizer.json", edited(hub.release, (table) => { delete table.variants[hub.name].files["fp32/tokenizer.json"]; })],
    ];
    for (const [i, [name, release]] of cases.entries()) {
      const into = target(`pin-${i}`);
      if (hub === LOCAL) LOCAL.fetched.length = 0;
      await refused(downloadRelease({ name: hub.name, target: into, endpoint: hub.endpoint, release }), "changed_file",
        `${hub.repo}@${hub.tag}: fp32/${name} is not the file this clip-onnx pins for release ${hub.tag}`);
      assert.deepEqual(sorted(path.join(into, "fp32")), []);
      if (hub === LOCAL) assert.deepEqual(LOCAL.fetched, ["org/intact/manifest.json"]);
    }
    // the text graph's files are pinned as its manifest has them: its download by the same table succeeds
    const text = await downloadRelease({ name: hub.name, graphs: ["transformer"], target: target("pin-text"), endpoint: hub.endpoint, release: cases[0][1] });
    assert.deepEqual(sorted(text), TEXT_ONLY);
  });
}

test("files already there and matching are not fetched; only the files the graphs need are", async () => {
  const into = path.join(scratch.folder, "fetched");
  LOCAL.fetched.length = 0;
  await download({ repo: "org/intact", revision: TAG, graphs: ["transformer"], target: into, endpoint: LOCAL.endpoint });
  assert.deepEqual(LOCAL.fetched.map((name) => name.slice("org/intact/".length)).sort(), TEXT_ONLY);
  LOCAL.fetched.length = 0;
  await download({ repo: "org/intact", revision: TAG, target: into, endpoint: LOCAL.endpoint });
  // the rest: the visual graph's files and the forward graph, whose data files are the encoders'
  assert.deepEqual(LOCAL.fetched.map((name) => name.slice("org/intact/".length)).sort(), [...VISUAL_ONLY, `${NAME}.onnx`].sort());
  LOCAL.fetched.length = 0;
  await download({ repo: "org/intact", revision: TAG, target: into, endpoint: LOCAL.endpoint });
  assert.deepEqual(LOCAL.fetched, ["org/intact/manifest.json"]);
});

test("HF_ENDPOINT and HF_TOKEN are the defaults; the token is sent as a bearer token", async () => {
  const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_TOKEN: process.env.HF_TOKEN };
  try {
    process.env.HF_ENDPOINT = `${LOCAL.endpoint}/`;
    delete process.env.HF_TOKEN;
    const into = path.join(scratch.folder, "private");
    await refused(download({ repo: "org/private", revision: TAG, graphs: ["transformer"], target: into }), "invalid_input",
      `GET ${LOCAL.endpoint}/org/private/resolve/${TAG}/fp32/manifest.json: HTTP 401`, "HF_TOKEN");
    await download({ repo: "org/private", revision: TAG, graphs: ["transformer"], target: into, token: "secret" });
    process.env.HF_TOKEN = "secret";
    assert.deepEqual(sorted(await download({ repo: "org/private", revision: TAG, graphs: ["visual"], target: into })), EVERY.filter(
      (name) => TEXT_ONLY.includes(name) || VISUAL_ONLY.includes(name)));
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
});

test("a file of another size, a manifest not JSON or naming a file outside, an unknown revision or graph: one line each, nothing kept", async () => {
  const into = (name) => path.join(scratch.folder, name);
  const { endpoint } = LOCAL;
  await refused(download({ repo: "org/longer", revision: TAG, target: into("longer"), endpoint }), "changed_file",
    `org/longer@${TAG}: fp32/preprocess.json is longer than the ${MANIFEST.files["preprocess.json"].bytes} bytes its manifest says`);
  await refused(download({ repo: "org/shorter", revision: TAG, target: into("shorter"), endpoint }), "changed_file",
    `org/shorter@${TAG}: fp32/preprocess.json has ${MANIFEST.files["preprocess.json"].bytes - 1} bytes, not the`);
  for (const name of ["longer", "shorter"]) {
    const left = sorted(path.join(into(name), "fp32"));
    assert.ok(!left.includes("preprocess.json") && !left.includes("manifest.json") && !left.some((n) => n.endsWith(".partial")), left.join(", "));
  }
  await refused(download({ repo: "org/not-json", revision: TAG, target: into("not-json"), endpoint }), "bad_manifest",
    `org/not-json@${TAG}: fp32/manifest.json is not JSON`);
  await refused(download({ repo: "org/escape", revision: TAG, target: into("escape"), endpoint }), "bad_manifest",
    `org/escape@${TAG}: fp32/manifest.json names "../escaped.onnx", not a file of the folder`);
  assert.ok(!existsSync(path.join(into("escape"), "escaped.onnx")));
  assert.deepEqual(sorted(path.join(into("escape"), "fp32")), []);
  await refused(download({ repo: "org/intact", revision: "v9", target: into("v9"), endpoint }), "invalid_input",
    `GET ${endpoint}/org/intact/resolve/v9/fp32/manifest.json: HTTP 404`);
  await refused(download({ repo: "org/intact", revision: TAG, graphs: ["text"], target: into("text"), endpoint }), "usage",
    `graphs "text": name each once, from the graphs org/intact@${TAG} has: forward, visual, transformer`);
  await refused(download({ repo: "org/intact", revision: TAG, graphs: ["visual", "visual"], target: into("text"), endpoint }), "usage",
    `graphs "visual", "visual": name each once`);
  assert.deepEqual(sorted(path.join(into("text"), "fp32")), []);
  await refused(download({ repo: "org/intact", revision: TAG, precision: "fp16", target: into("fp16"), endpoint }), "invalid_input", "/fp16/manifest.json: HTTP 404");
  assert.deepEqual(sorted(path.join(into("fp16"), "fp16")), []);
  await refused(download({ repo: "org/intact", revision: TAG, target: into("closed"), endpoint: "http://127.0.0.1:9" }), "invalid_input",
    "GET http://127.0.0.1:9/org/intact/resolve/v1.0.0/fp32/manifest.json: ");
});

test("the repository, a revision (pinning) and a target are required: usage errors, nothing fetched", async () => {
  const target = path.join(scratch.folder, "usage");
  const cases = [
    [{ revision: TAG, target }, "repo null is not a repository"],
    [{ repo: "intact", revision: TAG, target }, "give it as org/name"],
    [{ repo: "org/../x", revision: TAG, target }, "give it as org/name"],
    [{ repo: "org/intact", target }, "a revision is required"],
    [{ repo: "org/intact", revision: " ", target }, "a revision is required"],
    [{ repo: "org/intact", revision: TAG }, "a target folder is required"],
    [{ repo: "org/intact", revision: TAG, target, precision: "../fp32" }, "unknown precision \"../fp32\"; choose one of fp32, fp16, int8"],
    [{ repo: "org/intact", revision: TAG, target, precision: "fp8" }, "unknown precision \"fp8\""],
    [{ repo: "org/intact", revision: TAG, target, graphs: "transformer" }, "is not a list of graph names"],
    [{ repo: "org/intact", revision: TAG, target, graphs: [] }, "is not a list of graph names"],
  ];
  LOCAL.fetched.length = 0;
  for (const [options, says] of cases) await refused(download({ endpoint: LOCAL.endpoint, ...options }), "usage", says);
  await refused(download(), "usage", "repo null");
  assert.deepEqual(LOCAL.fetched, []);
  for (const args of [["download"], ["download", "org/intact", "-o", target], ["download", "org/intact", "--revision", TAG],
    ["download", "org/intact", "--revision", TAG, "-o", target, "--precision", "fp8"], ["download", "a/b", "c/d", "--revision", TAG, "-o", target],
    ["download", "org/intact", "--revision", TAG, "-o", target, "--graphs", ","], ["download", NAME, "--revision", "v1", "-o", target]]) {
    const result = await cli(...args);
    assert.deepEqual([result.status, result.stdout, result.stderr.trim().split("\n").length], [2, "", 1], result.stderr);
    // both forms taught: a variant of the pinned release by name, a repository at a revision
    assert.ok(result.stderr.includes("usage: node clip.mjs download NAME -o DIR"), result.stderr);
    assert.ok(result.stderr.includes("node clip.mjs download REPO --revision COMMIT_OR_TAG -o DIR"), result.stderr);
  }
  const named = await cli("download", NAME, "--revision", "v1", "-o", target);
  assert.ok(named.stderr.startsWith(`argument --revision: it goes with REPO (org/name); a variant name (${NAME}) downloads the release this package pins`), named.stderr);
  assert.ok(!existsSync(target));
});

test("without a release table: embeddedRelease() is null in the checkout, a download by name is a usage error, by the API and the CLI", async () => {
  const into = path.join(scratch.folder, "no-table");
  assert.ok(!existsSync(path.join(EXAMPLE, "release.json")), "the checkout holds a release.json: only a package being published may");
  assert.equal(embeddedRelease(), null);
  const says = "this clip-onnx pins no release (it was installed from a checkout, not a registry); download a release by repo and revision instead";
  LOCAL.fetched.length = 0;
  await refused(downloadRelease({ name: NAME, target: into, endpoint: LOCAL.endpoint }), "usage", says);
  await refused(downloadRelease({ name: NAME, target: into, endpoint: LOCAL.endpoint, release: null }), "usage", says);
  await refused(downloadRelease(), "usage", says);
  const result = await cli("download", NAME, "-o", into, "--endpoint", LOCAL.endpoint);
  assert.deepEqual([result.status, result.stdout, result.stderr], [2, "", `${NO_RELEASE_LINE}\n`]);
  assert.deepEqual(LOCAL.fetched, []);
  assert.ok(!existsSync(into));
});

// The whole line the CLI prints for a download by name from a checkout.
const NO_RELEASE_LINE = "this clip-onnx pins no release (it was installed from a checkout, not a registry); download a release by repo "
  + "and revision instead: download({ repo, revision, target }), or node clip.mjs download REPO --revision TAG -o DIR";

test("a variant or precision the table lacks is a usage error naming the choices, nothing fetched", async () => {
  const into = path.join(scratch.folder, "choices");
  const release = edited(LOCAL.release, (table) => {
    table.variants["ViT-B-32"] = { hub_repo: "org/vit", files: { "fp16/manifest.json": table.variants[NAME].files["fp32/manifest.json"] } };
  });
  LOCAL.fetched.length = 0;
  const call = (options) => downloadRelease({ target: into, endpoint: LOCAL.endpoint, release, ...options });
  await refused(call({ name: "ViT-L-14" }), "usage", `release ${TAG} has no variant "ViT-L-14"; choose one of ViT-B-32, ${NAME}`);
  await refused(call({}), "usage", `release ${TAG} has no variant null; choose one of`);
  await refused(call({ name: NAME, precision: "fp16" }), "usage", `release ${TAG} has no fp16 files of ${NAME}; choose one of fp32`);
  await refused(call({ name: "ViT-B-32" }), "usage", `release ${TAG} has no fp32 files of ViT-B-32; choose one of fp16`);
  await refused(call({ name: NAME, precision: "fp8" }), "usage", "unknown precision \"fp8\"; choose one of fp32, fp16, int8");
  assert.deepEqual(LOCAL.fetched, []);
  assert.ok(!existsSync(into));
});

test("a malformed release table is bad_manifest, another format_version unsupported_format, one line each, nothing fetched", async () => {
  const into = path.join(scratch.folder, "malformed");
  const files = (table) => table.variants[NAME].files;
  const pin = (table) => files(table)["fp32/manifest.json"];
  const cases = [
    [[], "bad_manifest", "release.json: is not a JSON object"],
    ["v1.0.0", "bad_manifest", "release.json: is not a JSON object"],
    [edited(LOCAL.release, (t) => { t.format_version = 2; }), "unsupported_format", "release.json: format_version 2, but this clip.mjs reads 1"],
    [edited(LOCAL.release, (t) => { t.format_version = "1"; }), "unsupported_format", "format_version \"1\""],
    [edited(LOCAL.release, (t) => { delete t.format_version; }), "unsupported_format", "format_version null"],
    [edited(LOCAL.release, (t) => { delete t.tag; }), "bad_manifest", "release.json: names no tag"],
    [edited(LOCAL.release, (t) => { t.tag = ""; }), "bad_manifest", "names no tag"],
    [edited(LOCAL.release, (t) => { t.variants = [t.variants[NAME]]; }), "bad_manifest", "release.json: lists no variants"],
    [edited(LOCAL.release, (t) => { delete t.variants[NAME].hub_repo; }), "bad_manifest", `variant "${NAME}" lacks hub_repo or files`],
    [edited(LOCAL.release, (t) => { t.variants[NAME].files = null; }), "bad_manifest", `variant "${NAME}" lacks hub_repo or files`],
    [edited(LOCAL.release, (t) => { t.variants[NAME] = "org/intact"; }), "bad_manifest", `variant "${NAME}" lacks hub_repo or files`],
    [edited(LOCAL.release, (t) => { pin(t).sha256 = pin(t).sha256.toUpperCase(); }), "bad_manifest", `${NAME} fp32/manifest.json has no sha256 and bytes`],
    [edited(LOCAL.release, (t) => { pin(t).sha256 = pin(t).sha256.slice(1); }), "bad_manifest", "has no sha256 and bytes"],
    [edited(LOCAL.release, (t) => { pin(t).bytes = -1; }), "bad_manifest", "has no sha256 and bytes"],
    [edited(LOCAL.release, (t) => { pin(t).bytes = 1.5; }), "bad_manifest", "has no sha256 and bytes"],
    [edited(LOCAL.release, (t) => { pin(t).bytes = String(pin(t).bytes); }), "bad_manifest", "has no sha256 and bytes"],
    [edited(LOCAL.release, (t) => { files(t)["fp32/tokenizer.json"] = "pinned"; }), "bad_manifest", `${NAME} fp32/tokenizer.json has no sha256 and bytes`],
  ];
  LOCAL.fetched.length = 0;
  for (const [release, kind, says] of cases) {
    await refused(downloadRelease({ name: NAME, target: into, endpoint: LOCAL.endpoint, release }), kind, says);
  }
  assert.deepEqual(LOCAL.fetched, []);
  assert.ok(!existsSync(into));
});

test("a package's release.json is read when asked for, not at import: returned as it is, or refused in one line", async () => {
  const packaged = (name, table) => import(pathToFileURL(packageWith(path.join(scratch.folder, name), table)).href);
  const good = await packaged("package-good", LOCAL.release);
  assert.deepEqual(good.embeddedRelease(), LOCAL.release);
  const checks = [
    ["package-not-json", "{ not json", "bad_manifest", "release.json is not JSON ("],
    ["package-no-tag", edited(LOCAL.release, (t) => { delete t.tag; }), "bad_manifest", "release.json: names no tag; reinstall clip-onnx"],
    ["package-format-2", edited(LOCAL.release, (t) => { t.format_version = 2; }), "unsupported_format", "format_version 2"],
  ];
  for (const [name, table, kind, says] of checks) {
    const module = await packaged(name, table); // the import itself succeeds
    await refusedBy(module.ClipError, (async () => module.embeddedRelease())(), kind, says);
    await refusedBy(module.ClipError, module.downloadRelease({ name: NAME, target: path.join(scratch.folder, name, "models") }), kind, says);
  }
});

test("the loopback Hub's cases ran, or were skipped without CLIP_ONNX_TEST_HUB", (t) => {
  t.diagnostic(`${ran.count} hub download cases ran, ${ran.skipped} skipped${HUB ? "" : " (CLIP_ONNX_TEST_HUB is not set)"}`);
  assert.equal(ran.count + ran.skipped, HUB_CASES);
  if (HUB) assert.equal(ran.count, HUB_CASES);
});

test("the committed files are as they were", () => {
  mkdirSync(scratch.folder, { recursive: true });
  assert.deepEqual(snapshot(), before);
});
