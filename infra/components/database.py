"""RDS PostgreSQL 15: private, encrypted, backed up, reachable only from the cluster.

Two roles use the database (docs/contracts.md): the owner (the RDS
master user), which the migration Job uses to change the schema, and the
application role, subject to row-level security, which `enterprisehub migrate`
creates from the credentials in the application DSN. Both passwords are
generated here with pulumi_random rather than set by hand: nobody needs to know
them, they never appear in a shell history, they are stored only as secrets in
the encrypted stack state, and a rotation is one `pulumi up --replace`.

The parameter group sets ``rds.force_ssl=1``, so the server refuses any
connection without TLS; the DSNs say ``sslmode=verify-full`` with the RDS CA
bundle the image carries (``RDS_CA_BUNDLE``), so the services also refuse a
server whose certificate does not chain to RDS's CAs or name the endpoint
(``services.common.database.tls_from_dsn`` builds the context).

With ``deletion_protection`` the instance is also protected in Pulumi
(``protect``): RDS would refuse the delete only once the update is under way
(with an explicit identifier pulumi-aws deletes before it replaces), while a
protected resource stops the preview of any plan that deletes or replaces it
(a changed ``db_name``, ``username``, KMS key...).

The final snapshot's identifier carries a random suffix that changes whenever
the instance is replaced (its keepers are the inputs that force a
replacement): a replacement's snapshot never collides with the one an earlier
instance left. The instance's log groups are declared before it, so
that their retention is ours (RDS would create them never expiring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from infra.components.datastore_urls import postgres_dsn
from infra.components.final_snapshot import final_snapshot_identifier

# Alphanumeric passwords: RDS forbids '/', '@', '"' and spaces, and URL-special
# characters would need escaping in the DSNs. 32 characters are ~190 bits.
PASSWORD_LENGTH = 32
#: Where the image keeps the RDS CA bundle (Dockerfile, runtime stage).
RDS_CA_BUNDLE = "/app/certs/rds-global-bundle.pem"
#: What the DSNs ask for: TLS with the server's certificate and hostname checked.
TLS_QUERY = f"sslmode=verify-full&sslrootcert={RDS_CA_BUNDLE}"
LOG_RETENTION_DAYS = 90
LOG_EXPORTS = ("postgresql", "upgrade")


@dataclass(frozen=True, kw_only=True)
class DatabaseArgs:
    """Inputs of :class:`Database`."""

    network: DatastoreNetwork
    instance_class: pulumi.Input[str]
    engine_version: pulumi.Input[str]
    allocated_storage_gb: pulumi.Input[int]
    max_allocated_storage_gb: pulumi.Input[int]
    backup_retention_days: pulumi.Input[int]
    backup_window: pulumi.Input[str]
    maintenance_window: pulumi.Input[str]
    multi_az: pulumi.Input[bool]
    #: RDS deletion protection and Pulumi ``protect``: a plain value (an option).
    deletion_protection: bool
    #: Decides whether a KMS key exists, so it is a plain value.
    storage_encrypted: bool
    skip_final_snapshot: pulumi.Input[bool]
    performance_insights: bool
    performance_insights_retention_days: pulumi.Input[int]
    database_name: pulumi.Input[str]
    owner_username: pulumi.Input[str]
    #: The server's max_connections (the stack's connection budget is checked against it).
    max_connections: int
    #: The RDS DBInstanceIdentifier (explicit, so its log groups can be declared).
    identifier: str = "enterprisehub"
    app_username: pulumi.Input[str] = "enterprisehub_app"
    tags: Mapping[str, str] = field(default_factory=dict)


class Database(AwsComponent[DatabaseArgs]):
    """An RDS PostgreSQL 15 instance with its network, parameters, key and credentials."""

    component_type = "enterprisehub:aws:Database"

    address: pulumi.Output[str]
    port: pulumi.Output[int]
    instance_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    #: postgresql:// DSN of the owner role (migrations only); secret.
    owner_dsn: pulumi.Output[str]
    #: postgresql:// DSN of the application role (the services); secret.
    app_dsn: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)

        placement = datastore_placement(
            name,
            what="PostgreSQL",
            port=catalog.POSTGRES_PORT,
            subnet_group_type=aws.rds.SubnetGroup,
            network=args.network,
            # Protected as the store is: without it the kept data cannot be read.
            key=(
                self._encryption_key("RDS storage", protect=args.deletion_protection)
                if args.storage_encrypted
                else None
            ),
            tags=self._tags,
            parent=self,
        )
        parameters = self._parameter_group()
        owner_password = self._password("owner")
        app_password = self._password("app")
        log_groups = self._log_groups()
        final_snapshot = self._final_snapshot(placement.key)
        instance = self._instance(
            placement, parameters, owner_password, final_snapshot, depends_on=log_groups
        )

        self.address = instance.address
        self.port = instance.port
        self.instance_arn = instance.arn
        self.security_group_id = placement.security_group.id
        self.owner_dsn = self._dsn(args.owner_username, owner_password, instance)
        self.app_dsn = self._dsn(args.app_username, app_password, instance)
        self.register_outputs(
            {
                "address": self.address,
                "port": self.port,
                "owner_dsn": self.owner_dsn,
                "app_dsn": self.app_dsn,
            }
        )

    def _parameter_group(self) -> aws.rds.ParameterGroup:
        """PostgreSQL 15 parameters: TLS required, slow queries logged, max_connections."""
        return aws.rds.ParameterGroup(
            f"{self._name}-params",
            family="postgres15",
            description=f"{self._name}: TLS required, slow queries logged",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                # Statements slower than a second are logged for the slow-query review.
                aws.rds.ParameterGroupParameterArgs(
                    name="log_min_duration_statement", value="1000"
                ),
                # Explicit, so that the connection budget (infra/config_checks.py) is
                # checked against what the server allows. A static parameter: RDS
                # takes it at the instance's next reboot (docs/deploying.md).
                aws.rds.ParameterGroupParameterArgs(
                    name="max_connections",
                    value=str(self._args.max_connections),
                    apply_method="pending-reboot",
                ),
            ],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _password(self, role: str) -> random.RandomPassword:
        """The generated password ``<name>-<role>-password`` of one database role."""
        return random.RandomPassword(
            f"{self._name}-{role}-password",
            length=PASSWORD_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _log_groups(self) -> list[aws.cloudwatch.LogGroup]:
        """One log group per export, declared first so that retention is ours."""
        return [
            aws.cloudwatch.LogGroup(
                f"{self._name}-{export}-logs",
                name=f"/aws/rds/instance/{self._args.identifier}/{export}",
                retention_in_days=LOG_RETENTION_DAYS,
                tags=self._tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for export in LOG_EXPORTS
        ]

    def _final_snapshot(self, key: aws.kms.Key | None) -> pulumi.Output[str]:
        """The final snapshot's name, new whenever pulumi-aws would replace the instance."""
        args = self._args
        return final_snapshot_identifier(
            self._name,
            identifier=args.identifier,
            # What pulumi-aws replaces the instance for.
            keepers={
                "identifier": args.identifier,
                "engine": "postgres",
                "dbName": args.database_name,
                "username": args.owner_username,
                "storageEncrypted": str(args.storage_encrypted).lower(),
                "kmsKeyId": key.arn if key else "",
            },
            parent=self,
        )

    def _instance(
        self,
        placement: DatastorePlacement,
        parameters: aws.rds.ParameterGroup,
        owner_password: random.RandomPassword,
        final_snapshot: pulumi.Input[str],
        *,
        depends_on: Sequence[pulumi.Resource],
    ) -> aws.rds.Instance:
        """The RDS instance: private, encrypted with the store's key, backed up, protected."""
        args = self._args
        key = placement.key
        return aws.rds.Instance(
            f"{self._name}-postgres",
            identifier=args.identifier,
            engine="postgres",
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=args.storage_encrypted,
            kms_key_id=key.arn if key else None,
            db_name=args.database_name,
            username=args.owner_username,
            password=owner_password.result,
            port=catalog.POSTGRES_PORT,
            db_subnet_group_name=placement.subnet_group.name,
            vpc_security_group_ids=[placement.security_group.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            backup_window=args.backup_window,
            maintenance_window=args.maintenance_window,
            copy_tags_to_snapshot=True,
            # Automated backups outlive the instance; deleting them is a separate decision.
            delete_automated_backups=False,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=args.skip_final_snapshot,
            final_snapshot_identifier=final_snapshot,
            performance_insights_enabled=args.performance_insights,
            performance_insights_kms_key_id=key.arn if key and args.performance_insights else None,
            performance_insights_retention_period=(
                args.performance_insights_retention_days if args.performance_insights else None
            ),
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            iam_database_authentication_enabled=True,
            auto_minor_version_upgrade=True,
            # Changes wait for the maintenance window instead of restarting mid-day.
            apply_immediately=False,
            tags=self._tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                additional_secret_outputs=["password"],
                depends_on=list(depends_on),
                protect=args.deletion_protection,
            ),
        )

    def _dsn(
        self,
        username: pulumi.Input[str],
        password: random.RandomPassword,
        instance: aws.rds.Instance,
    ) -> pulumi.Output[str]:
        """The TLS-verifying postgresql:// DSN of one role (a secret)."""
        return postgres_dsn(
            username,
            password.result,
            instance.address,
            instance.port,
            self._args.database_name,
            query=TLS_QUERY,
        )
