// Partial folders (vectors.json `partial_folders`): the export reduced to one encoder's files
// (manifest.json's `graphs.<graph>.files`) and manifest.json, as a download of that graph leaves it. Each
// loads with the SHA-256 check on, encodes with its graph as the whole folder does (Python's committed
// embeddings, within the export's tolerance), and refuses the other encoder's input with a ClipError of
// kind missing_file, one line naming the file the case says is missing. Prints how many cases ran.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, test } from "node:test";

import { ClipError, encodeImage, encodeText, loadModel, neededFiles } from "../clip.mjs";
import { scratchFolder, snapshot } from "./changes.mjs";
import { EXPORT, at, outsideTolerance, vectors } from "./vectors.mjs";

const before = snapshot();
const scratch = scratchFolder("clip-node-partial-");
after(scratch.remove);

const [reference] = vectors.exports;
const cases = vectors.partial_folders;
const images = vectors.images.map(at);
const texts = vectors.embedded_texts;
// Each call as the case names it, with Python's embeddings of the whole folder it must give.
const CALLS = {
  encode_text: { run: (model) => encodeText(model, texts, { truncate: true }), file: reference.text_embeds, names: texts.map((t) => JSON.stringify(t.slice(0, 40))) },
  encode_image: { run: (model) => encodeImage(model, images), file: reference.image_embeds, names: vectors.images },
};
const ran = { count: 0 };

test("the vectors hold a partial folder for each encoder", () => {
  assert.deepEqual(cases.map((c) => c.graph).sort(), ["transformer", "visual"]);
  for (const c of cases) assert.ok(Object.hasOwn(CALLS, c.call) && Object.hasOwn(CALLS, c.refuses) && c.call !== c.refuses, JSON.stringify(c));
});

for (const c of cases) {
  test(`${c.graph} only: loads, ${c.call} as the whole folder does, ${c.refuses} refused naming ${c.missing}`, async () => {
    const folder = scratch.export(EXPORT, c.changes);
    const model = await loadModel(folder);
    // the folder holds the graph's files and the manifest, nothing else
    assert.deepEqual(readdirSync(folder).sort(), [...neededFiles(model.manifest, [c.graph]), "manifest.json"].sort());
    const call = CALLS[c.call];
    const got = await call.run(model);
    assert.equal(got.length, call.names.length);
    assert.deepEqual(outsideTolerance(got, call.file, call.names, reference), []);
    // refused, and refused again: a refusal is not remembered as a success
    for (let twice = 0; twice < 2; twice++) {
      await assert.rejects(CALLS[c.refuses].run(model), (error) => {
        assert.ok(error instanceof ClipError, error?.stack ?? String(error));
        assert.equal(error.kind, "missing_file", error.message);
        assert.ok(error.message.includes(c.missing) && error.message.includes("missing"), error.message);
        assert.ok(!error.message.includes("\n"), JSON.stringify(error.message));
        return true;
      });
    }
    // the call still works after the refusal, and without the check the refusal is the same kind
    assert.equal((await call.run(model)).length, call.names.length);
    const unchecked = await loadModel(folder, { checkSha256: false });
    await assert.rejects(CALLS[c.refuses].run(unchecked), { kind: "missing_file" });
    ran.count++;
  });
}

test("every partial-folder case of the vectors ran", (t) => {
  t.diagnostic(`${ran.count} partial-folder cases ran, ${cases.length - ran.count} skipped`);
  assert.equal(ran.count, cases.length);
});

test("the committed files are as they were: every change went to a scratch copy", () => {
  assert.deepEqual(snapshot(), before);
});
