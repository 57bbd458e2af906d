"""RDS PostgreSQL as declared for the production stack (recorded under the mocks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.synth.mocks import ProgramRun, RecordedResource, Secret

INSTANCE = "aws:rds/instance:Instance"


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


@pytest.fixture(scope="module")
def postgres(production: ProgramRun) -> dict[str, Any]:
    return production.one(INSTANCE).inputs


def test_engine_is_postgres_15(postgres: dict[str, Any]) -> None:
    assert (postgres["engine"], postgres["engineVersion"]) == ("postgres", "15")


def test_storage_is_100_gib_and_encrypted_with_a_customer_key(postgres: dict[str, Any]) -> None:
    assert postgres["allocatedStorage"] == 100
    assert postgres["storageEncrypted"] is True
    assert postgres["kmsKeyId"].startswith("arn:aws:kms:")


def test_backups_are_kept_30_days_from_02_00_utc(postgres: dict[str, Any]) -> None:
    assert postgres["backupRetentionPeriod"] == 30
    assert postgres["backupWindow"] == "02:00-02:30"


def test_multi_az_and_deletion_protection_are_on(postgres: dict[str, Any]) -> None:
    assert postgres["multiAz"] is True
    assert postgres["deletionProtection"] is True


def test_a_final_snapshot_is_taken_on_delete(postgres: dict[str, Any]) -> None:
    assert postgres["skipFinalSnapshot"] is False
    assert postgres["finalSnapshotIdentifier"]


def test_the_instance_is_not_public(postgres: dict[str, Any]) -> None:
    assert postgres["publiclyAccessible"] is False


def test_performance_insights_are_on(postgres: dict[str, Any]) -> None:
    assert postgres["performanceInsightsEnabled"] is True


def test_master_password_is_generated_and_secret(production: ProgramRun) -> None:
    raw = production.one(INSTANCE).raw_inputs["password"]
    assert isinstance(raw, Secret)
    assert production.of_type("random:index/randomPassword:RandomPassword")


def test_tls_is_forced_by_the_parameter_group(production: ProgramRun) -> None:
    group = production.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert group["family"] == "postgres15"
    assert {"name": "rds.force_ssl", "value": "1"} in [
        {"name": p["name"], "value": p["value"]} for p in group["parameters"]
    ]


def test_max_connections_is_the_one_the_budget_was_checked_against(
    production: ProgramRun,
) -> None:
    # db.r6g.large: LEAST(16 GiB / 9531392, 5000); static, so applied at the next reboot.
    group = production.one("aws:rds/parameterGroup:ParameterGroup").inputs
    (param,) = [p for p in group["parameters"] if p["name"] == "max_connections"]
    assert (param["value"], param["applyMethod"]) == ("1802", "pending-reboot")


def _rule_for_port(run: ProgramRun, port: int) -> RecordedResource:
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    return next(rule for rule in rules if rule.inputs["fromPort"] == port)


def test_only_the_cluster_security_group_reaches_port_5432(production: ProgramRun) -> None:
    rule = _rule_for_port(production, 5432).inputs
    cluster = production.one("aws:eks/cluster:Cluster").outputs
    assert rule["toPort"] == 5432
    assert rule["referencedSecurityGroupId"] == cluster["vpcConfig"]["clusterSecurityGroupId"]
    assert "cidrIpv4" not in rule


def test_the_database_security_group_has_no_other_ingress(production: ProgramRun) -> None:
    postgres = production.one(INSTANCE).inputs
    group_id = postgres["vpcSecurityGroupIds"][0]
    rules = production.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert [r.inputs["fromPort"] for r in rules if r.inputs["securityGroupId"] == group_id] == [
        5432
    ]


def test_dsns_are_exported_only_inside_kubernetes_secrets(production: ProgramRun) -> None:
    outputs = production.plain_stack_outputs()
    assert not any("postgresql://" in str(value) for value in outputs.values())
