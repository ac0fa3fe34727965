// Pixels equal Python's (clip_onnx.preprocess.load) bit for bit, file by file: each file's float32
// [3, R, R] (little-endian) hashes to vectors.json's SHA-256 of Python's. The PNGs in every mode at
// several resolutions (`pixels`), every other listed kind of file (`all_images`: JPEG kinds, ICC
// profiles, EXIF, 16-bit PNG, WebP, GIF, BMP, TIFF) at 224, the JPEG, and `more_pixels` (BMP kinds, CMYK
// with black, sizes already at R, pass-order ties); every unlisted and bad file refused (kind
// unreadable_image, one line naming it); what is read follows preprocess.json's `input`. Prints how many
// pixel cases ran and differ.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";

import sharp from "sharp";

import { ClipError, loadModel, pixels } from "../clip.mjs";
import { EXPORT, ROOT, at, pixelsSha256 as hashed, vectors } from "./vectors.mjs";

const model = await loadModel(EXPORT, { checkSha256: false });
const withResolution = (resolution) => ({ ...model, preprocess: { ...model.preprocess, resolution } });
const images = vectors.images.map(at);
const allImages = vectors.all_images.map(at);
const unlistedImages = vectors.unlisted_images.map(at);
const badImages = vectors.bad_images.map(at);

// Every case the vectors hold, so the count printed at the end says none is left out.
const EXPECTED = Object.values(vectors.pixels).flat().length + vectors.all_pixels.length + 1 + vectors.more_pixels.length;
const tally = { ran: 0, differ: [] };

// The SHA-256 of clip.mjs's pixels of one file at R = resolution, as Python hashes its own.
async function pixelsSha256(file, resolution) {
  const values = await pixels(withResolution(resolution), [file]);
  assert.equal(values.length, 3 * resolution * resolution);
  return hashed(values);
}

// [file, R, Python's SHA-256] cases whose pixels differ, each named with its file and R; counted in `tally`.
async function differing(cases) {
  const wrong = [];
  for (const [file, resolution, sha256] of cases) {
    tally.ran++;
    if (await pixelsSha256(file, resolution) !== sha256) wrong.push(`${path.relative(ROOT, file)} at R = ${resolution}`);
  }
  tally.differ.push(...wrong);
  return wrong;
}

for (const [resolution, hashes] of Object.entries(vectors.pixels)) {
  test(`the PNGs at R = ${resolution} are Python's pixels bit for bit`, async () => {
    assert.equal(hashes.length, images.length);
    assert.deepEqual(await differing(images.map((file, n) => [file, Number(resolution), hashes[n]])), []);
  });
}

test("every listed kind of file at R = 224 is Python's pixels bit for bit", async (t) => {
  const names = allImages.map((file) => path.basename(file));
  // the kinds this suite must see, so a shorter list cannot pass unnoticed
  for (const name of ["jpeg-icc.jpg", "jpeg-grey-icc.jpg", "jpeg-camera-icc.jpg", "png-icc.png", "png-grey-icc.png",
    "jpeg-exif-rotated.jpg", "jpeg-cmyk.jpg", "png-rgb16.png", "webp-alpha.webp", "gif-animated.gif", "bmp-1.bmp",
    "bmp-8.bmp", "bmp-24.bmp", "bmp-32.bmp", "tiff-grey-tiff_lzw.tiff", "tiff-tiff_adobe_deflate.tiff"]) {
    assert.ok(names.includes(name), `all_images lacks ${name}`);
  }
  assert.equal(vectors.all_pixels.length, allImages.length);
  assert.deepEqual(await differing(allImages.map((file, n) => [file, 224, vectors.all_pixels[n]])), []);
  t.diagnostic(`${allImages.length} files compared bit for bit at R = 224, 0 skipped`);
});

test("the JPEG at R = 224 is Python's pixels bit for bit", async () => {
  assert.deepEqual(await differing([[at(vectors.jpeg), 224, vectors.jpeg_pixels]]), []);
});

test("Python's pixels where the shorter side already is R, at pass-order ties, CMYK with black, and BMP kinds", async () => {
  const names = vectors.more_pixels.map(({ file }) => path.basename(file));
  for (const name of ["cmyk-black.jpg", "bmp-grey.bmp", "bmp-1-colours.bmp", "bmp-8-top-down.bmp", "bmp-24-top-down.bmp", "bmp-32-top-down.bmp"]) {
    assert.ok(names.includes(name), `more_pixels lacks ${name}`);
  }
  assert.deepEqual(await differing(vectors.more_pixels.map(({ file, resolution, sha256 }) => [at(file), resolution, sha256])), []);
});

