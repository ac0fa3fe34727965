"""Stage verified exports as a tag's release files.

Layout of `<out>/` for a tag:
- `hub/<Name>/`: what goes to the variant's own Hub repo (`hub_repo`): `fp32/...` and `fp16/...`, the
  export folders whole, OpenAI's licence notice `LICENSE`, and the model card `README.md`
  (`hf_hub_download("<org>/clip-onnx-ViT-B-32", "fp32/ViT-B-32_visual.onnx", revision=<commit>)`).
- `github/`: the same files as flat GitHub Release assets, fp16 ones named `<file>` with `-fp16`
  before the extension, manifests as `<Name>[-fp16].manifest.json`; a file over GitHub's 2 GiB asset
  limit is split into `<asset>.part-NN` (join: `cat <asset>.part-* > <asset>`).
- `github/LICENSE-OpenAI-CLIP.txt`: OpenAI's licence notice, once.
- `github/SHA256SUMS`: every asset, and every joined file, in `sha256sum -c` format.
- `release-manifest.json`: every file with variant, graph, precision, size, hash, Hub repo and path,
  and its GitHub assets with their own hashes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from clip_onnx import integrity, manifest
from clip_onnx.contract import PUBLISHED_PRECISIONS, export_folder
from clip_onnx.errors import ClipOnnxError
from exporter.variants import VARIANTS
from release.cards import LICENSE, LICENSE_ASSET
from release.versions import TAG

# One Hub repo per variant, so each has its own card, base model and size; the name is fixed once people pin.
HUB_REPO = "clip-onnx-{folder}"
# where the release workflow takes the organisation from; never guessed from the GitHub owner
HF_ORG_HELP = "set the repository variable HF_ORG (Settings > Secrets and variables > Actions > Variables)"
# GitHub refuses release assets of 2 GiB or more; parts stay below with room to spare.
PART_BYTES = 2 * 1024**3 - 64 * 1024**2
CHUNK = 1 << 24


def matrix() -> dict:
    """The release workflow's export jobs: every OpenAI variant in every precision, and the two artifacts
    each uploads: its export folder, and its manifest alone (read by `release.table`)."""
    return {"include": [{"variant": v.name, "folder": v.folder_name, "precision": p,
                         "artifact": artifact_name(v.folder_name, p),
                         "manifest_artifact": artifact_name(v.folder_name, p, "manifest")}
                        for v in VARIANTS.values() if v.published for p in PUBLISHED_PRECISIONS]}


def hub_repo(org: str, folder: str) -> str:
    """The Hub repo that publishes the variant written to `folder`: `<org>/clip-onnx-ViT-B-32`."""
    return f"{org}/{HUB_REPO.format(folder=folder)}"


def artifact_name(folder: str, precision: str, kind: str = "export") -> str:
    """The matrix cell's artifact name; the export job appends its run attempt (`ATTEMPT`), so that a
    re-run's artifacts never share a name with an earlier attempt's, whichever way GitHub lists them."""
    return f"{kind}-{folder}-{precision}"


ATTEMPT = "-attempt{attempt}"


def attempt_artifact(folder: str, precision: str, attempt: int, kind: str = "export") -> str:
    """What the export job of run attempt `attempt` names its artifact (`artifact_pattern` reads it back)."""
    return artifact_name(folder, precision, kind) + ATTEMPT.format(attempt=attempt)


def artifact_pattern(kind: str) -> re.Pattern:
    return re.compile(rf"^{kind}-(?P<folder>.+)-(?P<precision>{'|'.join(PUBLISHED_PRECISIONS)})"
                      rf"{ATTEMPT.format(attempt=r'(?P<attempt>[1-9][0-9]*)')}$")


ARTIFACT = artifact_pattern("export")


def asset_name(name: str, precision: str, file_name: str) -> str:
    """The GitHub asset (or, when split, joined) name of an export's file. Graphs keep their names; the
    manifest, tokenizer.json and preprocess.json of every folder would collide as flat release assets,
    so they are prefixed with the folder."""
    if file_name.endswith((".onnx", ".onnx.data")):
        return github_name(file_name, precision)
    return f"{export_folder(name, precision)}.{file_name}"


def github_name(file_name: str, precision: str) -> str:
    """`ViT-B-32_visual.onnx` -> `ViT-B-32_visual-fp16.onnx`; `.onnx.data` files keep the name their
    graph refers to, which carries the precision already (`GraphSpec.data_file_name`)."""
    if precision == "fp32" or file_name.endswith(".data"):
        return file_name
    stem, _, extension = file_name.partition(".")
    return f"{stem}-{precision}.{extension}"


def _place(source: Path, target: Path) -> None:
    """Hard-link when possible: release files are gigabytes, and staging must not double the disk."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _split(source: Path, target: Path, part_bytes: int) -> list[Path]:
    """`source` as `<target>.part-NN` files of `part_bytes`, copied in chunks, never held in memory whole.
    Numbers are zero-padded to one width (at least 2), so `cat <target>.part-*` joins them in order."""
    target.parent.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(-(-source.stat().st_size // part_bytes) - 1)))
    parts = []
    with open(source, "rb") as f:
        while chunk := f.read(min(CHUNK, part_bytes)):
            part = target.with_name(f"{target.name}.part-{len(parts):0{width}d}")
            with open(part, "wb") as out:
                written = 0
                while chunk:
                    out.write(chunk)
                    written += len(chunk)
                    chunk = f.read(min(CHUNK, part_bytes - written))
            parts.append(part)
    return parts


def collect(exports: Path, variant: str | None = None) -> list[tuple[Path, dict]]:
    """Every export folder under `exports` (of the variant written to folder `variant`, if given),
    refusing any that is unverified or changed since."""
    folders = []
    for path in sorted(Path(exports).glob("**/manifest.json")):
        data = manifest.read(path.parent)
        if variant is not None and data["name"] != variant:
            continue
        if data["verification"].get("status") != "passed":
            raise ClipOnnxError(f"{path.parent} was not verified (or failed); only verified exports are released")
        integrity.check_files(data, path.parent)
        folders.append((path.parent, data))
    if not folders:
        raise ClipOnnxError(f"no exported folders (manifest.json) under {exports}"
                            + (f" for {variant}" if variant else ""))
    return folders


def sums_text(files: list[dict]) -> str:
    """`SHA256SUMS` for `files` (release-manifest entries): every asset, and every split file once joined."""
    sums = {(asset["sha256"], asset["name"]) for entry in files for asset in entry["github_assets"]}
    sums |= {(entry["sha256"], entry["joined_as"]) for entry in files}
    return "".join(f"{digest}  {name}\n" for digest, name in sorted(sums, key=lambda s: s[1]))


def read_sums(text: str) -> dict[str, str]:
    """`SHA256SUMS` (as `sums_text` writes it) as name -> SHA-256."""
    return {name: digest for digest, name in (line.split("  ", 1) for line in text.splitlines() if line)}


def stage(exports: Path, tag: str, out: Path, org: str, *, variant: str | None = None,
          part_bytes: int = PART_BYTES) -> dict:
    """Lay out the release of `tag` under `out` (which must not exist) and return its manifest: every
    export under `exports`, or only the variant written to folder `variant`."""
    if not TAG.match(tag):
        raise ClipOnnxError(f"tag {tag!r} is not of the form vX.Y.Z")
    out = Path(out)
    if out.exists():
        raise ClipOnnxError(f"{out} already exists; stage into a new folder")
    files, seen = [], set()
    for folder, data in collect(exports, variant):
        name, precision = data["name"], data["precision"]
        if (name, precision) in seen:
            raise ClipOnnxError(f"two exports of {name} in {precision} under {exports}; keep one")
        seen.add((name, precision))
        # a data file the forward graph shares belongs to its encoder (listed first)
        graph_of = {}
        for key in sorted(data["graphs"], key=lambda k: k == "forward"):
            for f in data["graphs"][key]["files"]:
                if f.endswith((".onnx", ".data")):  # not the tokenizer or preprocess.json, which graphs share
                    graph_of.setdefault(f, key)
        for file_name in [*data["files"], manifest.MANIFEST]:
            source = folder / file_name
            _place(source, out / "hub" / name / precision / file_name)
            asset = asset_name(name, precision, file_name)
            target = out / "github" / asset
            if target.exists():
                raise ClipOnnxError(f"two files would be published as {asset}")
            digest = integrity.sha256_file(source)
            if source.stat().st_size > part_bytes:
                assets = [{"name": p.name, "sha256": integrity.sha256_file(p), "bytes": p.stat().st_size}
                          for p in _split(source, target, part_bytes)]
            else:
                _place(source, target)
                assets = [{"name": asset, "sha256": digest, "bytes": source.stat().st_size}]
            files.append({
                "variant": data["variant"] or name, "name": name, "graph": graph_of.get(file_name),
                "precision": precision, "bytes": source.stat().st_size, "sha256": digest,
                "hub_repo": hub_repo(org, name), "hub_path": f"{precision}/{file_name}",
                "github_assets": assets, "joined_as": asset,
            })
    for name in sorted({entry["name"] for entry in files}):  # OpenAI's licence notice travels with the weights
        _place(LICENSE, out / "hub" / name / "LICENSE")
        if not (out / "github" / LICENSE_ASSET).exists():
            _place(LICENSE, out / "github" / LICENSE_ASSET)
        digest = integrity.sha256_file(LICENSE)
        files.append({"variant": None, "name": name, "graph": None, "precision": None, "bytes": LICENSE.stat().st_size,
                      "sha256": digest, "hub_repo": hub_repo(org, name), "hub_path": "LICENSE",
                      "github_assets": [{"name": LICENSE_ASSET, "sha256": digest, "bytes": LICENSE.stat().st_size}],
                      "joined_as": LICENSE_ASSET})
    (out / "github" / "SHA256SUMS").write_text(sums_text(files))
    release = {"tag": tag, "files": files}
    (out / "release-manifest.json").write_text(json.dumps(release, indent=2) + "\n")
    return release
