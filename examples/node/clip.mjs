#!/usr/bin/env node
// CLIP image and text embeddings in Node.js from an exported clip-onnx variant folder: its visual and
// transformer graphs, tokenizer.json and preprocess.json. Pixels equal the Python runtime's
// (clip_onnx.preprocess) bit for bit for every kind of file preprocess.json's `input` lists, token ids
// (clip_onnx.tokenizer) for every text: clean() is CLIP's html.unescape(html.unescape(ftfy.fix_text(text)))
// with ftfy-js 6.3.2, a port of python-ftfy 6.3.1 (test/cleaning.test.mjs holds it to Python on 10,663
// texts). A manifest whose `tokenizer.ftfy` names another ftfy version is refused (kind invalid_input);
// one without the key (older exports) loads. The one known difference: NFC follows Node's ICU (Unicode 17
// in Node 20.20), Python 3.11's unicodedata is Unicode 14.0, so texts with characters added since that
// NFC composes (20 sequences) or reorders (56 combining marks) get other ids; cleaning.test.mjs lists them.
//
// Images: the formats, TIFF's modes and compressions, and the largest width * height read are
// preprocess.json's `input.formats` and `input.max_pixels` (PNG, JPEG, WEBP, GIF first frame, BMP of
// `input.formats.BMP`'s bits and compressions: 1, 8, 24, 32 bits, raw; 8-bit RGB or grey TIFF
// uncompressed, LZW or deflate; 178956970 pixels). Any other file, a truncated or damaged one, or one
// over the limit (checked from its header, before decoding) is refused: a ClipError of kind
// unreadable_image, one line naming the file and what is read. sharp (libvips) decodes all but BMP,
// which its binaries lack: decodeBmp reads those BMPs as Pillow does. Embedded ICC profiles are ignored,
// as Pillow ignores them (sharp's `ignoreIcc`), and EXIF orientation is not applied: the stored values
// are the pixels.
//
// preprocess.json is data: `resolution`, `mean` and `std` (3 numbers each), `rules` (each rule of the
// algorithm by name, with the identifier of the way it is done: RULES holds the 20 clip.mjs implements)
// and `input` (the files read, above). pixels() takes every parameter from it. loadModel refuses, in one
// line naming the file, one that names a rule clip.mjs does not know, another identifier for a rule, or
// lacks a rule (kind unsupported_format), and one whose resolution, mean, std, rules or input are malformed
// (kind bad_manifest).
//
// The files a graph needs are manifest.json's `graphs.<graph>.files` (neededFiles): the graph, the
// external-data files holding its weights, and tokenizer.json and/or preprocess.json, whichever feed its
// inputs. Each is checked against manifest.json before it is used: size, then SHA-256, hashed as a
// stream. A changed, truncated or missing file is refused in one line naming it; { checkSha256: false }
// (--no-sha256-check) skips the check for files you have already checked. A folder may hold only some
// graphs' files (a text-only download): loadModel checks and reads tokenizer.json and preprocess.json if
// they are there, and each graph's files are checked, and its session made, on the graph's first use.
//
// download() fetches a release's files from the Hugging Face Hub at a pinned revision, only those the
// graphs asked for need, each checked against the release's manifest.json before it is kept (the Rust
// crate's hub::download). downloadRelease() fetches a variant of the release the package pins
// (release.json, written into the published package; a checkout has none), each file also checked
// against the table's SHA-256 for it, so a moved tag is refused.
//
// Every error on bad input is a ClipError: one line naming the input and saying what to do, and a
// `kind` from ERROR_KINDS, the name the Python runtime and the Rust crate give the same failure.
//
//   ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev    (the CPU binaries ship in onnxruntime-node; skips CUDA extras)
//   node clip.mjs FOLDER --image cat.png --text "a cat" --text "a dog" [--truncate] [--json] [--no-sha256-check]
//   node clip.mjs download ViT-B-32 -o models [--precision fp16] [--graphs transformer]   (the release this package pins)
//   node clip.mjs download org/clip-onnx-ViT-B-32 --revision v1.0.0 -o models [--precision fp16] [--graphs transformer]
//
// Tests: test/*.test.mjs (node:test; test/README.md lists them), run by tests/test_node_example.py
// against the conformance artifact (tests/conformance).
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Tokenizer } from "@huggingface/tokenizers";
import { decodeHTML } from "entities";
import { fix_text as fixText } from "ftfy-js";
import ort from "onnxruntime-node";
import sharp from "sharp";

// The kinds of error, as clip_onnx.errors.KINDS and the Rust crate's Error::kind name them: the same bad
// input gives the same kind in every language (the conformance artifact's bad_inputs hold all three to it).
export const ERROR_KINDS = [
  "not_an_export", // the folder has no manifest.json
  "bad_manifest", // manifest.json (or preprocess.json) is not JSON, or lacks a key consumers read
  "unsupported_format", // manifest.json's format_version, or a rule of preprocess.json, is not one this reader reads
  "missing_file", // a file the manifest needs, or an input file, does not exist
  "changed_file", // a file differs from its size and SHA-256 in the manifest, or is not listed there
  "unreadable_image", // not an image, a format not read, truncated or damaged, or too many pixels
  "text_too_long", // a text over the context length, without truncation
  "usage", // the command line or a call asks for something contradictory or empty
  "invalid_input", // any other bad input or environment
];

// Bad input or environment: the message says in one line what is wrong and what to do; `kind` says which.
export class ClipError extends Error {
  constructor(message, kind = "invalid_input") {
    if (!ERROR_KINDS.includes(kind)) throw new TypeError(`unknown error kind ${JSON.stringify(kind)}; one of ${ERROR_KINDS.join(", ")}`);
    super(message);
    this.name = "ClipError";
    this.kind = kind;
  }
}

// The first line of another library's message, to quote inside a one-line ClipError.
const firstLine = (error) => String(error?.message ?? error).trim().split("\n")[0];

const MANIFEST = "manifest.json";
// The manifest format_versions this consumer reads (clip_onnx/manifest.py says when the version rises).
export const FORMAT_VERSIONS = [2];
// The keys consumers read (clip_onnx.manifest.CONSUMER_KEYS), each an object, and the ones inside them
// clip.mjs reads, with their type.
const CONSUMER_KEYS = ["graphs", "files", "tokenizer", "preprocessing", "logit_scale", "architecture"];
const INNER_KEYS = { "tokenizer.file": "string", "preprocessing.file": "string", "logit_scale.exp": "number" };
const AGAIN = "download or export the variant again";

const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);
const isFile = (file) => {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
};

// A JSON file of the folder; a missing one is missing_file, one that is not JSON is `kind`.
function readJson(folder, name, kind = "invalid_input") {
  const file = path.join(folder, name);
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if (error.code === "ENOENT") throw new ClipError(`${file} is missing; ${AGAIN}`, "missing_file");
    throw new ClipError(`${file} cannot be read (${error.code}); ${AGAIN}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ClipError(`${file} cannot be read (${firstLine(error)}); ${AGAIN}`, kind);
  }
}

// The keys clip.mjs reads that `manifest` lacks (or holds with another type), by name.
function lackedKeys(manifest) {
  const outer = CONSUMER_KEYS.filter((key) => !isObject(manifest[key]));
  const inner = Object.entries(INNER_KEYS).filter(([key, type]) => {
    const [object, field] = key.split(".");
    return isObject(manifest[object]) && typeof manifest[object][field] !== type;
  });
  return [...outer, ...inner.map(([key]) => key)];
}

// manifest.json of an exported folder, in a format_version this consumer reads, with every key it reads.
function readManifest(folder) {
  const file = path.join(folder, MANIFEST);
  if (!existsSync(folder)) throw new ClipError(`${folder} does not exist; point at a folder written by \`clip-onnx export\``, "not_an_export");
  if (isFile(folder)) throw new ClipError(`${folder} is a file; pass the folder that holds ${MANIFEST}`, "not_an_export");
  if (!isFile(file)) throw new ClipError(`${folder} has no ${MANIFEST}; point at a folder written by \`clip-onnx export\``, "not_an_export");
  return checkManifest(readJson(folder, MANIFEST, "bad_manifest"), file);
}

// A parsed manifest.json in a format_version this consumer reads, with every key it reads; `file` names it
// in the one-line refusal.
function checkManifest(manifest, file) {
  if (!isObject(manifest)) throw new ClipError(`${file} is not a JSON object; ${AGAIN}`, "bad_manifest");
  if (!FORMAT_VERSIONS.includes(manifest.format_version)) {
    // shown as the JSON it is (a string "1" is not the number 1), as Python and Rust show it
    throw new ClipError(`${file}: format_version ${JSON.stringify(manifest.format_version ?? null)}, but this clip.mjs reads `
      + `${FORMAT_VERSIONS.join(", ")}; update clip.mjs from the release that made the files`, "unsupported_format");
  }
  const lacked = lackedKeys(manifest);
  if (lacked.length) throw new ClipError(`${file} lacks ${lacked.join(", ")}; ${AGAIN}`, "bad_manifest");
  // The ftfy the export's texts are cleaned with (older exports do not say: 6.3.1 too). Another version
  // may repair texts otherwise, so token ids could differ from Python's: refused, not guessed.
  const ftfy = manifest.tokenizer.ftfy;
  if (ftfy !== undefined && ftfy !== FTFY_VERSION) {
    throw new ClipError(`${file}: tokenizer.ftfy is ${JSON.stringify(ftfy)}, but clip.mjs cleans texts as ftfy ${FTFY_VERSION} does `
      + "(ftfy-js 6.3.2), so token ids could differ from Python's; update clip.mjs and its packages from the release that made the files");
  }
  return manifest;
}

