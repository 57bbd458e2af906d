"""The delivery pipeline as it would run on GitHub Actions against AWS and an S3
state backend: what each job needs to work, and the scripts it runs.

The Pulumi CLI, docker's registry client and the GitHub CLI cannot run here
(no binary, registry or GitHub), so the scripts run against stand-ins of
those three (tests/workflows/fakes/) that answer as the real tools document
and record every call; git is real.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.deploy import history as hist

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
ACTIONS = REPO / ".github" / "actions"
FAKES = Path(__file__).parent / "fakes"
DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def workflow(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((WORKFLOWS / name).read_text()))


def action(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ACTIONS / name / "action.yml").read_text()))


def step_index(steps: list[Mapping[str, Any]], text: str) -> int:
    """The first step whose `uses` or `run` contains `text`."""
    for index, step in enumerate(steps):
        if text in str(step.get("uses", "")) or text in str(step.get("run", "")):
            return index
    raise AssertionError(f"no step runs {text}")


def run_script(
    script: str, *args: str, fake_dir: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env={
            "PATH": f"{FAKES}:/usr/bin:/bin",
            "FAKE_DIR": str(fake_dir),
            "PYTHON": "/usr/bin/python3",
            **(env or {}),
        },
    )


def calls(fake_dir: Path) -> list[dict[str, Any]]:
    path = fake_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- the Pulumi CLI -------------------------------------------------------------------


def test_the_cli_is_pinned_to_the_sdk_version_of_uv_lock() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    sdk = next(p["version"] for p in lock["package"] if p["name"] == "pulumi")
    pins = re.findall(
        r"pulumi-version:\s*\"?([^\s\"]+)",
        "".join(p.read_text() for p in (REPO / ".github").rglob("*.yml")),
    )
    assert pins == [sdk], f"the CLI pins {pins}, the SDK in uv.lock is {sdk}"


# --- runners ------------------------------------------------------------------------


def cloud_jobs() -> list[tuple[str, str, Mapping[str, Any]]]:
    """Every job that assumes a stack's AWS role."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job_id, job in workflow(path.name)["jobs"].items():
            if (job.get("permissions") or {}).get("id-token") == "write":
                found.append((path.name, job_id, job))
    return found


def test_every_cloud_job_runs_on_its_stacks_runner_inside_the_vpc() -> None:
    # The stacks declare cluster.deployerInVpc (a private EKS endpoint): a
    # GitHub-hosted runner reaches neither the API server nor its Kubernetes objects.
    labels = yaml.safe_load((REPO / ".github" / "actionlint.yaml").read_text())
    declared = set(labels["self-hosted-runner"]["labels"])
    assert declared == {"enterprisehub-dev", "enterprisehub-staging", "enterprisehub-production"}
    jobs = cloud_jobs()
    assert {(w, j) for w, j, _ in jobs} == {
        ("deploy.yml", "dev"),
        ("deploy.yml", "staging"),
        ("deploy.yml", "production"),
        ("drift.yml", "refresh"),
        ("pr.yml", "preview"),
        ("rollback.yml", "rollback"),
    }
    for name, job_id, job in jobs:
        environment = str(job["environment"]["name"])
        runs_on = job["runs-on"]
        assert isinstance(runs_on, list), (name, job_id)
        assert "self-hosted" in runs_on, (name, job_id)
        assert f"enterprisehub-{environment}" in runs_on, (name, job_id, runs_on)


# --- config every Pulumi operation needs ---------------------------------------------


HISTORY = [
    {
        "version": 7,
        "kind": "update",
        "result": "failed",
        "config": {"enterprisehub:image": {"value": f"{ECR}/eh@{OTHER_DIGEST}", "secret": False}},
    },
    {"version": 6, "kind": "refresh", "result": "succeeded", "config": {}},
    {
        "version": 5,
        "kind": "update",
        "result": "succeeded",
        "config": {
            "enterprisehub:image": {"value": f"{ECR}/eh@{DIGEST}", "secret": False},
            "enterprisehub:jwtSecretKey": {"secret": True},
        },
    },
]


