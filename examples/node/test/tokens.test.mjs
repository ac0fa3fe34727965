// Token ids equal Python's (clip_onnx.tokenizer.encode, truncated) on every text ftfy leaves alone,
// the HTML texts among them, which only CLIP's double html.unescape changes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeHTML } from "entities";

import { clean, loadModel, tokenize } from "../clip.mjs";
import { read, vectors } from "./vectors.mjs";

const model = await loadModel(vectors.exports[0].folder);
const { texts, ftfy_changes: changes, html_texts: htmlTexts } = vectors;
const length = model.contextLength;
const expected = read(vectors.token_ids, Int32Array);
const row = (ids, i) => Array.from(ids.subarray(i * length, (i + 1) * length));
const compared = texts.flatMap((text, i) => (changes[i] ? [] : [i]));

test("clean is html.unescape twice on every text ftfy leaves alone", () => {
  const wrong = Object.entries(vectors.node.unescaped).filter(([text, want]) => clean(text) !== want);
  assert.deepEqual(wrong, []);
  assert.equal(Object.keys(vectors.node.unescaped).length, new Set(compared.map((i) => texts[i])).size);
});

test("token ids equal Python's on every text ftfy leaves alone, the HTML texts among them", () => {
  assert.equal(length, 77);
  assert.equal(expected.length, texts.length * length);
  for (const text of htmlTexts) assert.ok(compared.includes(texts.indexOf(text)), text);
  const ids = tokenize(model, texts, { truncate: true });
  assert.equal(ids.length, expected.length);
  const wrong = compared.filter((i) => row(ids, i).join() !== row(expected, i).join()).map((i) => texts[i]);
  assert.deepEqual(wrong, []);
});

test("the HTML texts tell one decode from two", () => {
  for (const text of htmlTexts) {
    const once = model.tokenizer.encode(decodeHTML(text)).ids;
    const want = row(expected, texts.indexOf(text));
    assert.notDeepEqual([...once, ...Array(length - once.length).fill(0)], want, text);
  }
});

test("a text over the context length is an error unless truncated, which keeps the end token", () => {
  const long = vectors.embedded_texts.at(-1);
  assert.throws(() => tokenize(model, ["a cat", long]), {
    message: `text ${JSON.stringify(long.slice(0, 60))} is longer than ${length} tokens; pass { truncate: true } (--truncate)`,
  });
  const ids = row(tokenize(model, [long], { truncate: true }), 0);
  assert.equal(ids.at(-1), model.manifest.tokenizer.end_token_id);
  assert.equal(ids[0], model.manifest.tokenizer.start_token_id);
  const exact = Array(length - 2).fill("cat").join(" "); // start, 75 tokens, end: exactly the context length
  assert.deepEqual(row(tokenize(model, [exact]), 0), row(tokenize(model, [exact], { truncate: true }), 0));
});