// The files the given graphs need, as the Python runtime (clip_onnx.integrity.needed_files) and the Rust
// crate define them: the union of the manifest's `graphs.<graph>.files` lists (each graph's file, the
// external-data files it reads, and tokenizer.json and/or preprocess.json, whichever feed its inputs),
// each name once, in order. A graph the manifest does not list, or lists without a list of file names,
// is bad_manifest naming the graph.
export function neededFiles(manifest, graphs) {
  const names = graphs.flatMap((graph) => {
    const spec = isObject(manifest?.graphs) && Object.hasOwn(manifest.graphs, graph) ? manifest.graphs[graph] : undefined;
    if (!isObject(spec)) throw new ClipError(`${MANIFEST} lists no ${graph} graph; export the variant with it`, "bad_manifest");
    const { files } = spec;
    if (!Array.isArray(files) || !files.every((name) => typeof name === "string")) {
      throw new ClipError(`${MANIFEST} lists no files for the ${graph} graph; ${AGAIN} with this clip-onnx`, "bad_manifest");
    }
    return files;
  });
  return [...new Set(names)];
}

// SHA-256 of a file, hex, read as a stream: memory stays at a few chunks whatever the file's size.
export async function sha256File(file) {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), async (chunks) => {
    for await (const chunk of chunks) hash.update(chunk);
  });
  return hash.digest("hex");
}

// Each named file is a plain file in `folder` with the size (checked first) and SHA-256 that
// manifest.files records; the first that is not is a ClipError of one line naming it.
export async function checkFiles(folder, manifest, names) {
  for (const name of names) {
    if (typeof name !== "string" || path.basename(name) !== name) {
      throw new ClipError(`${path.join(folder, MANIFEST)} names ${JSON.stringify(name)}, not a file of the folder; ${AGAIN}`, "bad_manifest");
    }
    const file = path.join(folder, name);
    const facts = manifest.files?.[name];
    if (!facts) throw new ClipError(`${file} is not listed in ${path.join(folder, MANIFEST)}; ${AGAIN}`, "changed_file");
    let info;
    try {
      info = await stat(file);
    } catch (error) {
      if (error.code === "ENOENT") throw new ClipError(`${file} is missing; ${AGAIN}`, "missing_file");
      throw new ClipError(`${file} cannot be read (${error.code}); ${AGAIN}`);
    }
    if (!info.isFile()) throw new ClipError(`${file} is not a file; ${AGAIN}`, "missing_file");
    if (info.size !== facts.bytes) {
      throw new ClipError(`${file} has ${info.size} bytes where ${MANIFEST} records ${facts.bytes}: it is incomplete or changed; ${AGAIN}`, "changed_file");
    }
    const sha256 = await sha256File(file).catch((error) => {
      throw new ClipError(`${file} cannot be read (${error.code ?? firstLine(error)}); ${AGAIN}`);
    });
    if (sha256 !== facts.sha256) {
      throw new ClipError(`${file} does not match its SHA-256 in ${MANIFEST}: it changed since export; ${AGAIN}`, "changed_file");
    }
  }
}

// The Hugging Face Hub, or HF_ENDPOINT (a mirror speaking its documented resolve endpoint).
export const HUB_ENDPOINT = "https://huggingface.co";
// The precisions an export may have, each a folder of a release (clip_onnx.contract.PRECISIONS).
export const PRECISIONS = ["fp32", "fp16", "int8"];
// The most a manifest may weigh (they are a few KiB): a larger body is not a manifest.
const MANIFEST_LIMIT = 16 << 20;

// A GET of `url` (redirects followed, as the Hub sends large files to its CDN), the token as a bearer
// token; a failure to connect or a status other than 2xx is one line naming the URL.
async function get(url, token) {
  let response;
  try {
    response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, redirect: "follow" });
  } catch (error) {
    throw new ClipError(`GET ${url}: ${firstLine(error.cause ?? error)}; check the endpoint and the connection, and try again`);
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    const advice = response.status === 401 || response.status === 403 ? "set HF_TOKEN to a token that may read the repository"
      : response.status === 404 ? "check the repository, the revision and the precision" : "try again";
    throw new ClipError(`GET ${url}: HTTP ${response.status} ${response.statusText}; ${advice}`.replace(/\s+/g, " "));
  }
  return response;
}

// The chunks of a response's body, a failure while reading it one line naming the URL.
async function* body(response, url) {
  try {
    for await (const chunk of response.body ?? []) yield chunk;
  } catch (error) {
    throw new ClipError(`GET ${url}: ${firstLine(error.cause ?? error)}; try again`);
  }
}

// Stream a response into `partial` (which must not exist), hashing as it goes, never past `limit` bytes
// (one chunk more is read to notice a longer body): memory stays at a chunk whatever the file's size.
// Returns the body's SHA-256 (of what was written) and its size (more than `limit` if it is longer).
async function save(response, url, partial, limit) {
  const written = (error) => new ClipError(`${partial}: cannot be written (${error.code ?? firstLine(error)})`);
  const hash = createHash("sha256");
  let size = 0;
  const handle = await open(partial, "wx").catch((error) => { throw written(error); });
  try {
    for await (const chunk of body(response, url)) {
      size += chunk.length;
      if (size > limit) break; // longer than the manifest says: refused by its size, the rest not read
      hash.update(chunk);
      await handle.write(chunk).catch((error) => { throw written(error); });
    }
    await handle.sync().catch((error) => { throw written(error); });
  } finally {
    await handle.close();
  }
  return { sha256: hash.digest("hex"), size };
}

// The release a package pins: release.json (the release table), which the release workflow writes beside
// clip.mjs before the package is published (python -m release table; clip_onnx/pinned.py is the
// reference). The package is built before the release's Hub commit exists, so it pins the release by its
// tag and by the size and SHA-256 of every file the tag should hold; a tag can move, so downloadRelease
// refuses any file, manifest.json first, that is not the pinned one. A checkout holds no table.
//   {"format_version": 1, "tag": "v1.2.0", "variants": {"ViT-B-32": {"hub_repo": "org/clip-onnx-ViT-B-32",
//     "files": {"fp32/manifest.json": {"sha256": "...", "bytes": 4768}, "fp32/ViT-B-32.onnx": {...}, ...}}}}
const RELEASE_FILE = "release.json";
const RELEASE_FORMAT = 1;
const NO_RELEASE = "this clip-onnx pins no release (it was installed from a checkout, not a registry); download a release "
  + "by repo and revision instead: download({ repo, revision, target }), or node clip.mjs download REPO --revision TAG -o DIR";

const samePin = (pin, facts) => isObject(pin) && isObject(facts) && pin.sha256 === facts.sha256 && pin.bytes === facts.bytes;

// A release table, checked key by key as clip_onnx.pinned.parse checks it; anything else is one line.
function parseRelease(data) {
  const bad = (what) => new ClipError(`${RELEASE_FILE}: ${what}; reinstall clip-onnx from its registry`, "bad_manifest");
  if (!isObject(data)) throw bad("is not a JSON object");
  if (data.format_version !== RELEASE_FORMAT) {
    throw new ClipError(`${RELEASE_FILE}: format_version ${JSON.stringify(data.format_version ?? null)}, but this clip.mjs reads `
      + `${RELEASE_FORMAT}; reinstall clip-onnx`, "unsupported_format");
  }
  if (typeof data.tag !== "string" || !data.tag) throw bad("names no tag");
  if (!isObject(data.variants)) throw bad("lists no variants");
  for (const [name, variant] of Object.entries(data.variants)) {
    if (!isObject(variant) || typeof variant.hub_repo !== "string" || !isObject(variant.files)) {
      throw bad(`variant ${JSON.stringify(name)} lacks hub_repo or files`);
    }
    for (const [file, facts] of Object.entries(variant.files)) {
      if (!isObject(facts) || typeof facts.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(facts.sha256)
        || !Number.isSafeInteger(facts.bytes) || facts.bytes < 0) {
        throw bad(`${name} ${file} has no sha256 and bytes`);
      }
    }
  }
  return data;
}

