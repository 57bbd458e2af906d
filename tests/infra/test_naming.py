"""Provider-faithful physical names: the synthesis fails where `pulumi preview` would.

The rules live in `infra.synth.naming.RULES`; these tests check the table
itself, the error a program gets for a name AWS or pulumi-aws would reject,
and that every stack's names pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pulumi
import pulumi_aws as aws
import pytest

from infra.components.cache import replication_group_id, validate_replication_group_id
from infra.stackfiles import STACKS
from infra.synth.mocks import ProgramRun
from infra.synth.naming import (
    RANDOM_SUFFIX_LENGTH,
    RULES,
    PhysicalNameError,
    auto_name,
    check,
    check_text,
)

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


@pytest.mark.parametrize("stack", STACKS)
def test_every_declared_aws_type_has_a_naming_rule(
    stack: str, stack_run: Callable[[str], ProgramRun]
) -> None:
    declared = {r.type for r in stack_run(stack) if r.type.startswith("aws:")}
    assert not declared - set(RULES), "add these types to infra/synth/naming.py RULES"


def test_every_rule_says_where_its_limit_comes_from() -> None:
    for type_token, rule in RULES.items():
        assert rule.source, type_token
        if rule.field is not None:
            assert rule.max_length >= rule.min_length >= 1, type_token
            assert rule.allowed, type_token
            re.compile(rule.pattern)


@pytest.mark.parametrize(
    ("logical", "fails"),
    [
        # Today's staging and production logical names (41 and 44 characters).
        ("enterprisehub-staging-cache-redis", True),
        ("enterprisehub-production-cache-redis", True),
        ("enterprisehub-dev-cache-redis", False),
        ("a" * (40 - 1 - RANDOM_SUFFIX_LENGTH), False),
        ("a" * (40 - RANDOM_SUFFIX_LENGTH), True),
    ],
)
def test_an_auto_named_replication_group_is_checked_against_40(logical: str, fails: bool) -> None:
    violation = check(GROUP, logical, {"description": "x"})
    assert (violation is not None) is fails
    if violation is not None:
        message = violation.render()
        assert logical in message
        assert "40" in message
        assert "replicationGroupId" in message


def test_the_program_fails_naming_the_resource_the_limit_and_the_fix(
    run_mocked: Callable[..., ProgramRun],
) -> None:
    def program() -> None:
        aws.elasticache.ReplicationGroup(
            "enterprisehub-production-cache-redis", description="d", node_type="cache.t4g.small"
        )
        aws.iam.Role("r", name="x" * 65, assume_role_policy="{}")
        aws.s3.Bucket("b", bucket="Not_A_Bucket")

    with pytest.raises(PhysicalNameError) as caught:
        run_mocked(program)
    message = str(caught.value)
    assert len(caught.value.violations) == 3
    assert "enterprisehub-production-cache-redis" in message
    assert "limit of 40" in message
    assert "set replicationGroupId explicitly" in message
    assert "aws:iam/role:Role 'r'" in message
    assert "1-64" in message
    assert "Not_A_Bucket" in message


def test_auto_names_come_out_as_the_provider_makes_them(
    run_mocked: Callable[..., ProgramRun],
) -> None:
    def program() -> None:
        group = aws.rds.ParameterGroup("Mixed-Case-Params", family="postgres15")
        pulumi.export("name", group.name)

    name = run_mocked(program).plain_stack_outputs()["name"]
    assert re.fullmatch(r"mixed-case-params-[0-9a-f]{7}", name)
    assert auto_name(RULES["aws:iam/role:Role"], "Role", "abcdef0123") == "Role-abcdef0"


@pytest.mark.parametrize(
    ("type_token", "inputs", "ok"),
    [
        ("aws:rds/instance:Instance", {"finalSnapshotIdentifier": "x"}, True),
        ("aws:rds/instance:Instance", {"identifier": "db--1"}, False),
        ("aws:rds/instance:Instance", {"identifier": "1db"}, False),
        ("aws:kms/alias:Alias", {"name": "alias/aws/s3"}, False),
        ("aws:kms/alias:Alias", {"name": "alias/enterprisehub-dev-key"}, True),
        ("aws:ecr/repository:Repository", {"name": "enterprisehub-dev"}, True),
        ("aws:ecr/repository:Repository", {"name": "UPPER"}, False),
        ("aws:eks/cluster:Cluster", {"name": "c" * 101}, False),
        ("aws:sqs/queue:Queue", {"name": "q" * 81}, False),
        ("aws:cloudwatch/eventRule:EventRule", {"name": "rule:colon"}, False),
        ("aws:ec2/securityGroup:SecurityGroup", {"name": "sg-looks-like-an-id"}, False),
    ],
)
def test_explicit_names(type_token: str, inputs: dict[str, str], ok: bool) -> None:
    assert (check(type_token, "logical", inputs) is None) is ok


@pytest.mark.parametrize("stack", STACKS)
def test_the_cache_id_is_explicit_and_valid(
    stack: str, stack_run: Callable[[str], ProgramRun]
) -> None:
    groups = stack_run(stack).of_type(GROUP)
    for group in groups:
        value = group.inputs["replicationGroupId"]
        assert value == f"enterprisehub-{stack}"
        validate_replication_group_id(value)


@pytest.mark.parametrize(
    "stem",
    [
        "enterprisehub-production",
        "enterprisehub-Feature_Branch.42",
        "enterprisehub-" + "very-long-stack-name-" * 4,
        "enterprisehub--x-",
    ],
)
def test_derived_cache_ids_are_always_valid(stem: str) -> None:
    value = replication_group_id(stem)
    assert validate_replication_group_id(value) == value
    assert len(value) <= 40


def test_long_stems_sharing_a_prefix_get_different_ids() -> None:
    base = "enterprisehub-" + "x" * 40
    assert replication_group_id(base + "-a") != replication_group_id(base + "-b")


@pytest.mark.parametrize("bad", ["", "1abc", "a--b", "abc-", "Abc", "a" * 41, "a_b"])
def test_invalid_cache_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="replication group id"):
        validate_replication_group_id(bad)


@pytest.mark.parametrize(
    ("description", "ok"),
    [
        ("Kubernetes API from the deployer network 10.40.0.0/16", True),
        ("PostgreSQL from the EKS cluster security group", True),
        ("x" * 255, True),
        # EC2: "Invalid rule description. Valid descriptions are strings less than 256
        # characters from the following set: a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*".
        ("Kubernetes API from the deployer's network 10.40.0.0/16", False),
        ("auth -> registry", False),
        ("caf\u00e9", False),
        ("x" * 256, False),
    ],
)
def test_security_group_descriptions_use_ec2s_character_set(description: str, ok: bool) -> None:
    for type_token in (
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    ):
        violations = check_text(type_token, "logical", {"description": description})
        assert (not violations) is ok, type_token


def test_a_description_ec2_refuses_fails_the_synthesis(
    run_mocked: Callable[..., ProgramRun],
) -> None:
    def program() -> None:
        aws.vpc.SecurityGroupIngressRule(
            "rule",
            security_group_id="sg-0123456789abcdef0",
            cidr_ipv4="10.0.0.0/16",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="from the deployer's network",
        )

    with pytest.raises(PhysicalNameError) as caught:
        run_mocked(program)
    assert "SecurityGroupIngressRule 'rule': description" in str(caught.value)
    assert "no apostrophe" in str(caught.value)
