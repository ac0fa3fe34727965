// StrykerJS mutation run of clip.mjs, one scope at a time, each mutant judged by the node:test suite
// that guards it (Stryker's command runner, `node --test`): CLIP_ONNX_MUTATE picks the scope.
//   integrity: the code that decides "untampered" and each error's kind (readManifest, neededFiles,
//              sha256File, checkFiles, download, loadModel and the lazy sessions, readPreprocess's rules),
//              judged by integrity, bad-inputs, partial-folders and download (its local server's cases)
//   tokens:    htmlUnescape, clean and tokenize, judged by tokens and cleaning
//   pixels:    the format sniffing, TIFF kind, BMP header and preprocess.json `input` checks, resize's
//              mode and pass order, RGB conversion, crop, normalisation
// The suites read the committed tests/conformance/vectors.json (test/README.md; CLIP_ONNX_VECTORS names
// another). Reports: reports/mutation/<scope>.{html,json}.
import { readFileSync } from "node:fs";

// The lines from the one that starts with `first` to the one before the one that starts with `next`.
const source = readFileSync(new URL("./clip.mjs", import.meta.url), "utf8").split("\n");
function lines(first, next) {
  const start = source.findIndex((line) => line.startsWith(first));
  const end = source.findIndex((line, i) => i > start && line.startsWith(next));
  if (start < 0 || end < 0) throw new Error(`clip.mjs has no line starting ${JSON.stringify(start < 0 ? first : next)}`);
  return `clip.mjs:${start + 1}-${end}`;
}

const SCOPES = {
  integrity: { mutate: [lines("const MANIFEST = ", "// clip_onnx.tokenizer.clean")], test: ["integrity", "bad-inputs", "partial-folders", "download"] },
  tokens: { mutate: [lines("const CHARREF = ", "// The image format by its first bytes")], test: ["tokens", "cleaning"] },
  // what decides the pixels around the resampling (the format sniffing, the TIFF kind, the BMP header and
  // what preprocess.json's `input` reads; resize's mode and pass order; the RGB conversion; the crop and
  // the normalisation). Decoding (decodeBmp, decode, gifTransparentColour) and the resampling itself
  // (cubic .. premultiply) are left out: their per-sample loops, instrumented, make each run of the
  // suite many times slower (40 s instead of 3 s for all of it on two cores)
  pixels: {
    mutate: [lines("function format(", "// Pillow's BmpImagePlugin for uncompressed"),
      lines("// What preprocess.json's `input` says", "// The colour a GIF's"),
      lines("function resize(", "// Rows of an [N, D] float32 output.")],
    test: ["pixels"],
  },
};
const scope = process.env.CLIP_ONNX_MUTATE;
if (!SCOPES[scope]) throw new Error(`set CLIP_ONNX_MUTATE to one of ${Object.keys(SCOPES).join(", ")}`);

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "command",
  commandRunner: { command: `node --test --test-reporter=dot ${SCOPES[scope].test.map((suite) => `test/${suite}.test.mjs`).join(" ")}` },
  mutate: SCOPES[scope].mutate,
  coverageAnalysis: "off",
  concurrency: Number(process.env.CLIP_ONNX_MUTATE_CONCURRENCY ?? 2),
  timeoutMS: 30_000,
  reporters: ["clear-text", "progress-append-only", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${scope}.html` },
  jsonReporter: { fileName: `reports/mutation/${scope}.json` },
  clearTextReporter: { allowColor: false, logTests: false, reportMutants: true },
  tempDirName: `.stryker-tmp-${scope}`,
  cleanTempDir: true,
};
