"""`python -m release COMMAND`: what the release workflow runs, step by step. The offline rehearsal of it
all, against the test doubles, is `python -m tests.rehearsal` (from a checkout).

  matrix     the export jobs' matrix (every OpenAI variant x fp32/fp16) as JSON, from exporter/variants.py
  stage      lay out verified exports as a tag's files, with SHA256SUMS and each variant's model card
  publish    publish a tag: GitHub draft with every asset, each variant's Hub tag, the GitHub release, then
             Latest and each Hub main, only ever forward; one variant on disk at a time; safe to re-run
             (or list every upload: --dry-run)
  preflight  before the exports: the tag, the locks, the weight pins, the Hub organisation, and both tokens'
             rights, with the release's credentials
  sums       the SHA256SUMS of a published release, for the provenance attestation
  observe    the canary's record of how GitHub lists a re-run's artifacts (release/github_observed.json),
             and its check of how the Hub refuses a stale parent_commit
  keyless    the canary's check of a keyless Hub write: this job's OIDC token exchanged for a repo's token
  table      the release table the packages pin (tag, Hub repos, every file's SHA-256), from the exports'
             manifests alone, before anything is public
  unpublished  the packages of one ecosystem (pypi, crates, npm) whose registry lacks the tag's version,
             in publishing order: what a (re-)run of that publishing job uploads
  lock       write the hashed requirement files of the release's jobs (release/locks/)
  pin-weights  resolve each variant's Hub weights (commit id, SHA-256, size) into exporter/weight_pins.json:
             the maintainer's one-time step, with network, before the first release tag
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from clip_onnx.errors import ClipOnnxError
from release.stage import HF_ORG_HELP, PART_BYTES


def _stage(args: argparse.Namespace) -> None:
    from release.cards import write_card
    from release.stage import hub_repo, stage

    release = stage(args.exports, args.tag, args.output, args.hub_org)
    for folder in sorted({entry["name"] for entry in release["files"]}):
        write_card(args.output / "hub" / folder, hub_repo(args.hub_org, folder), args.tag, args.github_repo)
    for entry in release["files"]:
        print(f"hub {entry['hub_repo']} {entry['hub_path']}  "
              f"github {', '.join(a['name'] for a in entry['github_assets'])}  {entry['bytes']} bytes")
    print(f"staged {len(release['files'])} files for {release['tag']} in {args.output}")


def _github(repo: str):
    """The GitHub client for `repo`, with the token the workflow gives (GH_TOKEN, else GITHUB_TOKEN)."""
    from release.github import GitHub

    return GitHub(repo, os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN"))


def _publish(args: argparse.Namespace) -> None:
    from release.publish import LocalExports, RunArtifacts, publish

    if not args.hub_org.strip():
        raise ClipOnnxError(f"--hub-org is empty: {HF_ORG_HELP}")
    if args.exports and args.work.resolve().is_relative_to(args.exports.resolve()):
        raise ClipOnnxError(f"--work {args.work} is inside --exports {args.exports}; put it elsewhere")
    github = None if args.dry_run and args.exports else _github(args.github_repo)
    if args.exports:
        source = LocalExports(args.exports)
    else:  # every cell of the export matrix, so that a run listing only some is refused, never half-published
        from release.stage import matrix

        source = RunArtifacts(github, args.run_id, sorted({cell["folder"] for cell in matrix()["include"]}))
    pinned = None
    if args.table:
        from release.table import read

        pinned = read(args.table)
    publish(source, args.tag, args.hub_org, github, args.work, part_bytes=args.part_bytes, dry_run=args.dry_run,
            draft_only=args.draft_only, table=pinned)


def _table(args: argparse.Namespace) -> None:
    from release import table
    from release.stage import matrix

    if not args.hub_org.strip():
        raise ClipOnnxError(f"--hub-org is empty: {HF_ORG_HELP}")
    if args.artifacts:
        folders = table.newest_manifests(args.artifacts)
        cells = {(cell["folder"], cell["precision"]) for cell in matrix()["include"]}
    else:
        folders = [path.parent for path in sorted(args.exports.glob("**/manifest.json"))]
        cells = None
    pinned = table.from_exports(folders, args.tag, args.hub_org)
    if cells is not None:
        have = {(name, path.split("/")[0]) for name, variant in pinned["variants"].items()
                for path in variant["files"] if path.endswith("/manifest.json")}
        if missing := sorted(cells - have):
            raise ClipOnnxError(f"no manifest artifact of {', '.join(f'{n} {p}' for n, p in missing)} under "
                                f"{args.artifacts}; every export must be pinned: re-run all jobs")
    table.write(pinned, args.output)
    files = sum(len(variant["files"]) for variant in pinned["variants"].values())
    variants = len(pinned["variants"])
    print(f"pinned {files} files of {variants} variant{'s' * (variants != 1)} at {args.tag}: "
          f"{', '.join(map(str, args.output))}")


def _preflight(args: argparse.Namespace) -> None:
    from release.preflight import preflight
    from release.stage import matrix

    github = _github(args.github_repo)
    folders = sorted({cell["folder"] for cell in matrix()["include"]})
    preflight(args.tag, args.hub_org, github, folders)


def _sums(args: argparse.Namespace) -> None:
    from release.github import published_sums

    content = published_sums(_github(args.github_repo), args.tag)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_bytes(content)
    partial.replace(args.output)
    print(f"wrote {args.output}: {len(content.splitlines())} files of {args.tag}")


def _observe(args: argparse.Namespace) -> None:
    from release.github import observe_attempts

    if args.hub_repo:  # huggingface_hub: only for this check
        from release.hub import check_stale_parent

        check_stale_parent(args.hub_repo, log=lambda line: print(line, file=sys.stderr))  # stdout: the record
    github = _github(args.github_repo)
    print(json.dumps(observe_attempts(github, args.run_id, args.attempt, args.prefix), indent=2))


def _keyless(args: argparse.Namespace) -> None:
    from release import hub, hub_auth

    if not hub_auth.keyless():
        raise ClipOnnxError(f"no keyless write to check: run it with {hub_auth.TOKEN} empty, in a GitHub Actions job "
                            f"with `id-token: write`")
    hub.probe_write(args.hub_repo, "clip-onnx-keyless-check")
    print(f"hub: this job wrote to {args.hub_repo} keyless, with a token exchanged for its OIDC token (a branch "
          f"made and deleted)")


def _unpublished(args: argparse.Namespace) -> None:
    from release import packages

    if wrong := packages.disagreeing(args.tag):
        raise ClipOnnxError(wrong[0])
    for package in packages.PACKAGES:
        if package.ecosystem == args.ecosystem and not packages.published(package, package.version()):
            print(package.name)


def _lock(args: argparse.Namespace) -> None:
    from release import locks

    for path in locks.write(args.only or [n for n, lock in locks.LOCKS.items() if lock.where == "here"]):
        print(f"wrote {path.relative_to(locks.ROOT)}")


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


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("matrix", help="print the export matrix as JSON")
    staging = commands.add_parser("stage", help="lay out the files a tag publishes, with SHA256SUMS")
    staging.add_argument("--exports", type=Path, required=True, help="folder holding `clip-onnx export` outputs")
    staging.add_argument("--tag", required=True, help="release tag, vX.Y.Z")
    staging.add_argument("-o", "--output", type=Path, required=True, help="new folder to stage into")
    staging.add_argument("--hub-org", required=True, help="Hugging Face organisation of the variants' repos")
    staging.add_argument("--github-repo", help="GitHub repository, OWNER/NAME, that the cards link (source, "
                                               "release, SHA256SUMS, attestations)")
    publishing = commands.add_parser(
        "publish", help="publish a tag to GitHub Releases and each variant's Hub repo",
        description="Publishes in four steps, each named in the output: a GitHub draft release with every "
                    "asset; each variant's Hub repo <ORG>/clip-onnx-<Name> (a commit made off main, checked, "
                    "tagged); the GitHub release (Latest only if no higher version is published); then GitHub's "
                    "Latest and each repo's main brought to the highest published version, never back. One "
                    "variant is on disk at a time. Safe to re-run, and to run for an older tag after a newer one: "
                    "what is already published is checked, not repeated; a tag holding other bytes is refused. "
                    "Tokens: HF_TOKEN, or keyless in a GitHub job with `id-token: write` (a token per existing "
                    "repo: release/hub_auth.py); GH_TOKEN or GITHUB_TOKEN; endpoints: HF_ENDPOINT, "
                    "GITHUB_API_URL. With --run-id, every cell of the export matrix must have an artifact; each "
                    "cell's newest run attempt is taken.",
        epilog="example, in the release workflow: python -m release publish --run-id \"$GITHUB_RUN_ID\" "
               "--tag v1.0.0 --hub-org my-org --github-repo my-org/clip-onnx")
    source = publishing.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", type=int, help="take the exports from this workflow run's artifacts")
    source.add_argument("--exports", type=Path, help="take the exports from this folder (`clip-onnx export` output)")
    publishing.add_argument("--tag", required=True, help="the release tag, vX.Y.Z; it must already exist on GitHub")
    publishing.add_argument("--hub-org", required=True, help="Hugging Face organisation of the variants' repos")
    publishing.add_argument("--github-repo", required=True, help="GitHub repository, OWNER/NAME")
    publishing.add_argument("--work", type=Path, default=Path("publish-work"),
                            help="scratch folder, one variant at a time (default: %(default)s)")
    publishing.add_argument("--part-bytes", type=int, default=PART_BYTES, help=argparse.SUPPRESS)
    publishing.add_argument("--dry-run", action="store_true",
                            help="stage every variant and list every upload; publish nothing")
    publishing.add_argument("--draft-only", action="store_true",
                            help="the canary: leave the GitHub release a draft (its tag need not exist)")
    publishing.add_argument("--table", type=Path,
                            help="the release table the packages were built with (python -m release table): a "
                                 "variant whose staged files differ is refused before any of them is uploaded")
    tabling = commands.add_parser(
        "table", help="write the release table the packages pin, from the exports' manifests",
        description="Writes release.json: TAG, each variant's Hub repo <ORG>/clip-onnx-<Name>, and the size and "
                    "SHA-256 of every file each published precision folder holds (manifest.json and every file it "
                    "lists), from the manifests alone. The release workflow writes it into the wheel, the crate "
                    "and the npm package, so each downloads its release by tag and refuses a file that differs "
                    "(clip_onnx/pinned.py). With --artifacts, the newest attempt of every cell of the export "
                    "matrix must be there.",
        epilog="example, in the wheel job: python -m release table --artifacts manifests --tag v1.0.0 "
               "--hub-org my-org -o clip_onnx/release.json -o release.json")
    given = tabling.add_mutually_exclusive_group(required=True)
    given.add_argument("--artifacts", type=Path,
                       help="folder of downloaded manifest-<Name>-<precision>-attempt<N> artifacts, one folder each")
    given.add_argument("--exports", type=Path, help="folder holding `clip-onnx export` outputs")
    tabling.add_argument("--tag", required=True, help="the release tag, vX.Y.Z")
    tabling.add_argument("--hub-org", required=True, help="Hugging Face organisation of the variants' repos")
    tabling.add_argument("-o", "--output", type=Path, action="append", required=True,
                         help="file to write; give it once per package")
    checking = commands.add_parser(
        "preflight", help="check the tag, the locks and both tokens before anything is exported",
        description="Run before the export jobs, with HF_TOKEN and GH_TOKEN: the tag is vX.Y.Z and "
                    "every package's version (release/packages.py), each package name is free or this repository's on "
                    "its registry (npm's and crates.io's already published once), every lock is pinned and hashed, "
                    "every exported variant's weights "
                    "are pinned (exporter/weight_pins.json) and the Hub holds those bytes at the pinned commit, "
                    "the Hub organisation is named, the GitHub token may create releases and the tag is new (or "
                    "an interrupted run's draft), HF_TOKEN may write to each variant's Hub repo (role write or "
                    "admin in the org; contributor only for a repo still to be created) or, keyless (HF_TOKEN "
                    "empty), each repo exists and its exchanged token makes and deletes a branch, and no Hub repo "
                    "has the "
                    "tag with other bytes. Lists every problem, one line each. The registries' trusted publishers "
                    "cannot be checked (no public API reads them).")
    checking.add_argument("--tag", required=True, help="the release tag, vX.Y.Z")
    checking.add_argument("--hub-org", required=True,
                          help="Hugging Face organisation of the variants' repos (the workflow passes the "
                               "repository variable HF_ORG); refused when empty")
    checking.add_argument("--github-repo", required=True, help="GitHub repository, OWNER/NAME")
    summing = commands.add_parser(
        "sums", help="download the SHA256SUMS of a published release",
        description="Writes the SHA256SUMS asset of TAG's GitHub release, which must be published (not a "
                    "draft): the attesting job signs provenance for exactly the files users download.",
        epilog="example: python -m release sums --tag v1.0.0 --github-repo my-org/clip-onnx -o sums/SHA256SUMS")
    summing.add_argument("--tag", required=True, help="the release tag, vX.Y.Z")
    summing.add_argument("--github-repo", required=True, help="GitHub repository, OWNER/NAME")
    summing.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    observing = commands.add_parser(
        "observe", help="record which attempts' artifacts GitHub lists for a run (the canary)",
        description="Lists the run's artifacts named PREFIX<attempt> and prints a JSON record: whether "
                    "artifacts of attempts before ATTEMPT are listed beside its own. Meaningful from the "
                    "second attempt (\"Re-run all jobs\"); copy the record into release/github_observed.json.")
    observing.add_argument("--run-id", type=int, required=True, help="the workflow run")
    observing.add_argument("--attempt", type=int, required=True, help="this attempt ($GITHUB_RUN_ATTEMPT)")
    observing.add_argument("--github-repo", required=True, help="GitHub repository, OWNER/NAME")
    observing.add_argument("--prefix", default="canary-attempt", help="artifact name before the attempt number")
    observing.add_argument("--hub-repo", help="a scratch Hub repo (HF_TOKEN, HF_ENDPOINT): first check that the "
                                              "Hub refuses a stale parent_commit as release/hub.py expects")
    checking_keyless = commands.add_parser(
        "keyless", help="check a keyless write to a Hub repo (the canary)",
        description="With HF_TOKEN empty, in a GitHub Actions job with `id-token: write`: huggingface_hub "
                    "exchanges the job's OIDC token for a token that writes to HUB_REPO (the Hub's trusted "
                    "publishers), and a branch is made and deleted with it. Fails in one line naming what to set "
                    "up when the Hub refuses.",
        epilog="example, in the canary: python -m release keyless --hub-repo my-scratch-org/clip-onnx-tiny-ViT")
    checking_keyless.add_argument("--hub-repo", required=True, help="an existing Hub repo, ORG/NAME")
    missing = commands.add_parser(
        "unpublished", help="print the packages of an ecosystem whose registry lacks the tag's version",
        description="Prints, one per line and in publishing order, the names of ECOSYSTEM's packages "
                    "(release/packages.py) whose registry does not hold TAG's version; nothing when every one "
                    "does, so a re-run publishes only what is missing. Refuses a tag that is not every "
                    "package's version. CLIP_ONNX_<ECOSYSTEM>_URL reads another registry.",
        epilog="example, in the crates job: for crate in $(python -m release unpublished crates --tag v1.0.0); "
               "do cargo publish -p \"$crate\"; done")
    missing.add_argument("ecosystem", choices=["pypi", "crates", "npm"])
    missing.add_argument("--tag", required=True, help="the release tag, vX.Y.Z")
    locking = commands.add_parser(
        "lock", help="write release/locks/*.txt (hashed requirements) with uv",
        description="Writes each job's hashed requirements with `uv pip compile`. Without --only, the locks "
                    "this machine can resolve; the export lock needs PyTorch's CPU index, which the `lock` "
                    "workflow on GitHub reaches (`--only export` there).")
    locking.add_argument("--only", nargs="+", choices=["publish", "build", "lock", "export"], help="these locks only")
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
            {"stage": _stage, "publish": _publish, "pin-weights": _pin_weights,
             "preflight": _preflight, "lock": _lock,
             "sums": _sums, "observe": _observe, "keyless": _keyless,
             "unpublished": _unpublished, "table": _table}[args.command](args)
    except ClipOnnxError as error:
        print(f"release: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
