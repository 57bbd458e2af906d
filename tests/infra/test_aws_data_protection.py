"""Where data lives, a plan that would delete or replace it stops at the preview.

Pulumi's ``protect`` makes the engine refuse any plan that deletes or
replaces a resource. RDS's own deletion protection only fails the delete once
the update is under way (pulumi-aws deletes before it replaces a resource with
an explicit name), ElastiCache has none, and a bucket that still holds objects
fails its delete after its replacement was created. ``protect`` is inherited
by children, so the settings resources under a bucket opt out explicitly.
The KMS key of a protected store is protected with it: deleting the key would
leave the kept data (and its final snapshot) unreadable after 30 days.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from infra.synth.mocks import ProgramRun

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
KEY = "aws:kms/key:Key"
PROTECTED = {
    "aws:rds/instance:Instance",
    GROUP,
    "aws:s3/bucket:Bucket",
    "aws:ecr/repository:Repository",
    KEY,
}


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_data_stores_and_only_they_are_protected(
    stack: str, stack_run: Callable[[str], ProgramRun]
) -> None:
    run = stack_run(stack)
    protected = sorted(r.type for r in run if r.protect)
    assert set(protected) == PROTECTED
    assert protected.count("aws:s3/bucket:Bucket") == 2
    # RDS, ElastiCache, S3 and ECR: each store's own key; not the cluster's secrets key.
    keys = {r.name for r in run.of_type(KEY) if r.protect}
    assert {name.rsplit("-", 2)[-2] for name in keys} == {
        "database",
        "cache",
        "storage",
        "registry",
    }
    assert not run.one(KEY, f"enterprisehub-{stack}-cluster-secrets-key").protect


def test_a_disposable_stack_protects_nothing(stack_run: Callable[[str], ProgramRun]) -> None:
    # dev: database.deletionProtection and cache.deletionProtection false, forceDestroy true.
    assert not [r.name for r in stack_run("dev") if r.protect]


def test_redis_leaves_a_final_snapshot_named_per_replacement(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    for stack in ("dev", "production"):
        run = stack_run(stack)
        group = run.one(GROUP).inputs
        assert re.fullmatch(
            rf"{group['replicationGroupId']}-final-[0-9a-f]{{8}}",
            group["finalSnapshotIdentifier"],
        )
        suffix = next(
            r
            for r in run.of_type("random:index/randomId:RandomId")
            if r.name.endswith("-cache-final-snapshot-suffix")
        )
        assert suffix.inputs["keepers"]["replicationGroupId"] == group["replicationGroupId"]
