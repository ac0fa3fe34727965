"""`python -m release stage --exports DIR --tag vX.Y.Z --hub-repo ID -o OUT`: stage verified exports for a
release, with the Hugging Face model card (`OUT/hub/README.md`) and release notes (`OUT/RELEASE_NOTES.md`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exporter.errors import ExporterError
from release.cards import model_card, release_notes
from release.stage import stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m release", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    staging = commands.add_parser("stage", help="lay out the files a tag publishes, with SHA256SUMS")
    staging.add_argument("--exports", type=Path, required=True, help="folder holding `clip-onnx export` outputs")
    staging.add_argument("--tag", required=True, help="release tag, vX.Y.Z")
    staging.add_argument("-o", "--output", type=Path, required=True, help="new folder to stage into")
    staging.add_argument("--hub-repo", required=True, help="Hugging Face repo id the card and notes point at")
    args = parser.parse_args(argv)
    try:
        release = stage(args.exports, args.tag, args.output)
        (args.output / "hub" / "README.md").write_text(model_card(args.output, args.hub_repo, args.tag))
        (args.output / "RELEASE_NOTES.md").write_text(release_notes(args.output, args.hub_repo, args.tag))
    except ExporterError as error:
        print(f"release: error: {error}", file=sys.stderr)
        return 1
    for entry in release["files"]:
        print(f"hub {entry['hub_path']}  github {', '.join(entry['github_assets'])}  {entry['bytes']} bytes")
    print(f"staged {len(release['files'])} files for {release['tag']} in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
