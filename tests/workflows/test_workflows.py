"""Every workflow and local action follows the hardening rules; the linters pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.workflows.hardening import check_action, check_workflow, triggers

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((REPO / ".github" / "actions").glob("*/action.yml"))
VENV = REPO / ".venv" / "bin"


def test_the_expected_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {
        "ci.yml",
        "pr.yml",
        "deploy.yml",
        "drift.yml",
        "rollback.yml",
    }


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_hardening(path: Path) -> None:
    assert check_workflow(path.name, path.read_text()) == []


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: p.parent.name)
def test_local_action_hardening(path: Path) -> None:
    assert check_action(path.parent.name, path.read_text()) == []


BAD = """
name: bad
on:
  pull_request_target:
permissions:
  contents: write
jobs:
  deploy:
    runs-on: ubuntu-latest
    permissions:
      id-token: write
      contents: write
    steps:
      - uses: actions/checkout@v4
      - uses: aws-actions/configure-aws-credentials@e3dd6a429d7300a6a4c196c26e071d42e0343502
      - run: echo ${{ github.event.pull_request.title }}
"""


def test_the_checker_catches_each_violation() -> None:
    problems = "\n".join(check_workflow("bad.yml", BAD))
    for expected in (
        "actions/checkout@v4 is not pinned",
        "lacks its version in a comment",
        "top-level permissions must be {}",
        "pull_request_target",
        "no timeout-minutes",
        "contents: write is not needed",
        "id-token: write without an environment",
        "persist-credentials",
        "expression in run",
    ):
        assert expected in problems


def test_deploy_jobs_wait_for_their_environment() -> None:
    deploy = yaml.safe_load((REPO / ".github/workflows/deploy.yml").read_text())
    jobs = deploy["jobs"]
    assert {j: jobs[j]["environment"]["name"] for j in jobs} == {
        "dev": "dev",
        "staging": "staging",
        "production": "production",
    }
    assert jobs["production"]["needs"] == "staging"
    assert set(triggers(deploy)) == {"push"}
    assert triggers(deploy)["push"] == {"branches": ["main"], "tags": ["v*"]}
    rollback = yaml.safe_load((REPO / ".github/workflows/rollback.yml").read_text())
    assert set(triggers(rollback)) == {"workflow_dispatch"}
    drift = yaml.safe_load((REPO / ".github/workflows/drift.yml").read_text())
    assert "schedule" in triggers(drift)
    assert "--preview-only" in str(drift["jobs"]["refresh"]["steps"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_jobs_that_open_issues_run_one_at_a_time(path: Path) -> None:
    # drift.yml's report and key-rotation.yml's reminder look for their open
    # issue, then create it when there is none: a run dispatched by hand next
    # to the scheduled one opened the same issue twice.
    workflow = yaml.safe_load(path.read_text())
    for name, job in workflow["jobs"].items():
        if job.get("permissions", {}).get("issues") != "write":
            continue
        concurrency = job.get("concurrency") or workflow.get("concurrency") or {}
        assert concurrency.get("group"), f"{path.name}: {name} has no concurrency group"
        assert concurrency.get("cancel-in-progress") is False, f"{path.name}: {name}"


def test_preview_runs_the_policy_pack_through_the_official_action() -> None:
    pr = yaml.safe_load((REPO / ".github/workflows/pr.yml").read_text())
    steps = pr["jobs"]["preview"]["steps"]
    action = next(s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions@"))
    assert action["with"]["command"] == "preview"
    assert action["with"]["policyPacks"] == "policies"
    assert action["with"]["diff"] is True


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{VENV}:/usr/bin:/bin", "ZIZMOR_OFFLINE": "true"},
    )


def test_actionlint_passes() -> None:
    result = run(str(VENV / "actionlint"), "-ignore", "node20", *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_passes_offline_and_catches_an_unpinned_action(tmp_path: Path) -> None:
    result = run(str(VENV / "zizmor"), "--offline", "--no-progress", ".github")
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / ".github" / "workflows"
    bad.mkdir(parents=True)
    (bad / "bad.yml").write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    permissions: {}\n    steps:\n      - uses: actions/checkout@v4\n"
    )
    flagged = run(str(VENV / "zizmor"), "--offline", "--no-progress", str(tmp_path / ".github"))
    assert flagged.returncode != 0
    assert "artipacked" in flagged.stdout + flagged.stderr


def test_hadolint_passes_on_the_dockerfile() -> None:
    assert shutil.which("hadolint", path=str(VENV))
    result = run(str(VENV / "hadolint"), "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout


def _automatic(workflow: dict[str, object]) -> bool:
    """Started by an event (a push, a pull request, a schedule), not by a person."""
    return bool(set(triggers(workflow)) - {"workflow_dispatch"})


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_automatic_cloud_jobs_are_skipped_without_a_state_backend(path: Path) -> None:
    """docs/deploying.md: without PULUMI_BACKEND_URL the cloud jobs are skipped. deploy.yml's
    were not: every push to main queued a job for a runner that does not exist yet."""
    workflow = yaml.safe_load(path.read_text())
    if not _automatic(workflow):
        return
    for name, job in workflow["jobs"].items():
        uses = [step.get("uses", "") for step in job.get("steps", [])]
        if "./.github/actions/pulumi-login" in uses:
            assert "vars.PULUMI_BACKEND_URL != ''" in str(job.get("if", "")), name
