"""Rollback planning and execution on fixture commit pairs in a temporary git repository.

The Pulumi CLI cannot run here: a stand-in `pulumi` executable on PATH
answers the Automation API from a recorded `pulumi stack history --json`.
Each fixture commit carries its own stack config and its own `infra.synth`
entry point, which writes that commit's recorded resources.json, so the tool
under test runs exactly as on a real checkout: git worktrees, one synthesis
subprocess per commit, the diff and the refusal rules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from infra.components.registry import KEEP_IMAGES, ROLLBACK_WINDOW
from infra.deploy import history as hist
from infra.deploy import rollback as rb
from infra.deploy.image import EcrImage
from tests.infra.deploy.conftest import Registry

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]
STACK = "dev"
P = "urn:pulumi:dev::enterprisehub::"
AWS = f"{P}pulumi:providers:aws::dev-aws"

PROJECT = """name: enterprisehub
runtime:
  name: python
  options:
    virtualenv: .venv
stackConfigDir: stacks
config:
  environment:
    type: string
  logLevel:
    type: string
    default: INFO
  image:
    type: string
  jwtSecretKey:
    type: string
    secret: true
"""
POLICY_PACK = """description: fixture pack
runtime:
  name: python
  options:
    virtualenv: ../.venv
"""
PLAIN_STACK_FILE = "config:\n  aws:region: us-east-1\n  enterprisehub:environment: dev\n"
#: A stack file as a deployment's checkout holds it: the required secret set.
STACK_FILE = (
    PLAIN_STACK_FILE + "  enterprisehub:jwtSecretKey:\n    secure: v1:fixture-cipher-text\n"
)
SYNTH = '''"""Fixture synthesis: this commit's recorded resources.json, after a config check."""
import argparse, json, pathlib, shutil, sys
parser = argparse.ArgumentParser()
parser.add_argument("--stack"); parser.add_argument("--out")
args = parser.parse_args()
stack_file = pathlib.Path("stacks") / f"Pulumi.{args.stack}.yaml"
if "enterprisehub:environment" not in stack_file.read_text():
    print(f"stack {args.stack}: enterprisehub:environment is required", file=sys.stderr)
    sys.exit(2)
