// Embeddings equal Python's (clip_onnx.model.Model on the same export, vectors.json `exports`) within the
// export's tolerance: encodeImage on the PNGs (`image_embeds`), encodeText on `embedded_texts`, truncated
// (`text_embeds`); each row's cosine at least `min_cosine`, its largest difference at most
// `max_relative` of the reference's largest value. `probabilities` gives the numbers of Python's
// `clip-onnx classify` lines (`classify`, 3 decimals). Prints how many embedding cases ran.
import assert from "node:assert/strict";
import { test } from "node:test";

import { encodeImage, encodeText, loadModel, probabilities } from "../clip.mjs";
import { EXPORT, at, cosine, outsideTolerance, vectors } from "./vectors.mjs";

const [reference] = vectors.exports;
const model = await loadModel(EXPORT);
const images = vectors.images.map(at);
const texts = vectors.embedded_texts;
const imageEmbeds = await encodeImage(model, images);
const textEmbeds = await encodeText(model, texts, { truncate: true });
const ran = { count: 0 };

// The rows of `got` outside the tolerance of Python's rows in `file`, each named; each row counted.
function outside(got, file, names) {
  ran.count += got.length;
  return outsideTolerance(got, file, names, reference);
}

test("image embeddings are Python's within the export's tolerance", () => {
  assert.equal(imageEmbeds.length, images.length);
  assert.deepEqual(outside(imageEmbeds, reference.image_embeds, vectors.images), []);
});

test("text embeddings are Python's within the export's tolerance, truncated texts included", () => {
  assert.equal(textEmbeds.length, texts.length);
  assert.deepEqual(outside(textEmbeds, reference.text_embeds, texts.map((text) => JSON.stringify(text.slice(0, 40)))), []);
});

test("the comparison can fail: different inputs are further apart than the tolerance", () => {
  for (const embeds of [imageEmbeds.slice(0, 4), textEmbeds.slice(0, 2)]) {
    for (const [i, a] of embeds.entries()) {
      for (const b of embeds.slice(i + 1)) assert.ok(cosine(a, b) < reference.min_cosine);
    }
  }
});

test("probabilities are the numbers of Python's classify lines", async () => {
  const labels = await encodeText(model, vectors.labels);
  const got = probabilities(model, imageEmbeds, labels);
  assert.equal(vectors.classify.length, images.length);
  const wrong = [];
  for (const [n, line] of vectors.classify.entries()) {
    const [file, rest] = line.split(": ");
    assert.equal(file, vectors.images[n]);
    for (const part of rest.split(", ")) {
      const cut = part.lastIndexOf(" ");
      const [label, value] = [part.slice(0, cut), Number(part.slice(cut + 1))];
      const mine = got[n][vectors.labels.indexOf(label)];
      // 3 decimals: half of 0.001 for the rounding, the rest for the float32 tolerance
      if (!(Math.abs(mine - value) <= 0.001)) wrong.push(`${file} ${label}: ${mine.toFixed(4)}, Python ${value}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("every embedding case of the vectors ran", (t) => {
  const expected = images.length + texts.length;
  t.diagnostic(`${ran.count} embedding cases ran, ${expected - ran.count} skipped (${images.length} images, ${texts.length} texts)`);
  assert.equal(ran.count, expected);
});
