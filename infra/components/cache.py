"""ElastiCache Redis 7: a replication group with failover, TLS, encryption and an auth token.

The parameter group carries the seed's Redis settings (``scripts/setup_redis_production.sh``):
``maxmemory-policy allkeys-lru``, ``notify-keyspace-events Ex`` (expired-key
events for session clean-up), ``slowlog-log-slower-than 10000`` and
``slowlog-max-len 128``. ``maxmemory`` itself is set by ElastiCache from the
node type and cannot be a parameter.

Redis holds the live feature-flag state, sessions and the churn queues, so the
group is never deleted without a final snapshot (its name carries a random
suffix renewed with the group, so a replacement's snapshot never collides with
an earlier one), and ``deletion_protection`` protects it in Pulumi
(``protect``): ElastiCache has no deletion protection of its own, and a
changed subnet group, port or at-rest key replaces the group.

The auth token is generated with pulumi_random: it is only ever read by the
program that writes it into the services' Secret, and a rotation is one
``pulumi up --replace``. Without transit encryption Redis would send it in
clear text, so it is only set together with TLS.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra import catalog
from infra.components.base import AwsComponent
from infra.components.datastore_placement import (
    DatastoreNetwork,
    DatastorePlacement,
    datastore_placement,
)
from infra.components.datastore_urls import redis_url
from infra.components.final_snapshot import final_snapshot_identifier

# ElastiCache accepts 16-128 printable characters without '@', '"' or '/';
# alphanumerics also need no escaping in the redis URL.
AUTH_TOKEN_LENGTH = 64

#: ElastiCache's ReplicationGroupId: 1-40 lowercase letters, digits and hyphens,
#: a letter first, no "--", no trailing hyphen (CreateReplicationGroup API).
REPLICATION_GROUP_ID_MAX = 40
_REPLICATION_GROUP_ID = re.compile(r"\A(?!.*--)[a-z][a-z0-9-]*(?<!-)\Z")


def replication_group_id(stem: str) -> str:
    """The replication group's id, derived from the stack's resource prefix.

    Explicit, never auto-named: pulumi-aws would append "-" and 7 random
    characters to the logical name and refuse anything over 40 characters
    (``enterprisehub-staging-cache-redis`` is 33). A stem too long for the limit
    keeps its first characters and gains a hash of the whole stem, so two long
    stack names sharing a prefix still get different ids.
    """
    candidate = re.sub(r"[^a-z0-9-]+", "-", stem.lower())
    candidate = re.sub(r"-{2,}", "-", candidate).strip("-")
    if len(candidate) > REPLICATION_GROUP_ID_MAX:
        digest = hashlib.sha256(stem.encode()).hexdigest()[:8]
        head = candidate[: REPLICATION_GROUP_ID_MAX - len(digest) - 1].rstrip("-")
        candidate = f"{head}-{digest}"
    validate_replication_group_id(candidate)
    return candidate


def validate_replication_group_id(value: str) -> str:
    """``value`` if ElastiCache accepts it as a ReplicationGroupId; else ValueError."""
    if len(value) > REPLICATION_GROUP_ID_MAX or not _REPLICATION_GROUP_ID.fullmatch(value):
        raise ValueError(
            f"replication group id {value!r} is invalid: 1-{REPLICATION_GROUP_ID_MAX} of "
            "a-z, 0-9 and '-', starting with a letter, without '--' or a trailing '-'"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class CacheArgs:
    """Inputs of :class:`Cache`."""

    #: The ElastiCache ReplicationGroupId (see :func:`replication_group_id`).
    replication_group_id: str
    network: DatastoreNetwork
    node_type: pulumi.Input[str]
    num_nodes: pulumi.Input[int]
    engine_version: pulumi.Input[str]
    automatic_failover: pulumi.Input[bool]
    multi_az: pulumi.Input[bool]
    #: Decides whether an auth token and the rediss:// scheme are used: plain value.
    transit_encryption: bool
    #: Decides whether a KMS key exists: plain value.
    at_rest_encryption: bool
    maxmemory_policy: pulumi.Input[str]
    notify_keyspace_events: pulumi.Input[str]
    slowlog_log_slower_than: pulumi.Input[int]
    slowlog_max_len: pulumi.Input[int]
    snapshot_retention_days: pulumi.Input[int]
    snapshot_window: pulumi.Input[str]
    maintenance_window: pulumi.Input[str]
    #: Pulumi ``protect`` on the replication group: a plain value (an option).
    deletion_protection: bool = True
    #: ROTATE or SET: how a changed auth token replaces the old one (CacheConfig).
    auth_token_update_strategy: pulumi.Input[str] = "ROTATE"  # noqa: S105 - a mode
    tags: Mapping[str, str] = field(default_factory=dict)


class Cache(AwsComponent[CacheArgs]):
    """A Redis 7 replication group with its subnet group, parameters, key and token."""

    component_type = "enterprisehub:aws:Cache"

    primary_endpoint: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    #: ``rediss://:token@host:6379/0`` (``redis://host:6379/0`` without TLS); secret.
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        validate_replication_group_id(args.replication_group_id)
        super().__init__(name, args, opts)

        placement = datastore_placement(
            name,
            what="Redis",
            port=catalog.REDIS_PORT,
            subnet_group_type=aws.elasticache.SubnetGroup,
            network=args.network,
            # Protected as the store is: without it the kept data cannot be read.
            key=(
                self._encryption_key("Redis at rest", protect=args.deletion_protection)
                if args.at_rest_encryption
                else None
            ),
            tags=self._tags,
            parent=self,
        )
        parameters = self._parameter_group()
        token = self._auth_token()
        final_snapshot = self._final_snapshot(placement)
        group = self._replication_group(placement, parameters, token, final_snapshot)

        self.primary_endpoint = group.primary_endpoint_address
        self.security_group_id = placement.security_group.id
        self.url = redis_url(
            group.primary_endpoint_address,
            catalog.REDIS_PORT,
            password=token.result if token is not None else None,
            tls=args.transit_encryption,
        )
        self.register_outputs({"primary_endpoint": self.primary_endpoint, "url": self.url})

    def _parameter_group(self) -> aws.elasticache.ParameterGroup:
        """Redis 7 parameters: eviction policy, keyspace events and the slow log."""
        args = self._args
        return aws.elasticache.ParameterGroup(
            f"{self._name}-params",
            family="redis7",
            description=f"{self._name}: eviction, keyspace events and slow log",
            parameters=[
                aws.elasticache.ParameterGroupParameterArgs(
                    name="maxmemory-policy", value=args.maxmemory_policy
                ),
                aws.elasticache.ParameterGroupParameterArgs(
                    name="notify-keyspace-events", value=args.notify_keyspace_events
                ),
                aws.elasticache.ParameterGroupParameterArgs(
                    name="slowlog-log-slower-than",
                    value=pulumi.Output.from_input(args.slowlog_log_slower_than).apply(str),
                ),
                aws.elasticache.ParameterGroupParameterArgs(
                    name="slowlog-max-len",
                    value=pulumi.Output.from_input(args.slowlog_max_len).apply(str),
                ),
            ],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _auth_token(self) -> random.RandomPassword | None:
        """The AUTH token; None without transit encryption (Redis sends it only over TLS)."""
        if not self._args.transit_encryption:
            return None
        return random.RandomPassword(
            f"{self._name}-auth-token",
            length=AUTH_TOKEN_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _final_snapshot(self, placement: DatastorePlacement) -> pulumi.Output[str]:
        """The final snapshot's name, new whenever pulumi-aws would replace the group."""
        args = self._args
        key = placement.key
        return final_snapshot_identifier(
            self._name,
            identifier=args.replication_group_id,
            # What pulumi-aws replaces the group for.
            keepers={
                "replicationGroupId": args.replication_group_id,
                "engine": "redis",
                "port": str(catalog.REDIS_PORT),
                "subnetGroupName": placement.subnet_group.name,
                "atRestEncryptionEnabled": str(args.at_rest_encryption).lower(),
                "kmsKeyId": key.arn if key else "",
            },
            parent=self,
        )

    def _replication_group(
        self,
        placement: DatastorePlacement,
        parameters: aws.elasticache.ParameterGroup,
        token: random.RandomPassword | None,
        final_snapshot: pulumi.Input[str],
    ) -> aws.elasticache.ReplicationGroup:
        """The replication group: private, encrypted as configured, snapshotted, protected."""
        args = self._args
        key = placement.key
        return aws.elasticache.ReplicationGroup(
            f"{self._name}-redis",
            replication_group_id=args.replication_group_id,
            description=f"{self._name}: sessions, pub/sub, feature flags",
            engine="redis",
            engine_version=args.engine_version,
            node_type=args.node_type,
            num_cache_clusters=args.num_nodes,
            automatic_failover_enabled=args.automatic_failover,
            multi_az_enabled=args.multi_az,
            transit_encryption_enabled=args.transit_encryption,
            at_rest_encryption_enabled=args.at_rest_encryption,
            kms_key_id=key.arn if key else None,
            auth_token=token.result if token else None,
            # Sent with a changed token (or a changed strategy); not at create.
            auth_token_update_strategy=args.auth_token_update_strategy if token else None,
            port=catalog.REDIS_PORT,
            parameter_group_name=parameters.name,
            subnet_group_name=placement.subnet_group.name,
            security_group_ids=[placement.security_group.id],
            snapshot_retention_limit=args.snapshot_retention_days,
            final_snapshot_identifier=final_snapshot,
            snapshot_window=args.snapshot_window,
            maintenance_window=args.maintenance_window,
            auto_minor_version_upgrade=True,
            apply_immediately=False,
            tags=self._tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                additional_secret_outputs=["auth_token"],
                protect=args.deletion_protection,
            ),
        )