test("every unlisted and bad file is refused: unreadable_image, one line naming the file", async (t) => {
  const refused = [...unlistedImages, ...badImages];
  assert.ok(unlistedImages.length >= 7 && badImages.length >= 9, "the vectors hold too few refused files");
  const wrong = [];
  for (const file of refused) {
    try {
      await pixels(model, [file]);
      wrong.push(`${file}: decoded`);
    } catch (error) {
      if (!(error instanceof ClipError) || error.kind !== "unreadable_image" || !error.message.startsWith(file) || error.message.includes("\n")) {
        wrong.push(`${file}: ${error.kind} ${error.message}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
  t.diagnostic(`${refused.length} files refused (${unlistedImages.length} unlisted, ${badImages.length} bad)`);
});

test("a batch is the files' pixels in order", async () => {
  const [a, b] = [images[0], images[4]];
  const batch = await pixels(withResolution(32), [a, b]);
  const one = async (file) => Array.from(await pixels(withResolution(32), [file]));
  assert.deepEqual(Array.from(batch), [...(await one(a)), ...(await one(b))]);
});

const READS = "PNG, JPEG, WEBP, GIF, BMP, TIFF";

test("a bad file is an error naming it and saying why", async () => {
  const named = Object.fromEntries([...badImages, ...unlistedImages].map((file) => [path.basename(file), file]));
  const kind = "unreadable_image";
  const says = (name, message) => assert.rejects(pixels(model, [named[name]]), { message: `${named[name]}${message}`, kind });
  const starts = (name, start) => assert.rejects(pixels(model, [named[name]]), (error) => {
    assert.equal(error.kind, kind);
    assert.ok(error.message.startsWith(`${named[name]}${start}`), error.message);
    return true;
  });
  await says("empty.png", ` is an empty file, not an image; clip.mjs reads ${READS}`);
  await says("text.png", ` is not an image format clip.mjs reads (${READS}, as preprocess.json's input.formats lists): convert it to PNG`);
  await says("icon.ico", ` is in the ICO format; clip.mjs reads ${READS} (preprocess.json's input.formats): convert it to PNG`);
  await says("tiff-jpeg.tiff", " is a TIFF of mode RGB with jpeg compression; clip.mjs reads TIFF of mode RGB or L with raw, "
    + "tiff_lzw, tiff_adobe_deflate compression (preprocess.json's input.formats.TIFF): convert it to PNG");
  await starts("tiff-cmyk.tiff", " is a TIFF of mode CMYK (4 × 8/8/8/8 bits) with raw compression; ");
  await starts("tiff-16.tiff", " is a TIFF of mode grey (1 × 16 bits) with raw compression; ");
  await says("over-the-limit.png", " is 13378 x 13378 pixels, more than preprocess.json's input.max_pixels (178956970): resize it first");
  for (const [name, format, why] of [["truncated-chelsea.jpg", "JPEG", ""], ["truncated-chelsea.png", "PNG", ""],
    ["truncated-webp-lossy.webp", "WEBP", ""], ["truncated-gif.gif", "GIF", ""],
    ["truncated-bmp-24.bmp", "BMP", "image file is truncated"], ["truncated-tiff-raw.tiff", "TIFF", "image file is truncated"]]) {
    await starts(name, `: this ${format} file cannot be decoded (${why}`);
  }
});

// A copy of bmp-8.bmp whose header says `bits` bits per pixel and compression `compression`.
function bmpOf(scratch, bits, compression) {
  const file = path.join(scratch, `bmp-${bits}-${compression}.bmp`);
  const bytes = Buffer.from(readFileSync(allImages.find((name) => path.basename(name) === "bmp-8.bmp")));
  bytes.writeUInt16LE(bits, 28);
  bytes.writeUInt32LE(compression, 30);
  writeFileSync(file, bytes);
  return file;
}

test("a BMP of bits or a compression preprocess.json's input.formats.BMP does not list is refused, saying so", async () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), "clip-node-bmp-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  assert.deepEqual(model.preprocess.input.formats.BMP, { bits: [1, 8, 24, 32], compression: ["raw"] });
  for (const [bits, compression, name] of [[8, 1, "rle8"], [4, 2, "rle4"], [4, 0, "raw"], [16, 0, "raw"], [32, 3, "bitfields"],
    [24, 4, "jpeg"], [24, 5, "png"], [24, 9, "compression 9"]]) {
    const file = bmpOf(scratch, bits, compression);
    await assert.rejects(pixels(model, [file]), {
      message: `${file} is a BMP of ${bits} bits per pixel with ${name} compression; clip.mjs reads BMP of 1, 8, 24, 32 bits `
        + "with raw compression (preprocess.json's input.formats.BMP): convert it to PNG",
      kind: "unreadable_image",
    });
  }
  // the vectors' BMPs outside the list, refused by every consumer
  const unlisted = unlistedImages.filter((file) => path.basename(file).startsWith("bmp-"));
  assert.deepEqual(unlisted.map((file) => path.basename(file)).sort(), ["bmp-16.bmp", "bmp-4.bmp", "bmp-rle8.bmp"]);
  for (const file of unlisted) {
    await assert.rejects(pixels(model, [file]), (error) => {
      assert.equal(error.kind, "unreadable_image");
      assert.ok(error.message.startsWith(`${file} is a BMP of `) && error.message.includes(" bits per pixel with "), error.message);
      assert.ok(!error.message.includes("\n"));
      return true;
    });
  }
});

test("the BMP kinds read are preprocess.json's input.formats.BMP, within what decodeBmp decodes", async () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), "clip-node-bmp-list-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  const named = Object.fromEntries(allImages.map((file) => [path.basename(file), file]));
  const bmp = (BMP) => ({ ...model, preprocess: { ...model.preprocess, input: { ...model.preprocess.input, formats: { ...model.preprocess.input.formats, BMP } } } });
  await assert.rejects(pixels(bmp({ bits: [1, 8, 32], compression: ["raw"] }), [named["bmp-24.bmp"]]), {
    message: `${named["bmp-24.bmp"]} is a BMP of 24 bits per pixel with raw compression; clip.mjs reads BMP of 1, 8, 32 bits with `
      + "raw compression (preprocess.json's input.formats.BMP): convert it to PNG",
    kind: "unreadable_image",
  });
  await assert.rejects(pixels(bmp({ bits: [1, 8, 24, 32], compression: [] }), [named["bmp-8.bmp"]]), { kind: "unreadable_image" });
  await assert.rejects(pixels(bmp({}), [named["bmp-1.bmp"]]), { kind: "unreadable_image" });
  await pixels(bmp({ bits: [8], compression: ["raw"] }), [named["bmp-8.bmp"]]);
  // listed, but not a kind this decoder reads: refused, naming clip.mjs rather than decoding wrong pixels
  const file = bmpOf(scratch, 4, 0);
  await assert.rejects(pixels(bmp({ bits: [1, 4, 8, 24, 32], compression: ["raw", "rle8"] }), [file]), {
    message: `${file} is a BMP of 4 bits per pixel with raw compression, which preprocess.json lists but this clip.mjs does not `
      + "decode (1, 8, 24, 32 bits, raw): update clip.mjs from the release that made the files, or convert it to PNG",
    kind: "unreadable_image",
  });
});

test("what is read is preprocess.json's input: its formats, TIFF kinds and pixel limit", async () => {
  const named = Object.fromEntries(allImages.map((file) => [path.basename(file), file]));
  const input = model.preprocess.input;
  const withInput = (changes) => ({ ...model, preprocess: { ...model.preprocess, input: { ...input, ...changes } } });
  const { GIF, ...noGif } = input.formats;
  await assert.rejects(pixels(withInput({ formats: noGif }), [named["gif.gif"]]),
    { message: `${named["gif.gif"]} is in the GIF format; clip.mjs reads PNG, JPEG, WEBP, BMP, TIFF (preprocess.json's input.formats): convert it to PNG`, kind: "unreadable_image" });
  const { BMP, ...noBmp } = input.formats;
  await assert.rejects(pixels(withInput({ formats: noBmp }), [named["bmp-24.bmp"]]), { kind: "unreadable_image" });
  const tiff = (TIFF) => withInput({ formats: { ...input.formats, TIFF } });
  await assert.rejects(pixels(tiff({ ...input.formats.TIFF, compression: ["raw"] }), [named["tiff-tiff_lzw.tiff"]]), { kind: "unreadable_image" });
  await assert.rejects(pixels(tiff({ ...input.formats.TIFF, modes: ["RGB"] }), [named["tiff-grey-raw.tiff"]]), { kind: "unreadable_image" });
  await pixels(tiff({ ...input.formats.TIFF, modes: ["L"] }), [named["tiff-grey-raw.tiff"]]);
  // the limit is on width * height, equal allowed, for sharp's formats and clip.mjs's BMP decoder alike
  // the three hold the same photo (skimage's chelsea, halved): the PNG's header gives its size
  const { width, height } = await sharp(named["chelsea.png"]).metadata();
  const pixelsOf = width * height;
  for (const name of ["chelsea.png", "bmp-24.bmp", "tiff-raw.tiff"]) {
    await pixels(withInput({ max_pixels: pixelsOf }), [named[name]]);
    await assert.rejects(pixels(withInput({ max_pixels: pixelsOf - 1 }), [named[name]]),
      { message: `${named[name]} is ${width} x ${height} pixels, more than preprocess.json's input.max_pixels (${pixelsOf - 1}): resize it first`, kind: "unreadable_image" });
  }
  // an export from before the list cannot say what to read: export it again
  await assert.rejects(pixels(withInput({ formats: undefined }), [named["chelsea.png"]]), { kind: "invalid_input", message: /lacks input\.formats/ });
  await assert.rejects(pixels(withInput({ max_pixels: undefined }), [named["chelsea.png"]]), { kind: "invalid_input" });
});

test("the kind of a file that cannot be decoded is told by its first bytes", async () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), "clip-node-kinds-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  const cases = [
    ["png", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "PNG"],
    ["jpeg", [0xff, 0xd8, 0xff], "JPEG"],
    ["webp", [..."RIFF"].map((c) => c.charCodeAt(0)).concat([0, 0, 0, 0], [..."WEBP"].map((c) => c.charCodeAt(0))), "WEBP"],
    ["bmp", [..."BM"].map((c) => c.charCodeAt(0)).concat(Array(16).fill(0)), "BMP"],
    ["bmp-short", [..."BM"].map((c) => c.charCodeAt(0)).concat(Array(15).fill(0)), null],
    ["gif", [..."GIF89a"].map((c) => c.charCodeAt(0)), "GIF"],
    ["tiff-le", [0x49, 0x49, 0x2a, 0x00, 0, 0, 0, 0], "TIFF"],
    ["tiff-be", [0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 0], "TIFF"],
    ["png-short", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a], null], // the signature is 8 bytes
    ["jpeg-short", [0xff, 0xd8], null],
    ["jpeg-other", [0xff, 0xd8, 0xfe], null],
    ["jpeg-no-ff", [0x00, 0xd8, 0xff], null],
    ["jpeg-no-d8", [0xff, 0x00, 0xff], null],
    ["jpeg-third", [0x00, 0x00, 0xff], null],
    ["riff-wave", [..."RIFF"].map((c) => c.charCodeAt(0)).concat([0, 0, 0, 0], [..."WAVE"].map((c) => c.charCodeAt(0))), null],
    ["webp-no-riff", [..."RIFX"].map((c) => c.charCodeAt(0)).concat([0, 0, 0, 0], [..."WEBP"].map((c) => c.charCodeAt(0))), null],
    ["tiff-mixed", [0x49, 0x49, 0x00, 0x2a, 0, 0, 0, 0], null],
  ];
  for (const [name, bytes, kind] of cases) {
    const file = path.join(scratch, name);
    writeFileSync(file, Buffer.from(bytes));
    await assert.rejects(pixels(model, [file]), (error) => {
      const want = kind ? `${file}: this ${kind} file cannot be decoded (`
        : `${file} is not an image format clip.mjs reads (${READS}, as preprocess.json's input.formats lists): convert it to PNG`;
      assert.ok(kind ? error.message.startsWith(want) : error.message === want, `${name}: ${error.message}`);
      return true;
    });
  }
});

test("every pixel case of the vectors ran, none differs", (t) => {
  t.diagnostic(`${tally.ran} pixel cases ran, ${tally.differ.length} differ, ${EXPECTED - tally.ran} skipped`);
  assert.deepEqual(tally.differ, []);
  assert.equal(tally.ran, EXPECTED);
});
