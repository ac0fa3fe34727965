"""Stage verified exports as release assets.

Layout of `<out>/` for a tag:
- `hub/<Name>/...` (fp32) and `hub/<Name>-fp16/...`: the export folders, whole, as they go to the
  Hugging Face Hub (`hf_hub_download(repo, "ViT-B-32/ViT-B-32_visual.onnx", revision=tag)`).
- `github/`: the same files as flat GitHub Release assets, fp16 ones named `<file>` with `-fp16`
  before the extension, manifests as `<Name>[-fp16].manifest.json`; a file over GitHub's 2 GiB asset
  limit is split into `<asset>.part-NN` (join: `cat <asset>.part-* > <asset>`).
- `github/SHA256SUMS`: every asset, and every joined file, in `sha256sum -c` format.
- `release-manifest.json`: every file with variant, graph, precision, size, hash, Hub path and assets.
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

TAG = re.compile(r"^v\d+\.\d+\.\d+$")
# GitHub refuses release assets of 2 GiB or more; parts stay below with room to spare.
PART_BYTES = 2 * 1024**3 - 64 * 1024**2


def matrix() -> dict:
    """The release workflow's export jobs: every OpenAI variant in every precision (`folder` names artifacts)."""
    return {"include": [{"variant": v.name, "folder": v.folder_name, "precision": p}
                        for v in VARIANTS.values() if v.published for p in PUBLISHED_PRECISIONS]}


def github_name(file_name: str, precision: str) -> str:
    """`ViT-B-32_visual.onnx` -> `ViT-B-32_visual-fp16.onnx`; `.onnx.data` files keep the name their
    graph refers to, so only fp32 graphs (the only ones over the external-data threshold) have them."""
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


def _split(source: Path, target: Path) -> list[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(source, "rb") as f:
        while chunk := f.read(PART_BYTES):
            part = target.with_name(f"{target.name}.part-{len(parts):02d}")
            part.write_bytes(chunk)
            parts.append(part)
    return parts


def collect(exports: Path) -> list[tuple[Path, dict]]:
    """Every export folder under `exports`, refusing any that is unverified or changed since."""
    folders = []
    for path in sorted(Path(exports).glob("**/manifest.json")):
        data = manifest.read(path.parent)
        if not data["verification"].get("passed"):
            raise ClipOnnxError(f"{path.parent} was not verified (or failed); only verified exports are released")
        integrity.check_files(data, path.parent)
        folders.append((path.parent, data))
    if not folders:
        raise ClipOnnxError(f"no exported folders (manifest.json) under {exports}")
    return folders


def stage(exports: Path, tag: str, out: Path) -> dict:
    """Lay out the release of `tag` under `out` (which must not exist) and return its manifest."""
    if not TAG.match(tag):
        raise ClipOnnxError(f"tag {tag!r} is not of the form vX.Y.Z")
    out = Path(out)
    if out.exists():
        raise ClipOnnxError(f"{out} already exists; stage into a new folder")
    files, seen = [], set()
    for folder, data in collect(exports):
        name, precision = data["name"], data["precision"]
        hub = export_folder(name, precision)
        if hub in seen:
            raise ClipOnnxError(f"two exports of {name} in {precision} under {exports}; keep one")
        seen.add(hub)
        graph_of = {f: key for key, g in data["graphs"].items() for f in [g["file"], *g["external_data"]]}
        for file_name in [*data["files"], manifest.MANIFEST]:
            source = folder / file_name
            _place(source, out / "hub" / hub / file_name)
            # graphs keep their names; the manifest, tokenizer.json and preprocess.json of every
            # folder would collide as flat release assets, so they are prefixed with the folder
            asset = (github_name(file_name, precision) if file_name in graph_of else f"{hub}.{file_name}")
            target = out / "github" / asset
            if target.exists():
                raise ClipOnnxError(f"two files would be published as {asset}")
            if source.stat().st_size >= PART_BYTES:
                assets = [p.name for p in _split(source, target)]
            else:
                _place(source, target)
                assets = [asset]
            files.append({
                "variant": data["variant"] or name, "name": name, "graph": graph_of.get(file_name),
                "precision": precision, "bytes": source.stat().st_size, "sha256": integrity.sha256_file(source),
                "hub_path": f"{hub}/{file_name}", "github_assets": assets, "joined_as": asset,
            })
    sums = []
    for entry in files:
        if entry["github_assets"] != [entry["joined_as"]]:
            sums += [(integrity.sha256_file(out / "github" / a), a) for a in entry["github_assets"]]
        sums.append((entry["sha256"], entry["joined_as"]))
    (out / "github" / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for h, n in sorted(sums, key=lambda s: s[1])))
    release = {"tag": tag, "files": files}
    (out / "release-manifest.json").write_text(json.dumps(release, indent=2) + "\n")
    return release