// The release table installed beside clip.mjs, checked, or null when there is none (a checkout). Read on
// each call, never at import, so a damaged one fails the call that needs it, not the import.
export function embeddedRelease() {
  const file = new URL(`./${RELEASE_FILE}`, import.meta.url);
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if (error.code === "ENOENT") return null;
    throw new ClipError(`${fileURLToPath(file)} cannot be read (${error.code ?? firstLine(error)}); reinstall clip-onnx`);
  }
  try {
    return parseRelease(JSON.parse(text));
  } catch (error) {
    if (error instanceof ClipError) throw error;
    throw new ClipError(`${RELEASE_FILE} is not JSON (${firstLine(error)}); reinstall clip-onnx`, "bad_manifest");
  }
}

// The Hub repo, the tag and the pins ({file name: {sha256, bytes}}) of `name`'s `precision` folder in a
// checked release table, or a usage error naming the choices.
function releasePins(release, name, precision) {
  if (release === null) throw new ClipError(NO_RELEASE, "usage");
  const { tag, variants } = release;
  if (typeof name !== "string" || !Object.hasOwn(variants, name)) {
    throw new ClipError(`release ${tag} has no variant ${JSON.stringify(name ?? null)}; choose one of ${Object.keys(variants).sort().join(", ")}`, "usage");
  }
  const { hub_repo: repo, files } = variants[name];
  const prefix = `${precision}/`;
  const pins = Object.fromEntries(Object.entries(files).filter(([file]) => file.startsWith(prefix))
    .map(([file, facts]) => [file.slice(prefix.length), facts]));
  if (!Object.hasOwn(pins, MANIFEST)) {
    const published = [...new Set(Object.keys(files).filter((file) => file.endsWith(`/${MANIFEST}`)).map((file) => file.split("/")[0]))].sort();
    throw new ClipError(`release ${tag} has no ${precision} files of ${name}; choose one of ${published.join(", ")}`, "usage");
  }
  return { repo, tag, pins };
}

// Variant `name` (as "ViT-B-32") of the release this package pins: download() of its Hub repo at the
// release's tag, every file refused unless it is the one the table pins (the manifest's bytes, then each
// file's size and SHA-256), so a moved tag is refused with nothing kept. `release`: another table, checked
// as embeddedRelease checks its own; default (undefined or null) the one installed.
export async function downloadRelease({ name, precision = "fp32", graphs, target, endpoint, token, release } = {}) {
  if (!PRECISIONS.includes(precision)) throw new ClipError(`download: unknown precision ${JSON.stringify(precision)}; choose one of ${PRECISIONS.join(", ")}`, "usage");
  const table = release == null ? embeddedRelease() : parseRelease(release);
  const { repo, tag, pins } = releasePins(table, name, precision);
  return downloadPinned({ repo, revision: tag, precision, graphs, target, endpoint, token }, pins);
}

// Download `precision`/ of the release `repo` at `revision` (a commit or a tag: required, so the files are
// the ones released) into `target`/`precision`/, from `{endpoint}/{repo}/resolve/{revision}/{precision}/{path}`:
// manifest.json first, then only the files `graphs` need (neededFiles; default every graph the manifest
// lists), each streamed to a temporary name while it is hashed and renamed to its own only once its size
// and SHA-256 are the manifest's. A file already there and matching is kept, not downloaded; one that
// does not match is replaced. A file that does not match after download is refused in one line naming it
// (kind changed_file), and nothing is left under its name. manifest.json is written last, once every
// file asked for is in place. Returns the folder (absolute), ready for loadModel. `endpoint` defaults to
// HF_ENDPOINT, then huggingface.co; `token` to HF_TOKEN, sent as a bearer token when set.
export async function download({ repo, revision, precision = "fp32", graphs, target, endpoint, token } = {}) {
  return downloadPinned({ repo, revision, precision, graphs, target, endpoint, token }, null);
}

