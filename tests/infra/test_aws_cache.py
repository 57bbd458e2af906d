"""ElastiCache Redis as declared for the production stack (recorded under the mocks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.synth.mocks import ProgramRun, Secret

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


@pytest.fixture(scope="module")
def redis(production: ProgramRun) -> dict[str, Any]:
    return production.one(GROUP).inputs


def test_redis_7_with_three_nodes(redis: dict[str, Any]) -> None:
    assert redis["engine"] == "redis"
    assert redis["engineVersion"].startswith("7")
    assert redis["numCacheClusters"] == 3


def test_failover_is_automatic_across_zones(redis: dict[str, Any]) -> None:
    assert redis["automaticFailoverEnabled"] is True
    assert redis["multiAzEnabled"] is True


def test_traffic_and_data_are_encrypted(redis: dict[str, Any]) -> None:
    assert redis["transitEncryptionEnabled"] is True
    assert redis["atRestEncryptionEnabled"] is True
    assert redis["kmsKeyId"].startswith("arn:aws:kms:")


def test_auth_token_is_generated_and_secret(production: ProgramRun) -> None:
    assert isinstance(production.one(GROUP).raw_inputs["authToken"], Secret)


def test_parameter_group_carries_the_seed_settings(production: ProgramRun) -> None:
    group = production.one("aws:elasticache/parameterGroup:ParameterGroup").inputs
    assert group["family"] == "redis7"
    assert {p["name"]: p["value"] for p in group["parameters"]} == {
        "maxmemory-policy": "allkeys-lru",
        "notify-keyspace-events": "Ex",
        "slowlog-log-slower-than": "10000",
        "slowlog-max-len": "128",
    }


def test_only_the_cluster_security_group_reaches_port_6379(production: ProgramRun) -> None:
    rules = production.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    redis_rule = next(r.inputs for r in rules if r.inputs["fromPort"] == 6379)
    cluster = production.one("aws:eks/cluster:Cluster").outputs
    assert (
        redis_rule["referencedSecurityGroupId"] == (cluster["vpcConfig"]["clusterSecurityGroupId"])
    )


def test_dev_keeps_tls_and_auth_with_two_nodes(stack_run: Callable[[str], ProgramRun]) -> None:
    redis = stack_run("dev").one(GROUP).inputs
    assert redis["numCacheClusters"] == 2
    assert redis["transitEncryptionEnabled"] is True
    assert "authToken" in redis
