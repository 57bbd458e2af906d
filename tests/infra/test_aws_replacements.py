"""Config changes that a real provider would turn into the replacement of stateful resources.

Each test synthesizes a stack twice, before and after an ordinary config
change, and plans between the two documents with `infra.deploy.diff.plan`,
which knows the providers' `forceNew` properties (`REPLACE_ON`) and applies
each resource's `ignoreChanges` as the engine does.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.components import addons as addons_module
from infra.deploy.diff import REPLACE_ON, Plan, plan
from infra.synth import run_stack
from infra.synth.cli import Synthesis, build_document
from infra.synth.inputs import stack_inputs

CLUSTER = "aws:eks/cluster:Cluster"
DEPLOY_ROLE = "arn:aws:iam::123456789012:role/ci-deploy"
BREAK_GLASS_ROLE = "arn:aws:iam::123456789012:role/break-glass"


def _document(stack: str, **cluster: Any) -> dict[str, Any]:
    inputs = stack_inputs(stack, environ={})
    merged = {**json.loads(inputs.config["enterprisehub:cluster"]), **cluster}
    config = {**inputs.config, "enterprisehub:cluster": json.dumps(merged)}
    changed = type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources)
    return build_document(changed, run_stack(changed))


def _cluster_change(result: Plan) -> str | None:
    changes = [c for c in result.changes if c.type == CLUSTER]
    return changes[0].action if changes else None


def test_declaring_the_deploy_role_later_does_not_replace_the_cluster() -> None:
    # EKS reads bootstrapClusterCreatorAdminPermissions at creation only, and
    # pulumi-aws marks it forceNew: a changed value deletes and recreates the
    # cluster (explicit name: delete first) with every workload on it.
    before = _document("dev")
    after = _document("dev", deployRoleArn=DEPLOY_ROLE, breakGlassRoleArn=BREAK_GLASS_ROLE)
    eks_before = next(r for r in before["resources"] if r["type"] == CLUSTER)
    eks_after = next(r for r in after["resources"] if r["type"] == CLUSTER)
    flag = "bootstrapClusterCreatorAdminPermissions"
    assert eks_before["inputs"]["accessConfig"][flag] is True
    assert eks_after["inputs"]["accessConfig"][flag] is False
    assert _cluster_change(plan(before, after)) != "replace"
    # The planner does model the rule: without the ignore, it is a replacement.
    eks_after["options"]["ignoreChanges"] = []
    assert _cluster_change(plan(before, after)) == "replace"


def test_a_break_glass_role_alone_keeps_the_creator_admin() -> None:
    # Whoever creates the cluster must reach it to create the Kubernetes
    # objects; only a deploy role (the one that runs `up`) replaces that access.
    document = _document("dev", breakGlassRoleArn=BREAK_GLASS_ROLE)
    eks = next(r for r in document["resources"] if r["type"] == CLUSTER)
    assert eks["inputs"]["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is True
    entries = {
        r["inputs"]["principalArn"]
        for r in document["resources"]
        if r["type"] == "aws:eks/accessEntry:AccessEntry" and r["inputs"].get("type") == "STANDARD"
    }
    assert entries == {BREAK_GLASS_ROLE}


def _with_version(stack: str, version: str) -> dict[str, Any]:
    inputs = stack_inputs(stack, environ={})
    config = {**inputs.config, "enterprisehub:kubernetesVersion": version}
    changed = type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources)
    return build_document(changed, run_stack(changed))


#: Add-on builds for a Kubernetes step, as an operator adds them before moving.
NEXT_VERSION_PINS = {
    "vpc-cni": "v1.21.2-eksbuild.1",
    "kube-proxy": "v1.36.0-eksbuild.1",
    "coredns": "v1.13.2-eksbuild.1",
    "aws-ebs-csi-driver": "v1.55.0-eksbuild.1",
}


def test_the_managed_add_ons_follow_a_kubernetes_version_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EKS never upgrades an installed add-on by itself, and an unset
    # addonVersion is read back and never changes: the add-ons move to the
    # versions charts/versions.yaml pins for the new Kubernetes version, in the
    # `up` that moves the control plane, and only then.
    document = yaml.safe_load(
        (addons_module.CHARTS_DIR / "versions.yaml").read_text(encoding="utf-8")
    )
    current = dict(document["eksAddons"]["1.35"])
    document["eksAddons"]["1.36"] = NEXT_VERSION_PINS
    (tmp_path / "versions.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    monkeypatch.setattr(addons_module, "CHARTS_DIR", tmp_path)
    before = _with_version("dev", "1.35")
    after = _with_version("dev", "1.36")
    result = plan(before, after)
    addons = {
        c.after["inputs"]["addonName"]: c
        for c in result.changes
        if c.type == "aws:eks/addon:Addon" and c.after is not None
    }
    assert set(addons) == set(NEXT_VERSION_PINS)
    for name, change in addons.items():
        assert change.action == "update", name
        assert [(p.path, p.before, p.after) for p in change.properties] == [
            ("addonVersion", current[name], NEXT_VERSION_PINS[name])
        ], name
    assert _cluster_change(result) == "update"


def _with(stack: str, key: str, **fields: Any) -> dict[str, Any]:
    inputs = stack_inputs(stack, environ={})
    merged = {**json.loads(inputs.config[f"enterprisehub:{key}"]), **fields}
    config = {**inputs.config, f"enterprisehub:{key}": json.dumps(merged)}
    changed = type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources)
    return build_document(changed, run_stack(changed))


def _replaced(result: Plan, type_token: str) -> tuple[str, str]:
    [change] = [c for c in result.changes if c.type == type_token]
    assert change.action == "replace", change
    assert change.before is not None
    assert change.after is not None
    return (
        change.before["inputs"]["finalSnapshotIdentifier"],
        change.after["inputs"]["finalSnapshotIdentifier"],
    )


def test_a_replaced_database_leaves_its_snapshot_under_a_name_of_its_own() -> None:
    # The old instance is deleted with the old state's final snapshot name; the
    # new one must carry another, or its own delete (the next replacement, a
    # destroy) fails on DBSnapshotAlreadyExists.
    result = plan(_with("dev", "database"), _with("dev", "database", name="enterprisehub_v2"))
    before, after = _replaced(result, "aws:rds/instance:Instance")
    assert before != after
    suffixes = [c for c in result.changes if c.type == "random:index/randomId:RandomId"]
    assert [(c.name, c.action) for c in suffixes] == [
        ("enterprisehub-dev-database-final-snapshot-suffix", "replace")
    ]


def test_a_replaced_cache_leaves_its_snapshot_under_a_name_of_its_own() -> None:
    result = plan(_with("dev", "cache"), _with("dev", "cache", atRestEncryption=False))
    before, after = _replaced(result, "aws:elasticache/replicationGroup:ReplicationGroup")
    assert before != after


def test_retiring_the_old_redis_token_is_an_update_of_the_group_alone() -> None:
    # Step 2 of a token rotation (docs/deploying.md): the token is unchanged,
    # the strategy becomes SET, and pulumi-aws sends the token with it
    # (ModifyReplicationGroup with AuthTokenUpdateStrategy=SET). Nothing else
    # may move: no replacement, no Secret, no rollout.
    before = _with("production", "cache")
    after = _with("production", "cache", authTokenUpdateStrategy="SET")
    group = "aws:elasticache/replicationGroup:ReplicationGroup"

    def strategy(document: dict[str, Any]) -> str:
        inputs = next(r for r in document["resources"] if r["type"] == group)["inputs"]
        return str(inputs["authTokenUpdateStrategy"])

    assert (strategy(before), strategy(after)) == ("ROTATE", "SET")
    result = plan(before, after)
    assert [(c.type, c.action) for c in result.changes] == [(group, "update")]
    [change] = result.changes
    # (The diff masks every auth-token property, this one included.)
    assert [p.path for p in change.properties] == ["authTokenUpdateStrategy"]


def test_a_subnet_moved_to_another_zone_is_planned_as_a_replacement(
    synthesized: Callable[[str], Synthesis],
) -> None:
    # The program places subnets by zone id (names differ between accounts);
    # the provider replaces a subnet whose zone id changes, and the plan said
    # "update" because it knew only the zone name.
    before = synthesized("dev").document
    after = copy.deepcopy(before)
    subnet = next(r for r in after["resources"] if r["type"] == "aws:ec2/subnet:Subnet")
    subnet["inputs"]["availabilityZoneId"] = "use1-az9"
    [change] = plan(before, after).changes
    assert (change.urn, change.action) == (subnet["urn"], "replace")


def test_every_replacing_property_is_an_input_of_the_pinned_sdk() -> None:
    # A misspelt or renamed property in REPLACE_ON never matches a change, so
    # the plan shows an update where the provider replaces.
    for type_token, properties in REPLACE_ON.items():
        package, module_and_class = type_token.split(":", 1)
        if package not in ("aws", "random"):
            continue
        module_path, class_name = module_and_class.split(":")
        module = module_path.split("/")[0]
        sdk = importlib.import_module(
            f"pulumi_{package}" + ("" if module == "index" else f".{module}")
        )
        init = getattr(sdk, class_name)._internal_init
        names = set(inspect.signature(init).parameters)
        for prop in properties:
            top = prop.split(".")[0]
            assert re.sub(r"(?<!^)([A-Z])", r"_\1", top).lower() in names, (type_token, prop)
