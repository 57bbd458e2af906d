"""The pull-request synthesis diff on fixture resources.json pairs."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.deploy.diff import (
    GITHUB_COMMENT_LIMIT,
    DocumentError,
    load_document,
    main,
    marker,
    plan,
    render_markdown,
)

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def base() -> dict[str, Any]:
    return load_document(FIXTURES / "base.json")


@pytest.fixture
def head() -> dict[str, Any]:
    return load_document(FIXTURES / "head.json")


def test_plan_classifies_every_change(base: dict[str, Any], head: dict[str, Any]) -> None:
    result = plan(base, head)
    assert result.counts == {"create": 1, "update": 2, "replace": 1, "delete": 1}
    assert result.unchanged == 3
    by_action = {c.action: c for c in result.changes}
    assert by_action["create"].name.endswith("cache-key-new")
    assert by_action["delete"].name == "enterprisehub-production-cache-key"
    replaced = by_action["replace"]
    assert replaced.type == "aws:s3/bucket:Bucket"
    assert replaced.replace_reasons == ["bucket"]
    rds = next(c for c in result.of("update") if c.type == "aws:rds/instance:Instance")
    assert [(p.path, p.before, p.after) for p in rds.properties] == [
        ("backupRetentionPeriod", 30, 14),
        ("instanceClass", "db.r6g.large", "db.r6g.xlarge"),
    ]
    assert [(p.path, p.before, p.after) for p in result.config_changes] == [
        ("enterprisehub:logLevel", "INFO", "DEBUG")
    ]


def test_identical_documents_have_no_changes(base: dict[str, Any]) -> None:
    result = plan(base, copy.deepcopy(base))
    assert result.empty
    assert result.unchanged == len(base["resources"])
    assert "No resource changes." in render_markdown(result)


def test_forced_replacements_options_and_provider_changes(base: dict[str, Any]) -> None:
    head = copy.deepcopy(base)
    for r in head["resources"]:
        if r["type"] == "aws:rds/instance:Instance":
            r["inputs"]["storageEncrypted"] = False
        if r["type"] == "kubernetes:core/v1:Secret":
            r["inputs"]["metadata"]["name"] = "renamed"
        if r["type"] == "aws:kms/key:Key":
            r["options"]["protect"] = True
        if r["type"] == "kubernetes:apps/v1:Deployment":
            r["provider"] = (
                "urn:pulumi:production::enterprisehub::pulumi:providers:kubernetes::other"
            )
    result = plan(base, head)
    actions = {c.type: c.action for c in result.changes}
    assert actions["aws:rds/instance:Instance"] == "replace"
    assert actions["kubernetes:core/v1:Secret"] == "replace"
    assert actions["aws:kms/key:Key"] == "update"
    assert actions["kubernetes:apps/v1:Deployment"] == "replace"
    kms = next(c for c in result.changes if c.type == "aws:kms/key:Key")
    assert [p.path for p in kms.properties] == ["options.protect"]


def test_a_node_group_is_replaced_by_a_new_template_not_by_a_new_version() -> None:
    def group(inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "urn": "urn:pulumi:p::enterprisehub::aws:eks/nodeGroup:NodeGroup::system",
            "type": "aws:eks/nodeGroup:NodeGroup",
            "name": "system",
            "custom": True,
            "inputs": inputs,
            "options": {},
        }

    def action(before: dict[str, Any], after: dict[str, Any]) -> str:
        result = plan({"resources": [group(before)]}, {"resources": [group(after)]})
        [change] = result.changes
        return change.action

    on_template = {"launchTemplate": {"id": "lt-1", "version": "1"}}
    # A live group without a template (and its diskSize) gets one: EKS cannot add it.
    assert action({"diskSize": 100}, on_template) == "replace"
    assert action({}, on_template) == "replace"
    assert action(on_template, {"launchTemplate": {"id": "lt-2", "version": "1"}}) == "replace"
    assert action(on_template, {"launchTemplate": {"id": "lt-1", "version": "2"}}) == "update"


def test_secrets_stay_masked(base: dict[str, Any]) -> None:
    head = copy.deepcopy(base)
    rds = next(r for r in head["resources"] if r["type"] == "aws:rds/instance:Instance")
    # A program that forgot to mark a credential secret: masked by its key's name.
    rds["inputs"]["masterPassword"] = "hunter2-plain"
    rds["inputs"]["password"] = "[secret]"
    base_rds = next(r for r in base["resources"] if r["type"] == "aws:rds/instance:Instance")
    base_rds["inputs"]["password"] = "[secret]"
    deployment = next(r for r in head["resources"] if r["type"] == "kubernetes:apps/v1:Deployment")
    container = deployment["inputs"]["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "DATABASE_PASSWORD", "value": "hunter2-env"})
    result = plan(base, head)
    text = render_markdown(result) + json.dumps(result.to_json())
    assert "hunter2" not in text
    assert '"DATABASE_PASSWORD"' in text
    change = next(c for c in result.changes if c.type == "aws:rds/instance:Instance")
    assert [(p.path, p.after) for p in change.properties] == [("masterPassword", "[secret]")]


def test_markdown_is_deterministic_and_marked(base: dict[str, Any], head: dict[str, Any]) -> None:
    first = render_markdown(plan(base, head))
    second = render_markdown(
        plan(load_document(FIXTURES / "base.json"), load_document(FIXTURES / "head.json"))
    )
    assert first == second
    assert first.startswith(marker("production") + "\n")
    assert "**1 to create, 2 to update, 1 to replace, 1 to delete, 3 unchanged**" in first
    # Sections in a fixed order, and a blank line before each heading.
    positions = [
        first.index(f"\n\n#### {h}") for h in ("+ create", "~ update", "+- replace", "- delete")
    ]
    assert positions == sorted(positions)


def test_trimming_keeps_the_summary_under_the_limit(base: dict[str, Any]) -> None:
    head = copy.deepcopy(base)
    template = next(r for r in base["resources"] if r["type"] == "aws:kms/key:Key")
    for i in range(400):
        extra = copy.deepcopy(template)
        extra["urn"] = f"{template['urn']}-{i:03d}"
        extra["name"] = f"{template['name']}-{i:03d}"
        extra["inputs"]["description"] = "x" * 300
        head["resources"].append(extra)
    result = plan(base, head)
    text = render_markdown(result)
    assert len(text) < GITHUB_COMMENT_LIMIT
    assert "**400 to create" in text
    assert "resource details left out" in text
    small = render_markdown(result, budget=3_000)
    assert len(small) < 4_000
    assert "| + create | 400 |" in small
    omitted = int(re.search(r"_(\d+) resource details left out", small).group(1))  # type: ignore[union-attr]
    assert omitted + small.count("<details>") == 400
    assert omitted > 390


def test_rejects_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"schemaVersion": 2, "resources": []}))
    with pytest.raises(DocumentError, match="schemaVersion 2"):
        load_document(path)
    path.write_text("not json")
    with pytest.raises(DocumentError):
        load_document(tmp_path)


def test_cli_writes_markdown_and_json(tmp_path: Path) -> None:
    md, js = tmp_path / "comment.md", tmp_path / "plan.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy.diff",
            "--base",
            str(FIXTURES / "base.json"),
            "--head",
            str(FIXTURES / "head.json"),
            "--markdown",
            str(md),
            "--json",
            str(js),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == "production: 1 to create, 2 to update, 1 to replace, 1 to delete, 3 unchanged"
    )
    assert md.read_text().startswith(marker("production"))
    assert json.loads(js.read_text())["summary"] == {
        "create": 1,
        "update": 2,
        "replace": 1,
        "delete": 1,
        "unchanged": 3,
    }
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy.diff",
            "--base",
            str(tmp_path),
            "--head",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2


@pytest.mark.parametrize("option", ["--markdown", "--json"])
def test_an_output_that_cannot_be_written_is_one_line(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A traceback before (FileNotFoundError from write_text).
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    argv = ["--base", str(FIXTURES / "base.json"), "--head", str(FIXTURES / "head.json")]
    assert main([*argv, option, str(blocked / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: [Errno 20] Not a directory: '{blocked / 'out'}'\n"
