// A file over 2 GiB is hashed as a stream: the SHA-256 Python computes (vectors.json `large_file`), with
// memory far below the file's size. The file is zeros, made sparse here in a temporary folder.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";

import { sha256File } from "../clip.mjs";
import { vectors } from "./vectors.mjs";

const scratch = mkdtempSync(path.join(os.tmpdir(), "clip-node-large-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

test("a sparse file over 2 GiB hashes to Python's SHA-256 with bounded memory", async () => {
  const { bytes, sha256 } = vectors.large_file;
  const file = path.join(scratch, "large.bin");
  writeFileSync(file, "");
  truncateSync(file, bytes); // zeros, no blocks written
  assert.ok(bytes > 2 ** 31 && statSync(file).size === bytes);
  const before = process.resourceUsage().maxRSS; // KiB, the peak so far
  assert.equal(await sha256File(file), sha256);
  const growth = (process.resourceUsage().maxRSS - before) / 1024;
  assert.ok(growth < 256, `the peak resident memory grew by ${growth.toFixed(0)} MiB hashing ${bytes} bytes`);
});
