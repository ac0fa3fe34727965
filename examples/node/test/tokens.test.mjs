// Token ids equal Python's (clip_onnx.tokenizer.encode, truncated) on every text of the vectors: those
// ftfy repairs, and the HTML texts, which only CLIP's double html.unescape changes. (cleaning.test.mjs
// holds clean() to Python on 10,663 more.)
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

test("clean is clip_onnx.tokenizer.clean (ftfy.fix_text, then html.unescape twice) on every text", () => {
  const wrong = Object.entries(vectors.node.cleaned).filter(([text, want]) => clean(text) !== want);
  assert.deepEqual(wrong, []);
  assert.equal(Object.keys(vectors.node.cleaned).length, new Set(texts).size);
});

test("token ids equal Python's on every text, those ftfy repairs and the HTML texts among them", () => {
  assert.equal(length, 77);
  assert.equal(expected.length, texts.length * length);
  assert.ok(changes.some(Boolean) && htmlTexts.length > 0);
  const ids = tokenize(model, texts, { truncate: true });
  assert.equal(ids.length, expected.length);
  const wrong = texts.filter((_, i) => row(ids, i).join() !== row(expected, i).join());
  assert.deepEqual(wrong, []);
});

test("ftfy's repairs change ids: without fix_text, texts ftfy repairs get other ids", () => {
  const repaired = texts.filter((_, i) => changes[i]);
  const other = repaired.filter((text) => {
    const once = model.tokenizer.encode(decodeHTML(decodeHTML(text))).ids.slice(0, length);
    return once.join() !== row(expected, texts.indexOf(text)).slice(0, once.length).join();
  });
  assert.ok(other.length > 0, "no text ftfy repairs tells clean() with ftfy from without");
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