def test_without_an_image_the_stack_keeps_the_one_it_runs(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    result = run_script(
        "ci-stack-config.sh",
        "staging",
        fake_dir=tmp_path,
        env={"JWT_SECRET_KEY": "s3cr3t-value", "GITHUB_SHA": "abc", "GITHUB_REPOSITORY": "o/r"},
    )
    assert result.returncode == 0, result.stderr
    made = calls(tmp_path)
    sets = [c for c in made if c["args"][:2] == ["config", "set"]]
    assert ["config", "set", "--stack", "staging", "image", f"{ECR}/eh@{DIGEST}"] in [
        c["args"] for c in sets
    ]
    secret = next(c for c in sets if "jwtSecretKey" in c["args"])
    assert "--secret" in secret["args"]
    assert secret["stdin"] == "s3cr3t-value"
    assert all("s3cr3t-value" not in " ".join(c["args"]) for c in made)
    assert "s3cr3t-value" not in result.stdout + result.stderr


RUNBOOKS = "https://github.com/o/r/blob/{}/docs/runbooks/"


def _runbook_base_set(fake_dir: Path) -> list[str]:
    return [
        c["args"][-1]
        for c in calls(fake_dir)
        if c["args"][:2] == ["config", "set"] and "runbookBaseUrl" in c["args"]
    ]


def test_a_preview_keeps_the_runbooks_the_stack_links(tmp_path: Path) -> None:
    """A pull request's GITHUB_SHA is its test merge: set as the runbooks' commit,
    every preview showed each PrometheusRule changed by the pull request."""
    history = json.loads(json.dumps(HISTORY))
    history[2]["config"]["enterprisehub:runbookBaseUrl"] = {
        "value": RUNBOOKS.format("deployed"),
        "secret": False,
    }
    (tmp_path / "history.json").write_text(json.dumps(history))
    env = {"GITHUB_SHA": "merge", "GITHUB_REPOSITORY": "o/r"}
    result = run_script("ci-stack-config.sh", "staging", fake_dir=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert _runbook_base_set(tmp_path) == [RUNBOOKS.format("deployed")]

    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "history.json").write_text(json.dumps(history))
    env["IMAGE"] = f"{ECR}/eh@{OTHER_DIGEST}"
    result = run_script("ci-stack-config.sh", "staging", fake_dir=deploy, env=env)
    assert result.returncode == 0, result.stderr
    assert _runbook_base_set(deploy) == [RUNBOOKS.format("merge")]


def test_a_stack_whose_updates_recorded_no_runbooks_gets_this_commits(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    env = {"GITHUB_SHA": "abc", "GITHUB_REPOSITORY": "o/r"}
    result = run_script("ci-stack-config.sh", "staging", fake_dir=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert _runbook_base_set(tmp_path) == [RUNBOOKS.format("abc")]


def test_a_stack_never_deployed_has_no_image_to_keep(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text(json.dumps(HISTORY[:2]))
    result = run_script("ci-stack-config.sh", "dev", fake_dir=tmp_path)
    assert result.returncode == 2
    assert "no successful update with an image" in result.stderr


def test_an_unreadable_history_stops_the_config(tmp_path: Path) -> None:
    # No history.json: the stand-in fails as the CLI does without access to the backend.
    result = run_script("ci-stack-config.sh", "dev", fake_dir=tmp_path)
    assert result.returncode != 0
    assert not [c for c in calls(tmp_path) if c["args"][:2] == ["config", "set"]]


def test_an_image_by_tag_is_refused(tmp_path: Path) -> None:
    result = run_script(
        "ci-stack-config.sh", "dev", fake_dir=tmp_path, env={"IMAGE": f"{ECR}/eh:latest"}
    )
    assert result.returncode == 2
    assert "pinned by digest" in result.stderr


def test_preview_drift_and_rollback_set_the_stack_config_before_pulumi_runs() -> None:
    # `image`, `runbookBaseUrl` and the secrets are required config that git
    # does not hold; preview and refresh validate config before anything else.
    for name, job_id, first_pulumi_step in (
        ("pr.yml", "preview", "pulumi/actions@"),
        ("drift.yml", "refresh", "scripts/ci-drift.sh"),
        ("rollback.yml", "rollback", "infra.deploy"),
    ):
        job = workflow(name)["jobs"][job_id]
        steps = job["steps"]
        config = step_index(steps, "scripts/ci-stack-config.sh")
        assert config < step_index(steps, first_pulumi_step), (name, job_id)
        env = steps[config]["env"]
        for secret in ("JWT_SECRET_KEY", "ANTHROPIC_API_KEY", "GHL_API_KEY"):
            assert env[secret] == f"${{{{ secrets.{secret} }}}}", (name, secret)


def _stack_config_steps() -> list[tuple[str, Mapping[str, Any]]]:
    """Every step that runs scripts/ci-stack-config.sh, or the deploy action that does."""
    steps = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job_id, job in workflow(path.name)["jobs"].items():
            for step in job.get("steps", []):
                runs = str(step.get("run", "")) + str(step.get("uses", ""))
                if "ci-stack-config.sh" in runs or "actions/deploy-stack" in runs:
                    steps.append((f"{path.name}:{job_id}", step))
    return steps


def test_every_secret_the_stack_config_reads_reaches_it_from_every_job() -> None:
    """ci-stack-config.sh sets jwtPreviousKeys from JWT_PREVIOUS_KEYS, which no job
    passed: the first CI deploy after a JWT rotation dropped the retired key, and
    every token it had signed was refused before it expired."""
    script = (REPO / "scripts" / "ci-stack-config.sh").read_text()
    read = re.findall(r'^set_secret \w+ "\$\{(\w+):-\}"$', script, flags=re.MULTILINE)
    assert "JWT_PREVIOUS_KEYS" in read
    steps = _stack_config_steps()
    assert len(steps) == 6, [where for where, _ in steps]
    missing = [
        f"{where}: {name}"
        for where, step in steps
        for name in read
        if step.get("env", {}).get(name) != f"${{{{ secrets.{name} }}}}"
    ]
    assert not missing, f"secrets the stack config never receives: {missing}"


# --- drift --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "rc", "status", "exit_code"),
    [
        ("Resources:\n    161 unchanged\n", 0, "none", 0),
        (
            "~ aws:rds/instance:Instance db refresh [diff: ~backupRetentionPeriod]\n"
            "error: no changes were expected but changes occurred\n",
            255,
            "drift",
            1,
        ),
        (
            "~ aws:rds/instance:Instance db refresh [diff: ~backupRetentionPeriod]\n"
            "error: no changes were expected but changes were proposed\n",
            255,
            "drift",
            1,
        ),
        (
            "~ aws:rds/instance:Instance db refresh [diff: ~backupRetentionPeriod]\n"
            "error: no changes were expected for refresh but changes were proposed\n",
            255,
            "drift",
            1,
        ),
        (
            "error: the stack is currently locked by 1 lock(s). Either wait for the other "
            "process(es) to end or delete the lock file with `pulumi cancel`.\n",
            255,
            "error",
            2,
        ),
    ],
    ids=["clean", "drift", "drift-proposed", "drift-for-refresh", "locked"],
)
def test_drift_is_told_apart_from_a_check_that_could_not_run(
    tmp_path: Path, output: str, rc: int, status: str, exit_code: int
) -> None:
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    (tmp_path / "refresh.out").write_text(output)
    (tmp_path / "refresh.rc").write_text(str(rc))
    out = tmp_path / "out"
    result = run_script("ci-drift.sh", "production", str(out), fake_dir=tmp_path)
    assert result.returncode == exit_code, result.stderr
    assert (out / "status").read_text().strip() == status
    summary = (out / "summary.md").read_text()
    assert summary.startswith("### production: ")
    assert output.splitlines()[0] in summary
    (refresh,) = [call for call in calls(tmp_path) if call["args"][:1] == ["refresh"]]
    for flag in ("--preview-only", "--expect-no-changes", "--non-interactive"):
        assert flag in refresh["args"]
    assert refresh["args"][refresh["args"].index("--stack") + 1] == "production"


@pytest.mark.parametrize(
    "after",
    [
        [{"version": 8, "kind": "update", "result": "succeeded", "config": {}}, *HISTORY],
        [{"version": 8, "kind": "update", "result": "in-progress", "config": {}}, *HISTORY],
    ],
    ids=["finished-during", "still-running"],
)
def test_drift_met_by_an_update_during_the_check_is_not_reported_as_drift(
    tmp_path: Path, after: list[dict[str, Any]]
) -> None:
    # A refresh preview takes no stack lock: a check overlapping a deploy read
    # a state the deploy was still writing and opened a drift issue for the
    # deploy's own changes (the docs promised a "locked" failure instead).
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    (tmp_path / "history-after.json").write_text(json.dumps(after))
    (tmp_path / "refresh.out").write_text(
        "~ aws:rds/instance:Instance db refresh [diff: ~engineVersion]\n"
        "error: no changes were expected but changes were proposed\n"
    )
    (tmp_path / "refresh.rc").write_text("255")
    out = tmp_path / "out"
    result = run_script("ci-drift.sh", "production", str(out), fake_dir=tmp_path)
    assert result.returncode == 2, result.stderr
    assert (out / "status").read_text().strip() == "error"
    assert "an update ran during the check" in (out / "summary.md").read_text()


def drift_results(root: Path, statuses: Mapping[str, str]) -> Path:
    for stack, status in statuses.items():
        (root / "results" / f"drift-{stack}").mkdir(parents=True)
        (root / "results" / f"drift-{stack}" / "status").write_text(status + "\n")
    return root / "results"


def test_drift_opens_comments_on_and_closes_one_issue_per_stack(tmp_path: Path) -> None:
    (tmp_path / "issues.json").write_text(
        json.dumps(
            [
                {
                    "number": 4,
                    "title": "Drift check: staging",
                    "state": "open",
                    "labels": ["drift"],
                },
                {"number": 5, "title": "Drift check: dev", "state": "open", "labels": ["drift"]},
                {"number": 6, "title": "Drift check: dev v2", "state": "open", "labels": ["drift"]},
            ]
        )
    )
    results = drift_results(tmp_path, {"dev": "none", "staging": "drift", "production": "error"})
    run_url = "https://github.com/o/r/actions/runs/99"
    result = run_script(
        "ci-drift-issue.sh",
        str(results),
        run_url,
        fake_dir=tmp_path,
        env={"GITHUB_REPOSITORY": "o/r", "GH_TOKEN": "t"},
    )
    assert result.returncode == 0, result.stderr
    writes = {c["args"][1]: c for c in calls(tmp_path) if c["args"][:2] != ["issue", "list"]}
    assert writes["close"]["args"][2] == "5"  # dev: clean now; "dev v2" left alone
    assert writes["comment"]["args"][2] == "4"  # staging: still drifting
    assert "differ from its Pulumi state" in writes["comment"]["body"]
    assert writes["create"]["args"][writes["create"]["args"].index("--title") + 1] == (
        "Drift check: production"
    )
    assert "could not run" in writes["create"]["body"]
    assert run_url in writes["create"]["body"]
    issues = {i["number"]: i["state"] for i in json.loads((tmp_path / "issues.json").read_text())}
    assert issues == {4: "open", 5: "closed", 6: "open", 7: "open"}


def test_drift_checks_never_cancel_a_pending_deploy_and_report_in_issues() -> None:
    # A queued job replaces the pending job of its concurrency group: sharing
    # `pulumi-<stack>` with deploys, the 05:17 check would cancel a release
    # waiting behind a running deploy.
    drift = workflow("drift.yml")["jobs"]
    deploy_groups = {
        str(job["concurrency"]["group"])
        for name in ("deploy.yml", "rollback.yml")
        for job in workflow(name)["jobs"].values()
    }
    assert str(drift["refresh"]["concurrency"]["group"]) not in deploy_groups
    assert drift["refresh"]["concurrency"]["group"].startswith("drift-")
    report = drift["report"]
    assert report["needs"] == "refresh"
    assert "always()" in report["if"]
    assert report["permissions"] == {"contents": "read", "issues": "write"}
    assert "scripts/ci-drift-issue.sh" in str(report["steps"])
    assert "drift-${{ matrix.stack }}" in str(drift["refresh"]["steps"])


def _rotation(tmp_path: Path, month: str) -> subprocess.CompletedProcess[str]:
    return run_script(
        "ci-key-rotation-issue.sh",
        month,
        "https://github.com/o/r/actions/runs/7",
        fake_dir=tmp_path,
        env={"GITHUB_REPOSITORY": "o/r", "GH_TOKEN": "t"},
    )


def test_key_rotation_opens_one_issue_a_month_naming_the_months_left_open(
    tmp_path: Path,
) -> None:
    (tmp_path / "issues.json").write_text(
        json.dumps(
            [
                {
                    "number": 3,
                    "title": "Key rotation: 2026-11",
                    "state": "open",
                    "labels": ["key-rotation"],
                }
            ]
        )
    )
    first, again = _rotation(tmp_path, "2026-12"), _rotation(tmp_path, "2026-12")

    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    created = [c for c in calls(tmp_path) if c["args"][:2] == ["issue", "create"]]
    assert len(created) == 1  # the rerun of the same month opened nothing
    args = created[0]["args"]
    assert args[args.index("--title") + 1] == "Key rotation: 2026-12"
    # CI sets the stacks' secrets from their environments: a key rotated with
    # `pulumi config set` alone is put back by the next deploy.
    assert "JWT_PREVIOUS_KEYS" in created[0]["body"]
    assert "GitHub environment" in created[0]["body"]
    assert "Still open from earlier months: #3." in created[0]["body"]


def test_key_rotation_never_opens_a_month_again_once_it_was_closed(tmp_path: Path) -> None:
    (tmp_path / "issues.json").write_text(
        json.dumps(
            [
                {
                    "number": 9,
                    "title": "Key rotation: 2026-12",
                    "state": "closed",
                    "labels": ["key-rotation"],
                }
            ]
        )
    )
    assert _rotation(tmp_path, "2026-12").returncode == 0
    assert [c for c in calls(tmp_path) if c["args"][:2] == ["issue", "create"]] == []


def test_key_rotation_refuses_a_month_that_is_not_one(tmp_path: Path) -> None:
    result = _rotation(tmp_path, "2026-13")
    assert result.returncode == 2
    assert "YYYY-MM" in result.stderr
    assert calls(tmp_path) == []


def test_the_key_rotation_workflow_runs_monthly_and_only_writes_issues() -> None:
    rotation = workflow("key-rotation.yml")
    assert rotation[True]["schedule"] == [{"cron": "0 9 1 * *"}]  # "on" reads as True
    assert rotation["permissions"] == {}
    job = rotation["jobs"]["remind"]
    assert job["permissions"] == {"contents": "read", "issues": "write"}
    assert "scripts/ci-key-rotation-issue.sh" in str(job["steps"])


# --- releases -----------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_only_a_commit_on_main_is_released(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "reviewed")
    reviewed = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "--quiet", "-b", "side")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "never reviewed")
    unreviewed = git(repo, "rev-parse", "HEAD")
    script = str(REPO / "scripts" / "ci-release-commit.sh")

    def check(commit: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", script, commit, "main"], cwd=repo, capture_output=True, text=True
        )

    assert check(reviewed).returncode == 0
    refused = check(unreviewed)
    assert refused.returncode == 1
    assert "not on main" in refused.stderr
    missing = subprocess.run(
        ["bash", script, reviewed, "origin/main"], cwd=repo, capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert "fetch-depth" in missing.stderr


def test_staging_releases_only_main_and_production_promotes_stagings_image() -> None:
    jobs = workflow("deploy.yml")["jobs"]
    staging = jobs["staging"]["steps"]
    assert staging[0]["with"]["fetch-depth"] == 0
    assert step_index(staging, "scripts/ci-release-commit.sh") < step_index(
        staging, "./.github/actions/deploy-stack"
    )
    deploy_step = staging[step_index(staging, "./.github/actions/deploy-stack")]
    assert jobs["staging"]["outputs"]["image"] == (
        f"${{{{ steps.{deploy_step['id']}.outputs.image }}}}"
    )
    production = jobs["production"]["steps"]
    promoted = production[step_index(production, "./.github/actions/deploy-stack")]
    assert promoted["with"]["source-image"] == "${{ needs.staging.outputs.image }}"
    assert "source-image" not in str(jobs["dev"])
    assert "source-image" not in str(deploy_step)


def test_the_deploy_action_builds_reuses_or_promotes() -> None:
    steps = {s.get("id"): s for s in action("deploy-stack")["runs"]["steps"] if s.get("id")}
    assert steps["build"]["if"] == "inputs.source-image == '' && steps.pushed.outputs.image == ''"
    assert steps["pushed"]["if"] == "inputs.source-image == ''"
    assert "scripts/ci-pushed-image.sh" in steps["pushed"]["run"]
    assert steps["promote"]["if"] == "inputs.source-image != ''"
    assert "scripts/ci-promote-image.sh" in steps["promote"]["run"]
    image = steps["image"]
    assert {"PROMOTED", "PUSHED", "BUILT_DIGEST"} <= set(image["env"])
    assert "scripts/ci-stack-config.sh" in image["run"]


@pytest.mark.parametrize("step_id", ["pushed", "promote"])
def test_a_failing_image_script_fails_its_step(tmp_path: Path, step_id: str) -> None:
    # GitHub runs `run:` with `bash -e -o pipefail`; the step must stop when
    # its script fails, not record an empty image and carry on.
    step = next(s for s in action("deploy-stack")["runs"]["steps"] if s.get("id") == step_id)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("ci-pushed-image.sh", "ci-promote-image.sh"):
        (scripts / name).write_text("echo 'registry: 403 Forbidden' >&2\nexit 1\n")
    output = tmp_path / "github_output"
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "GITHUB_OUTPUT": str(output),
            "SOURCE_IMAGE": f"{ECR}/eh-staging@{DIGEST}",
            "REPOSITORY": f"{ECR}/eh",
            "TAG": "c0ffee",
        },
    )
    assert result.returncode != 0
    assert not output.exists() or "image=" not in output.read_text()


