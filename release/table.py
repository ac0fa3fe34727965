"""The release table (`clip_onnx/pinned.py`) from the verified exports' manifests alone, before any file
is public, and the check that a staged release is the one the packages pin.

The export jobs upload each `manifest.json` as its own small artifact (`manifest-<Name>-<precision>`), so the job
that writes the table into the packages fetches kilobytes, not the exports. Of each matrix cell the
newest run attempt is taken, as publication takes it (`release.publish.RunArtifacts`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from clip_onnx import manifest
from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file
from clip_onnx.pinned import FORMAT_VERSION, RELEASE_FILE, parse
from release.stage import artifact_pattern, attempt_artifact, hub_repo
from release.versions import TAG

# where each package carries the table: the wheel's package data, the crate's build.rs, the npm package
PACKAGE_PATHS = ("clip_onnx/release.json", "rust/release.json", "examples/node/release.json")
MANIFEST_ARTIFACT = artifact_pattern("manifest")


def build(tag: str, exports: Iterable[tuple[str, str, Path]]) -> dict:
    """The table of `tag` for `(hub_repo, precision folder, export folder)` triples: each folder's manifest
    and every file it lists, by the path the Hub repo holds it at."""
    if not TAG.match(tag):
        raise ClipOnnxError(f"tag {tag!r} is not of the form vX.Y.Z")
    variants: dict[str, dict] = {}
    for repo, precision, folder in exports:
        data = manifest.read(folder)
        variant = variants.setdefault(data["name"], {"hub_repo": repo, "files": {}})
        if variant["hub_repo"] != repo:
            raise ClipOnnxError(f"{data['name']} is in two Hub repos, {variant['hub_repo']} and {repo}")
        path = Path(folder) / manifest.MANIFEST
        entries = {manifest.MANIFEST: {"sha256": sha256_file(path), "bytes": path.stat().st_size},
                   **{name: {"sha256": facts["sha256"], "bytes": facts["bytes"]}
                      for name, facts in data["files"].items()}}
        for name, facts in entries.items():
            if variant["files"].setdefault(f"{precision}/{name}", facts) != facts:
                raise ClipOnnxError(f"two exports of {data['name']} {precision} under {folder.parent}; keep one")
    if not variants:
        raise ClipOnnxError("no exports to pin; the release table would be empty")
    return parse({"format_version": FORMAT_VERSION, "tag": tag, "variants": dict(sorted(variants.items()))})


def newest_manifests(root: Path) -> list[Path]:
    """The export folders (each holding a manifest.json) of the newest attempt of every cell among the
    manifest artifacts downloaded into `root`, one folder per artifact."""
    cells: dict[tuple[str, str], tuple[int, Path]] = {}
    for artifact in sorted(Path(root).iterdir()):
        match = MANIFEST_ARTIFACT.match(artifact.name)
        if match and int(match["attempt"]) > cells.get((match["folder"], match["precision"]), (0, None))[0]:
            cells[match["folder"], match["precision"]] = int(match["attempt"]), artifact
    folders = [path.parent for _, artifact in sorted(cells.values()) for path in sorted(artifact.glob("**/manifest.json"))]
    if not folders:
        raise ClipOnnxError(f"no manifest artifacts ({attempt_artifact('<Name>', 'fp32', 1, 'manifest')}, ...) under "
                            f"{root}; download this run's with download-artifact")
    return folders


def from_exports(folders: Iterable[Path], tag: str, org: str) -> dict:
    """The table of `tag` for export folders, each published to its variant's repo under its precision."""
    triples = []
    for folder in folders:
        data = manifest.read(folder)
        triples.append((hub_repo(org, data["name"]), data["precision"], Path(folder)))
    return build(tag, triples)


def write(table: dict, paths: Iterable[Path]) -> None:
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    for path in paths:
        Path(path).write_text(text)


def read(path: Path) -> dict:
    try:
        return parse(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise ClipOnnxError(f"{path}: not a readable {RELEASE_FILE} ({error}); download the wheel job's table "
                            f"artifact") from None


def differences(table: dict, release: dict) -> list[str]:
    """What a staged release (`release-manifest.json`'s files) holds otherwise than the table pins, for the
    variants it stages: each file the table pins must be staged at its Hub path with the same bytes."""
    staged = {(entry["hub_repo"], entry["hub_path"]): (entry["sha256"], entry["bytes"]) for entry in release["files"]}
    found = []
    if release["tag"] != table["tag"]:
        found.append(f"the packages pin {table['tag']}, not {release['tag']}")
    for name in sorted({entry["name"] for entry in release["files"]}):
        variant = table["variants"].get(name)
        if variant is None:
            found.append(f"{name} is not in the packages' release table")
            continue
        for path, facts in sorted(variant["files"].items()):
            if staged.get((variant["hub_repo"], path)) != (facts["sha256"], facts["bytes"]):
                found.append(f"{variant['hub_repo']} {path} is not the file the packages pin")
        found += [f"{entry['hub_repo']} {entry['hub_path']} is staged but not pinned" for entry in release["files"]
                  if entry["name"] == name and entry["precision"] and entry["hub_path"] not in variant["files"]]
    return found