// download() with `pins` ({file name: {sha256, bytes}} of the precision folder, as releasePins gives
// them, or null): the manifest's bytes, then every file's manifest entry, must be the pinned ones, all
// checked before any file is fetched, so a moved tag is refused with nothing kept.
async function downloadPinned({ repo, revision, precision = "fp32", graphs, target, endpoint, token }, pins) {
  // one name of a path, nothing that would leave the folder or break a one-line message
  const plain = (value) => typeof value === "string" && value !== "" && value !== "." && value !== ".." && !/[/\\\u0000-\u001f]/.test(value);
  if (typeof repo !== "string" || !/^[^/\s]+\/[^/\s]+$/.test(repo) || repo.split("/").some((part) => !plain(part))) {
    throw new ClipError(`download: repo ${JSON.stringify(repo ?? null)} is not a repository; give it as org/name`, "usage");
  }
  if (typeof revision !== "string" || !revision.trim()) {
    throw new ClipError("download: a revision is required (a commit or a tag), so the files are the ones released", "usage");
  }
  if (!PRECISIONS.includes(precision)) throw new ClipError(`download: unknown precision ${JSON.stringify(precision)}; choose one of ${PRECISIONS.join(", ")}`, "usage");
  if (typeof target !== "string" || !target) throw new ClipError("download: a target folder is required", "usage");
  if (graphs !== undefined && (!Array.isArray(graphs) || !graphs.length || !graphs.every((graph) => typeof graph === "string"))) {
    throw new ClipError(`download: graphs ${JSON.stringify(graphs)} is not a list of graph names, as ["transformer"]`, "usage");
  }
  const base = String(endpoint || process.env.HF_ENDPOINT || HUB_ENDPOINT).replace(/\/+$/, "");
  const bearer = token ?? process.env.HF_TOKEN ?? null;
  const url = (name) => `${base}/${repo}/resolve/${encodeURIComponent(revision)}/${encodeURIComponent(precision)}/${encodeURIComponent(name)}`;
  const where = `${repo}@${revision}: ${precision}`;
  const folder = path.resolve(target, precision);
  await mkdir(folder, { recursive: true }).catch((error) => {
    throw new ClipError(`${folder}: cannot be created (${error.code ?? firstLine(error)})`);
  });

  const chunks = [];
  let size = 0;
  for await (const chunk of body(await get(url(MANIFEST), bearer), url(MANIFEST))) {
    size += chunk.length;
    if (size > MANIFEST_LIMIT) throw new ClipError(`${where}/${MANIFEST} is over ${MANIFEST_LIMIT} bytes: not a manifest; refused (nothing kept)`, "bad_manifest");
    chunks.push(chunk);
  }
  const manifestBytes = Buffer.concat(chunks);
  // not the pinned bytes: the tag was moved or the manifest replaced, and nothing it lists is trusted
  const unpinned = (name) => new ClipError(`${where}/${name} is not the file this clip-onnx pins for release ${revision} (its size or `
    + `SHA-256 differs from ${RELEASE_FILE}'s): the tag was moved or the file replaced; refused (nothing kept), report it`, "changed_file");
  if (pins && !samePin(pins[MANIFEST], { sha256: createHash("sha256").update(manifestBytes).digest("hex"), bytes: manifestBytes.length })) {
    throw unpinned(MANIFEST);
  }
  let manifest;
  try {
    manifest = JSON.parse(manifestBytes.toString("utf8"));
  } catch (error) {
    throw new ClipError(`${where}/${MANIFEST} is not JSON (${firstLine(error)}); refused (nothing kept)`, "bad_manifest");
  }
  checkManifest(manifest, `${where}/${MANIFEST}`);
  const listed = Object.keys(manifest.graphs);
  // as the Python runtime and the Rust crate: each graph named once, from those the release has
  const asked = graphs ?? listed;
  if (asked.some((graph, i) => !Object.hasOwn(manifest.graphs, graph) || asked.indexOf(graph) !== i)) {
    throw new ClipError(`download: graphs ${asked.map((graph) => JSON.stringify(graph)).join(", ")}: name each once, from the graphs `
      + `${repo}@${revision} has: ${listed.join(", ")}`, "usage");
  }

  // every name and its size and SHA-256 checked before any file is fetched
  const needed = neededFiles(manifest, asked);
  for (const name of needed) {
    if (!plain(name) || name === MANIFEST) {
      throw new ClipError(`${where}/${MANIFEST} names ${JSON.stringify(name)}, not a file of the folder; refused (nothing kept)`, "bad_manifest");
    }
    const facts = manifest.files[name];
    if (!isObject(facts) || typeof facts.sha256 !== "string" || !Number.isSafeInteger(facts.bytes) || facts.bytes < 0) {
      throw new ClipError(`${where}/${name} has no sha256 and bytes in its manifest; refused (nothing kept)`, "bad_manifest");
    }
    if (pins && !samePin(pins[name], facts)) throw unpinned(name);
  }
  for (const name of needed) {
    const facts = manifest.files[name];
    const refused = (why) => new ClipError(`${where}/${name} ${why}; refused (nothing kept)`, "changed_file");
    const file = path.join(folder, name);
    if (existsSync(file)) {
      const kept = await checkFiles(folder, manifest, [name]).then(() => true, () => false);
      if (kept) continue; // already here, its size and SHA-256 the manifest's
      await rm(file, { force: true }).catch((error) => {
        throw new ClipError(`${file}: does not match ${where}/${MANIFEST} and cannot be replaced (${error.code ?? firstLine(error)})`);
      });
    }
    const partial = path.join(folder, `.${name}.${process.pid}.partial`);
    try {
      await rm(partial, { force: true }); // a killed run's, of a process of the same id
      const saved = await save(await get(url(name), bearer), url(name), partial, facts.bytes);
      if (saved.size > facts.bytes) throw refused(`is longer than the ${facts.bytes} bytes its manifest says`);
      if (saved.size < facts.bytes) throw refused(`has ${saved.size} bytes, not the ${facts.bytes} its manifest says`);
      if (saved.sha256 !== facts.sha256) throw refused("does not match the SHA-256 in its manifest");
      await rename(partial, file);
    } catch (error) {
      await rm(partial, { force: true });
      if (error instanceof ClipError) throw error;
      throw new ClipError(`${file}: cannot be written (${error.code ?? firstLine(error)})`);
    }
  }
  // the manifest last, by the same rename, once every file asked for is in place
  const partial = path.join(folder, `.${MANIFEST}.${process.pid}.partial`);
  try {
    const handle = await open(partial, "w");
    try {
      await handle.writeFile(manifestBytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(partial, path.join(folder, MANIFEST));
  } catch (error) {
    await rm(partial, { force: true });
    throw new ClipError(`${path.join(folder, MANIFEST)}: cannot be written (${error.code ?? firstLine(error)})`);
  }
  return folder;
}

// An exported folder, whole or partial (only some graphs' files beside manifest.json, as a download of
// some graphs leaves it). tokenizer.json and preprocess.json are each checked against manifest.json
// (size, then SHA-256) and read now if present: a present file that is changed or malformed is refused at
// once; a missing one only when something needs it (encodeText tokenizer.json, encodeImage and pixels
// preprocess.json), kind missing_file. Each graph's files are checked and its onnxruntime session created
// on its first use (graphSession), so a text-only folder never needs the visual graph's files.
// checkSha256: false skips the checks, for files already checked.
export async function loadModel(folder, { checkSha256 = true } = {}) {
  const manifest = readManifest(folder);
  const model = {
    folder,
    manifest,
    checkSha256,
    tokenizer: null,
    contextLength: null,
    padId: null,
    preprocess: null,
    // shared by copies ({ ...model, preprocess }): each file checked once, each graph's session made once
    checked: new Set(),
    sessions: new Map(),
  };
  if (existsSync(path.join(folder, manifest.tokenizer.file))) await needTokenizer(model);
  if (existsSync(path.join(folder, manifest.preprocessing.file))) await needPreprocess(model);
  return model;
}

// Each named file of the model's folder checked against manifest.json, once per model, if the check is on.
async function checkOnce(model, names) {
  if (!model.checkSha256) return;
  for (const name of names) {
    if (model.checked.has(name)) continue;
    await checkFiles(model.folder, model.manifest, [name]);
    model.checked.add(name);
  }
}

// The model's tokenizer, checked and read on first need; missing_file if tokenizer.json is not there.
async function needTokenizer(model) {
  if (!model.tokenizer) {
    const name = model.manifest.tokenizer.file;
    await checkOnce(model, [name]);
    Object.assign(model, loadTokenizer(model.folder, name));
  }
  return model;
}

// The model's preprocessing rules, checked and read on first need; missing_file if preprocess.json is not there.
async function needPreprocess(model) {
  if (!model.preprocess) {
    const name = model.manifest.preprocessing.file;
    await checkOnce(model, [name]);
    model.preprocess = readPreprocess(model.folder, name);
  }
  return model.preprocess;
}

// The onnxruntime session of one of the manifest's graphs ("visual", "transformer", "forward"), made on
// first use after every file the graph needs (neededFiles) is checked, in the manifest's order; the first
// missing or changed one is refused in one line naming it.
export async function graphSession(model, graph) {
  if (!model.sessions.has(graph)) {
    const made = (async () => {
      const names = neededFiles(model.manifest, [graph]);
      await checkOnce(model, names);
      return session(model.folder, model.manifest.graphs[graph].file);
    })();
    model.sessions.set(graph, made);
    made.catch(() => model.sessions.delete(graph)); // a refusal is not kept: fixing the folder and retrying works
  }
  return model.sessions.get(graph);
}

// The rules of the preprocessing, by name, and the identifier of the one clip.mjs implements
// (clip_onnx.preprocess.RULES; docs/consumers.md#preprocessing-rules says what each means). A file that
// names another identifier, or another rule, describes pixels this code would not reproduce.
export const RULES = {
  orientation: "exif_ignored", // decode: EXIF orientation not applied
  color_profile: "ignored", // decode: sharp's ignoreIcc
  jpeg_decoder: "libjpeg_turbo_islow_fancy_upsampling", // decode: sharp's libjpeg-turbo
  webp_decoder: "libwebp", // decode: sharp's libwebp
  gif_frame: "first", // decode: animated: false
  resize_size: "shorter_edge_floor", // pixels: [w, h]
  resize_filter: "pillow_bicubic_antialiased", // cubic, coefficients
  resize_arithmetic: "pillow_fixed_point_22", // coefficients' fixed weights, pass
  resize_pass_order: "pillow_vertical_first_if_larger_cut", // resize: verticalFirst
  resize_same_size: "skipped", // resize: the same size returned as it is
  resize_palette: "nearest", // nearest, for "P" and "1"
  resize_alpha: "premultiplied", // premultiply
  resize_wide: "own_precision_then_clamped", // pass and store16 for "I;16", rgb's clamp
  crop: "center_round_half_even", // pixels: offset
  to_rgb: "pillow_convert_alpha_dropped", // rgb
  scale: "float32_divide_255", // pixels: Math.fround(colour / 255)
  normalize: "float32_subtract_then_divide", // pixels: float32 subtraction, then division
  layout: "NCHW", // pixels: ((n * 3 + c) * r + y) * r + x
  color_order: "RGB", // rgb's channel order
  dtype: "float32", // Float32Array, the "float32" tensor
};
const UPDATE = "update clip.mjs from the release that made the files";

// preprocess.json of the folder, checked as clip_onnx.preprocess.Preprocessing.parse checks it: every rule
// one clip.mjs implements (unsupported_format otherwise), resolution, mean, std and input of the shape
// pixels() and decode() read (bad_manifest otherwise); each refusal one line naming the file.
function readPreprocess(folder, name) {
  const file = path.join(folder, name);
  const data = readJson(folder, name, "bad_manifest");
  const bad = (key, should) => new ClipError(`${file}: ${key} must be ${should}; ${AGAIN}`, "bad_manifest");
  if (!isObject(data)) throw bad("the file", "a JSON object");
  const { rules } = data;
  if (!isObject(rules)) throw bad("rules", "an object of rule identifiers");
  for (const [rule, value] of Object.entries(rules)) {
    if (!Object.hasOwn(RULES, rule)) throw new ClipError(`${file}: rule ${JSON.stringify(rule)} is not one clip.mjs knows; ${UPDATE}`, "unsupported_format");
    if (value !== RULES[rule]) {
      throw new ClipError(`${file}: rule ${rule} is ${JSON.stringify(value)}, which clip.mjs does not implement `
        + `(it implements ${JSON.stringify(RULES[rule])}); ${UPDATE}`, "unsupported_format");
    }
  }
  const absent = Object.keys(RULES).find((rule) => !Object.hasOwn(rules, rule));
  if (absent) throw new ClipError(`${file} lacks rule ${absent}; export the variant again with a clip-onnx that writes it`, "unsupported_format");
  if (!Number.isInteger(data.resolution) || data.resolution < 1) throw bad("resolution", "a positive integer");
  for (const key of ["mean", "std"]) {
    const value = data[key];
    // Number.isFinite: numbers only, no strings or booleans
    if (!Array.isArray(value) || value.length !== 3 || !value.every(Number.isFinite) || (key === "std" && value.includes(0))) {
      throw bad(key, `3 finite numbers, one per RGB channel${key === "std" ? ", none zero" : ""}`);
    }
  }
  const { input } = data;
  if (!isObject(input) || !isObject(input.formats) || !Object.values(input.formats).every(isObject)) {
    throw bad("input.formats", "an object of image formats");
  }
  if (!Number.isInteger(input.max_pixels) || input.max_pixels < 1) throw bad("input.max_pixels", "a positive integer");
  // the lists decode() reads from BMP's and TIFF's entries, where present
  for (const [format, key] of [["BMP", "bits"], ["BMP", "compression"], ["TIFF", "modes"], ["TIFF", "compression"]]) {
    const list = input.formats[format]?.[key];
    if (list !== undefined && !Array.isArray(list)) throw bad(`input.formats.${format}.${key}`, "a list");
  }
  return data;
}

// tokenizer.json for Tokenizers.js, which ignores the file's padding and truncation settings:
// tokenize() applies them.
function loadTokenizer(folder, name) {
  const json = readJson(folder, name);
  const contextLength = json?.padding?.strategy?.Fixed;
  if (!Number.isInteger(contextLength)) throw new ClipError(`${path.join(folder, name)} sets no fixed padding length; ${AGAIN}`);
  try {
    return { tokenizer: new Tokenizer(json, {}), contextLength, padId: json.padding.pad_id };
  } catch (error) {
    throw new ClipError(`${path.join(folder, name)} is not a tokenizer Tokenizers.js reads (${firstLine(error)}); ${AGAIN}`);
  }
}

// An onnxruntime session of a graph file of the folder.
async function session(folder, name) {
  const file = path.join(folder, name);
  if (!isFile(file)) throw new ClipError(`${file} is missing; ${AGAIN}`, "missing_file");
  try {
    return await ort.InferenceSession.create(file);
  } catch (error) {
    throw new ClipError(`onnxruntime cannot load ${file} (${firstLine(error).slice(0, 200)}); ${AGAIN}`);
  }
}

// The ftfy version whose fix_text clean() reproduces: ftfy-js 6.3.2 (pinned in package.json) is a port of
// python-ftfy 6.3.1, the version clip_onnx pins and manifest.json records as `tokenizer.ftfy`.
export const FTFY_VERSION = "6.3.1";

// Python's html.unescape: the references its pattern finds, each decoded by entities' decodeHTML, which
// decodes them as Python does but for the code points Python drops (html._invalid_codepoints less those
// _invalid_charrefs maps first: controls, U+FDD0..U+FDEF, the last two of every plane).
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;
const dropped = (n) => (n >= 0x01 && n <= 0x08) || n === 0x0b || (n >= 0x0e && n <= 0x1f) || n === 0x7f
  || (n >= 0xfdd0 && n <= 0xfdef) || (n <= 0x10ffff && (n & 0xfffe) === 0xfffe);
export const htmlUnescape = (text) => text.replace(CHARREF, (reference, body) => {
  if (body[0] === "#") {
    const hex = body[1] === "x" || body[1] === "X";
    const n = Number.parseInt(body.slice(hex ? 2 : 1), hex ? 16 : 10);
    if (dropped(n)) return "";
  }
  return decodeHTML(reference);
});

// clip_onnx.tokenizer.clean: ftfy.fix_text with its default options (mojibake, curly quotes, ligatures,
// full-width forms, line breaks, control characters, NFC), then, like CLIP, html.unescape twice.
export const clean = (text) => htmlUnescape(htmlUnescape(fixText(text)));

// clip.tokenize: int32 [N, contextLength], zero padded. A text longer than that is an error unless
// `truncate`, which keeps its first tokens and the end token, as the Rust tokenizers' truncation does.
export function tokenize(model, texts, { truncate = false } = {}) {
  if (!model.tokenizer) {
    // loadModel reads tokenizer.json when it is there (encodeText reads it later, if it came since)
    const file = path.join(model.folder, model.manifest.tokenizer.file);
    throw new ClipError(existsSync(file) ? `${file} came after the folder was loaded; load it again` : `${file} is missing; ${AGAIN}`, "missing_file");
  }
  const length = model.contextLength;
  const ids = new Int32Array(texts.length * length).fill(model.padId);
  texts.forEach((text, row) => {
    let tokens = model.tokenizer.encode(clean(text)).ids;
    if (tokens.length > length) {
      if (!truncate) throw new ClipError(`text ${JSON.stringify(text.slice(0, 60))} is longer than ${length} tokens; pass { truncate: true } (--truncate)`, "text_too_long");
      tokens = [...tokens.slice(0, length - 1), tokens.at(-1)];
    }
    ids.set(tokens, row * length);
  });
  return ids;
}

// The image format by its first bytes, by Pillow's name (preprocess.json's `input.formats` keys), for the
// formats clip.mjs can decode and, to name them in errors, a few others Pillow opens; null if none.
function format(bytes) {
  const ascii = (start, end) => bytes.subarray(start, end).toString("latin1");
  if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47) return "PNG";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "JPEG";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "WEBP";
  if (ascii(0, 4) === "GIF8") return "GIF";
  if (ascii(0, 2) === "BM" && bytes.length >= 18) return "BMP";
  if (ascii(0, 4) === "II*\0" || ascii(0, 4) === "MM\0*") return "TIFF";
  if (bytes.length >= 12 && (ascii(4, 8) === "jP  " || (bytes.readUInt32BE(0) === 0xff4fff51))) return "JPEG2000";
  if (bytes.length >= 4 && bytes.readUInt32BE(0) === 0x00000100) return "ICO";
  if (/^P[1-7]\s$/.test(ascii(0, 3))) return "PPM";
  if (bytes[0] === 0x0a && [0, 2, 3, 4, 5].includes(bytes[1]) && bytes[2] === 1) return "PCX";
  if (bytes.length >= 18 && ascii(bytes.length - 18, bytes.length - 2) === "TRUEVISION-XFILE") return "TGA";
  return null;
}

// Pillow's names of the TIFF Compression tag's values (TiffImagePlugin.COMPRESSION_INFO), as
// preprocess.json's `input.formats.TIFF.compression` lists them.
const TIFF_COMPRESSIONS = {
  1: "raw", 2: "tiff_ccitt", 3: "group3", 4: "group4", 5: "tiff_lzw", 6: "tiff_jpeg", 7: "jpeg", 8: "tiff_adobe_deflate",
  32771: "tiff_raw_16", 32773: "packbits", 32809: "tiff_thunderscan", 32946: "tiff_deflate", 34676: "tiff_sgilog",
  34677: "tiff_sgilog24", 34925: "lzma", 50000: "zstd", 50001: "webp",
};

// The mode Pillow opens a TIFF in and its compression, by Pillow's names, from the first IFD's tags
// (photometric interpretation, samples, bits and sample format, extra samples, compression).
function tiffKind(bytes) {
  const big = bytes[0] === 0x4d;
  const u16 = (at) => (big ? bytes.readUInt16BE(at) : bytes.readUInt16LE(at));
  const u32 = (at) => (big ? bytes.readUInt32BE(at) : bytes.readUInt32LE(at));
  const ifd = u32(4);
  const tags = {};
  for (let n = 0, count = u16(ifd); n < count; n++) {
    const at = ifd + 2 + 12 * n;
    const [tag, type, values] = [u16(at), u16(at + 2), u32(at + 4)];
    if (![258, 259, 262, 273, 277, 279, 324, 325, 339].includes(tag)) continue;
    const size = type === 3 ? 2 : 4; // SHORT or LONG, the types of the tags read here
    const where = values * size <= 4 ? at + 8 : u32(at + 8);
    if (where + values * size > bytes.length) throw new Error(`tag ${tag} lies past the end of the file`);
    tags[tag] = Array.from({ length: values }, (_, i) => (size === 2 ? u16(where + 2 * i) : u32(where + 4 * i)));
  }
  // every strip (or tile) of image data lies inside the file: libtiff would read a cut one as zeros
  const [offsets, counts] = tags[273] ? [tags[273], tags[279]] : [tags[324], tags[325]];
  if (!offsets || !counts || offsets.some((start, i) => start + (counts[i] ?? Infinity) > bytes.length)) {
    throw new Error("image file is truncated");
  }
  const [photometric] = tags[262] ?? [];
  const samples = tags[277]?.[0] ?? 1;
  const bits = tags[258] ?? [1];
  const eight = bits.every((b) => b === 8) && (tags[339] ?? [1]).every((f) => f === 1);
  const mode = photometric === 2 && samples === 3 && eight ? "RGB"
    : (photometric === 0 || photometric === 1) && samples === 1 && eight ? "L"
    : `${{ 0: "grey", 1: "grey", 2: "RGB", 3: "palette", 5: "CMYK", 6: "YCbCr", 8: "CIELab" }[photometric] ?? `photometric ${photometric}`}`
      + ` (${samples} × ${bits.join("/")} bits)`;
  const code = tags[259]?.[0] ?? 1;
  return { mode, compression: TIFF_COMPRESSIONS[code] ?? `compression ${code}` };
}

// Pillow's names of a BMP's compression values (BmpImagePlugin.BmpImageFile.COMPRESSIONS, lower case), as
// preprocess.json's `input.formats.BMP.compression` lists them.
const BMP_COMPRESSIONS = { 0: "raw", 1: "rle8", 2: "rle4", 3: "bitfields", 4: "jpeg", 5: "png" };
// The BMPs decodeBmp decodes: what preprocess.json lists beyond them is refused too, naming clip.mjs.
const BMP_DECODED = { bits: [1, 8, 24, 32], compression: ["raw"] };

// A BMP's header as Pillow's BmpImagePlugin reads it (sizes signed 32-bit, a negative height meaning
// top-down rows; the 12-byte OS/2 header's 16-bit), or { error } for a header Pillow does not read.
function bmpHeader(bytes) {
  const headerSize = bytes.readUInt32LE(14);
  if (![12, 40, 52, 56, 64, 108, 124].includes(headerSize) || bytes.length < 14 + headerSize) {
    return { error: `a BMP header of ${headerSize} bytes` };
  }
  const core = headerSize === 12;
  const width = core ? bytes.readUInt16LE(18) : bytes.readInt32LE(18);
  const stored = core ? bytes.readUInt16LE(20) : bytes.readInt32LE(22);
  const bits = bytes.readUInt16LE(core ? 24 : 28);
  const compression = core ? 0 : bytes.readUInt32LE(30);
  const colours = (core ? 0 : bytes.readUInt32LE(46)) || 2 ** bits;
  return { headerSize, core, width, height: Math.abs(stored), topDown: stored < 0, bits, compression, colours };
}

// Pillow's BmpImagePlugin for uncompressed 1, 8, 24 and 32-bit BMPs (libvips in sharp's binaries has no BMP
// loader): bottom-up or top-down rows, 32 bits as BGRX (the fourth byte ignored, as Pillow does), a
// palette whose colours are 0, 255 (two colours) or 0, 1, 2... (more) is no palette: modes "1" and "L";
// any other palette "P", expanded to its colours here. Other BMPs and truncated ones throw.
function decodeBmp(bytes, header) {
  const { headerSize, core, width, height, topDown, bits, compression, colours } = header;
  const stride = ((width * bits + 31) >> 3) & ~3;
  const offset = bytes.readUInt32LE(10);
  if (width <= 0 || height === 0 || offset + stride * height > bytes.length) throw new Error("image file is truncated");
  let mode = bits > 8 ? "RGB" : "P";
  let palette = null;
  if (mode === "P") {
    const entry = core ? 3 : 4;
    palette = bytes.subarray(14 + headerSize, 14 + headerSize + entry * colours);
    if (palette.length < entry * colours) throw new Error("image file is truncated");
    const grey = (colours === 2 ? [0, 255] : Array.from({ length: colours }, (_, i) => i))
      .every((v, i) => palette[i * entry] === v && palette[i * entry + 1] === v && palette[i * entry + 2] === v);
    if (grey) mode = colours <= 2 ? "1" : "L";
    else palette = Array.from({ length: colours }, (_, i) => [2, 1, 0].map((c) => palette[i * entry + c] ?? 0));
  }
  const channels = mode === "RGB" || mode === "P" ? 3 : 1;
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    const row = offset + stride * (topDown ? y : height - 1 - y);
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * channels;
      if (bits >= 24) {
        const p = row + (x * bits) / 8;
        data.set([bytes[p + 2], bytes[p + 1], bytes[p]], at);
      } else {
        const index = bits === 8 ? bytes[row + x] : (bytes[row + (x >> 3)] >> (7 - (x & 7))) & 1;
        if (mode === "P") data.set(palette[index] ?? [0, 0, 0], at);
        else data[at] = mode === "1" ? 255 * index : index;
      }
    }
  }
  return { width, height, channels, data, mode };
}

