"""The npm package `clip-onnx` (examples/node): what a release publishes to npm, and a rehearsal of it.

Default suite (fast, no network): `npm pack --dry-run --json` lists exactly the package's files (clip.mjs,
its types, README, LICENSE, package.json: no tests, test data, node_modules or mutation config) in a small
tarball whose version is pyproject.toml's, and a copy of the package given a release table (release.json,
as the release workflow writes it before publishing; never into the checkout) packs it too; the package.json a registry reads (exports, types, bin, files,
repository for provenance, publishConfig); clip.d.ts declares every value clip.mjs exports and nothing it
does not (both parsed; the module's real exports too when its packages are installed); and `npm publish
--dry-run`, with publishConfig's provenance on, passes without a login or a reachable registry.

`registries` (marker; network for the uplink): a real npm registry on loopback, Verdaccio 6 (installed
into a temporary prefix, or CLIP_ONNX_VERDACCIO naming its `verdaccio` command), a user made through its
CouchDB user API, `npm publish` with the ordinary client of a copy of the package carrying the release table
of the conformance export released on the loopback Hub (tests/released_hub.py), then in an empty project
`npm install clip-onnx` from it (dependencies through Verdaccio's uplink, npm's own cache reused), a script
that imports 'clip-onnx' downloads that release by the variant's name alone (`downloadRelease`: no repo,
no revision; the table installed with the package says them and pins every file), the package's
`clip-onnx` bin does the same by name, a script that imports 'clip-onnx' classifies images with labels as Python's `Model.probabilities` does, within float32
tolerance, and `tsc --noEmit` type-checks a TypeScript consumer of every export against the installed
package. Wall times are printed (pytest -s)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from release import packages
from tests.tools import required

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node"
NAME = "clip-onnx"
# What the tarball holds, and nothing else (npm adds README and LICENSE to `files` by itself).
PACKED = {"package.json", "clip.mjs", "clip.d.ts", "README.md", "LICENSE"}
# The release table, which only a package being published holds (written by the release workflow).
RELEASE_FILE = "release.json"
# The module, its types and a README; a test folder or a model would be far more.
MAX_PACKED_BYTES = 64 * 1024
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing answers
VERDACCIO = "verdaccio@6"


def python_version() -> str:
    return packages.PACKAGES[0].version()  # pyproject.toml's


@pytest.fixture(scope="module")
def npm_cli() -> str:
    return required("node", "npm", purpose="the npm package needs Node.js 20.19+ with npm")[1]


def run(*args: str, cwd: Path, env: dict | None = None, timeout: int = 120, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{' '.join(args[:4])} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def packed(npm: str, folder: Path = EXAMPLE) -> dict:
    return json.loads(run(npm, "pack", "--dry-run", "--json", "--ignore-scripts", cwd=folder).stdout)[0]


def package_with(release: dict, folder: Path) -> Path:
    """A copy of the package's files in `folder` with `release` as its release.json, as the release workflow
    writes it before publishing: the checkout's examples/node never holds one."""
    folder.mkdir(parents=True)
    for name in PACKED:
        shutil.copyfile(EXAMPLE / name, folder / name)
    (folder / RELEASE_FILE).write_text(json.dumps(release, indent=2) + "\n")
    return folder


def test_tarball_holds_the_package_only_at_the_python_version(npm_cli):
    tarball = packed(npm_cli)
    files = {entry["path"] for entry in tarball["files"]}
    assert files == PACKED, f"unexpected {sorted(files - PACKED)}, missing {sorted(PACKED - files)}"
    assert tarball["size"] <= MAX_PACKED_BYTES, f"{tarball['size']} bytes packed"
    assert tarball["name"] == NAME
    assert tarball["version"] == python_version(), "the npm package's version is pyproject.toml's"


def test_tarball_of_a_release_holds_its_table(npm_cli, tmp_path):
    """`files` names release.json: a package given the table packs it beside the module (npm leaves out a
    listed file that is absent, as in the checkout's tarball above)."""
    from release.table import build
    from tests.conformance import COMMITTED

    export = COMMITTED / json.loads((COMMITTED / "vectors.json").read_text())["exports"][0]["folder"]
    release = build("v1.0.0", [("org/clip-onnx-tiny-ViT", "fp32", export)])
    tarball = packed(npm_cli, package_with(release, tmp_path / "package"))
    files = {entry["path"] for entry in tarball["files"]}
    assert files == PACKED | {RELEASE_FILE}, f"unexpected {sorted(files - PACKED)}, missing {sorted(PACKED - files)}"
    assert tarball["size"] <= MAX_PACKED_BYTES, f"{tarball['size']} bytes packed"
    assert not (EXAMPLE / RELEASE_FILE).exists(), "the checkout holds a release.json: only a copy being published may"


