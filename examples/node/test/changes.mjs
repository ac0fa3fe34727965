// Scratch copies of an export with a list of `changes` made (vectors.json's `bad_inputs` and
// `partial_folders`): tests/conformance.py `apply` in JavaScript, op for op. Each file of the base folder
// is hard-linked, so a changed file is unlinked before it is written: writing through the link would
// change the committed file. `snapshot` lets a suite check the committed files stayed as they were.
import { createHash } from "node:crypto";
import { linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { ROOT } from "./vectors.mjs";

// `content` as the file's content, in a file of its own: flag "wx" refuses to write into one still there,
// a hard link to a committed file included.
function replace(file, content) {
  rmSync(file, { force: true });
  writeFileSync(file, content, { flag: "wx" });
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

// A copy of the export `base` at `scratch` (which must not exist) with `changes` made; `from` paths are
// relative to `root`, the vectors' folder.
export function apply(base, changes, scratch, root = ROOT) {
  mkdirSync(scratch);
  for (const name of readdirSync(base)) linkSync(path.join(base, name), path.join(scratch, name));
  for (const change of changes) {
    const target = path.join(scratch, change.file);
    if (change.op === "delete") {
      unlinkSync(target);
    } else if (change.op === "rehash") {
      const manifest = path.join(scratch, "manifest.json");
      const listed = JSON.parse(readFileSync(manifest, "utf8"));
      const bytes = readFileSync(target);
      listed.files[change.file] = { sha256: sha256(bytes), bytes: bytes.length };
      replace(manifest, JSON.stringify(listed));
    } else if (change.op === "write") {
      replace(target, change.text);
    } else if (change.op === "json") {
      const data = JSON.parse(readFileSync(target, "utf8"));
      const keys = change.path.slice(0, -1);
      const last = change.path.at(-1);
      const inner = keys.reduce((object, key) => object[key], data);
      if (Object.hasOwn(change, "value")) inner[last] = change.value;
      else delete inner[last];
      replace(target, JSON.stringify(data));
    } else if (change.op === "bytes") {
      const content = readFileSync(target);
      if (Object.hasOwn(change, "flip")) {
        content[change.flip < 0 ? content.length + change.flip : change.flip] ^= 0x01;
        replace(target, content);
      } else {
        replace(target, content.subarray(0, change.keep));
      }
    } else if (change.op === "copy") {
      replace(target, readFileSync(path.join(root, change.from)));
    } else {
      throw new Error(`unknown change ${JSON.stringify(change.op)}`);
    }
  }
  return scratch;
}

// A temporary folder for a suite's scratch copies; `remove()` deletes it (call it from `after`).
// `export(base, changes)` is a fresh copy in it.
export function scratchFolder(prefix) {
  const folder = mkdtempSync(path.join(os.tmpdir(), prefix));
  let copies = 0;
  return {
    folder,
    export: (base, changes = []) => apply(base, changes, path.join(folder, String(copies++))),
    remove: () => rmSync(folder, { recursive: true, force: true }),
  };
}

// Each file under the vectors' folder with its size, modification time and SHA-256: equal before and
// after a suite, or a scratch copy wrote through to a committed file.
export function snapshot(root = ROOT) {
  const files = {};
  for (const name of readdirSync(root, { recursive: true })) {
    const file = path.join(root, name);
    const stat = statSync(file);
    if (stat.isFile()) files[name] = `${stat.size} ${stat.mtimeMs} ${sha256(readFileSync(file))}`;
  }
  return files;
}
