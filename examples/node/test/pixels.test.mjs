// Pixels equal Python's (clip_onnx.preprocess.load) bit for bit, file by file: the PNGs in every mode
// at several resolutions, every other kind of file at 224; a bad file is an error naming it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";

import { loadModel, pixels } from "../clip.mjs";
import { read, vectors } from "./vectors.mjs";

const model = await loadModel(vectors.exports[0].folder, { checkSha256: false });
const at = (resolution) => ({ ...model, preprocess: { ...model.preprocess, resolution } });

// The files whose pixels differ from Python's at R = resolution, with how many values differ.
async function differing(files, resolution, reference) {
  const size = 3 * resolution * resolution;
  const want = read(reference, Uint32Array);
  assert.equal(want.length, files.length * size);
  const wrong = [];
  for (const [n, file] of files.entries()) {
    const got = new Uint32Array((await pixels(at(resolution), [file])).buffer);
    const count = got.reduce((sum, bits, k) => sum + (bits !== want[n * size + k]), 0);
    if (count) wrong.push(`${file}: ${count} of ${size} values differ`);
  }
  return wrong;
}

for (const [resolution, reference] of Object.entries(vectors.pixels)) {
  test(`the PNGs at R = ${resolution} are Python's pixels bit for bit`, async () => {
    assert.deepEqual(await differing(vectors.images, Number(resolution), reference), []);
  });
}

test("every kind of file at R = 224 is Python's pixels bit for bit", async () => {
  assert.deepEqual(await differing(vectors.all_images, 224, vectors.all_pixels), []);
});

test("a batch is the files' pixels in order", async () => {
  const [a, b] = [vectors.images[0], vectors.images[4]];
  const batch = await pixels(at(32), [a, b]);
  const one = async (file) => Array.from(await pixels(at(32), [file]));
  assert.deepEqual(Array.from(batch), [...(await one(a)), ...(await one(b))]);
});

test("a bad file is an error naming it and its kind", async () => {
  const [empty, truncated, text] = vectors.bad_images;
  await assert.rejects(pixels(model, [empty]), { message: `${empty}: an empty file` });
  await assert.rejects(pixels(model, [truncated]), (error) => error.message.startsWith(`${truncated}: this JPEG file cannot be decoded (`));
  await assert.rejects(pixels(model, [text]), { message: `${text}: not an image format this example reads (PNG, JPEG, WebP, GIF, TIFF)` });
});

test("the kind of a file that cannot be decoded is told by its first bytes", async () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), "clip-node-kinds-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  const cases = [
    ["png", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "PNG"],
    ["jpeg", [0xff, 0xd8, 0xff], "JPEG"],
    ["webp", [..."RIFF"].map((c) => c.charCodeAt(0)).concat([0, 0, 0, 0], [..."WEBP"].map((c) => c.charCodeAt(0))), "WebP"],
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
      const want = kind ? `${file}: this ${kind} file cannot be decoded (` : `${file}: not an image format this example reads (PNG, JPEG, WebP, GIF, TIFF)`;
      assert.ok(kind ? error.message.startsWith(want) : error.message === want, `${name}: ${error.message}`);
      return true;
    });
  }
});

test("Python's pixels where the shorter side already is R, at pass-order ties, and CMYK with black", async () => {
  const wrong = [];
  for (const { file, resolution, pixels: reference } of vectors.node.extra_pixels) {
    wrong.push(...(await differing([file], resolution, reference)).map((line) => `R=${resolution} ${line}`));
  }
  assert.deepEqual(wrong, []);
});
