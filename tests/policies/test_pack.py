"""The pack as a whole: what it contains, its config, the stacks, the CLI, the engine path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UnknownValueError  # noqa: F401  (the proxy the runner relies on)

from policies.common import TARGETS
from policies.offline import evaluate
from policies.pack import (
    EXEMPT,
    POLICIES,
    config_path,
    policy_config,
    render_config,
    targeted,
    uncovered,
)
from tests.policies import test_aws_policies, test_kubernetes_policies
from tests.policies.conftest import REPO, STACKS
from tests.policies.policy_helpers import entry, findings

Synthesis = Callable[[str], dict[str, Any]]
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def test_policies_are_named_described_and_explicit() -> None:
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names))
    for policy in POLICIES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", policy.name), policy.name
        assert policy.description
        assert policy.enforcement_level is not None
        assert policy.name in TARGETS


def test_every_policy_has_its_three_cases() -> None:
    tested = {c[0] for c in test_aws_policies.CASES} | {c[0] for c in test_aws_policies.S3_CASES}
    tested |= {c[0] for c in test_kubernetes_policies.CASES}
    # Stack policies and the tag policy have dedicated tests covering all three cases.
    tested |= {"aws-required-tags", "k8s-deployment-hpa-and-pdb", "k8s-namespace-default-deny"}
    tested |= {"k8s-storage-class-encrypted", "karpenter-nodes-hardened"}
    tested |= {"k8s-no-secret-in-configmap"}
    assert tested == {p.name for p in POLICIES}


@pytest.mark.parametrize("stack", STACKS)
def test_committed_policy_config_is_current(stack: str) -> None:
    assert config_path(stack).read_text() == render_config(stack), (
        "run: python -m policies --write-config"
    )


def test_enforcement_is_mandatory_in_staging_and_production_only() -> None:
    assert {s: policy_config(s)["all"] for s in STACKS} == {
        "local": "advisory",
        "dev": "advisory",
        "staging": "mandatory",
        "production": "mandatory",
    }
    assert policy_config("production")["rds-backup-retention"]["environment"] == "production"


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_every_mandatory_policy(stack: str, synthesis: Synthesis) -> None:
    document = synthesis(stack)
    found = evaluate(document, POLICIES, policy_config(stack))
    assert [f.render() for f in found if f.level == "mandatory"] == []
    if stack in ("staging", "production"):
        # Everything is mandatory there, so nothing at all may be found.
        assert found == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_declared_type_is_checked_or_exempt_with_a_reason(
    stack: str, synthesis: Synthesis
) -> None:
    assert uncovered(synthesis(stack)) == {}, (
        "add a policy for these types in policies/aws.py or policies/kubernetes.py, "
        "or list them in policies.pack.EXEMPT with the reason none is needed"
    )


def test_coverage_check_catches_a_new_type() -> None:
    document = {
        "resources": [entry("aws:sns/topic:Topic", {}), entry("kubernetes:core/v1:Secret", {})]
    }
    assert list(uncovered(document)) == ["aws:sns/topic:Topic"]
    component = entry("enterprisehub:aws:Queue", {})
    component["custom"] = False
    assert uncovered({"resources": [component]}) == {}
    assert all(reason.strip() for reason in EXEMPT.values())
    assert not [t for t in EXEMPT if targeted(t)], "a type is both exempt and targeted"


def test_unknown_values_are_reported_as_in_preview() -> None:
    key = entry("aws:kms/key:Key", {"enableKeyRotation": UNKNOWN})
    found = findings("kms-key-rotation", [key])
    assert len(found) == 1
    assert found[0].level == "advisory"
    assert "can't run during preview" in found[0].message
    assert ".enableKeyRotation" in found[0].message


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policies", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_exit_status(synthesis: Synthesis, tmp_path: Path) -> None:
    document = json.loads(json.dumps(synthesis("production")))
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(document))
    ok = run_cli("--resources", str(path), "--stack", "production")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 mandatory" in ok.stdout
    for resource in document["resources"]:
        if resource["type"] == "aws:rds/instance:Instance":
            resource["inputs"]["storageEncrypted"] = False
    path.write_text(json.dumps(document))
    bad = run_cli("--resources", str(path), "--stack", "production")
    assert bad.returncode == 1
    assert "[mandatory] rds-encrypted:" in bad.stdout
    assert "storageEncrypted" in bad.stdout
    wrong = run_cli("--resources", str(path), "--stack", "dev")
    assert wrong.returncode == 2
    assert "not 'dev'" in wrong.stderr


def test_cli_advisory_findings_do_not_fail(synthesis: Synthesis, tmp_path: Path) -> None:
    document = json.loads(json.dumps(synthesis("dev")))
    for resource in document["resources"]:
        if resource["type"] == "aws:kms/key:Key":
            resource["inputs"]["enableKeyRotation"] = False
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(document))
    result = run_cli("--resources", str(path), "--stack", "dev")
    assert result.returncode == 0
    assert "[advisory] kms-key-rotation" in result.stdout


def test_the_engine_can_load_and_run_the_pack() -> None:
    """Start the pack the way `pulumi preview --policy-pack policies` does and call it over gRPC."""
    with subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(REPO / "policies")],
        cwd=REPO / "policies",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline().strip())
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = analyzer_pb2_grpc.AnalyzerStub(channel)
                info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
                assert info.name == "enterprisehub"
                assert sorted(p.name for p in info.policies) == sorted(p.name for p in POLICIES)
                props = struct_pb2.Struct()
                props.update({"enableKeyRotation": False})
                response = stub.Analyze(
                    analyzer_pb2.AnalyzeRequest(
                        type="aws:kms/key:Key",
                        properties=props,
                        urn="urn:pulumi:dev::enterprisehub::aws:kms/key:Key::k",
                        name="k",
                    ),
                    timeout=30,
                )
                by_policy = {d.policyName: d.message for d in response.diagnostics}
                # No tags and no provider: the tag policy fires too.
                assert sorted(by_policy) == ["aws-required-tags", "kms-key-rotation"]
                assert "`enableKeyRotation` is not true" in by_policy["kms-key-rotation"]
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_named_config_that_is_missing_or_not_json_is_refused(
    synthesis: Synthesis, tmp_path: Path
) -> None:
    # A missing --config was skipped without a word: the run used the computed
    # levels and exited 0, whatever file the caller meant to apply.
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(synthesis("dev")))
    missing = tmp_path / "nowhere.json"
    result = run_cli("--resources", str(path), "--stack", "dev", "--config", str(missing))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: {missing}: [Errno 2] No such file or directory")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = run_cli("--resources", str(path), "--stack", "dev", "--config", str(broken))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {broken}: ")