def test_package_json_is_publishable_with_provenance():
    package = json.loads((EXAMPLE / "package.json").read_text())
    assert "private" not in package and package["name"] == NAME and package["version"] == python_version()
    assert package["type"] == "module" and package["license"] == "MIT"
    assert package["exports"] == {".": {"types": "./clip.d.ts", "default": "./clip.mjs"}, "./package.json": "./package.json"}
    assert package["types"] == "./clip.d.ts" and package["bin"] == {NAME: "clip.mjs"}
    assert (EXAMPLE / "clip.mjs").read_text().startswith("#!/usr/bin/env node\n"), "the bin needs its shebang"
    # provenance: the registry checks `repository` against the repository that built the package
    assert package["repository"]["type"] == "git" and package["repository"]["directory"] == "examples/node"
    assert re.fullmatch(r"git\+https://github\.com/[^/]+/[^/]+\.git", package["repository"]["url"])
    assert package["publishConfig"] == {"access": "public", "provenance": True}
    assert package["scripts"]["test"] == "node --test test/*.test.mjs"
    assert "node" in package["engines"]
    assert not {"typescript", "@stryker-mutator/core"} & set(package["dependencies"]), "tools stay devDependencies"


# `export function f`, `export async function f`, `export const f`, `export class C` (and `declare`).
EXPORTED = re.compile(r"^export\s+(?:declare\s+)?(?:async\s+)?(?:function\*?|const|let|var|class)\s+([A-Za-z_$][\w$]*)", re.MULTILINE)


