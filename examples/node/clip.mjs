#!/usr/bin/env node
// CLIP image and text embeddings in Node.js from an exported clip-onnx variant folder: its visual and
// transformer graphs, tokenizer.json and preprocess.json. Pixels and token ids equal the Python
// runtime's (clip_onnx.preprocess, clip_onnx.tokenizer) for PNG files and for texts that ftfy leaves alone.
//
//   ONNXRUNTIME_NODE_INSTALL=skip npm ci    (the CPU binaries ship in onnxruntime-node; skips CUDA extras)
//   node clip.mjs FOLDER --image cat.png --text "a cat" --text "a dog" [--truncate] [--json]
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Tokenizer } from "@huggingface/tokenizers";
import { decodeHTML } from "entities";
import jpeg from "jpeg-js";
import ort from "onnxruntime-node";
import { PNG } from "pngjs";

const readJson = (folder, name) => JSON.parse(readFileSync(path.join(folder, name), "utf8"));

export async function loadModel(folder) {
  const manifest = readJson(folder, "manifest.json");
  const tokenizer = readJson(folder, "tokenizer.json");
  const session = (graph) => ort.InferenceSession.create(path.join(folder, manifest.graphs[graph].file));
  return {
    manifest,
    tokenizer: new Tokenizer(tokenizer, {}),
    // Tokenizers.js ignores the file's padding and truncation settings: tokenize() applies them.
    contextLength: tokenizer.padding.strategy.Fixed,
    padId: tokenizer.padding.pad_id,
    preprocess: readJson(folder, "preprocess.json"),
    visual: await session("visual"),
    transformer: await session("transformer"),
  };
}

// clip_onnx.tokenizer.clean without ftfy.fix_text (no JavaScript port): mojibake, curly quotes,
// ligatures and full-width forms stay as they are. Like CLIP, HTML entities are decoded twice.
const clean = (text) => decodeHTML(decodeHTML(text));

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

// The image format by its first bytes, for decoding and for errors that name it.
function format(bytes) {
  const ascii = (start, end) => bytes.subarray(start, end).toString("latin1");
  if (bytes.length === 0) return "an empty file";
  if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47) return "PNG";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "JPEG";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "a WebP file";
  if (ascii(0, 4) === "GIF8") return "a GIF file";
  if (ascii(0, 4) === "II*\0" || ascii(0, 4) === "MM\0*") return "a TIFF file";
  if (ascii(0, 2) === "BM") return "a BMP file";
  return "not an image format this example knows";
}

// Decodes to 8-bit RGBA. `premultiply` marks PNGs with an alpha channel, which Pillow resizes with
// colour premultiplied by alpha. JPEG pixels come from jpeg-js, not libjpeg, so they may differ slightly.
function decode(file) {
  const bytes = readFileSync(file);
  const kind = format(bytes);
  if (kind !== "PNG" && kind !== "JPEG") {
    throw new Error(`${file}: ${kind}; this example reads PNG and JPEG only: convert it to PNG`);
  }
  let png;
  try {
    if (kind === "JPEG") return { ...jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true }), premultiply: false };
    png = PNG.sync.read(bytes);
  } catch (error) {
    throw new Error(`${file}: this ${kind} file cannot be decoded (${error.message}); it may be truncated or damaged`);
  }
  // Pillow resizes palette and 1-bit images with NEAREST and keeps 16-bit grey at full precision.
  if (png.palette || png.depth === 1 || png.depth === 16) {
    throw new Error(`${file}: only 2- to 8-bit grey, RGB and RGBA PNGs are supported (convert it to 8-bit RGB)`);
  }
  // Colour type 4 and 6 (grey or RGB with alpha); a tRNS colour key does not make Pillow premultiply.
  return { width: png.width, height: png.height, data: png.data, premultiply: (png.colorType & 4) !== 0 };
}

// Pillow's bicubic (Keys, a = -0.5) kernel.
function cubic(x) {
  x = Math.abs(x);
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

// Pillow's precompute_coeffs and normalize_coeffs_8bpc (src/libImaging/Resample.c) for one axis:
// per output sample, its first input sample and integer weights scaled by 2^22. The float operations
// follow the C code's order (a multiplication by 1 / filterscale, not a division) to get its bits.
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ss = 1 / filterscale;
  return Array.from({ length: outSize }, (_, i) => {
    const center = (i + 0.5) * scale;
    const first = Math.max(0, Math.trunc(center - support + 0.5));
    const end = Math.min(inSize, Math.trunc(center + support + 0.5));
    const weights = [];
    for (let j = first; j < end; j++) weights.push(cubic((j - center + 0.5) * ss));
    const sum = weights.reduce((a, b) => a + b, 0);
    const fixed = weights.map((w) => (sum === 0 ? w : w / sum) * 2 ** 22).map((w) => Math.trunc(w < 0 ? w - 0.5 : w + 0.5));
    return { first, fixed };
  });
}

