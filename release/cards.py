"""The texts a release publishes: each variant's Hugging Face model card and the GitHub release notes,
rendered from the staged files' manifests, so every figure in them is one the verification measured
and every provenance line is what the export recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

from clip_onnx.contract import OLDEST_ONNXRUNTIME, PUBLISHED_PRECISIONS
from exporter.variants import VARIANTS
from release.versions import version

OPENAI = Path(__file__).resolve().parent / "openai"
LICENSE = OPENAI / "LICENSE"  # OpenAI's MIT notice, which must travel with the weights
LICENSE_ASSET = "LICENSE-OpenAI-CLIP.txt"  # its name among the GitHub release's assets
EXCERPT = OPENAI / "model-card-excerpt.md"  # OpenAI's intended use, out-of-scope uses and limitations
# the card at the commit the excerpt was quoted from, as the excerpt's first line records it
OPENAI_CARD = re.search(r"https://github\.com/openai/CLIP/blob/[0-9a-f]{40}/model-card\.md",
                        EXCERPT.read_text()).group()
CITATION = """@inproceedings{radford2021learning,
  title     = {Learning Transferable Visual Models From Natural Language Supervision},
  author    = {Radford, Alec and Kim, Jong Wook and Hallacy, Chris and Ramesh, Aditya and Goh, Gabriel and
               Agarwal, Sandhini and Sastry, Girish and Askell, Amanda and Mishkin, Pamela and Clark, Jack and
               Krueger, Gretchen and Sutskever, Ilya},
  booktitle = {Proceedings of the 38th International Conference on Machine Learning},
  series    = {Proceedings of Machine Learning Research},
  volume    = {139},
  pages     = {8748--8763},
  year      = {2021},
  url       = {https://arxiv.org/abs/2103.00020}
}"""
# The Rust crate's example, which `cargo test` compiles: the cards show it with each repo and commit.
RUST_EXAMPLE = Path(__file__).resolve().parents[1] / "rust" / "src" / "lib.rs"


def rust_snippet(repo_id: str, revision: str) -> str:
    lines = RUST_EXAMPLE.read_text().split("//! ```no_run\n", 1)[1].split("//! ```", 1)[0].splitlines()
    code = "\n".join(line.removeprefix("//! ") for line in lines if not line.startswith("//! # "))
    return code.replace("org/clip-onnx-ViT-B-32", repo_id).replace("<commit>", revision)


def manifests(root: Path) -> list[dict]:
    """The per-precision manifests of one variant's staged Hub folder, fp32 first."""
    return [json.loads(p.read_text()) for p in sorted(Path(root).glob("*/manifest.json"),
                                                      key=lambda p: PUBLISHED_PRECISIONS.index(p.parent.name))]


def base_model(export: dict) -> str | None:
    """OpenAI's own Hub repo of the variant where one exists, else the Hub repo the weights came from."""
    variant = VARIANTS.get(export["variant"] or export["name"])
    source = export["source"]
    return (variant and variant.openai_hub) or (source["repo"] if source.get("kind") == "hub" else None)


def _metadata(export: dict) -> str:
    base = f"base_model: {base_model(export)}\n" if base_model(export) else ""
    return ("---\nlicense: mit\nlanguage:\n- en\nlibrary_name: onnx\npipeline_tag: zero-shot-image-classification\n"
            + base + "tags:\n- clip\n- onnx\n- zero-shot-image-classification\n- feature-extraction\n---\n")


def _files(exports: list[dict]) -> str:
    """Every file of every precision folder with its size and full SHA-256, as its manifest records them."""
    return "\n".join(f"| `{e['precision']}/{name}` | {f['bytes']:,} | `{f['sha256']}` |"
                     for e in exports for name, f in e["files"].items())


def _links(export: dict, tag: str, github_repo: str | None) -> str:
    """Where the files come from and how to check them: the source at its commit, the release, its sums."""
    if github_repo is None:
        return ""
    site, commit = f"https://github.com/{github_repo}", export["versions"].get("clip-onnx-commit")
    return (f"- Source: [{github_repo} at `{commit}`]({site}/tree/{commit}); "
            f"release: [{tag}]({site}/releases/tag/{tag}), "
            f"with every file's SHA-256 in [`SHA256SUMS`]({site}/releases/download/{tag}/SHA256SUMS).\n"
            f"- Check a downloaded file against the release's build provenance: "
            f"`gh attestation verify {export['graphs']['visual']['file']} --repo {github_repo}`.\n")


def _figures(export: dict) -> str:
    rows = []
    for graph in export["graphs"]:
        checks = [c for c in export["verification"]["comparisons"] if c["graph"] == graph]
        rows.append(f"| {export['precision']} | {graph} | {max(c['max_abs_diff'] for c in checks):.1e} | "
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


def source_line(export: dict) -> str:
    """Where the weights came from, as the export recorded and checked it."""
    source = export["source"]
    if source.get("kind") == "hub":
        return (f"`{source['file']}` of the Hub repo `{source['repo']}` at commit `{source['revision']}`, "
                f"SHA-256 `{source['sha256']}`")
    return f"{source.get('kind')} weights ({', '.join(f'{k} {v}' for k, v in source.items() if k != 'kind')})"


def toolchain(export: dict) -> str:
    return ", ".join(f"{name} {version}" for name, version in export["versions"].items()
                     if version and name != "clip-onnx-commit")


def _needs(exports: list[dict]) -> str:
    """Which files each graph needs, per precision folder (the manifest's `graphs.<graph>.files`)."""
    rows = "\n".join(f"| `{e['precision']}/{g['file']}` | {', '.join(f'`{name}`' for name in g['files'][1:])} |"
                     for e in exports for g in e["graphs"].values())
    return ("The three graphs share their weights: the visual and text graphs keep theirs in a `.data` file "
            "beside them, and the forward graph reads those same files, so it adds only its own small `.onnx`. "
            "onnxruntime finds a data file by its name beside the graph, so download a graph with every file of "
            "its row into one folder; a program that only embeds texts needs only the transformer's row.\n\n"
            "| graph | also needs, from the same folder |\n|---|---|\n" + rows)


def model_card(root: Path, repo_id: str, tag: str, pins: dict[str, str] | None = None,
               github_repo: str | None = None) -> str:
    """The card of one variant's Hub repo, from the manifests under its staged folder `root`. `pins`
    (tag -> commit) exist only after tagging: the card committed to `main` then lists them, and its
    snippets pin the newest commit; the card inside a tag cannot name its own commit. `github_repo`
    (OWNER/NAME) links the source, the release and its checks."""
    exports = manifests(root)
    first = exports[0]
    pre, tok = first["preprocessing"], first["tokenizer"]
    variant = first["variant"] or first["name"]
    revision = pins[tag] if pins else tag
    pin_note = (f"`{revision}` is the commit of `{tag}`: a commit cannot move, a tag can." if pins else
                f"Better than the tag `{tag}`: the commit it points at, listed on this repo's main card and in "
                f"the GitHub release notes. A commit cannot move, a tag can.")
    scales = "\n".join(f"| {e['precision']} | {e['preprocessing']['resolution']} | {e['logit_scale']['exp']:.4f} | "
                       f"{e['opset']} | {e['ir_version']} |" for e in exports)
    visual = first["graphs"]["visual"]  # the JavaScript snippet's graph, with the data files it reads
    weights = [f for f in visual["files"] if f.endswith((".onnx", ".data"))]
    newest_first = sorted((pins or {}).items(), key=lambda pin: version(pin[0]), reverse=True)
    pinned = "\n".join(f"| `{t}` | `{c}` |" for t, c in newest_first)
    excerpt = "\n".join(f"> {line}".rstrip() for line in EXCERPT.read_text().splitlines()[1:])
    return f"""{_metadata(first)}
# OpenAI CLIP {variant} as ONNX ({tag})

OpenAI CLIP {variant} exported by clip-onnx: `{first['name']}.onnx` (forward: logits),
`{first['name']}_visual.onnx` (image embeddings) and `{first['name']}_transformer.onnx` (text embeddings),
each verified against PyTorch before publication. `fp32/` holds the float32 graphs, `fp16/` the float16
ones, whose inputs and outputs are float32 too.

{_needs(exports)}

## Licence

The weights are OpenAI's, released under the MIT License; its notice, which must accompany every copy,
is the file `LICENSE` in this repo. clip-onnx's own code is MIT-licensed too.

## Intended use, out-of-scope uses and limitations, in OpenAI's words

Quoted unchanged from [OpenAI's CLIP model card]({OPENAI_CARD}); it applies to these files as to the
original weights.

{excerpt}

## Provenance

- Weights: {source_line(first)}.
- Exported and verified by clip-onnx commit `{first['versions'].get('clip-onnx-commit')}`.
- Toolchain: {toolchain(first)}.
{_links(first, tag, github_repo)}
| file | bytes | SHA-256 |
|---|---:|---|
{_files(exports)}

## Files and their contract

| file | | name | dtype | shape |
|---|---|---|---|---|
{_io(first)}

(shown for `{first['precision']}/`; `fp16/` has the same names, shapes and dtypes)

| folder | resolution | exp(logit_scale) | opset | IR version |
|---|---:|---:|---:|---:|
{scales}

## Preprocess and tokenize

Images: RGB, resize the shorter side to the resolution (Pillow's bicubic), centre-crop, scale to [0, 1],
normalise with CLIP's mean and std, layout NCHW float32. Every folder's `{pre['file']}` holds the parameters
and names each rule by identifier, enough to reproduce CLIP's pixels bit for bit.
Texts: CLIP's BPE tokenizer (`clip.tokenize`): start token {tok['start_token_id']}, end token
{tok['end_token_id']}, zero padding to {tok['context_length']}, ids as {tok['dtype']}. Every folder's
`{tok['file']}` (Hugging Face `tokenizers` format) gives `clip.tokenize`'s ids after CLIP's cleaning:
`{tok['clean'].split(' before')[0]}`.

## Verification (ONNX Runtime against PyTorch float32, worst case over all input sets)

| folder | graph | max abs diff | min cosine | zero-shot argmax agrees |
|---|---|---:|---:|---|
{chr(10).join(_figures(e) for e in exports)}

## Pinned revisions

| tag | commit |
|---|---|
{pinned or f"| `{tag}` | (listed on this repo's main card once tagged) |"}

## Download a pinned revision

{pin_note} The graphs need onnxruntime {OLDEST_ONNXRUNTIME} or newer.

```python
# pip install clip-onnx (onnxruntime, no PyTorch); downloads only the files the graphs need
from clip_onnx import Model

model = Model.from_hub("{repo_id}", revision="{revision}")
print(model.probabilities("cat.jpg", ["a photo of a cat", "a photo of a dog"]))
```

```rust
// the clip-onnx crate (rust/ in the clip-onnx repository; ort with ORT_DYLIB_PATH = libonnxruntime 1.18+)
{rust_snippet(repo_id, revision)}
```

```js
// onnxruntime-node: a graph and its data file, side by side in one folder, as onnxruntime expects
import {{ mkdir, writeFile }} from "node:fs/promises";
const base = "https://huggingface.co/{repo_id}/resolve/{revision}/{first['precision']}";
await mkdir("model", {{ recursive: true }});
for (const file of {json.dumps(weights)}) {{
  await writeFile(`model/${{file}}`, new Uint8Array(await (await fetch(`${{base}}/${{file}}`)).arrayBuffer()));
}}
const session = await ort.InferenceSession.create("model/{visual['file']}");
```

## Citation

```bibtex
{CITATION}
```
"""


def write_card(root: Path, repo_id: str, tag: str, github_repo: str | None = None) -> None:
    """One variant's model card, `README.md` in its staged Hub folder, uploaded with its files."""
    (Path(root) / "README.md").write_text(model_card(root, repo_id, tag, github_repo=github_repo))


def release_notes(files: list[dict], tag: str, hub_commits: dict[str, str], exports: list[dict]) -> str:
    """The GitHub release's notes: each variant's Hub repo and the commit its tag points at (pin that:
    a Hub tag can be moved, a commit cannot), provenance, then every file (`files`: release-manifest
    entries; `exports`: one manifest per variant)."""
    repos = "\n".join(f"| `{repo}` | `{commit}` |" for repo, commit in sorted(hub_commits.items()))
    sources = "\n".join(f"- {e['variant'] or e['name']}: {source_line(e)}" for e in exports)
    rows = "\n".join(f"| `{f['hub_repo']}` | `{f['hub_path']}` | {', '.join('`' + a['name'] + '`' for a in f['github_assets'])} "
                     f"| {f['bytes']:,} | `{f['sha256']}` |" for f in files)
    return f"""# clip-onnx {tag}

Every graph below was exported and verified against PyTorch by the release workflow before upload.
Each variant also has its own Hugging Face Hub repo, tagged `{tag}`; pin the commit, which cannot move:

| Hub repo | commit of `{tag}` |
|---|---|
{repos}

The weights are OpenAI's, under the MIT License; its notice is the asset `{LICENSE_ASSET}` and the file
`LICENSE` of every Hub repo. OpenAI's model card states their intended use, out-of-scope uses and
limitations: {OPENAI_CARD}; each Hub repo's card quotes them.

## Provenance

Weights, each checked against its SHA-256 before export:
{sources}

Exported by clip-onnx commit `{exports[0]['versions'].get('clip-onnx-commit')}` with {toolchain(exports[0])}.

## Files

| Hub repo | path | GitHub assets | bytes | SHA-256 |
|---|---|---|---:|---|
{rows}

Check what you downloaded (join split files first):

```bash
cat ASSET.part-* > ASSET   # only for files published in parts
sha256sum -c --ignore-missing SHA256SUMS
gh release verify-asset {tag} ViT-B-32_visual.onnx   # with immutable releases: GitHub's own record
```
"""
