"""Security groups of the managed data stores: reachable from the cluster only.

RDS and ElastiCache sit in private subnets and accept exactly one source: the
EKS cluster's security group, on the store's own port. No CIDR rule exists, so
nothing else in the VPC (or peered to it) can connect even if routing allows.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws


def cluster_only_security_group(
    name: str,
    *,
    what: str,
    port: int,
    vpc_id: pulumi.Input[str],
    client_security_group_id: pulumi.Input[str],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> aws.ec2.SecurityGroup:
    """A security group ``<name>-sg`` admitting ``what`` on ``port`` from the cluster only."""
    security_group = aws.ec2.SecurityGroup(
        f"{name}-sg",
        description=f"{name}: {what} from the cluster only",
        vpc_id=vpc_id,
        tags={**tags, "Name": f"{name}-sg"},
        opts=pulumi.ResourceOptions(parent=parent),
    )
    aws.vpc.SecurityGroupIngressRule(
        f"{name}-from-cluster",
        security_group_id=security_group.id,
        referenced_security_group_id=client_security_group_id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=f"{what} from the EKS cluster security group",
        opts=pulumi.ResourceOptions(parent=security_group),
    )
    return security_group