# --- images -------------------------------------------------------------------------


def test_a_promoted_image_keeps_its_digest(tmp_path: Path) -> None:
    source = f"{ECR}/eh-staging@{DIGEST}"
    result = run_script(
        "ci-promote-image.sh", source, f"{ECR}/eh-production", "c0ffee", fake_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{ECR}/eh-production@{DIGEST}"
    create = next(c for c in calls(tmp_path) if c["args"][:3] == ["buildx", "imagetools", "create"])
    assert "--prefer-index=false" in create["args"]
    assert create["args"][-1] == source


def test_a_copy_with_another_digest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "copy-digest").write_text(OTHER_DIGEST)
    result = run_script(
        "ci-promote-image.sh",
        f"{ECR}/eh-staging@{DIGEST}",
        f"{ECR}/eh-production",
        "c0ffee",
        fake_dir=tmp_path,
    )
    assert result.returncode == 1
    assert "refusing to deploy it" in result.stderr


def test_a_rerun_promotion_reuses_the_copy_and_refuses_a_different_one(tmp_path: Path) -> None:
    dest = f"{ECR}/eh-production"
    (tmp_path / "registry.json").write_text(json.dumps({f"{dest}:c0ffee": DIGEST}))
    again = run_script(
        "ci-promote-image.sh", f"{ECR}/eh-staging@{DIGEST}", dest, "c0ffee", fake_dir=tmp_path
    )
    assert again.returncode == 0
    assert again.stdout.strip() == f"{dest}@{DIGEST}"
    assert not [c for c in calls(tmp_path) if "create" in c["args"]]
    other = run_script(
        "ci-promote-image.sh",
        f"{ECR}/eh-staging@{OTHER_DIGEST}",
        dest,
        "c0ffee",
        fake_dir=tmp_path,
    )
    assert other.returncode == 1