out = pathlib.Path(args.out); out.mkdir(parents=True, exist_ok=True)
shutil.copy(f"synth-fixture/{args.stack}.json", out / "resources.json")
'''


def res(
    rtype: str,
    name: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    provider: str | None = AWS,
    protect: bool = False,
    property_dependencies: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    urn = f"{P}{rtype}::{name}"
    if rtype.startswith("pulumi:providers:"):
        provider = None
    return {
        "urn": urn,
        "type": rtype,
        "name": name,
        "custom": True,
        "parent": f"{P}pulumi:pulumi:Stack::enterprisehub-dev",
        "provider": provider,
        "dependencies": [],
        "propertyDependencies": dict(property_dependencies or {}),
        "inputs": dict(inputs or {}),
        "options": {"protect": protect, "retainOnDelete": False, "ignoreChanges": []},
    }


def document(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "generator": "infra.synth",
        "project": "enterprisehub",
        "stack": STACK,
        "config": {"enterprisehub:environment": "dev"},
        "resources": sorted(resources, key=lambda r: r["urn"]),
        "stackOutputs": {},
    }


BASE = [
    res("pulumi:providers:aws", "dev-aws", {"region": "us-east-1"}),
    res(
        "aws:rds/instance:Instance",
        "dev-db",
        {"instanceClass": "db.t4g.medium", "storageEncrypted": True},
    ),
    res("aws:kms/key:Key", "dev-key", {"enableKeyRotation": True}),
]


class FixtureRepo:
    """A git repository whose commits carry a project, a stack file and a synthesis."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.git("init", "--quiet", "--initial-branch=main")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "user.name", "Test")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(
        self,
        message: str,
        doc: dict[str, Any],
        *,
        project: str = PROJECT,
        stack_file: str = STACK_FILE,
        migrations: Mapping[str, str | None] | None = None,
    ) -> str:
        """Commit the files; ``migrations`` maps revision -> down revision (Alembic files)."""
        files = {
            "Pulumi.yaml": project,
            f"stacks/Pulumi.{STACK}.yaml": stack_file,
            "infra/__init__.py": "",
            "infra/synth/__init__.py": "",
            "infra/synth/__main__.py": SYNTH,
            f"synth-fixture/{STACK}.json": json.dumps(doc, indent=1),
        }
        files["policies/PulumiPolicy.yaml"] = POLICY_PACK
        files[f"policies/config/{STACK}.json"] = "{}"
        for revision, down in (migrations or {}).items():
            files[f"services/migrations/versions/{revision}.py"] = (
                f'"""Revision {revision}."""\n\nfrom collections.abc import Sequence\n\n'
                f"revision: str = {revision!r}\n"
                f"down_revision: str | Sequence[str] | None = {down!r}\n"
            )
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ecr: Registry) -> Path:
    """The stand-in `pulumi` first on PATH; returns its state directory.

    The target's recorded image is pushed to the (moto) ECR registry first, as
    CI pushed it before that update; its reference is in ``target-image``.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pulumi"
    exe.write_text(f"#!{sys.executable}\n" + (FIXTURES / "pulumi_standin.py").read_text())
    exe.chmod(0o755)
    state = tmp_path / "pulumi-state"
    state.mkdir()
    (state / "outputs.json").write_text("{}")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PULUMI_STANDIN_DIR", str(state))
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    (state / "target-image").write_text(ecr.push(f"enterprisehub-{STACK}", "target"))
    return state


@pytest.fixture
def repo(tmp_path: Path) -> FixtureRepo:
    path = tmp_path / "repo"
    path.mkdir()
    return FixtureRepo(path)


def record_history(state: Path, *, current: str, target: str, other: str = "0" * 40) -> None:
    """The fixture history; the target's update recorded the image `standin` pushed."""
    text = (FIXTURES / "history.json").read_text()
    text = text.replace("{CURRENT}", current).replace("{TARGET}", target).replace("{OTHER}", other)
    text = text.replace("{IMAGE}", (state / "target-image").read_text())
    (state / "history.json").write_text(text)


def calls(state: Path) -> list[dict[str, Any]]:
    path = state / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- history -------------------------------------------------------------------------


def test_history_without_the_pulumi_cli_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `pulumi` anywhere
    with pytest.raises(hist.HistoryError, match=r"the Pulumi CLI \(pulumi\) is not on PATH"):
        hist.load_history(STACK, tmp_path)


def test_history_reads_pulumis_json_through_the_automation_api(
    repo: FixtureRepo, standin: Path
) -> None:
    target = repo.commit("first", document(*BASE))
    current = repo.commit("second", document(*BASE))
    record_history(standin, current=current, target=target)
    updates = hist.load_history(STACK, repo.path)
    assert [(u.version, u.kind, u.result) for u in updates] == [
        (3, "update", "succeeded"),
        (2, "preview", "succeeded"),
        (1, "update", "succeeded"),
    ]
    assert updates[0].commit == current
    assert updates[0].config_keys == (
        "aws:region",
        "enterprisehub:environment",
        "enterprisehub:jwtSecretKey",
    )
    assert hist.previous_update(updates).commit == target
    table = hist.render(updates)
    assert "2026-11-28 14:02:55" in table
    assert current[:12] in table
    assert ["stack", "history", "--json", "--stack", "dev"] in [c["args"] for c in calls(standin)]


def test_cli_history(repo: FixtureRepo, standin: Path) -> None:
    target = repo.commit("first", document(*BASE))
    current = repo.commit("second", document(*BASE))
    record_history(standin, current=current, target=target)
    result = run_cli("history", "--stack", STACK, "--repo", str(repo.path))
    assert result.returncode == 0, result.stderr
    assert "first deploy of dev" in result.stdout


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.deploy", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


# --- the four fixture pairs -------------------------------------------------------


def test_safe_revert_is_planned_and_allowed(
    repo: FixtureRepo, standin: Path, tmp_path: Path
) -> None:
    target = repo.commit("base", document(*BASE))
    bigger = res(
        "aws:rds/instance:Instance",
        "dev-db",
        {"instanceClass": "db.t4g.large", "storageEncrypted": True},
    )
    logs = res("aws:cloudwatch/logGroup:LogGroup", "dev-logs", {"retentionInDays": 30})
    current = repo.commit("bigger database, a log group", document(BASE[0], bigger, BASE[2], logs))
    record_history(standin, current=current, target=target)

    planned = rb.plan_rollback(repo.path, STACK)
    assert (planned.current_commit, planned.target_commit) == (current, target)
    assert planned.allowed, planned.refusals
    assert planned.plan.counts == {"create": 0, "update": 1, "replace": 0, "delete": 1}
    update = planned.plan.of("update")[0]
    assert [(p.path, p.before, p.after) for p in update.properties] == [
        ("instanceClass", "db.t4g.large", "db.t4g.medium")
    ]
    text = planned.render_text()
    assert text == rb.plan_rollback(repo.path, STACK).render_text(), "output must be deterministic"
    assert "allowed" in text
    assert "instanceClass" in planned.render_markdown()
    # No worktree is left behind.
    assert repo.git("worktree", "list").count("\n") == 0

    md = tmp_path / "plan.md"
    cli = run_cli(
        "rollback-plan", "--stack", STACK, "--repo", str(repo.path), "--markdown", str(md)
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == text
    assert md.read_text().startswith("### Rollback plan: `dev`")


def test_revert_that_would_delete_the_database_is_refused(repo: FixtureRepo, standin: Path) -> None:
    target = repo.commit("base", document(*BASE))
    analytics = res(
        "aws:rds/instance:Instance", "dev-analytics", {"instanceClass": "db.t4g.medium"}
    )
    current = repo.commit("analytics database", document(*BASE, analytics))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert not planned.allowed
    assert [r.kind for r in planned.refusals] == ["stateful"]
    assert "dev-analytics would be deleted" in planned.refusals[0].message
    cli = run_cli("rollback-plan", "--stack", STACK, "--repo", str(repo.path))
    assert cli.returncode == 1
    assert "REFUSED:" in cli.stdout
    assert "[stateful]" in cli.stdout


def test_a_protected_database_is_a_warning_not_a_refusal(repo: FixtureRepo, standin: Path) -> None:
    target = repo.commit("base", document(*BASE))
    analytics = res("aws:rds/instance:Instance", "dev-analytics", {}, protect=True)
    current = repo.commit("protected analytics database", document(*BASE, analytics))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert planned.allowed
    assert planned.warnings == [
        f"{P}aws:rds/instance:Instance::dev-analytics is protected: "
        "the engine will stop rather than have it deleted"
    ]


def test_replacing_the_database_is_refused_too(repo: FixtureRepo, standin: Path) -> None:
    unencrypted = res(
        "aws:rds/instance:Instance",
        "dev-db",
        {"instanceClass": "db.t4g.medium", "storageEncrypted": False},
    )
    target = repo.commit("before encryption", document(BASE[0], unencrypted, BASE[2]))
    current = repo.commit("encrypted", document(*BASE))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["stateful"]
    assert "would be replaced (because of storageEncrypted)" in planned.refusals[0].message


def test_revert_to_an_older_kubernetes_or_engine_version_is_refused(
    repo: FixtureRepo, standin: Path
) -> None:
    def stores(kubernetes: str, postgres: str, redis: str) -> dict[str, Any]:
        return document(
            BASE[0],
            res("aws:eks/cluster:Cluster", "dev-eks", {"version": kubernetes}, protect=True),
            res(
                "aws:rds/instance:Instance",
                "dev-db",
                {"instanceClass": "db.t4g.medium", "engineVersion": postgres},
                protect=True,
            ),
            res(
                "aws:elasticache/replicationGroup:ReplicationGroup",
                "dev-redis",
                {"engineVersion": redis},
                protect=True,
            ),
            BASE[2],
        )

    target = repo.commit("before the version steps", stores("1.35", "15.7", "7.1"))
    current = repo.commit("version steps", stores("1.36", "15.8", "7.1"))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["version", "version"]
    assert "dev-eks would go from version 1.36 back to 1.35" in planned.refusals[0].message
    assert "dev-db would go from engineVersion 15.8 back to 15.7" in planned.refusals[1].message


def test_a_major_only_engine_version_is_not_a_downgrade(repo: FixtureRepo, standin: Path) -> None:
    def database(version: str) -> dict[str, Any]:
        return res(
            "aws:rds/instance:Instance",
            "dev-db",
            {"instanceClass": "db.t4g.medium", "engineVersion": version},
        )

    # pulumi-aws matches "15" against any 15.x: the instance stays where it is.
    target = repo.commit("major only", document(BASE[0], database("15"), BASE[2]))
    current = repo.commit("pinned minor", document(BASE[0], database("15.8"), BASE[2]))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert planned.allowed, planned.refusals


def test_revert_to_before_a_provider_was_added_is_refused(repo: FixtureRepo, standin: Path) -> None:
    target = repo.commit("base", document(*BASE))
    random_provider = res("pulumi:providers:random", "dev-random")
    password = res(
        "random:index/randomPassword:RandomPassword",
        "dev-db-password",
        {"length": 32},
        provider=random_provider["urn"],
    )
    current = repo.commit("generated passwords", document(*BASE, random_provider, password))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["provider"]
    assert "declares no `random` provider or resource" in planned.refusals[0].message
    assert "2 resource(s)" in planned.refusals[0].message


def test_provider_configured_from_a_deleted_cluster_is_refused(
    repo: FixtureRepo, standin: Path
) -> None:
    k8s_base = res("pulumi:providers:kubernetes", "dev-k8s-local")
    ns = res(
        "kubernetes:core/v1:Namespace",
        "dev-ns",
        {"metadata": {"name": "app"}},
        provider=k8s_base["urn"],
    )
    target = repo.commit("base", document(*BASE, k8s_base, ns))
    cluster = res("aws:eks/cluster:Cluster", "dev-eks", {"name": "dev"}, protect=True)
    eks_provider = res(
        "pulumi:providers:kubernetes",
        "dev-k8s-eks",
        {"kubeconfig": "[secret]"},
        property_dependencies={"kubeconfig": [cluster["urn"]]},
    )
    app = res("kubernetes:core/v1:ConfigMap", "dev-cm", {"data": {}}, provider=eks_provider["urn"])
    current = repo.commit("EKS", document(*BASE, k8s_base, ns, cluster, eks_provider, app))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    kinds = [r.kind for r in planned.refusals]
    assert kinds == ["provider"]
    assert "is configured from" in planned.refusals[0].message
    assert any("dev-eks is protected" in w for w in planned.warnings)


def test_revert_behind_the_deployed_schema_is_refused(repo: FixtureRepo, standin: Path) -> None:
    # The target's migration Job runs `alembic upgrade head` against a database
    # at the deployed head, a revision the target has no file for: Alembic fails
    # ("Can't locate revision") and the update stops at the Job.
    target = repo.commit("base", document(*BASE), migrations={"0001": None})
    current = repo.commit(
        "a new table",
        document(*BASE),
        migrations={"0001": None, "0002_leads": "0001", "0003_scores": "0002_leads"},
    )
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["schema"]
    message = planned.refusals[0].message
    assert "at revision 0003_scores" in message
    assert "0002_leads, 0003_scores" in message
    assert "Can't locate revision" in message
    cli = run_cli("rollback-plan", "--stack", STACK, "--repo", str(repo.path))
    assert cli.returncode == 1
    assert "[schema]" in cli.stdout


def test_revert_with_the_same_schema_is_allowed(repo: FixtureRepo, standin: Path) -> None:
    migrations: dict[str, str | None] = {"0001": None, "0002_leads": "0001"}
    target = repo.commit("base", document(*BASE), migrations=migrations)
    logs = res("aws:cloudwatch/logGroup:LogGroup", "dev-logs")
    current = repo.commit("a log group", document(*BASE, logs), migrations=migrations)
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert planned.allowed, planned.refusals


def test_migration_revisions_are_read_without_running_them() -> None:
    revisions = rb.migration_revisions(REPO)
    assert revisions["0001"] == ()
    assert revisions["0002_realtime_delivery"] == ("0001",)
    heads = set(revisions) - {d for downs in revisions.values() for d in downs}
    assert len(heads) == 1


def test_revert_missing_a_config_key_is_refused(repo: FixtureRepo, standin: Path) -> None:
    legacy = PROJECT + "  legacyCrmToken:\n    type: string\n    secret: true\n"
    target = repo.commit("with the legacy CRM", document(*BASE), project=legacy)
    current = repo.commit("legacy CRM removed", document(*BASE))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["config"]
    assert "enterprisehub:legacyCrmToken" in planned.refusals[0].message
    # The working copy's stack file is where a deployment keeps its secrets:
    # once the key is set there, the target has what it needs.
    stack_file = repo.path / "stacks" / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(STACK_FILE + "  enterprisehub:legacyCrmToken:\n    secure: v1:abc:def\n")
    assert rb.plan_rollback(repo.path, STACK).allowed


def test_target_without_a_recorded_update_lacks_its_image(repo: FixtureRepo, standin: Path) -> None:
    unrecorded = repo.commit("never deployed", document(*BASE))
    recorded = repo.commit("deployed", document(*BASE))
    current = repo.commit("current", document(*BASE))
    record_history(standin, current=current, target=recorded)
    assert rb.plan_rollback(repo.path, STACK).allowed
    planned = rb.plan_rollback(repo.path, STACK, unrecorded)
    assert [r.kind for r in planned.refusals] == ["config"]
    assert "enterprisehub:image" in planned.refusals[0].message


def test_target_whose_config_does_not_synthesize_is_refused(
    repo: FixtureRepo, standin: Path
) -> None:
    target = repo.commit(
        "stack file without environment",
        document(*BASE),
        stack_file="config:\n  aws:region: us-east-1\n",
    )
    current = repo.commit("fixed", document(*BASE))
    record_history(standin, current=current, target=target)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["config"]
    assert "enterprisehub:environment is required" in planned.refusals[0].message


# --- the target's image ----------------------------------------------------------------


def test_target_whose_image_the_registry_expired_is_refused(
    repo: FixtureRepo, standin: Path, ecr: Registry
) -> None:
    target = repo.commit("base", document(*BASE))
    logs = res("aws:cloudwatch/logGroup:LogGroup", "dev-logs")
    current = repo.commit("a log group", document(*BASE, logs))
    record_history(standin, current=current, target=target)
    assert rb.plan_rollback(repo.path, STACK).allowed

    image = (standin / "target-image").read_text()
    ecr.expire(image)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["image"]
    message = planned.refusals[0].message
    digest = image.split("@")[1]
    assert f"image {digest} is no longer in ECR repository enterprisehub-dev" in message
    assert "keeps the newest 100 images" in message
    assert "`--to`" in message
    assert "fix forward" in message
    cli = run_cli("rollback-plan", "--stack", STACK, "--repo", str(repo.path))
    assert cli.returncode == 1
    assert f"[image] the target's image {digest} is no longer in ECR" in cli.stdout
    # Refused before anything is changed: no `up`.
    assert rb.rollback(repo.path, STACK).result == "refused"
    assert not [c for c in calls(standin) if c["args"][:1] == ["up"]]


def pinned_target(repo: FixtureRepo, standin: Path, image: str) -> None:
    """A target whose stack file pins `image` (its own plain config wins over
    what its update recorded), and a current commit, in the history."""
    target = repo.commit(
        "pinned image", document(*BASE), stack_file=STACK_FILE + f"  enterprisehub:image: {image}\n"
    )
    current = repo.commit("current", document(*BASE))
    record_history(standin, current=current, target=target)


def test_the_image_the_targets_stack_file_pins_is_the_one_checked(
    repo: FixtureRepo, standin: Path, ecr: Registry
) -> None:
    # Its stack file's image is what `up` would deploy, and what is asked for.
    pinned = ecr.push(f"enterprisehub-{STACK}", "pinned")
    pinned_target(repo, standin, pinned)
    ecr.expire((standin / "target-image").read_text())
    assert rb.plan_rollback(repo.path, STACK).allowed
    ecr.expire(pinned)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["image"]
    assert pinned.split("@")[1] in planned.refusals[0].message


def test_an_image_outside_ecr_is_not_checked_and_the_plan_says_so(
    repo: FixtureRepo, standin: Path
) -> None:
    elsewhere = "registry.example/enterprisehub@sha256:" + "c" * 64
    pinned_target(repo, standin, elsewhere)
    planned = rb.plan_rollback(repo.path, STACK)
    assert planned.allowed, planned.refusals
    assert planned.warnings == [
        f"the target's image {elsewhere} is not in an ECR registry; whether it can still be "
        "pulled was not checked"
    ]


def test_an_image_that_cannot_be_checked_is_refused(
    repo: FixtureRepo, standin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = repo.commit("base", document(*BASE))
    current = repo.commit("current", document(*BASE))
    record_history(standin, current=current, target=target)
    # Nothing listens on port 9 of loopback: the registry cannot be asked.
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["image"]
    assert "could not check" in planned.refusals[0].message
    assert "ecr:DescribeImages" in planned.refusals[0].message


def test_a_missing_repository_is_refused(repo: FixtureRepo, standin: Path) -> None:
    elsewhere = (standin / "target-image").read_text().replace("enterprisehub-dev", "gone")
    pinned_target(repo, standin, elsewhere)
    planned = rb.plan_rollback(repo.path, STACK)
    assert [r.kind for r in planned.refusals] == ["image"]
    assert "ECR repository gone does not exist in account 123456789012" in (
        planned.refusals[0].message
    )


def test_ecr_image_references() -> None:
    digest = "sha256:" + "a" * 64
    parsed = EcrImage.parse(f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1@{digest}")
    assert parsed is not None
    assert (parsed.registry_id, parsed.region, parsed.repository, parsed.digest) == (
        "123456789012",
        "eu-west-1",
        "team/app",
        digest,
    )
    assert EcrImage.parse(f"registry.example/enterprisehub@{digest}") is None
    assert EcrImage.parse(f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/app@{digest}\n") is None
    assert EcrImage.parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1") is None


def _update(version: int, commit: str, result: str = "succeeded") -> hist.Update:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    return hist.Update(version, "update", result, start, start, commit, "deploy")


def test_the_rollback_reaches_back_as_far_as_the_registry_keeps_images() -> None:
    # Newest first: the current commit, then one release per commit; a failed
    # update and a second update of a commit do not move a release further back.
    commits = [f"{n:040x}" for n in range(ROLLBACK_WINDOW + 2)]
    updates = [_update(1000, commits[0]), _update(999, "f" * 40, "failed")]
    updates += [_update(900 - n, commit) for n, commit in enumerate(commits[1:])]
    updates.insert(3, _update(950, commits[1]))
    assert hist.releases_back(updates, commits[0]) == 0
    assert hist.releases_back(updates, commits[1]) == 1
    assert hist.releases_back(updates, "f" * 40) is None
    assert hist.releases_back(updates, commits[ROLLBACK_WINDOW]) == ROLLBACK_WINDOW
    assert rb.window_refusals(updates, commits[ROLLBACK_WINDOW]) == []
    (refusal,) = rb.window_refusals(updates, commits[ROLLBACK_WINDOW + 1])
    assert refusal.kind == "image"
    assert f"{ROLLBACK_WINDOW + 1} deployed commits back" in refusal.message
    assert f"at most {ROLLBACK_WINDOW}" in refusal.message
    # The registry keeps at least one image per release of the window.
    assert KEEP_IMAGES >= ROLLBACK_WINDOW


# --- preconditions --------------------------------------------------------------------


def test_refusals_before_planning(repo: FixtureRepo, standin: Path) -> None:
    only = repo.commit("only", document(*BASE))
    history = json.loads((FIXTURES / "history.json").read_text().replace("{CURRENT}", only))
    (standin / "history.json").write_text(json.dumps(history[:1]))
    with pytest.raises(hist.HistoryError, match="no earlier successful update"):
        rb.plan_rollback(repo.path, STACK)
    with pytest.raises(rb.RollbackError, match="already deployed"):
        rb.plan_rollback(repo.path, STACK, "HEAD")
    assert run_cli("rollback-plan", "--stack", STACK, "--repo", str(repo.path)).returncode == 2

    (repo.path / "notes.txt").write_text("uncommitted")
    with pytest.raises(rb.RollbackError, match="uncommitted changes"):
        rb.rollback(repo.path, STACK)
    (repo.path / "notes.txt").unlink()

    running = dict(history[0], version=4, result="in-progress")
    (standin / "history.json").write_text(json.dumps([running, *history]))
    with pytest.raises(rb.RollbackError, match="still in progress"):
        rb.rollback(repo.path, STACK)
    assert not [c for c in calls(standin) if c["args"][:1] == ["up"]]


# --- rollback -----------------------------------------------------------------------------


@pytest.fixture
def health_server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200 if self.path == "/health" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_rollback_deploys_the_target_with_its_config_and_checks_health(
    repo: FixtureRepo, standin: Path, health_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, seen = health_server
    target_stack = PLAIN_STACK_FILE + "  enterprisehub:logLevel: DEBUG\n"
    target = repo.commit("base", document(*BASE), stack_file=target_stack)
    logs = res("aws:cloudwatch/logGroup:LogGroup", "dev-logs")
    current = repo.commit("a log group", document(*BASE, logs), stack_file=PLAIN_STACK_FILE)
    # The deployment's secrets live in its (ignored) working copy of the stack file.
    repo.path.joinpath(".gitignore").write_text("")
    (repo.path / "stacks" / f"Pulumi.{STACK}.yaml").write_text(
        "secretsprovider: awskms://alias/enterprisehub-dev\n"
        + PLAIN_STACK_FILE
        + "  enterprisehub:jwtSecretKey:\n    secure: v1:cipher-text\n"
    )
    repo.git("update-index", "--assume-unchanged", f"stacks/Pulumi.{STACK}.yaml")
    repo.path.joinpath(".gitignore").unlink()
    record_history(standin, current=current, target=target)
    (standin / "outputs.json").write_text(json.dumps({"apiUrl": url, "environment": "dev"}))

    report = rb.rollback(repo.path, STACK)
    assert report.result == "succeeded"
    assert report.healthy
    assert seen == ["/health"]
    ups = [c for c in calls(standin) if c["args"][:1] == ["up"]]
    assert len(ups) == 1
    up = ups[0]
    assert "--yes" in up["args"]
    assert "--skip-preview" in up["args"]
    assert up["args"][up["args"].index("--stack") + 1] == STACK
    # The target's own policy pack and stack config, as every deploy runs them.
    pack = up["args"][up["args"].index("--policy-pack") + 1]
    assert pack == f"{up['cwd']}/policies"
    assert up["args"][up["args"].index("--policy-pack-config") + 1] == f"{pack}/config/dev.json"
    assert f"rollback to {target[:12]}" in up["args"][up["args"].index("--message") + 1]
    # It ran in a checkout of the target commit, with the target's plain config
    # and the secrets carried over from the working copy.
    # (the stand-in records the HEAD it ran from: checked through the history below)
    assert "enterprisehub:logLevel: DEBUG" in up["stackFile"]
    assert "secure: v1:cipher-text" in up["stackFile"]
    assert "secretsprovider: awskms://alias/enterprisehub-dev" in up["stackFile"]
    # The image digest CI set out of band comes from the target's recorded update.
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/enterprisehub-dev@sha256:"
    assert f"enterprisehub:image: {image}" in up["stackFile"]
    assert not Path(up["cwd"]).exists(), "the temporary worktree is removed"
    assert hist.load_history(STACK, repo.path)[0].commit == target
    markdown = report.render_markdown()
    assert "**Update**: succeeded" in markdown
    assert f"| {url}/health | ok (HTTP 200) |" in markdown


def test_rollback_reports_refusal_failure_and_bad_health(
    repo: FixtureRepo, standin: Path, health_server: tuple[str, list[str]]
) -> None:
    url, _ = health_server
    target = repo.commit("base", document(*BASE))
    analytics = res("aws:rds/instance:Instance", "dev-analytics")
    current = repo.commit("analytics database", document(*BASE, analytics))
    record_history(standin, current=current, target=target)
    refused = rb.rollback(repo.path, STACK)
    assert refused.result == "refused"
    assert not [c for c in calls(standin) if c["args"][:1] == ["up"]]

    logs = res("aws:cloudwatch/logGroup:LogGroup", "dev-logs")
    safe = repo.commit("log group instead", document(*BASE, logs))
    record_history(standin, current=safe, target=target)
    (standin / "outputs.json").write_text(json.dumps({"healthUrls": {"api": f"{url}/broken"}}))
    unhealthy = rb.rollback(repo.path, STACK)
    assert unhealthy.result == "succeeded"
    assert not unhealthy.healthy
    cli = run_cli("rollback", "--stack", STACK, "--repo", str(repo.path), "--to", target)
    assert cli.returncode in (1, 2)

    record_history(standin, current=safe, target=target)
    (standin / "up-fails").write_text("")
    failed = rb.rollback(repo.path, STACK)
    assert failed.result.startswith("failed")


def test_rollback_plan_on_the_real_program(tmp_path: Path, standin: Path) -> None:
    """The real synthesis in two worktrees of a clone of this repository."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(clone),
            "checkout",
            "--quiet",
            subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip(),
        ],
        check=True,
    )
    fixture = FixtureRepo.__new__(FixtureRepo)
    fixture.path = clone
    fixture.git("config", "user.email", "test@example.com")
    fixture.git("config", "user.name", "Test")
    target = fixture.git("rev-parse", "HEAD")
    stack_file = clone / "stacks" / "Pulumi.dev.yaml"
    stack_file.write_text(
        stack_file.read_text().replace("backupRetentionDays: 7", "backupRetentionDays: 14")
    )
    fixture.git("commit", "--quiet", "-am", "dev: two weeks of backups")
    current = fixture.git("rev-parse", "HEAD")
    record_history(standin, current=current, target=target)
    # The deployment's secrets, set in its working copy as `pulumi config set --secret` does.
    secrets = "".join(
        f"  enterprisehub:{key}:\n    secure: v1:cipher\n"
        for key in ("jwtSecretKey", "anthropicApiKey", "ghlApiKey")
    )
    image = "  enterprisehub:image: registry.example/enterprisehub@sha256:" + "c" * 64 + "\n"
    # CI sets the runbooks of the deployed commit beside the image.
    runbooks = (
        "  enterprisehub:runbookBaseUrl: https://git.example/hub/blob/c0ffee/docs/runbooks/\n"
    )
    stack_file.write_text(stack_file.read_text() + secrets + image + runbooks)
    planned = rb.plan_rollback(clone, STACK)
    assert planned.allowed, planned.refusals
    assert planned.plan.counts == {"create": 0, "update": 1, "replace": 0, "delete": 0}
    change = planned.plan.of("update")[0]
    assert change.type == "aws:rds/instance:Instance"
    assert [(p.path, p.before, p.after) for p in change.properties] == [
        ("backupRetentionPeriod", 14, 7)
    ]
    shutil.rmtree(clone)


def _plan_dropping_release(repo: FixtureRepo, standin: Path, release: str) -> rb.RollbackPlan:
    """The plan of a rollback to a target without the Helm release ``release``."""
    k8s = res("pulumi:providers:kubernetes", "dev-k8s")
    chart = res(
        "kubernetes:helm.sh/v3:Release",
        f"dev-{release}",
        {"name": release, "chart": release, "version": "1.0.0"},
        provider=k8s["urn"],
    )
    target = repo.commit(f"without {release}", document(*BASE, k8s))
    current = repo.commit(f"with {release}", document(*BASE, k8s, chart))
    record_history(standin, current=current, target=target)
    return rb.plan_rollback(repo.path, STACK)


@pytest.mark.parametrize("release", ["aws-load-balancer-controller", "karpenter"])
def test_a_target_without_a_controller_that_owns_cloud_resources_is_refused(
    repo: FixtureRepo, standin: Path, release: str
) -> None:
    # Its NLB or nodes are not in Pulumi's state: deleting the controller strands
    # them, and the objects holding them wait forever on its finalizer.
    planned = _plan_dropping_release(repo, standin, release)
    assert [r.kind for r in planned.refusals] == ["controller"]
    assert f"({release}) would be deleted" in planned.refusals[0].message


def test_deleting_another_helm_release_is_not_a_controller_refusal(
    repo: FixtureRepo, standin: Path
) -> None:
    planned = _plan_dropping_release(repo, standin, "metrics-server")
    assert planned.allowed, planned.refusals