// What preprocess.json's `input` says clip.mjs may read: the formats, TIFF's modes and compressions, the
// largest width * height. loadModel has checked them (readPreprocess); this guards a model object whose
// `preprocess` a caller built or changed.
function readable(input) {
  const formats = input?.formats;
  if (!isObject(formats) || !Number.isInteger(input.max_pixels)) {
    throw new ClipError(`preprocess.json lacks input.formats or input.max_pixels, the list of images every consumer reads; ${AGAIN}`);
  }
  return { formats, maxPixels: input.max_pixels, list: Object.keys(formats).join(", ") };
}

// The refusal of a file of a format, kind or size outside preprocess.json's `input`, before decoding.
function refuse(file, why, todo = "convert it to PNG") {
  return new ClipError(`${file} ${why}: ${todo}`, "unreadable_image");
}

// The colour a GIF's first frame gives its transparent index, from its local or global colour table
// (GIF89a: logical screen descriptor, then extensions, then the image descriptor); null if none.
function gifTransparentColour(bytes) {
  let table = bytes[10] & 0x80 ? bytes.subarray(13, 13 + 3 * (2 << (bytes[10] & 7))) : null;
  let at = 13 + (table ? table.length : 0);
  let index = null;
  while (at < bytes.length) {
    if (bytes[at] === 0x21) { // an extension: the graphic control one (0xF9) holds the transparent index
      if (bytes[at + 1] === 0xf9 && bytes[at + 3] & 1) index = bytes[at + 6];
      at += 2;
      while (at < bytes.length && bytes[at] !== 0) at += bytes[at] + 1;
      at += 1;
    } else if (bytes[at] === 0x2c) { // the first image: its own colour table, if any, replaces the global one
      const flags = bytes[at + 9];
      if (flags & 0x80) table = bytes.subarray(at + 10, at + 10 + 3 * (2 << (flags & 7)));
      break;
    } else break;
  }
  return index === null || !table || 3 * index + 2 >= table.length ? null : Array.from(table.subarray(3 * index, 3 * index + 3));
}

