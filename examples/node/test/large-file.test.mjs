// A file over 2 GiB (sparse, written by the Python side) is hashed as a stream: the SHA-256 Python
// computes, with memory far below the file's size.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { test } from "node:test";

import { sha256File } from "../clip.mjs";
import { vectors } from "./vectors.mjs";

test("a sparse file over 2 GiB hashes to Python's SHA-256 with bounded memory", async () => {
  const { path: file, bytes, sha256 } = vectors.node.large_file;
  assert.ok(bytes > 2 ** 31 && statSync(file).size === bytes);
  const before = process.resourceUsage().maxRSS; // KiB, the peak so far
  assert.equal(await sha256File(file), sha256);
  const growth = (process.resourceUsage().maxRSS - before) / 1024;
  assert.ok(growth < 256, `the peak resident memory grew by ${growth.toFixed(0)} MiB hashing ${bytes} bytes`);
});