def test_only_a_digest_is_promoted(tmp_path: Path) -> None:
    result = run_script(
        "ci-promote-image.sh",
        f"{ECR}/eh-staging:v1.2.0",
        f"{ECR}/eh",
        "c0ffee",
        fake_dir=tmp_path,
    )
    assert result.returncode == 2
    assert "pinned by digest" in result.stderr


def test_the_image_a_commit_already_pushed_is_found(tmp_path: Path) -> None:
    repo = f"{ECR}/eh-dev"
    missing = run_script("ci-pushed-image.sh", repo, "c0ffee", fake_dir=tmp_path)
    assert missing.returncode == 0
    assert missing.stdout == ""
    (tmp_path / "registry.json").write_text(json.dumps({f"{repo}:c0ffee": DIGEST}))
    found = run_script("ci-pushed-image.sh", repo, "c0ffee", fake_dir=tmp_path)
    assert found.returncode == 0
    assert found.stdout.strip() == f"{repo}@{DIGEST}"
    (tmp_path / "registry-down").write_text("")
    failed = run_script("ci-pushed-image.sh", repo, "c0ffee", fake_dir=tmp_path)
    assert failed.returncode == 1
    assert "403" in failed.stderr


# --- rollback -----------------------------------------------------------------------


def update(version: int, commit: str, message: str = "deploy") -> hist.Update:
    return hist.Update(
        version=version,
        kind="update",
        result="succeeded",
        start=datetime(2026, 12, 1),
        end=None,
        commit=commit,
        message=message,
    )