// Decodes with sharp (libvips: libjpeg-turbo's decoder in mozjpeg, libpng, libwebp, libtiff; the JPEG,
// WebP and TIFF decoders Pillow uses too), or BMP with decodeBmp, into the mode Pillow opens the file in,
// interleaved channels, for resize and rgb to treat as preprocess.json's `rules` say. Only what
// preprocess.json's `input` lists is decoded: its formats, TIFF's modes and compressions, at most
// `max_pixels` pixels (checked from the header, before decoding). Embedded ICC profiles are ignored, as
// Pillow ignores them: sharp's `ignoreIcc` input option; EXIF orientation is not applied.
async function decode(file, input) {
  const bytes = readImageFile(file);
  const { formats, maxPixels, list } = readable(input);
  if (bytes.length === 0) throw new ClipError(`${file} is an empty file, not an image; clip.mjs reads ${list}`, "unreadable_image");
  const kind = format(bytes);
  if (!kind) throw refuse(file, `is not an image format clip.mjs reads (${list}, as preprocess.json's input.formats lists)`);
  if (!Object.hasOwn(formats, kind)) throw refuse(file, `is in the ${kind} format; clip.mjs reads ${list} (preprocess.json's input.formats)`);
  const damaged = (error) => new ClipError(`${file}: this ${kind} file cannot be decoded (${firstLine(error)}); it may be truncated or damaged`, "unreadable_image");
  const tooLarge = (width, height) => width * height > maxPixels
    && refuse(file, `is ${width} x ${height} pixels, more than preprocess.json's input.max_pixels (${maxPixels})`, "resize it first");
  if (kind === "BMP") {
    const header = bmpHeader(bytes);
    if (header.error) throw damaged(header.error);
    const over = tooLarge(header.width, header.height);
    if (over) throw over;
    const { bits = [], compression: compressions = [] } = formats.BMP ?? {};
    const compression = BMP_COMPRESSIONS[header.compression] ?? `compression ${header.compression}`;
    if (!bits.includes(header.bits) || !compressions.includes(compression)) {
      throw refuse(file, `is a BMP of ${header.bits} bits per pixel with ${compression} compression; clip.mjs reads BMP of `
        + `${bits.join(", ")} bits with ${compressions.join(", ")} compression (preprocess.json's input.formats.BMP)`);
    }
    if (!BMP_DECODED.bits.includes(header.bits) || !BMP_DECODED.compression.includes(compression)) {
      throw refuse(file, `is a BMP of ${header.bits} bits per pixel with ${compression} compression, which preprocess.json lists `
        + `but this clip.mjs does not decode (${BMP_DECODED.bits.join(", ")} bits, ${BMP_DECODED.compression.join(", ")})`, "update clip.mjs from the release that made the files, or convert it to PNG");
    }
    try {
      return decodeBmp(bytes, header);
    } catch (error) {
      throw damaged(error);
    }
  }
  if (kind === "TIFF") {
    const { modes = [], compression: compressions = [] } = formats.TIFF ?? {};
    let tiff;
    try {
      tiff = tiffKind(bytes);
    } catch (error) {
      throw damaged(error);
    }
    if (!modes.includes(tiff.mode) || !compressions.includes(tiff.compression)) {
      throw refuse(file, `is a TIFF of mode ${tiff.mode} with ${tiff.compression} compression; clip.mjs reads TIFF of mode `
        + `${modes.join(" or ")} with ${compressions.join(", ")} compression (preprocess.json's input.formats.TIFF)`);
    }
  }
  let image;
  let meta;
  try {
    // the header's size first, without sharp's own pixel limit (268402689), then decoding within ours
    meta = await sharp(bytes, { animated: false, limitInputPixels: false }).metadata();
    image = sharp(bytes, { failOn: "truncated", animated: false, ignoreIcc: true, limitInputPixels: maxPixels });
  } catch (error) {
    throw damaged(error);
  }
  const over = tooLarge(meta.width, meta.height);
  if (over) throw over;
  try {
    // PNG colour types 4 and 6 carry an alpha channel; a tRNS colour key does not make Pillow premultiply.
    const pngAlpha = kind === "PNG" ? (bytes[25] & 4) !== 0 : meta.hasAlpha;
    const mode = meta.space === "cmyk" ? "CMYK"
      : meta.depth === "ushort" && meta.channels === 1 ? "I;16"
      : meta.isPalette || kind === "GIF" ? "P"
      : meta.bitsPerSample === 1 && meta.channels === 1 ? "1"
      : meta.channels <= 2 ? (pngAlpha && meta.channels === 2 ? "LA" : "L")
      : pngAlpha && meta.channels === 4 ? "RGBA" : "RGB";
    const keep = { CMYK: 4, "I;16": 1, P: 3, 1: 1, L: 1, LA: 2, RGB: 3, RGBA: 4 }[mode];
    let pipeline = image;
    // keep CMYK and 16-bit grey as they are stored (sharp would convert them to sRGB): Pillow does too
    if (mode === "CMYK") pipeline = pipeline.pipelineColourspace("cmyk").toColourspace("cmyk");
    if (mode === "I;16") pipeline = pipeline.pipelineColourspace("grey16").toColourspace("grey16");
    const { data, info } = await pipeline.raw(mode === "I;16" ? { depth: "ushort" } : {}).toBuffer({ resolveWithObject: true });
    const samples = mode === "I;16" ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : data;
    // keep the channels of Pillow's mode: sharp hands grey out as grey, and may add alpha Pillow ignores
    const out = (mode === "I;16" ? new Float64Array(info.width * info.height) : new Uint8Array(info.width * info.height * keep));
    for (let p = 0, q = 0; p < info.width * info.height; p++) {
      for (let c = 0; c < keep; c++) out[q++] = samples[p * info.channels + (mode === "LA" && c === 1 ? info.channels - 1 : c)];
    }
    // libvips writes a GIF's transparent pixels as transparent black; Pillow's RGB conversion gives them
    // their palette colour
    const key = kind === "GIF" && info.channels === 4 ? gifTransparentColour(bytes) : null;
    for (let p = 0; key && p < info.width * info.height; p++) {
      if (samples[p * 4 + 3] === 0) out.set(key, p * 3);
    }
    return { width: info.width, height: info.height, channels: keep, data: out, mode };
  } catch (error) {
    throw damaged(error);
  }
}

