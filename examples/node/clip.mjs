#!/usr/bin/env node
// CLIP image and text embeddings in Node.js from an exported clip-onnx variant folder: its visual and
// transformer graphs, tokenizer.json and preprocess.json. Pixels equal the Python runtime's
// (clip_onnx.preprocess) for PNG, JPEG, WebP, GIF and TIFF files (docs/consumers.md lists the
// exceptions), token ids (clip_onnx.tokenizer) for texts that ftfy leaves alone.
//
// loadModel first checks the files the two graphs need (each graph's file and external data,
// tokenizer.json, preprocess.json) against manifest.json: size, then SHA-256, hashed as a stream. A
// changed, truncated or missing file is refused in one line naming it; { checkSha256: false }
// (--no-sha256-check) skips the check for files you have already checked.
//
//   ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev    (the CPU binaries ship in onnxruntime-node; skips CUDA extras)
//   node clip.mjs FOLDER --image cat.png --text "a cat" --text "a dog" [--truncate] [--json] [--no-sha256-check]
//
// Tests: test/*.test.mjs (node:test), run by tests/test_node_example.py against the shared test vectors.
import { createHash } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Tokenizer } from "@huggingface/tokenizers";
import { decodeHTML } from "entities";
import ort from "onnxruntime-node";
import sharp from "sharp";

const MANIFEST = "manifest.json";
// The manifest format_versions this consumer reads (clip_onnx/manifest.py says when the version rises).
export const FORMAT_VERSIONS = [1];
const AGAIN = "download or export the variant again";
const readJson = (folder, name) => JSON.parse(readFileSync(path.join(folder, name), "utf8"));