// One pass of ImagingResampleHorizontal_8bpc / ImagingResampleVertical_8bpc on RGBA bytes: integer
// sums started at 2^21 (rounding), shifted right by 22, clamped to 0..255 by the Uint8ClampedArray.
function pass(image, outSize, horizontal) {
  const { width, height, data } = image;
  const [inSize, lines] = horizontal ? [width, height] : [height, width];
  const outWidth = horizontal ? outSize : width;
  const [along, across] = horizontal ? [4, 4 * width] : [4 * width, 4]; // byte steps in the input
  const [outAlong, outAcross] = horizontal ? [4, 4 * outWidth] : [4 * outWidth, 4];
  const out = new Uint8ClampedArray(4 * outSize * lines);
  coefficients(inSize, outSize).forEach(({ first, fixed }, i) => {
    for (let line = 0; line < lines; line++) {
      for (let c = 0; c < 4; c++) {
        let sum = 1 << 21;
        const base = first * along + line * across + c;
        for (let j = 0; j < fixed.length; j++) sum += fixed[j] * data[base + j * along];
        out[i * outAlong + line * outAcross + c] = sum >> 22;
      }
    }
  });
  return { width: outWidth, height: horizontal ? height : outSize, data: out };
}

// Pillow's RGBA -> RGBa conversion (MULDIV255) and back (RGBa -> RGBA), in place.
function premultiply(data, divide) {
  for (let p = 0; p < data.length; p += 4) {
    const alpha = data[p + 3];
    for (let c = p; c < p + 3; c++) {
      if (!divide) data[c] = (((data[c] * alpha + 128) >> 8) + data[c] * alpha + 128) >> 8;
      else if (alpha !== 0 && alpha !== 255) data[c] = Math.min(255, Math.floor((255 * data[c]) / alpha));
    }
  }
}

// Image.resize(size, BICUBIC): horizontal pass, then vertical, each skipped when its size is unchanged.
function resize(image, width, height) {
  if (width === image.width && height === image.height) return image;
  const alpha = image.premultiply;
  if (alpha) premultiply(image.data, false);
  if (width !== image.width) image = pass(image, width, true);
  if (height !== image.height) image = pass(image, height, false);
  if (alpha) premultiply(image.data, true);
  return image;
}

// clip_onnx.preprocess.load: float32 [N, 3, R, R] following preprocess.json.
export function pixels(model, files) {
  const { resolution: r, mean, std } = model.preprocess;
  const out = new Float32Array(files.length * 3 * r * r);
  files.forEach((file, n) => {
    const decoded = decode(file);
    const { width, height } = decoded;
    // Shorter side to R, the longer floored; the integer division is exact in doubles at image sizes.
    const [w, h] = width <= height ? [r, Math.floor((r * height) / width)] : [Math.floor((r * width) / height), r];
    const image = resize(decoded, w, h);
    // Centre crop offset round((side - R) / 2), halves to even as Python rounds.
    const offset = (side) => ((side - r) >> 1) + ((side - r) % 4 === 3 ? 1 : 0);
    const [left, top] = [offset(w), offset(h)];
    for (let c = 0; c < 3; c++) {
      // Every step rounds to float32, as numpy's float32 arithmetic does (no fused multiply-add).
      const [m, s] = [Math.fround(mean[c]), Math.fround(std[c])];
      for (let y = 0; y < r; y++) {
        for (let x = 0; x < r; x++) {
          const value = image.data[4 * ((top + y) * image.width + left + x) + c];
          out[((n * 3 + c) * r + y) * r + x] = Math.fround(Math.fround(value / 255) - m) / s;
        }
      }
    }
  });
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
export function encodeImage(model, files) {
  const r = model.preprocess.resolution;
  return run(model.visual, new ort.Tensor("float32", pixels(model, files), [files.length, 3, r, r]));
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
    },
  });
  if (positionals.length !== 1 || !values.image.length || !values.text.length) {
    throw new Error('usage: node clip.mjs FOLDER --image a.png [--image ...] --text "a cat" [--text ...] [--truncate] [--json]');
  }
  const model = await loadModel(positionals[0]);
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
