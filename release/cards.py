"""The texts a release publishes: the Hugging Face model card and the GitHub release notes, both
rendered from the staged files' manifests, so every figure in them is one the verification measured."""

from __future__ import annotations

import json
from pathlib import Path

from clip_onnx.contract import PUBLISHED_PRECISIONS

CARD_METADATA = """\
---
license: mit
library_name: onnx
pipeline_tag: zero-shot-image-classification
tags:
- clip
- onnx
- zero-shot-image-classification
- feature-extraction
---
"""


def _exports(root: Path) -> list[dict]:
    """The per-precision manifests of one variant's staged Hub folder, fp32 first."""
    return [json.loads(p.read_text()) for p in sorted(Path(root).glob("*/manifest.json"),
                                                      key=lambda p: PUBLISHED_PRECISIONS.index(p.parent.name))]


def _hub_folder(export: dict) -> str:
    return export["precision"]


def _figures(export: dict) -> str:
    rows = []
    for graph in export["graphs"]:
        checks = [c for c in export["verification"]["comparisons"] if c["graph"] == graph]
        rows.append(f"| {_hub_folder(export)} | {graph} | {max(c['max_abs_diff'] for c in checks):.1e} | "
                    f"{min(c['min_cosine'] for c in checks):.7f} | "
                    f"{'yes' if all(c['argmax_agrees'] for c in checks) else 'no'} |")
    return "\n".join(rows)


def _io(export: dict) -> str:
    rows = []
    for graph in export["graphs"].values():
        for side in ("inputs", "outputs"):
            for tensor in graph[side]:
                rows.append(f"| `{graph['file']}` | {side[:-1]} | `{tensor['name']}` | {tensor['dtype']} | "
                            f"[{', '.join(map(str, tensor['shape']))}] |")
    return "\n".join(rows)


def model_card(root: Path, repo_id: str, tag: str) -> str:
    """The card of one variant's Hub repo, from the manifests under its staged folder `root`."""
    exports = _exports(root)
    first = exports[0]
    pre, tok = first["preprocessing"], first["tokenizer"]
    scales = "\n".join(f"| {_hub_folder(e)} | {e['preprocessing']['resolution']} | {e['logit_scale']['exp']:.4f} | "
                       f"{e['opset']} | {e['ir_version']} |" for e in exports)
    return f"""{CARD_METADATA}
# OpenAI CLIP {first['variant'] or first['name']} as ONNX ({tag})

OpenAI CLIP {first['variant'] or first['name']} exported by clip-onnx: `{first['name']}.onnx` (forward: logits),
`{first['name']}_visual.onnx` (image embeddings) and `{first['name']}_transformer.onnx` (text embeddings),
each verified against PyTorch before publication. `fp32/` holds the float32 graphs, `fp16/` the float16
ones, whose inputs and outputs are float32 too.

## Files and their contract

| file | | name | dtype | shape |
|---|---|---|---|---|
{_io(first)}

(shown for `{_hub_folder(first)}/`; `fp16/` has the same names, shapes and dtypes)

| folder | resolution | exp(logit_scale) | opset | IR version |
|---|---:|---:|---:|---:|
{scales}

## Preprocess and tokenize

Images: RGB, resize the shorter side to the resolution ({pre['resize']['interpolation']}), centre-crop,
scale to [0, 1], normalise with mean {pre['mean']} and std {pre['std']}, layout {pre['layout']} {pre['dtype']}.
Every folder's `{pre['file']}` writes down each rule, enough to reproduce CLIP's pixels bit for bit.
Texts: CLIP's BPE tokenizer (`clip.tokenize`): start token {tok['start_token_id']}, end token
{tok['end_token_id']}, zero padding to {tok['context_length']}, ids as {tok['dtype']}. Every folder's
`{tok['file']}` (Hugging Face `tokenizers` format) gives `clip.tokenize`'s ids after CLIP's cleaning:
`{tok['clean'].split(' before')[0]}`.

## Verification (ONNX Runtime against PyTorch float32, worst case over all input sets)

| folder | graph | max abs diff | min cosine | zero-shot argmax agrees |
|---|---|---:|---:|---|
{chr(10).join(_figures(e) for e in exports)}

## Use a pinned revision

```python
from huggingface_hub import hf_hub_download
import onnxruntime as ort

path = hf_hub_download("{repo_id}", "{_hub_folder(first)}/{first['name']}_visual.onnx", revision="{tag}")
session = ort.InferenceSession(path)
```

```rust
// Cargo.toml: ort = "2", hf-hub = "0.3"
let api = hf_hub::api::sync::Api::new()?;
let repo = api.repo(hf_hub::Repo::with_revision(
    "{repo_id}".into(), hf_hub::RepoType::Model, "{tag}".into()));
let path = repo.get("{_hub_folder(first)}/{first['name']}_visual.onnx")?;
let session = ort::session::Session::builder()?.commit_from_file(path)?;
```
"""


def write_card(root: Path, repo_id: str, tag: str) -> None:
    """One variant's model card, `README.md` in its staged Hub folder, uploaded with its files."""
    (Path(root) / "README.md").write_text(model_card(root, repo_id, tag))


def release_notes(files: list[dict], tag: str, hub_commits: dict[str, str]) -> str:
    """The GitHub release's notes: each variant's Hub repo and the commit its tag points at (pin that:
    a Hub tag can be moved, a commit cannot), then every file (`files`: release-manifest entries)."""
    repos = "\n".join(f"| `{repo}` | `{commit}` |" for repo, commit in sorted(hub_commits.items()))
    rows = "\n".join(f"| `{f['hub_repo']}` | `{f['hub_path']}` | {', '.join('`' + a['name'] + '`' for a in f['github_assets'])} "
                     f"| {f['bytes']:,} | `{f['sha256'][:16]}…` |" for f in files)
    return f"""# clip-onnx {tag}

Every graph below was exported and verified against PyTorch by the release workflow before upload.
Each variant also has its own Hugging Face Hub repo, tagged `{tag}`; pin the commit, which cannot move:

| Hub repo | commit of `{tag}` |
|---|---|
{repos}

| Hub repo | path | GitHub assets | bytes | SHA-256 |
|---|---|---|---:|---|
{rows}

Check what you downloaded (join split files first):

```bash
cat RN50x64.onnx.data.part-* > RN50x64.onnx.data   # only for files published in parts
sha256sum -c --ignore-missing SHA256SUMS
```
"""
