"""The release a package pins: `release.json`, the release table, which the release workflow writes into
the wheel, the crate and the npm package before any of them is built (`python -m release table`).

A package is built before the release's Hub commit exists, so it pins the release by its tag and by the
SHA-256 of every file the tag should hold, known from the verified exports' manifests. A tag can move
on the Hub, so a download by the table refuses any file, `manifest.json` first, whose size or SHA-256
differs from the table's. A checkout holds no table: it pins no release, and `download_release` says so.

    {"format_version": 1, "tag": "v1.2.0",
     "variants": {"ViT-B-32": {"hub_repo": "org/clip-onnx-ViT-B-32",
                               "files": {"fp32/manifest.json": {"sha256": "...", "bytes": 4768}, ...}}}}

`files` holds, for each precision folder published, `manifest.json` and every file that manifest lists.
The Rust crate (`hub::Release`) and the Node package (`embeddedRelease`, `downloadRelease`) read the same file."""

from __future__ import annotations

import json
import re
from importlib import resources

from clip_onnx.errors import ClipOnnxError, UsageError

RELEASE_FILE = "release.json"
FORMAT_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
NO_RELEASE = ("this clip-onnx pins no release (it was installed from a checkout, not a registry); download a "
              "release by repo and commit instead: clip_onnx.hub.download(repo, revision)")


def parse(data: object) -> dict:
    """A release table, checked key by key; anything else is refused in one line."""
    def bad(what: str) -> ClipOnnxError:
        return ClipOnnxError(f"{RELEASE_FILE}: {what}; reinstall clip-onnx from its registry", "bad_manifest")

    if not isinstance(data, dict):
        raise bad("is not a JSON object")
    if type(data.get("format_version")) is not int or data["format_version"] != FORMAT_VERSION:
        raise ClipOnnxError(f"{RELEASE_FILE}: format_version {json.dumps(data.get('format_version'))}, but this "
                            f"clip-onnx reads {FORMAT_VERSION}; reinstall clip-onnx", "unsupported_format")
    if not isinstance(data.get("tag"), str) or not data["tag"]:
        raise bad("names no tag")
    if not isinstance(data.get("variants"), dict):
        raise bad("lists no variants")
    for name, variant in data["variants"].items():
        if not isinstance(variant, dict) or not isinstance(variant.get("hub_repo"), str) \
                or not isinstance(variant.get("files"), dict):
            raise bad(f"variant {name!r} lacks hub_repo or files")
        for path, facts in variant["files"].items():
            if not isinstance(facts, dict) or not _SHA256.match(str(facts.get("sha256"))) \
                    or type(facts.get("bytes")) is not int or facts["bytes"] < 0:
                raise bad(f"{name} {path} has no sha256 and bytes")
    return data


def embedded() -> dict | None:
    """The table installed with this package, or None when it was installed from a checkout."""
    file = resources.files("clip_onnx").joinpath(RELEASE_FILE)
    if not file.is_file():
        return None
    try:
        return parse(json.loads(file.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ClipOnnxError(f"{RELEASE_FILE} is not JSON ({error}); reinstall clip-onnx", "bad_manifest") from None


def pins(release: dict | None, name: str, precision: str) -> tuple[str, str, dict[str, dict]]:
    """`(hub_repo, tag, {file name: {sha256, bytes}})` of `name`'s `precision` folder in `release`."""
    if release is None:
        raise UsageError(NO_RELEASE)
    tag, variants = release["tag"], release["variants"]
    if name not in variants:
        raise UsageError(f"release {tag} has no variant {name!r}; choose one of {', '.join(sorted(variants))}")
    files = variants[name]["files"]
    prefix = f"{precision}/"
    folder = {path.removeprefix(prefix): facts for path, facts in files.items() if path.startswith(prefix)}
    if "manifest.json" not in folder:
        published = sorted({path.split("/")[0] for path in files if path.endswith("/manifest.json")})
        raise UsageError(f"release {tag} has no {precision} files of {name}; choose one of {', '.join(published)}")
    return variants[name]["hub_repo"], tag, folder
