"""Where a managed data store sits: private subnets, a cluster-only port, its own key.

RDS and ElastiCache are placed the same way: a subnet group over the private
subnets, the security group of `firewall` (the cluster's security group on the
store's port, nothing else) and, when the store encrypts at rest, the key the
component made for it (`AwsComponent._encryption_key`). The two components differ
only in the subnet group's resource type and in what they say about themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.firewall import cluster_only_security_group

SubnetGroup = aws.rds.SubnetGroup | aws.elasticache.SubnetGroup


@dataclass(frozen=True, kw_only=True)
class DatastoreNetwork:
    """Where a managed store sits and who may reach it (an input of both stores' Args)."""

    vpc_id: pulumi.Input[str]
    #: The private subnets the store's subnet group spans.
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    #: The only security group allowed to connect (the EKS cluster's).
    client_security_group_id: pulumi.Input[str]


@dataclass(frozen=True)
class DatastorePlacement:
    """The resources `datastore_placement` declares, for the store to reference."""

    #: None when the store does not encrypt at rest.
    key: aws.kms.Key | None
    subnet_group: SubnetGroup
    security_group: aws.ec2.SecurityGroup


def datastore_placement(
    name: str,
    *,
    what: str,
    port: int,
    subnet_group_type: type[SubnetGroup],
    network: DatastoreNetwork,
    key: aws.kms.Key | None,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> DatastorePlacement:
    """Declare ``<name>-subnets`` and ``<name>-sg``, and place the store with ``key``.

    ``what`` names the store's protocol in the security group's descriptions;
    ``key`` is None for a store that does not encrypt at rest.
    """
    subnet_group = subnet_group_type(
        f"{name}-subnets",
        description=f"{name}: private subnets",
        subnet_ids=network.subnet_ids,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    security_group = cluster_only_security_group(
        name,
        what=what,
        port=port,
        vpc_id=network.vpc_id,
        client_security_group_id=network.client_security_group_id,
        tags=tags,
        parent=parent,
    )
    return DatastorePlacement(key=key, subnet_group=subnet_group, security_group=security_group)
