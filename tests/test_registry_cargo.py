"""The two crates (rust/: clip-onnx, rust/ftfy: clip-onnx-ftfy) as crates.io receives them.

Default suite: each crate's package holds only what a build needs (the sources, the manifest, README, the
licence; no tests, test data, target/ or scripts) and is far under crates.io's 10 MB limit; the manifests
carry what crates.io and docs.rs show; and `cargo publish --dry-run --workspace` packages both and builds
each from its package alone (clip-onnx against the packaged clip-onnx-ftfy), in rust/target, so the
dependencies the Rust tests build already are reused.

`registries`: `cargo publish` of both crates to a real cargo registry on loopback (cargo-http-registry,
installed by `cargo install` once into rust/target/registry-tools when not on PATH), clip-onnx carrying a
release table (`release.json`, pinning the conformance export released on the loopback Hub) as the release
workflow writes it, then an empty new project (`cargo new`) that `cargo add`s clip-onnx from that registry,
builds it `--locked`, downloads that release by the table it embeds (`hub::Release::embedded()`: no repo,
no revision), and classifies the committed images: the same labels, order and probabilities as the
checkout's Python runtime.

Needs cargo; skipped without it, except on CI (CI=true), where a skip would hide a broken crate."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

import pytest

from tests.tools import required

ROOT = Path(__file__).resolve().parent.parent
CRATE = ROOT / "rust"
CRATES = {"clip-onnx": CRATE, "clip-onnx-ftfy": CRATE / "ftfy"}
# crates.io refuses a .crate over 10 MB; sources and a README are far less, so 1 MB means something slipped in
CRATES_IO_LIMIT = 10 * 1024 * 1024
LARGEST_FILE = 1024 * 1024
# the only files a package may hold: cargo's own, the sources, README and licences
# (and clip-onnx's build script, and the release table it embeds when the release workflow wrote one)
ALLOWED = re.compile(r"^(Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|\.cargo_vcs_info\.json|README\.md|LICENSE(-ftfy)?"
                     r"|src/[A-Za-z0-9_/]+\.rs|build\.rs|release\.json)$")
# the images classified through the registry-installed crate: PNG, JPEG (libjpeg-turbo), WebP (libwebp), BMP
IMAGES = ["astronaut.png", "chelsea.jpg", "webp-alpha-lossless.webp", "bmp-24.bmp"]
LABELS = ["a cat", "a dog", "an astronaut"]
TEMPLATE = "a photo of {}."
# Rust and Python run the same libonnxruntime on the same inputs: probabilities agree to float32 rounding
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def cargo() -> str:
    (found,) = required("cargo", purpose="packaging the crates needs a Rust toolchain")
    return found


def run(command: list[str], cwd: Path, timeout: float = 1800, env: dict | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}"
    return result.stdout


def metadata(cargo: str) -> dict:
    packages = json.loads(run([cargo, "metadata", "--format-version", "1", "--no-deps"], CRATE))["packages"]
    return {package["name"]: package for package in packages}


def test_the_manifests_are_complete_for_crates_io_and_docs_rs(cargo):
    packages = metadata(cargo)
    assert set(packages) == set(CRATES)
    for name, package in packages.items():
        assert package["publish"] is None, f"{name}: publish restricts where it may go; crates.io must take it"
        for key in ("description", "license", "repository", "documentation", "readme", "rust_version"):
            assert package[key], f"{name} has no {key}"
        assert package["documentation"] == f"https://docs.rs/{name}"
        assert 1 <= len(package["keywords"]) <= 5 and 1 <= len(package["categories"]) <= 5, name
        assert (Path(package["manifest_path"]).parent / package["readme"]).is_file(), name
    # one version for both crates, and clip-onnx requires the one clip-onnx-ftfy it is published with
    main, ftfy = packages["clip-onnx"], packages["clip-onnx-ftfy"]
    assert main["version"] == ftfy["version"]
    dependency = next(d for d in main["dependencies"] if d["name"] == "clip-onnx-ftfy")
    assert dependency["req"] == f"^{ftfy['version']}" and dependency["path"], dependency
    # exact pins only where the result depends on the exact version (rust/Cargo.toml's policy)
    exact = sorted(d["name"] for d in main["dependencies"] if d["req"].startswith("="))
    assert exact == ["libwebp-sys", "ort", "turbojpeg-sys"], exact


def test_each_crate_declares_a_rust_version_no_dependency_exceeds(cargo):
    """rust-version is the floor a user's cargo is told; one below a dependency's would promise a build
    that fails. The release's rust-version job builds each crate with exactly that toolchain."""
    resolved = json.loads(run([cargo, "metadata", "--format-version", "1", "--locked"], CRATE))
    packages = {package["id"]: package for package in resolved["packages"]}
    nodes = {node["id"]: node for node in resolved["resolve"]["nodes"]}

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    for member in resolved["workspace_members"]:
        tree, pending = set(), [member]
        while pending:  # what a build of the crate compiles: normal and build dependencies
            node = pending.pop()
            if node not in tree:
                tree.add(node)
                pending += [dep["pkg"] for dep in nodes[node]["deps"]
                            if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"])]
        floor = packages[member]["rust_version"]
        above = [f"{packages[node]['name']} {packages[node]['rust_version']}" for node in tree - {member}
                 if packages[node]["rust_version"] and version(packages[node]["rust_version"]) > version(floor)]
        assert not above, f"{packages[member]['name']} declares rust-version {floor}, but needs {above}"


@pytest.mark.parametrize("name", sorted(CRATES))
def test_each_package_holds_only_what_a_build_needs(cargo, name):
    listed = run([cargo, "package", "--list", "--allow-dirty", "-p", name], CRATE).split()
    assert "Cargo.toml" in listed and "README.md" in listed and "src/lib.rs" in listed, listed
    assert any(path.startswith("LICENSE") for path in listed), listed
    unexpected = [path for path in listed if not ALLOWED.match(path)]
    assert not unexpected, f"{name}'s package holds {unexpected}"
    # every source file is there, and nothing that sits beside the crate (tests, scripts, target/)
    sources = sorted(p.relative_to(CRATES[name]).as_posix() for p in (CRATES[name] / "src").rglob("*.rs"))
    assert sorted(p for p in listed if p.startswith("src/")) == sources


def test_the_crate_files_are_far_under_the_crates_io_limit(cargo, tmp_path):
    # --no-verify: packaging only, nothing built (the dry run below builds)
    run([cargo, "package", "--workspace", "--no-verify", "--allow-dirty"], CRATE,
        env={"CARGO_TARGET_DIR": str(tmp_path)})
    for name in CRATES:
        crate = tmp_path / "package" / f"{name}-{metadata(cargo)[name]['version']}.crate"
        assert crate.stat().st_size < LARGEST_FILE < CRATES_IO_LIMIT, f"{crate.name}: {crate.stat().st_size} bytes"
        with tarfile.open(crate) as archive:
            for member in archive.getmembers():
                assert member.size < LARGEST_FILE, f"{crate.name} holds {member.name}, {member.size} bytes"
                assert "/tests/" not in member.name and "/target/" not in member.name, member.name


def test_the_workspace_publishes_dry_run(cargo):
    # both crates packaged and each built from its package alone; clip-onnx against the packaged ftfy
    # through cargo's temporary registry, as crates.io will serve it after clip-onnx-ftfy is published
    result = subprocess.run([cargo, "publish", "--dry-run", "--workspace", "--allow-dirty"], cwd=CRATE,
                            capture_output=True, text=True, timeout=3600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    uploads = re.findall(r"Uploading (\S+) v", output)
    # the order a real publish takes: the dependency first
    assert uploads == ["clip-onnx-ftfy", "clip-onnx"], output[-3000:]


# --- a real cargo registry on loopback -----------------------------------------------------------------

REGISTRY_TOOL = "cargo-http-registry"
REGISTRY_VERSION = "0.1.8"


def registry_tool(cargo: str) -> str:
    """cargo-http-registry: on PATH, or installed once from crates.io into rust/target/registry-tools."""
    found = shutil.which(REGISTRY_TOOL)
    if found:
        return found
    root = CRATE / "target" / "registry-tools"
    binary = root / "bin" / REGISTRY_TOOL
    if not binary.exists():
        run([cargo, "install", REGISTRY_TOOL, "--version", REGISTRY_VERSION, "--locked", "--root", str(root)], ROOT,
            env={"CARGO_TARGET_DIR": str(root / "target")})
    return str(binary)


@pytest.fixture
def registry(cargo, tmp_path):
    """A cargo-http-registry on 127.0.0.1 (an ephemeral port), its git index in a temp dir; yields the
    environment that names it to cargo as the registry `loopback` (cargo-http-registry takes any token)."""
    root = tmp_path / "registry"
    log = (tmp_path / "registry.log").open("w")
    server = subprocess.Popen([registry_tool(cargo), str(root)], stdout=log, stderr=subprocess.STDOUT)
    try:
        config = root / "config.json"
        deadline = time.monotonic() + 60
        while not (config.exists() and config.read_text().strip().endswith("}")):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.2)
        api = json.loads(config.read_text())["api"]
        assert api.startswith("http://127.0.0.1:"), api
        yield {"CARGO_REGISTRIES_LOOPBACK_INDEX": root.as_uri(), "CARGO_REGISTRIES_LOOPBACK_TOKEN": "loopback-token",
               # the index is a git repository: cargo's own git client reads it
               "CARGO_NET_GIT_FETCH_WITH_CLI": "false"}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


MAIN = """\
use std::path::Path;

// argv: ENDPOINT NAME TAG MODELS LABELS(comma-separated) TEMPLATE IMAGE...
fn main() -> clip_onnx::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // the release the published crate pins: no repo, no revision
    let release = clip_onnx::hub::Release::embedded()?;
    assert_eq!(release.tag(), args[2], "the embedded table pins another tag");
    let folder = release.download(&args[1], "fp32", &[], Path::new(&args[3]), Some(&args[0]))?;
    let model = clip_onnx::Model::load(&folder)?;
    let texts: Vec<String> = args[4].split(',').map(|label| args[5].replace("{}", label)).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    println!("{}", folder.display());
    for image in &args[6..] {
        let probabilities = model.classify(image, &texts)?;
        println!("{image}\\t{}", probabilities.iter().map(|p| format!("{p:e}")).collect::<Vec<_>>().join("\\t"));
    }
    Ok(())
}
"""


@pytest.mark.registries
def test_the_crates_publish_to_a_cargo_registry_and_an_empty_project_classifies_as_python(cargo, registry, tmp_path):
    from release import table
    from tests.conformance import COMMITTED
    from tests.loopback_hub import LoopbackHub
    from tests import released_hub
    from tests.test_rust import ort_library

    started = time.monotonic()
    # the developer's CARGO_HOME (its crates.io cache: the dependencies are not downloaded again, and the
    # shared target dir reuses what the Rust tests built: ort, tokenizers, the C decoders); the registry and
    # its token come from the environment, so nothing is written to cargo's config or credentials
    env = {**registry, "CARGO_TARGET_DIR": str(CRATE / "target")}

    # Cargo reads a dependency without `registry = ...` as one on crates.io, so publishing to another registry
    # needs clip-onnx's dependency on clip-onnx-ftfy to name it: the rehearsal publishes a copy of the two
    # packages' files (exactly what `cargo package --list` ships) where that one dependency gains
    # `registry = "loopback"`, and where the release table is written as the release workflow writes it into
    # rust/ (`release.table.write`); never into the checkout, whose builds must pin no release. Everything
    # else is the checkout's
    workspace = tmp_path / "crates"
    for name, folder in CRATES.items():
        for path in run([cargo, "package", "--list", "--allow-dirty", "-p", name], CRATE).split():
            if path not in (".cargo_vcs_info.json", "Cargo.toml.orig", "Cargo.lock"):
                target = workspace / folder.relative_to(CRATE) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / path, target)
    assert not (workspace / "release.json").exists(), "the checkout's package carries a release table"
    pinned = released_hub.pinned()  # the table a package would pin for the release the loopback Hub serves
    table.write(pinned, [workspace / "release.json"])
    listed = run([cargo, "package", "--list", "--allow-dirty", "-p", "clip-onnx"], workspace).split()
    assert "release.json" in listed and "build.rs" in listed, listed
    assert not [path for path in listed if not ALLOWED.match(path)], listed

    shutil.copyfile(CRATE / "Cargo.lock", workspace / "Cargo.lock")
    manifest = workspace / "Cargo.toml"
    line = 'ftfy = { package = "clip-onnx-ftfy", version = '
    assert manifest.read_text().count(line) == 1
    manifest.write_text(manifest.read_text().replace(line, 'ftfy = { registry = "loopback", package = "clip-onnx-ftfy", version = '))
    output = subprocess.run([cargo, "publish", "--workspace", "--registry", "loopback", "--locked"], cwd=workspace,
                            capture_output=True, text=True, timeout=3600, env={**os.environ, **env})
    assert output.returncode == 0, (output.stdout + output.stderr)[-6000:]
    assert re.findall(r"Published (\S+) v", output.stderr) == ["clip-onnx-ftfy", "clip-onnx"], output.stderr[-3000:]

    run([cargo, "new", "--bin", "--vcs", "none", "app"], tmp_path, env=env)
    app = tmp_path / "app"
    run([cargo, "add", "clip-onnx", "--registry", "loopback"], app, env=env)
    # the crate's profile (its C decoders and hashing optimised in debug builds): the same build settings,
    # so the shared target dir's artifacts are reused
    profile = tomllib.loads((CRATE / "Cargo.toml").read_text())["profile"]
    lines = [f'[profile.dev.package."{name}"]\nopt-level = {settings["opt-level"]}'
             for name, settings in profile["dev"]["package"].items()]
    manifest = app / "Cargo.toml"
    manifest.write_text(manifest.read_text() + "\n" + "\n".join(lines) + "\n")
    (app / "src" / "main.rs").write_text(MAIN)
    run([cargo, "generate-lockfile"], app, env=env)
    lock = tomllib.loads((app / "Cargo.lock").read_text())
    sources = {p["name"]: p.get("source", "") for p in lock["package"]}
    # both crates from the loopback registry, not from a path or crates.io
    for name in CRATES:
        assert sources[name] == f"registry+{registry['CARGO_REGISTRIES_LOOPBACK_INDEX']}", sources[name]
    run([cargo, "build", "--locked"], app, env=env)
    built = time.monotonic() - started

    images = [str(COMMITTED / "images" / name) for name in IMAGES]
    with LoopbackHub() as hub:
        release = released_hub.serve(hub)
        assert release["release"] == pinned, "the Hub serves another release than the crate pins"
        rust = run([str(CRATE / "target" / "debug" / "app"), release["endpoint"], release["name"], release["tag"],
                    str(tmp_path / "models"), ",".join(LABELS), TEMPLATE, *images], app,
                   env={"ORT_DYLIB_PATH": ort_library()}, timeout=600).splitlines()
    folder, rows = Path(rust[0]), [line.split("\t") for line in rust[1:]]
    assert [row[0] for row in rows] == images
    rust_probabilities = [[float(value) for value in row[1:]] for row in rows]

    # Python on the same downloaded folder: its API (unrounded) and its CLI (as printed, three decimals)
    from clip_onnx import Model
    texts = [TEMPLATE.format(label) for label in LABELS]
    python_probabilities = Model(folder).probabilities(images, texts).tolist()
    difference = max(abs(r - p) for rr, pp in zip(rust_probabilities, python_probabilities) for r, p in zip(rr, pp))
    assert difference <= TOLERANCE, (rust_probabilities, python_probabilities)
    cli = run([sys.executable, "-m", "clip_onnx", "classify", *images, "-m", str(folder), "--labels",
               ",".join(LABELS), "--template", TEMPLATE], ROOT)
    for image, probabilities, line in zip(images, rust_probabilities, cli.splitlines()):
        ranked = sorted(range(len(LABELS)), key=lambda i: -probabilities[i])
        assert line == f"{image}: " + ", ".join(f"{LABELS[i]} {probabilities[i]:.3f}" for i in ranked)
    print(f"cargo registry rehearsal: built in {built:.0f} s, all in {time.monotonic() - started:.0f} s; "
          f"largest difference from Python {difference:.2e}")