// The bytes of an image file: one that does not exist is missing_file, a folder or another unreadable
// path unreadable_image, as the Python runtime has them.
function readImageFile(file) {
  try {
    return readFileSync(file);
  } catch (error) {
    if (error.code === "ENOENT") throw new ClipError(`${file} does not exist; check the path`, "missing_file");
    const why = error.code === "EISDIR" ? "is a folder, not an image" : `cannot be read (${error.code ?? firstLine(error)})`;
    throw new ClipError(`${file} ${why}; pass an image file`, "unreadable_image");
  }
}

// Pillow's bicubic (Keys, a = -0.5) kernel.
function cubic(x) {
  x = Math.abs(x);
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

// Pillow's precompute_coeffs (src/libImaging/Resample.c) for one axis: per output sample, its first
// input sample and its normalised weights, and normalize_coeffs_8bpc's integer weights scaled by 2^22.
// The float operations follow the C code's order (a multiplication by 1 / filterscale, not a division).
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ss = 1 / filterscale;
  return Array.from({ length: outSize }, (_, i) => {
    const center = (i + 0.5) * scale;
    const first = Math.max(0, Math.trunc(center - support + 0.5));
    const end = Math.min(inSize, Math.trunc(center + support + 0.5));
    const raw = [];
    for (let j = first; j < end; j++) raw.push(cubic((j - center + 0.5) * ss));
    const sum = raw.reduce((a, b) => a + b, 0);
    const weights = raw.map((w) => (sum === 0 ? w : w / sum));
    const fixed = weights.map((w) => w * 2 ** 22).map((w) => Math.trunc(w < 0 ? w - 0.5 : w + 0.5));
    return { first, weights, fixed };
  });
}

// Pillow's 16-bit sample store: ROUND_UP of the double sum, then each byte clipped to 0..255 on its own.
function store16(sum) {
  const v = sum >= 0 ? Math.floor(sum + 0.5) : -Math.floor(Math.abs(sum) + 0.5);
  const clip = (x) => Math.min(255, Math.max(0, x));
  return clip(v % 256) + 256 * clip(v >> 8);
}

// One pass of ImagingResampleHorizontal/Vertical: 8-bit channels in fixed point (sums started at 2^21,
// shifted right by 22, clamped to 0..255), 16-bit grey ("I;16") in doubles.
function pass(image, outSize, horizontal) {
  const { width, height, channels: k, data } = image;
  const sixteen = image.mode === "I;16";
  const [inSize, lines] = horizontal ? [width, height] : [height, width];
  const outWidth = horizontal ? outSize : width;
  const [along, across] = horizontal ? [k, k * width] : [k * width, k]; // steps in the input
  const [outAlong, outAcross] = horizontal ? [k, k * outWidth] : [k * outWidth, k];
  const out = sixteen ? new Float64Array(outSize * lines) : new Uint8ClampedArray(k * outSize * lines);
  coefficients(inSize, outSize).forEach(({ first, weights, fixed }, i) => {
    for (let line = 0; line < lines; line++) {
      for (let c = 0; c < k; c++) {
        const base = first * along + line * across + c;
        let sum = sixteen ? 0 : 1 << 21;
        for (let j = 0; j < fixed.length; j++) sum += (sixteen ? weights[j] : fixed[j]) * data[base + j * along];
        out[i * outAlong + line * outAcross + c] = sixteen ? store16(sum) : sum >> 22;
      }
    }
  });
  return { ...image, width: outWidth, height: horizontal ? height : outSize, data: out };
}

// Pillow's NEAREST (ImagingScaleAffine): source positions accumulated in doubles and truncated.
function nearest(image, width, height) {
  const positions = (inSize, outSize) => {
    const step = inSize / outSize;
    let at = step * 0.5;
    return Array.from({ length: outSize }, () => {
      const index = Math.min(Math.trunc(at), inSize - 1);
      at += step;
      return index;
    });
  };
  const [xs, ys, k] = [positions(image.width, width), positions(image.height, height), image.channels];
  const out = new Uint8Array(width * height * k);
  ys.forEach((y, row) => xs.forEach((x, col) => {
    for (let c = 0; c < k; c++) out[(row * width + col) * k + c] = image.data[(y * image.width + x) * k + c];
  }));
  return { ...image, width, height, data: out };
}

// Pillow's LA/RGBA -> La/RGBa conversion (MULDIV255) and back, on the colour channels, in place.
function premultiply(image, divide) {
  const { data, channels: k } = image;
  for (let p = 0; p < data.length; p += k) {
    const alpha = data[p + k - 1];
    for (let c = p; c < p + k - 1; c++) {
      if (!divide) data[c] = (((data[c] * alpha + 128) >> 8) + data[c] * alpha + 128) >> 8;
      else if (alpha !== 0 && alpha !== 255) data[c] = Math.min(255, Math.floor((255 * data[c]) / alpha));
    }
  }
}

// Image.resize(size, BICUBIC) as Pillow does it for the image's mode: NEAREST for "P" and "1",
// premultiplied alpha for "LA" and "RGBA", one pass per axis whose size changes, in Pillow's order.
function resize(image, width, height) {
  if (width === image.width && height === image.height) return image;
  if (image.mode === "P" || image.mode === "1") return nearest(image, width, height);
  const alpha = image.mode === "LA" || image.mode === "RGBA";
  if (alpha) premultiply(image, false);
  const verticalFirst = height < image.height && image.height - height > 2 * (image.width - width);
  for (const horizontal of verticalFirst ? [false, true] : [true, false]) {
    if (horizontal && width !== image.width) image = pass(image, width, true);
    if (!horizontal && height !== image.height) image = pass(image, height, false);
  }
  if (alpha) premultiply(image, true);
  return image;
}

// Pillow's convert("RGB") of one pixel of the resized image, for each mode.
function rgb(image, p) {
  const { data, mode } = image;
  const k = image.channels;
  if (mode === "I;16") return Array(3).fill(Math.min(255, data[p]));
  if (k <= 2) return Array(3).fill(data[p * k]);
  if (mode === "CMYK") {
    // cmyk2rgb: nk - MULDIV255(c, nk) per colour, nk = 255 - K
    const nk = 255 - data[p * 4 + 3];
    return [0, 1, 2].map((c) => {
      const t = data[p * 4 + c] * nk + 128;
      return Math.min(255, Math.max(0, nk - (((t >> 8) + t) >> 8)));
    });
  }
  return [data[p * k], data[p * k + 1], data[p * k + 2]];
}

