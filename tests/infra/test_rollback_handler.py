"""rollback.undoDeployments: off, the handler has no Kubernetes API access; on, exactly enough.

The whole program runs under the mocks for production as its stack file has it
(off) and with ``rollback.undoDeployments`` set (on); what it declares is
compared with the catalog's feature -> Deployment mapping, never a copy of it.
The "on" manifests also pass the schema and checkov checks the stacks pass.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from infra import catalog
from infra.components.rollback_handler import (
    FEATURE_DEPLOYMENTS_SETTING,
    UNDO_DEPLOYMENTS_SETTING,
    RollbackHandler,
    RollbackHandlerArgs,
)
from infra.synth import run_stack
from infra.synth.cli import build_document
from infra.synth.inputs import qualify, stack_inputs
from infra.synth.manifests import manifests_for, write_manifests
from infra.synth.mocks import ProgramRun, RecordedResource
from policies.pack import uncovered
from tests.infra.test_manifests import _checkov, checkov  # noqa: F401 - the fixture

HANDLER = catalog.ROLLBACK_HANDLER.name
NAMESPACE = "enterprisehub"


@pytest.fixture(scope="module")
def undoing() -> ProgramRun:
    """Production with ``rollback.undoDeployments: true``."""
    inputs = stack_inputs("production", environ={})
    config = {**inputs.config, qualify("rollback"): json.dumps({"undoDeployments": True})}
    return run_stack(dataclasses.replace(inputs, config=config))


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    """Production as its stack file has it: off by default."""
    return stack_run("production")


def _objects(run: ProgramRun, kind: str) -> list[dict[str, Any]]:
    return [r.inputs for r in run.kubernetes_objects(kind)]


def _handler(run: ProgramRun, kind: str) -> dict[str, Any]:
    (found,) = [o for o in _objects(run, kind) if o["metadata"]["name"] == HANDLER]
    return found


def _config_map(run: ProgramRun) -> dict[str, str]:
    (data,) = [
        o["data"]
        for o in _objects(run, "ConfigMap")
        if o["metadata"]["name"].startswith(f"{HANDLER}-config-")
    ]
    return dict(data)


def _api_egress(run: ProgramRun) -> list[Any]:
    policy = _handler(run, "NetworkPolicy")
    # The API server's Service IP is a /32 no other peer of the handler uses.
    return [
        rule
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if peer.get("ipBlock", {}).get("cidr", "").endswith("/32")
    ]


def _bindings_of_handler(run: ProgramRun) -> list[RecordedResource]:
    return [
        binding
        for binding in run.kubernetes_objects()
        if binding.type.rsplit(":", 1)[1] in {"RoleBinding", "ClusterRoleBinding"}
        and any(s.get("name") == HANDLER for s in binding.inputs.get("subjects", []))
    ]


def test_off_by_default_no_role_no_token_no_api_route(production: ProgramRun) -> None:
    assert not _bindings_of_handler(production)
    assert not [o for o in _objects(production, "Role") if o["metadata"]["name"] == HANDLER]
    account = _handler(production, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    pod = _handler(production, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    settings = _config_map(production)
    assert settings[UNDO_DEPLOYMENTS_SETTING] == "false"
    assert FEATURE_DEPLOYMENTS_SETTING not in settings
    assert _api_egress(production) == []


def test_on_a_role_with_exactly_the_features_deployments(undoing: ProgramRun) -> None:
    deployments = sorted(spec.name for spec in catalog.SHIPPED_SERVICES.values() if spec.feature)
    role = _handler(undoing, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": deployments,
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
    ]
    # Every name is a Deployment the stack declares, in the same namespace.
    declared = {o["metadata"]["name"] for o in _objects(undoing, "Deployment")}
    assert set(deployments) <= declared
    binding = _handler(undoing, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": HANDLER,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": HANDLER, "namespace": NAMESPACE}
    ]
    assert [b.inputs["metadata"]["name"] for b in _bindings_of_handler(undoing)] == [HANDLER]
    assert not [o for o in _objects(undoing, "ClusterRole") if o["metadata"]["name"] == HANDLER]


def test_on_the_token_is_mounted_and_the_settings_name_the_catalogs_deployments(
    undoing: ProgramRun,
) -> None:
    deployment = _handler(undoing, "Deployment")
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert "CKV_K8S_38" in deployment["metadata"]["annotations"]["checkov.io/skip2"]
    settings = _config_map(undoing)
    assert settings[UNDO_DEPLOYMENTS_SETTING] == "true"
    mapping = json.loads(settings[FEATURE_DEPLOYMENTS_SETTING])
    assert mapping == {f: list(names) for f, names in catalog.feature_deployments().items()}
    assert set(mapping) == set(catalog.FEATURE_FLAGS)


def test_on_the_network_policy_admits_the_api_server_and_nothing_else_new(
    production: ProgramRun, undoing: ProgramRun
) -> None:
    off = _handler(production, "NetworkPolicy")["spec"]["egress"]
    on = _handler(undoing, "NetworkPolicy")["spec"]["egress"]
    added = [rule for rule in on if rule not in off]
    assert [rule for rule in on if rule in off] == off
    # The API server's Service IP on 443, then its endpoints (api_server_egress).
    assert len(added) == 2
    assert added[0] in _api_egress(undoing)
    assert added[0]["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert all("ipBlock" in peer for rule in added for peer in rule["to"])

    def others(run: ProgramRun) -> list[str]:
        """Every other policy, in a comparable form (registration order differs)."""
        policies = _objects(run, "NetworkPolicy")
        return sorted(
            json.dumps(o, sort_keys=True) for o in policies if o["metadata"]["name"] != HANDLER
        )

    # The other workloads' policies are unchanged.

    assert others(undoing) == others(production)


def test_on_the_manifests_pass_the_schemas(undoing: ProgramRun) -> None:
    kinds = {"Role", "RoleBinding", "Deployment", "ConfigMap", "NetworkPolicy"}
    version = stack_inputs("production", environ={}).get("kubernetesVersion") or "1.35"
    checked = 0
    for manifest in manifests_for(undoing.resources):
        if manifest.kind in kinds and manifest.body["metadata"].get("name", "").startswith(HANDLER):
            kubernetes_validate.validate(manifest.body, f"{version}.0", strict=True)
            checked += 1
    assert checked == len(kinds)


def test_on_checkov_passes(
    checkov: Path,  # noqa: F811 - the fixture
    undoing: ProgramRun,
    tmp_path: Path,
) -> None:
    write_manifests(manifests_for(undoing.resources), tmp_path)
    report = _checkov(checkov, tmp_path)
    failed = report.get("results", {}).get("failed_checks", [])
    assert not [f"{c['check_id']} {c['resource']}" for c in failed]
    assert report["summary"]["passed"] > 0


def test_on_every_declared_type_is_covered_by_the_policy_pack(undoing: ProgramRun) -> None:
    inputs = stack_inputs("production", environ={})
    assert uncovered(build_document(inputs, undoing)) == {}


def test_undoing_needs_deployments_to_undo() -> None:
    spec = catalog.ROLLBACK_HANDLER
    with pytest.raises(ValueError, match="needs the Deployments"):
        RollbackHandler(
            "handler",
            RollbackHandlerArgs(
                namespace=NAMESPACE,
                image="registry.example/hub@sha256:" + "a" * 64,
                settings={},
                secrets=dict.fromkeys(spec.secrets, "x"),
                undo_deployments=True,
                feature_deployments={},
            ),
        )