// The files the given graphs need, as the Python runtime and the Rust crate define them: each graph's
// file and every file of its external data, then manifest.tokenizer.file and manifest.preprocessing.file.
export function neededFiles(manifest, graphs) {
  const names = graphs.flatMap((graph) => {
    const spec = manifest.graphs?.[graph];
    if (!spec) throw new Error(`${MANIFEST} lists no ${graph} graph; export the variant with it`);
    return [spec.file, ...spec.external_data];
  });
  return [...new Set([...names, manifest.tokenizer.file, manifest.preprocessing.file])];
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
// manifest.files records; the first that is not is an Error of one line naming it.
export async function checkFiles(folder, manifest, names) {
  for (const name of names) {
    if (typeof name !== "string" || path.basename(name) !== name) {
      throw new Error(`${path.join(folder, MANIFEST)} names ${JSON.stringify(name)}, not a file of the folder; ${AGAIN}`);
    }
    const file = path.join(folder, name);
    const facts = manifest.files?.[name];
    if (!facts) throw new Error(`${file} is not listed in ${path.join(folder, MANIFEST)}; ${AGAIN}`);
    let info;
    try {
      info = await stat(file);
    } catch (error) {
      throw new Error(error.code === "ENOENT" ? `${file} is missing; ${AGAIN}` : `${file} cannot be read (${error.code}); ${AGAIN}`);
    }
    if (!info.isFile()) throw new Error(`${file} is not a file; ${AGAIN}`);
    if (info.size !== facts.bytes) {
      throw new Error(`${file} has ${info.size} bytes where ${MANIFEST} records ${facts.bytes}: it is incomplete or changed; ${AGAIN}`);
    }
    if ((await sha256File(file)) !== facts.sha256) {
      throw new Error(`${file} does not match its SHA-256 in ${MANIFEST}: it changed since export; ${AGAIN}`);
    }
  }
}

// The visual and transformer graphs, the tokenizer and the preprocessing rules of an exported folder;
// every file they need is checked against manifest.json first unless checkSha256 is false.
export async function loadModel(folder, { checkSha256 = true } = {}) {
  let manifest;
  try {
    manifest = readJson(folder, MANIFEST);
  } catch (error) {
    throw new Error(error.code === "ENOENT" ? `${folder} has no ${MANIFEST}; point at a folder written by \`clip-onnx export\``
      : `${path.join(folder, MANIFEST)} cannot be read (${error.message.split("\n")[0]}); ${AGAIN}`);
  }
  if (!FORMAT_VERSIONS.includes(manifest.format_version)) {
    throw new Error(`${path.join(folder, MANIFEST)}: format_version ${manifest.format_version}, but this clip.mjs reads `
      + `${FORMAT_VERSIONS.join(", ")}; update clip.mjs from the release that made the files`);
  }
  const graphs = ["visual", "transformer"];
  if (checkSha256) await checkFiles(folder, manifest, neededFiles(manifest, graphs));
  const tokenizer = readJson(folder, manifest.tokenizer.file);
  const session = (graph) => ort.InferenceSession.create(path.join(folder, manifest.graphs[graph].file));
  return {
    manifest,
    tokenizer: new Tokenizer(tokenizer, {}),
    // Tokenizers.js ignores the file's padding and truncation settings: tokenize() applies them.
    contextLength: tokenizer.padding.strategy.Fixed,
    padId: tokenizer.padding.pad_id,
    preprocess: readJson(folder, manifest.preprocessing.file),
    visual: await session(graphs[0]),
    transformer: await session(graphs[1]),
  };
}

// clip_onnx.tokenizer.clean without ftfy.fix_text (no JavaScript port): mojibake, curly quotes,
// ligatures and full-width forms stay as they are. Like CLIP, HTML entities are decoded twice.
export const clean = (text) => decodeHTML(decodeHTML(text));

// clip.tokenize: int32 [N, contextLength], zero padded. A text longer than that is an error unless
// `truncate`, which keeps its first tokens and the end token, as the Rust tokenizers' truncation does.
export function tokenize(model, texts, { truncate = false } = {}) {
  const length = model.contextLength;
  const ids = new Int32Array(texts.length * length).fill(model.padId);
  texts.forEach((text, row) => {
    let tokens = model.tokenizer.encode(clean(text)).ids;
    if (tokens.length > length) {
      if (!truncate) throw new Error(`text ${JSON.stringify(text.slice(0, 60))} is longer than ${length} tokens; pass { truncate: true } (--truncate)`);
      tokens = [...tokens.slice(0, length - 1), tokens.at(-1)];
    }
    ids.set(tokens, row * length);
  });
  return ids;
}

// The image format by its first bytes, for errors that name it.
function format(bytes) {
  const ascii = (start, end) => bytes.subarray(start, end).toString("latin1");
  if (bytes.length === 0) return "an empty file";
  if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47) return "PNG";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "JPEG";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "WebP";
  if (ascii(0, 4) === "GIF8") return "GIF";
  if (ascii(0, 4) === "II*\0" || ascii(0, 4) === "MM\0*") return "TIFF";
  return "not an image format this example reads (PNG, JPEG, WebP, GIF, TIFF)";
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
// WebP and TIFF decoders Pillow uses too) into the mode Pillow opens the file in: interleaved channels
// and the rules of preprocess.json's `input.modes` that apply to it.
async function decode(file) {
  const bytes = readFileSync(file);
  const kind = format(bytes);
  if (!["PNG", "JPEG", "WebP", "GIF", "TIFF"].includes(kind)) throw new Error(`${file}: ${kind}`);
  try {
    const image = sharp(bytes, { failOn: "truncated", animated: false });
    const meta = await image.metadata();
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
    throw new Error(`${file}: this ${kind} file cannot be decoded (${error.message}); it may be truncated or damaged`);
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
  const { resolution: r, mean, std } = model.preprocess;
  const out = new Float32Array(files.length * 3 * r * r);
  for (const [n, file] of files.entries()) {
    const decoded = await decode(file);
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

// CLIP.encode_image: one Float32Array per file, not normalised.
export async function encodeImage(model, files) {
  const r = model.preprocess.resolution;
  return run(model.visual, new ort.Tensor("float32", await pixels(model, files), [files.length, 3, r, r]));
}

// CLIP.encode_text: one Float32Array per text, not normalised.
export function encodeText(model, texts, options) {
  const ids = tokenize(model, texts, options);
  return run(model.transformer, new ort.Tensor("int32", ids, [texts.length, model.contextLength]));
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

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      image: { type: "string", multiple: true, default: [] },
      text: { type: "string", multiple: true, default: [] },
      truncate: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      "no-sha256-check": { type: "boolean", default: false },
    },
  });
  if (positionals.length !== 1 || !values.image.length || !values.text.length) {
    throw new Error('usage: node clip.mjs FOLDER --image a.png [--image ...] --text "a cat" [--text ...] [--truncate] [--json] [--no-sha256-check]');
  }
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

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error.message);
    process.exit(1);
  });
}
