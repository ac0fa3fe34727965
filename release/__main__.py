"""`python -m release COMMAND`: what the release workflow runs, step by step, and a local rehearsal of it all.

  matrix     the export jobs' matrix (every OpenAI variant x fp32/fp16) as JSON, from exporter/variants.py
  stage      lay out verified exports as a tag's files, with SHA256SUMS, model card and release notes
  publish    upload a staged release to the Hugging Face Hub and GitHub (or list every upload: --dry-run)
  rehearse   the whole release on random weights, published to a Hub on loopback; no network
  pin-weights  resolve each variant's Hub weights (commit id, SHA-256, size) into exporter/weight_pins.json:
             the maintainer's one-time step, with network, before the first release tag
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clip_onnx.errors import ClipOnnxError


def _stage(args: argparse.Namespace) -> None:
    from release.cards import write_texts
    from release.stage import stage

    release = stage(args.exports, args.tag, args.output)
    write_texts(args.output, args.hub_repo, args.tag)
    for entry in release["files"]:
        print(f"hub {entry['hub_path']}  github {', '.join(entry['github_assets'])}  {entry['bytes']} bytes")
    print(f"staged {len(release['files'])} files for {release['tag']} in {args.output}")


def _publish(args: argparse.Namespace) -> None:
    from release import github, hub

    manifest = args.staged / "release-manifest.json"
    if not manifest.is_file():
        raise ClipOnnxError(f"{args.staged} is not a staged release (no release-manifest.json); run `stage` first")
    release = json.loads(manifest.read_text())
    if args.dry_run:
        for f in hub.hub_files(args.staged, release):
            print(f"would upload to {args.hub_repo}: {f.path_in_repo}  {f.size} bytes  sha256 {f.sha256}")
        print(f"would commit them to {args.hub_repo}@{hub.BRANCH} and tag {release['tag']}")
        for name, digest in github.checksums(args.staged).items():
            print(f"would attach to GitHub release {release['tag']} of {args.github_repo}: {name}  sha256 {digest}")
        print("dry run: nothing was uploaded")
        return
    hub.publish(args.staged, release, args.hub_repo)
    print(github.publish(args.staged, args.github_repo, release["tag"]))


def _pin_weights(args: argparse.Namespace) -> None:
    from exporter import hub_weights

    resolved = {}
    for name, pin in hub_weights.pins().items():
        if args.variants and name not in args.variants:
            resolved[name] = pin
            continue
        resolved[name] = hub_weights.resolve(pin, args.revision, endpoint=args.endpoint)
        print(f"{name}: {pin.repo}@{resolved[name].revision} {pin.file} sha256 {resolved[name].sha256} "
              f"{resolved[name].bytes} bytes")
    hub_weights.write_pins(resolved)
    print(f"wrote {hub_weights.PINS}; review the diff and commit it")


def _rehearse(args: argparse.Namespace) -> None:
    from release.rehearse import rehearse

    rehearse(args.output, args.variants, args.precisions)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("matrix", help="print the export matrix as JSON")
    staging = commands.add_parser("stage", help="lay out the files a tag publishes, with SHA256SUMS")
    staging.add_argument("--exports", type=Path, required=True, help="folder holding `clip-onnx export` outputs")
    staging.add_argument("--tag", required=True, help="release tag, vX.Y.Z")
    staging.add_argument("-o", "--output", type=Path, required=True, help="new folder to stage into")
    staging.add_argument("--hub-repo", required=True, help="Hugging Face repo id the card and notes point at")
    publishing = commands.add_parser("publish", help="upload a staged release (Hub commit + tag, GitHub Release)",
                                     description="Uploads with $HF_TOKEN (huggingface_hub) and `gh` ($GH_TOKEN). "
                                                 "Safe to re-run: what is already published is checked, not repeated.")
    publishing.add_argument("staged", type=Path, help="the folder `stage` wrote")
    publishing.add_argument("--hub-repo", required=True, help="Hugging Face model repo id, ORG/NAME")
    publishing.add_argument("--github-repo", required=True, help="GitHub repository, OWNER/NAME")
    publishing.add_argument("--dry-run", action="store_true", help="list every upload, contact nothing")
    rehearsal = commands.add_parser("rehearse", help="the whole release on random weights, offline",
                                    description="Export and verify with random weights, stage, render the card and "
                                                "notes, publish to a Hugging Face Hub on loopback twice (the second "
                                                "run must change nothing), download and check every file.")
    rehearsal.add_argument("-o", "--output", type=Path, required=True, help="new folder for everything")
    rehearsal.add_argument("--variants", nargs="+", default=["tiny-ViT", "tiny-RN"], help="default: %(default)s")
    rehearsal.add_argument("--precisions", nargs="+", default=["fp32", "fp16"], help="default: %(default)s")
    pinning = commands.add_parser("pin-weights", help="pin each variant's Hub weights (commit, SHA-256, size)",
                                  description="Asks the Hub (HF_ENDPOINT, HF_TOKEN) for each variant's weight file at "
                                              "REVISION and writes its commit id, SHA-256 and size into "
                                              "exporter/weight_pins.json, which release exports require.")
    pinning.add_argument("--revision", default="main", help="the branch or tag to pin (default: main)")
    pinning.add_argument("--variants", nargs="+", help="pin only these (default: all nine)")
    pinning.add_argument("--endpoint", default=None, help="the Hub's URL (default: $HF_ENDPOINT or huggingface.co)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "matrix":
            from release.stage import matrix

            print(json.dumps(matrix()))
        else:
            {"stage": _stage, "publish": _publish, "rehearse": _rehearse,
             "pin-weights": _pin_weights}[args.command](args)
    except ClipOnnxError as error:
        print(f"release: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