// clip_onnx.preprocess.load: float32 [N, 3, R, R] following preprocess.json.
export async function pixels(model, files) {
  const preprocess = await needPreprocess(model);
  const { resolution: r, mean, std } = preprocess;
  const out = new Float32Array(files.length * 3 * r * r);
  for (const [n, file] of files.entries()) {
    const decoded = await decode(file, preprocess.input);
    const { width, height } = decoded;
    // Shorter side to R, the longer floored; the integer division is exact in doubles at image sizes.
    const [w, h] = width <= height ? [r, Math.floor((r * height) / width)] : [Math.floor((r * width) / height), r];
    const image = resize(decoded, w, h);
    // Centre crop offset round((side - R) / 2), halves to even as Python rounds.
    const offset = (side) => ((side - r) >> 1) + ((side - r) % 4 === 3 ? 1 : 0);
    const [left, top] = [offset(w), offset(h)];
    for (let y = 0; y < r; y++) {
      for (let x = 0; x < r; x++) {
        const colour = rgb(image, (top + y) * image.width + left + x);
        for (let c = 0; c < 3; c++) {
          // Every step rounds to float32, as numpy's float32 arithmetic does (no fused multiply-add).
          const [m, s] = [Math.fround(mean[c]), Math.fround(std[c])];
          out[((n * 3 + c) * r + y) * r + x] = Math.fround(Math.fround(colour[c] / 255) - m) / s;
        }
      }
    }
  }
  return out;
}

// Rows of an [N, D] float32 output.
function rows(tensor) {
  const d = tensor.dims[1];
  return Array.from({ length: tensor.dims[0] }, (_, i) => tensor.data.slice(i * d, (i + 1) * d));
}

async function run(session, tensor) {
  const outputs = await session.run({ [session.inputNames[0]]: tensor });
  return rows(outputs[session.outputNames[0]]);
}

// CLIP.encode_image: one Float32Array per file, not normalised; none for no files. The visual graph's
// files (its graph, its data, preprocess.json) are checked, and its session made, before any image is read.
export async function encodeImage(model, files) {
  if (!files.length) return [];
  const visual = await graphSession(model, "visual");
  const r = (await needPreprocess(model)).resolution;
  return run(visual, new ort.Tensor("float32", await pixels(model, files), [files.length, 3, r, r]));
}

// CLIP.encode_text: one Float32Array per text, not normalised; none for no texts.
export async function encodeText(model, texts, { truncate = false } = {}) {
  if (!texts.length) return [];
  const transformer = await graphSession(model, "transformer");
  await needTokenizer(model);
  const ids = tokenize(model, texts, { truncate });
  return run(transformer, new ort.Tensor("int32", ids, [texts.length, model.contextLength]));
}

// CLIP.forward's logits_per_image: exp(logit_scale) * cosine similarity.
export function logits(model, imageEmbeds, textEmbeds) {
  const unit = (v) => {
    const norm = Math.hypot(...v);
    return Array.from(v, (x) => x / norm);
  };
  const texts = textEmbeds.map(unit);
  return imageEmbeds.map(unit).map((image) =>
    texts.map((text) => model.manifest.logit_scale.exp * image.reduce((sum, x, k) => sum + x * text[k], 0)),
  );
}

// Zero-shot classification, as clip_onnx's Model.probabilities: per image, the softmax over the texts of
// its logits (each row sums to 1). No texts is a usage error: a softmax over nothing has no value.
export function probabilities(model, imageEmbeds, textEmbeds) {
  if (!textEmbeds.length) throw new ClipError("probabilities over no texts: give at least one label", "usage");
  return logits(model, imageEmbeds, textEmbeds).map((row) => {
    const top = Math.max(...row);
    const shifted = row.map((value) => Math.exp(value - top));
    const sum = shifted.reduce((a, b) => a + b, 0);
    return shifted.map((value) => value / sum);
  });
}

const USAGE = 'usage: node clip.mjs FOLDER --image a.png [--image ...] --text "a cat" [--text ...] [--truncate] [--json] [--no-sha256-check]';
const DOWNLOAD_USAGE = "usage: node clip.mjs download NAME -o DIR [OPTIONS] (variant NAME, as ViT-B-32, of the release this package pins) | node clip.mjs download REPO --revision COMMIT_OR_TAG -o DIR [OPTIONS] (org/name at a revision); OPTIONS: [--precision fp32|fp16|int8] [--graphs transformer,visual] [--endpoint URL]";

// parseArgs on `args` with `options`; anything it refuses is a usage error.
function parseWith(args, options, usage) {
  try {
    return parseArgs({ args, allowPositionals: true, options });
  } catch (error) {
    throw new ClipError(`${firstLine(error)}; ${usage}`, "usage");
  }
}

// The command line's folder and options; anything else is a usage error.
function parse(args) {
  const { values, positionals } = parseWith(args, {
    image: { type: "string", multiple: true, default: [] },
    text: { type: "string", multiple: true, default: [] },
    truncate: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    "no-sha256-check": { type: "boolean", default: false },
  }, USAGE);
  if (positionals.length !== 1 || !values.image.length || !values.text.length) throw new ClipError(USAGE, "usage");
  return { values, positionals };
}

// `download NAME -o DIR` (variant NAME of the release this package pins: downloadRelease) or `download
// REPO --revision R -o DIR` (download), each [--precision fp32|fp16] [--graphs a,b] [--endpoint URL], as
// the Rust crate's clip-onnx download: the folder written, on stdout.
async function downloadCommand(args) {
  const { values, positionals } = parseWith(args, {
    revision: { type: "string" },
    output: { type: "string", short: "o" },
    precision: { type: "string", default: "fp32" },
    graphs: { type: "string", multiple: true },
    endpoint: { type: "string" },
  }, DOWNLOAD_USAGE);
  // a repo is org/name; a name without "/" is a variant of the pinned release, whose tag is the revision
  const byName = positionals.length === 1 && !positionals[0].includes("/");
  if (byName && values.revision !== undefined) {
    throw new ClipError(`argument --revision: it goes with REPO (org/name); a variant name (${positionals[0]}) downloads the release `
      + `this package pins, at its tag; ${DOWNLOAD_USAGE}`, "usage");
  }
  if (positionals.length !== 1 || (!byName && values.revision === undefined) || values.output === undefined) {
    const lacked = [!positionals.length && "NAME or REPO", positionals.length && !byName && values.revision === undefined && "--revision",
      values.output === undefined && "-o/--output"].filter(Boolean);
    const why = positionals.length > 1 ? `unrecognized arguments: ${positionals.slice(1).join(" ")}` : `the following arguments are required: ${lacked.join(", ")}`;
    throw new ClipError(`${why}; ${DOWNLOAD_USAGE}`, "usage");
  }
  if (!PRECISIONS.includes(values.precision)) {
    throw new ClipError(`argument --precision: invalid choice: ${JSON.stringify(values.precision)} (choose from ${PRECISIONS.join(", ")}); ${DOWNLOAD_USAGE}`, "usage");
  }
  const graphs = values.graphs?.flatMap((list) => list.split(",")).map((graph) => graph.trim()).filter(Boolean);
  if (graphs && !graphs.length) throw new ClipError(`argument --graphs: no graph named; ${DOWNLOAD_USAGE}`, "usage");
  const options = { precision: values.precision, graphs, target: values.output, endpoint: values.endpoint };
  const folder = byName ? await downloadRelease({ name: positionals[0], ...options })
    : await download({ repo: positionals[0], revision: values.revision, ...options });
  console.log(folder);
}

async function main() {
  if (process.argv[2] === "download") return downloadCommand(process.argv.slice(3));
  const { values, positionals } = parse(process.argv.slice(2));
  const model = await loadModel(positionals[0], { checkSha256: !values["no-sha256-check"] });
  const imageEmbeds = await encodeImage(model, values.image);
  const textEmbeds = await encodeText(model, values.text, { truncate: values.truncate });
  const perImage = logits(model, imageEmbeds, textEmbeds);
  if (values.json) {
    const plain = (matrix) => matrix.map((row) => Array.from(row));
    const result = { image_embeds: plain(imageEmbeds), text_embeds: plain(textEmbeds), logits_per_image: perImage };
    console.log(JSON.stringify(result));
    return;
  }
  values.image.forEach((file, i) => {
    console.log(file);
    values.text.forEach((text, t) => console.log(`  ${perImage[i][t].toFixed(2).padStart(7)}  ${text}`));
  });
}

// Run as a command: `node clip.mjs`, or the package's `clip-onnx` bin, a link to this file (node_modules/.bin),
// hence the real path; imported as a module, nothing runs.
const invoked = (() => {
  try {
    return Boolean(process.argv[1]) && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();
if (invoked) {
  // a ClipError is one line on stderr, exit 2 for a usage error (like argparse's), else 1; a bug keeps its stack
  main().catch((error) => {
    console.error(error instanceof ClipError ? error.message : (error?.stack ?? error));
    process.exit(error?.kind === "usage" ? 2 : 1);
  });
}
