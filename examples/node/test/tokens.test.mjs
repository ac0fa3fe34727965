// Token ids equal Python's (clip_onnx.tokenizer.encode, truncated; vectors.json `token_ids`) on every
// text of the vectors, and clean() is Python's (`cleaned`): those ftfy repairs, and the HTML texts,
// which only CLIP's double html.unescape changes; htmlUnescape is Python's html.unescape (`unescape`). Prints
// how many token cases ran and differ.
// (cleaning.test.mjs holds clean() to Python on 10,663 more.)
import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeHTML } from "entities";

import { clean, htmlUnescape, loadModel, tokenize } from "../clip.mjs";
import { EXPORT, read, vectors } from "./vectors.mjs";

const model = await loadModel(EXPORT);
const { texts, ftfy_changes: changes, html_texts: htmlTexts } = vectors;
const length = model.contextLength;
const expected = read(vectors.token_ids, Int32Array);
const row = (ids, i) => Array.from(ids.subarray(i * length, (i + 1) * length));

test("clean is clip_onnx.tokenizer.clean (ftfy.fix_text, then html.unescape twice) on every text", () => {
  assert.equal(vectors.cleaned.length, texts.length);
  const wrong = texts.map((text, i) => [text, vectors.cleaned[i], clean(text)]).filter(([, want, got]) => got !== want);
  assert.deepEqual(wrong, []);
});

test("htmlUnescape is Python's html.unescape on its hard cases; entities' decodeHTML alone keeps code points Python drops", () => {
  const cases = vectors.unescape;
  assert.ok(cases.length > 200, "the vectors hold too few unescape cases");
  assert.deepEqual(cases.filter(([text, python]) => htmlUnescape(text) !== python), []);
  // the cases tell them apart: "&#31;" is "\x1f" to decodeHTML, "" to Python
  assert.ok(cases.some(([text, python]) => decodeHTML(text) !== python));
});

test("token ids equal Python's on every text, those ftfy repairs and the HTML texts among them", (t) => {
  assert.equal(length, 77);
  assert.equal(expected.length, texts.length * length);
  assert.ok(changes.some(Boolean) && htmlTexts.length > 0);
  const ids = tokenize(model, texts, { truncate: true });
  assert.equal(ids.length, expected.length);
  const wrong = texts.filter((_, i) => row(ids, i).join() !== row(expected, i).join());
  t.diagnostic(`${texts.length} token cases ran, ${wrong.length} differ, 0 skipped`);
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