def test_running_a_rollback_twice_never_redeploys_what_it_rolled_back_from() -> None:
    a, b, c, d = "a" * 40, "b" * 40, "c" * 40, "d" * 40
    rolled_back = [
        update(4, a, hist.rollback_message(a, b)),
        update(3, b),
        update(2, a),
        update(1, c),
    ]
    # The second run of the same rollback changes nothing: no default target
    # (the previous update is b's, the release just rolled back from).
    with pytest.raises(hist.HistoryError, match="already rolled the stack back"):
        hist.previous_update(rolled_back)
    # a deployed once more after the rollback (a re-run, a drift fix): the
    # release before it is still not b.
    assert hist.previous_update([update(5, a), *rolled_back]).commit == c
    # A fix forward rolls back to a, never to b.
    assert hist.previous_update([update(5, d), *rolled_back]).commit == a
    # b deployed again later is a release like any other.
    assert hist.previous_update([update(6, c), update(5, b), *rolled_back]).commit == b


def test_the_rollback_records_the_message_the_history_reads() -> None:
    source = (REPO / "infra" / "deploy" / "rollback.py").read_text()
    assert "hist.rollback_message(planned.target_commit, planned.current_commit)" in source
    assert hist.rolled_back_from([update(2, "a" * 40, hist.rollback_message("a" * 40, "b" * 40))])