def test_types_declare_every_export():
    """clip.d.ts declares exactly the values clip.mjs exports. Parsed from both files (clip.mjs exports
    only by `export <declaration>`, no `export {}` lists, asserted), and, with the module's packages
    installed, checked against the names a real import gives. The declared types themselves are checked
    by tsc in the registry rehearsal, against the installed package."""
    source = (EXAMPLE / "clip.mjs").read_text()
    assert not re.search(r"^export\s*(\{|\*|default)", source, re.MULTILINE), "clip.mjs exports a list: parse it here"
    exported = set(EXPORTED.findall(source))
    declared = set(EXPORTED.findall((EXAMPLE / "clip.d.ts").read_text()))
    assert len(exported) >= 20
    assert declared == exported, f"undeclared {sorted(exported - declared)}, declared but absent {sorted(declared - exported)}"
    if shutil.which("node") and (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        names = run("node", "--input-type=module", "-e",
                    'console.log(JSON.stringify(Object.keys(await import("./clip.mjs"))))', cwd=EXAMPLE).stdout
        assert set(json.loads(names)) == exported


def test_publish_dry_run_needs_no_login(npm_cli):
    """`npm publish --dry-run` as the release runs it (publishConfig's provenance on), at a registry that
    does not answer: nothing needs a login or the network until the real publish. (npm 11 asks the registry
    for the package's versions and goes on when it cannot: --fetch-retries=0 spares the backoff, a minute.)"""
    result = run(npm_cli, "publish", "--dry-run", "--ignore-scripts", "--fetch-retries=0", "--registry", UNREACHABLE, cwd=EXAMPLE)
    assert f"+ {NAME}@{python_version()}" in result.stdout + result.stderr


# ---------------------------------------------------------------- the rehearsal on a loopback registry

DOWNLOAD = """
import { readFileSync } from "node:fs";
import { downloadRelease, embeddedRelease } from "clip-onnx";
const { name, target, endpoint } = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify({ folder: await downloadRelease({ name, target, endpoint }), tag: embeddedRelease()?.tag ?? null }));
"""

CLASSIFY = """
import { readFileSync } from "node:fs";
import { loadModel, encodeImage, encodeText, probabilities } from "clip-onnx";
const { folder, images, texts } = JSON.parse(readFileSync(0, "utf8"));
const model = await loadModel(folder);
const [imageEmbeds, textEmbeds] = [await encodeImage(model, images), await encodeText(model, texts, { truncate: true })];
console.log(JSON.stringify(probabilities(model, imageEmbeds, textEmbeds)));
"""

# A TypeScript consumer of every export, strict: checks clip.d.ts against the package as installed
# (its `exports` types condition, its imports of onnxruntime-node's and the tokenizer's types).
CONSUMER_TS = """
import {
  ClipError, ERROR_KINDS, FORMAT_VERSIONS, FTFY_VERSION, HUB_ENDPOINT, PRECISIONS, RULES, checkFiles, clean,
  download, downloadRelease, embeddedRelease, encodeImage, encodeText, graphSession, htmlUnescape, loadModel, logits,
  neededFiles, pixels, probabilities, sha256File, tokenize, type ErrorKind, type Model, type Release,
} from "clip-onnx";

export async function use(folder: string): Promise<number> {
  const where: string = await download({ repo: "org/name", revision: "v1.0.0", target: folder, graphs: ["transformer"], endpoint: HUB_ENDPOINT });
  const release: Release | null = embeddedRelease();
  const pinned: string = await downloadRelease({ name: "ViT-B-32", target: folder, precision: "fp16", release });
  const tag: string = release?.tag ?? pinned;
  const repo: string | undefined = release?.variants["ViT-B-32"]?.hub_repo;
  const model: Model = await loadModel(where, { checkSha256: false });
  const ids: Int32Array = tokenize(model, [clean(htmlUnescape("a &amp; b"))], { truncate: true });
  const files: string[] = neededFiles(model.manifest, ["visual"]);
  await checkFiles(where, model.manifest, files);
  const hash: string = await sha256File(files[0]);
  const input: Float32Array = await pixels(model, ["a.png"]);
  const images: Float32Array[] = await encodeImage(model, ["a.png"]);
  const texts: Float32Array[] = await encodeText(model, ["a cat"], { truncate: false });
  const scores: number[][] = logits(model, images, texts);
  const p: number[][] = probabilities(model, images, texts);
  const session = await graphSession(model, "visual");
  const names: readonly string[] = session.inputNames;
  const kind: ErrorKind = ERROR_KINDS[0];
  const error = new ClipError("bad", kind);
  if (error instanceof Error && error.kind === "usage") throw error;
  const rule: string | undefined = RULES["crop"];
  return ids.length + hash.length + input.length + scores.length + p[0][0] + names.length + FORMAT_VERSIONS[0]
    + PRECISIONS.length + FTFY_VERSION.length + (rule?.length ?? 0) + tag.length + (repo?.length ?? 0);
}
"""

TSCONFIG = {"compilerOptions": {"strict": True, "noEmit": True, "module": "nodenext", "moduleResolution": "nodenext",
                                "target": "es2022", "types": [], "skipLibCheck": False}, "files": ["consumer.ts"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(times: dict, name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    start = time.monotonic()
    result = run(*args, **kwargs)
    times[name] = round(time.monotonic() - start, 1)
    return result


@pytest.fixture(scope="module")
def registry(npm_cli, tmp_path_factory) -> Iterator[dict]:
    """Verdaccio on 127.0.0.1 with storage in a temporary folder, `clip-onnx` served from it alone (never
    from the public registry), everything else through its uplink; a user made through its API, whose
    token is in a temporary .npmrc."""
    times: dict[str, float] = {}
    base = tmp_path_factory.mktemp("verdaccio")
    command = os.environ.get("CLIP_ONNX_VERDACCIO")
    if not command:
        timed(times, "install verdaccio", npm_cli, "install", "--prefix", str(base / "prefix"), VERDACCIO,
              "--no-audit", "--no-fund", "--loglevel=error", cwd=base, timeout=600)
        command = str(base / "prefix" / "node_modules" / ".bin" / "verdaccio")
    uplink = run(npm_cli, "config", "get", "registry", cwd=base).stdout.strip() or "https://registry.npmjs.org/"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (base / "config.yaml").write_text(f"""
storage: {base / 'storage'}
auth:
  htpasswd:
    file: {base / 'htpasswd'}
    max_users: 10
uplinks:
  npmjs:
    url: {uplink}
    timeout: 60s
packages:
  '{NAME}':
    access: $all
    publish: $authenticated
  '**':
    access: $all
    publish: $authenticated
    proxy: npmjs
max_body_size: 50mb
log: {{ type: stdout, format: pretty, level: warn }}
""")
    log = open(base / "verdaccio.log", "w")
    server = subprocess.Popen([command, "--config", str(base / "config.yaml"), "--listen", f"127.0.0.1:{port}"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=base)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ping", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (base / "verdaccio.log").read_text()[-3000:]
                time.sleep(0.3)
        user = {"_id": "org.couchdb.user:tester", "name": "tester", "password": "rehearsal-only", "type": "user", "roles": []}
        request = urllib.request.Request(f"{url}/-/user/org.couchdb.user:tester", data=json.dumps(user).encode(), method="PUT",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            token = json.loads(answer.read())["token"]
        npmrc = base / "npmrc"
        npmrc.write_text(f"registry={url}/\n//127.0.0.1:{port}/:_authToken={token}\n")
        yield {"url": url, "npmrc": str(npmrc), "times": times}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.registries
def test_published_package_installs_and_classifies_as_python(npm_cli, registry, tmp_path):
    from clip_onnx.model import Model
    from exporter.tolerances import TOLERANCES
    from tests.conformance import COMMITTED
    from tests.loopback_hub import LoopbackHub
    from tests.released_hub import serve

    times = registry["times"]
    # the ordinary client, this registry only, the user's npm cache (so tarballs already fetched are reused)
    env = {"npm_config_userconfig": registry["npmrc"], "npm_config_registry": f"{registry['url']}/",
           "npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false",
           "ONNXRUNTIME_NODE_INSTALL": "skip"}  # the CPU binaries ship in onnxruntime-node; no CUDA extras
    vectors = json.loads((COMMITTED / "vectors.json").read_text())
    images = [str(COMMITTED / file) for file in vectors["images"]]
    texts = vectors["embedded_texts"]
    project = tmp_path / "consumer"
    with LoopbackHub() as hub:
        released = serve(hub)
        # the package as the release publishes it: a copy carrying the release's table
        package = package_with(released["release"], tmp_path / "package")
        assert {entry["path"] for entry in packed(npm_cli, package)["files"]} == PACKED | {RELEASE_FILE}
        # provenance needs a CI's OIDC identity: off for a local publish, as the release's canary would not have one
        timed(times, "publish", npm_cli, "publish", "--provenance=false", "--ignore-scripts", cwd=package, env=env)
        with urllib.request.urlopen(f"{registry['url']}/{NAME}", timeout=10) as answer:
            assert python_version() in json.loads(answer.read())["versions"]

        project.mkdir()
        run(npm_cli, "init", "-y", cwd=project, env=env)
        timed(times, "install", npm_cli, "install", f"{NAME}@{python_version()}", cwd=project, env=env, timeout=600)
        installed = json.loads((project / "node_modules" / NAME / "package.json").read_text())
        assert installed["version"] == python_version()
        assert sorted(path.name for path in (project / "node_modules" / NAME).iterdir()) == sorted(PACKED | {RELEASE_FILE})

        # by the variant's name alone: the installed table says the repo and the tag, and pins every file
        (project / "download.mjs").write_text(DOWNLOAD)
        downloaded = json.loads(timed(times, "download (downloadRelease)", "node", "download.mjs", cwd=project, env=env, input=json.dumps(
            {"name": released["name"], "target": str(tmp_path / "models"), "endpoint": released["endpoint"]})).stdout)
        # the package's bin, as `npx clip-onnx download NAME` runs it (node_modules/.bin/clip-onnx, a link)
        by_bin = timed(times, "download (bin)", npm_cli, "exec", "--", NAME, "download", released["name"], "-o",
                       str(tmp_path / "models-bin"), "--graphs", "transformer", "--endpoint", released["endpoint"], cwd=project, env=env)
    folder = downloaded["folder"]
    assert downloaded["tag"] == released["tag"]
    assert folder == str(tmp_path / "models" / "fp32"), f"downloadRelease gave {folder!r}, not the folder"
    assert by_bin.stdout.strip() == str(tmp_path / "models-bin" / "fp32"), f"the bin printed {by_bin.stdout!r}: did it run at all?"

    (project / "classify.mjs").write_text(CLASSIFY)
    answer = timed(times, "classify", "node", "classify.mjs", cwd=project, env=env,
                   input=json.dumps({"folder": folder, "images": images, "texts": texts}))
    actual = np.array(json.loads(answer.stdout))
    model = Model(folder)
    expected = model.probabilities(images, texts, truncate=True)
    assert actual.shape == expected.shape == (len(images), len(texts))
    # a logit off by d moves a probability by at most d / 2: the logits' float32 tolerance bounds both
    tolerance = TOLERANCES["fp32"].max_relative * model.logit_scale
    difference = np.abs(actual - expected).max()
    assert difference <= tolerance, f"max |diff| {difference:.2e} > {tolerance:.2e}"
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()

    # TypeScript's check of the installed package's types (typescript through the same registry)
    timed(times, "install typescript", npm_cli, "install", "--save-dev", "typescript@5", cwd=project, env=env, timeout=600)
    (project / "consumer.ts").write_text(CONSUMER_TS)
    (project / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    timed(times, "tsc", "node", "node_modules/typescript/bin/tsc", "-p", ".", cwd=project, env=env)
    print(f"npm rehearsal: {len(images)} images x {len(texts)} labels, max |diff| {difference:.2e} "
          f"(tolerance {tolerance:.2e}); wall seconds {times}", file=sys.stderr)
