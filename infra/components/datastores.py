"""In-cluster PostgreSQL 15, Redis 7 and S3-compatible storage (MinIO) for the local stack.

The AWS stacks use RDS, ElastiCache and S3; ``local`` runs the same engines as
StatefulSets with persistent volumes so a laptop cluster behaves like the real
thing (row-level security, keyspace notifications, S3 API) without AWS.

The official images run as fixed users, and the hardened security contexts
use exactly those: postgres uid/gid 999 and redis uid/gid 999 (the users the
Debian-based images create), MinIO uid/gid 1000 (MinIO's documented non-root
user). ``fsGroup`` makes each data volume writable by that group. These uids
are below 10000, which checkov's CKV_K8S_40 flags; the StatefulSets carry a
per-object skip with that reason (they never run in the cloud stacks).

Passwords are generated (``pulumi_random``), stored in Kubernetes Secrets and
returned as secret Outputs: the DSNs the services' and Jobs' Secrets need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import catalog
from infra.components import hardening
from infra.components.base import Component
from infra.components.datastore_urls import postgres_dsn, redis_url

POSTGRES_UID: Final = 999
REDIS_UID: Final = 999
MINIO_UID: Final = 1000
MINIO_PORT: Final = 9000
#: MinIO creates its certificate directory at start; /tmp is the pod's private emptyDir.
_MINIO_CERTS_DIR: Final = "/tmp/certs"  # noqa: S108

#: Exact upstream tags (digests cannot be resolved offline; override with digests in Args).
POSTGRES_IMAGE: Final = "docker.io/library/postgres:15.10-bookworm"
#: The Redis OSS line the AWS stacks' ElastiCache runs, so local hides no
#: incompatibility: ElastiCache's engine 7.1 (``cache.engineVersion``) "is
#: compatible with Redis OSS v7.0" (ElastiCache, "Supported engine versions");
#: upstream Redis has no 7.1, and 7.0.15 is the last 7.0 release.
REDIS_IMAGE: Final = "docker.io/library/redis:7.0.15-bookworm"
MINIO_IMAGE: Final = "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"

#: Owner role (runs migrations, owns the tables) and the application role the
#: services use, which ``enterprisehub migrate`` creates and which is subject to RLS.
OWNER_ROLE: Final = "enterprisehub_owner"
APP_ROLE: Final = "enterprisehub_app"

_LOCAL_ONLY_SKIPS: Final = {
    "checkov.io/skip1": "CKV_K8S_40=the official image runs as this fixed uid; local stack only",
    "checkov.io/skip2": "CKV_K8S_43=upstream tag pinned exactly; local stack only",
    "checkov.io/skip3": "CKV_K8S_15=an exact upstream tag does not move; a laptop may be offline",
    "checkov.io/skip4": "CKV_K8S_35=the official images read credentials from the environment",
}

#: Creates the buckets if missing (idempotent); runs in the project image, which has boto3.
_BUCKET_SCRIPT: Final = """
import os, boto3, botocore
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
for bucket in os.environ["BUCKETS"].split(","):
    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket)
        print("created", bucket)
"""


@dataclass(frozen=True, kw_only=True)
class DatastoresArgs:
    """Inputs of :class:`Datastores`."""

    namespace: pulumi.Input[str]
    #: The project image (boto3) for the bucket-creation Job.
    tools_image: pulumi.Input[str]
    #: Buckets to create in MinIO (the stack's MEDIA_BUCKET and MODELS_BUCKET).
    buckets: Sequence[str]
    database_name: str = "enterprisehub"
    #: None uses the cluster's default StorageClass.
    storage_class: str | None = None
    postgres_storage: str = "10Gi"
    redis_storage: str = "1Gi"
    #: Redis's own memory ceiling; past it ``maxmemory_policy`` evicts keys. The
    #: container's memory limit is sized above it (see :func:`redis_memory_limit`).
    redis_maxmemory_mb: int = 256
    redis_maxmemory_policy: str = "allkeys-lru"
    #: The rest of the stack's ``cache`` parameters, as the ElastiCache parameter group sets them.
    redis_notify_keyspace_events: str = "Ex"
    redis_slowlog_log_slower_than: int = 10000
    redis_slowlog_max_len: int = 128
    object_storage: str = "10Gi"
    #: The server's max_connections (the stack's connection budget is checked against it).
    postgres_max_connections: int = 100
    postgres_image: str = POSTGRES_IMAGE
    redis_image: str = REDIS_IMAGE
    minio_image: str = MINIO_IMAGE
    resources: Mapping[str, catalog.Resources] = field(
        default_factory=lambda: {
            "postgres": catalog.Resources(cpu="500m", memory="1Gi"),
            # The memory of "redis" follows redis_maxmemory_mb (redis_memory_limit).
            "redis": catalog.Resources(cpu="250m", memory="512Mi"),
            "minio": catalog.Resources(cpu="250m", memory="512Mi"),
        }
    )


def minio_endpoint(namespace: str) -> str:
    """S3_ENDPOINT_URL of the in-cluster MinIO: plain HTTP, inside the cluster only."""
    return f"http://{catalog.service_host('minio', namespace)}:{MINIO_PORT}"


def redis_memory_limit(maxmemory_mb: int) -> str:
    """The Redis container's memory: the data ceiling plus room for what it does not count.

    ``maxmemory`` covers the dataset only; the replication and client buffers,
    the AOF rewrite's copy-on-write pages and the allocator's fragmentation
    come on top. A quarter more (at least 64 MiB) keeps the kernel's OOM killer
    out of the way, so eviction, not a restart, is what happens when it fills.
    """
    return f"{maxmemory_mb + max(64, maxmemory_mb // 4)}Mi"


class Datastores(Component[DatastoresArgs]):
    """PostgreSQL, Redis and MinIO StatefulSets with their Services and Secrets."""

    component_type = "enterprisehub:k8s:Datastores"

    #: Owner-role DSN (MIGRATION_DATABASE_URL).
    migration_database_url: pulumi.Output[str]
    #: Application-role DSN (DATABASE_URL); the role is created by ``enterprisehub migrate``.
    database_url: pulumi.Output[str]
    #: The application role's password, for the migration that creates the role.
    app_password: pulumi.Output[str]
    redis_url: pulumi.Output[str]
    #: S3_ENDPOINT_URL for the services (plain).
    s3_endpoint_url: pulumi.Output[str]
    s3_access_key_id: pulumi.Output[str]
    s3_secret_access_key: pulumi.Output[str]
    #: What the Jobs and services must wait for.
    ready: list[pulumi.Resource]

    def __init__(
        self, name: str, args: DatastoresArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        namespace = pulumi.Output.from_input(args.namespace)

        def host(service: str) -> pulumi.Output[str]:
            return namespace.apply(lambda ns: catalog.service_host(service, ns))

        owner_pw = self._password("postgres-owner")
        app_pw = self._password("postgres-app")
        minio_user = self._password("minio-user", length=20)
        minio_pw = self._password("minio")
        postgres = self._postgres(owner_pw)
        redis, redis_pw = self._redis()
        minio = self._minio(minio_user, minio_pw)

        s3_endpoint = namespace.apply(minio_endpoint)
        buckets = self._bucket_job(args, s3_endpoint, minio_user, minio_pw, minio)

        def dsn(user: str, password: pulumi.Input[str]) -> pulumi.Output[str]:
            return postgres_dsn(
                user, password, host("postgres"), catalog.POSTGRES_PORT, args.database_name
            )

        self.migration_database_url = dsn(OWNER_ROLE, owner_pw)
        self.database_url = dsn(APP_ROLE, app_pw)
        self.app_password = pulumi.Output.secret(app_pw)
        self.redis_url = redis_url(host("redis"), catalog.REDIS_PORT, password=redis_pw, tls=False)
        self.s3_endpoint_url = s3_endpoint
        self.s3_access_key_id = pulumi.Output.secret(minio_user)
        self.s3_secret_access_key = pulumi.Output.secret(minio_pw)
        self.ready = [postgres, redis, minio, buckets]
        self.register_outputs(
            {
                "migration_database_url": self.migration_database_url,
                "database_url": self.database_url,
                "redis_url": self.redis_url,
                "s3_endpoint_url": self.s3_endpoint_url,
                "s3_access_key_id": self.s3_access_key_id,
                "s3_secret_access_key": self.s3_secret_access_key,
            }
        )

    def _postgres(self, owner_pw: pulumi.Output[str]) -> k8s.apps.v1.StatefulSet:
        """PostgreSQL 15 with the owner role; ``enterprisehub migrate`` adds the app role."""
        args = self._args
        secret = self._secret(
            "postgres", {"POSTGRES_USER": OWNER_ROLE, "POSTGRES_PASSWORD": owner_pw}
        )
        return self._statefulset(
            "postgres",
            image=args.postgres_image,
            uid=POSTGRES_UID,
            port=catalog.POSTGRES_PORT,
            data_path="/var/lib/postgresql/data",
            storage=args.postgres_storage,
            env=[
                k8s.core.v1.EnvVarArgs(name="POSTGRES_DB", value=args.database_name),
                # A subdirectory: the volume's root holds lost+found, which initdb refuses.
                k8s.core.v1.EnvVarArgs(name="PGDATA", value="/var/lib/postgresql/data/pgdata"),
            ],
            env_from_secret=secret.metadata.name,
            extra_writable={"run": "/var/run/postgresql"},
            # Arguments of the image's entrypoint, which still initialises the database.
            args=["postgres", "-c", f"max_connections={args.postgres_max_connections}"],
            probe_exec=[
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-U",
                OWNER_ROLE,
                "-d",
                args.database_name,
            ],
        )

    def _redis(self) -> tuple[k8s.apps.v1.StatefulSet, pulumi.Output[str]]:
        """Redis 7 with a password, a memory ceiling that evicts, and keyspace events."""
        args = self._args
        password = self._password("redis")
        conf: pulumi.Output[str] = password.apply(
            lambda pw: "\n".join(
                [
                    f"requirepass {pw}",
                    "dir /data",
                    "appendonly yes",
                    # Without a ceiling the policy never applies: Redis grows until the
                    # kernel kills it at the container's limit. With one it evicts.
                    f"maxmemory {args.redis_maxmemory_mb}mb",
                    # Parity with the ElastiCache parameter group of the AWS stacks.
                    f"maxmemory-policy {args.redis_maxmemory_policy}",
                    f"notify-keyspace-events {args.redis_notify_keyspace_events}",
                    f"slowlog-log-slower-than {args.redis_slowlog_log_slower_than}",
                    f"slowlog-max-len {args.redis_slowlog_max_len}",
                    "",
                ]
            )
        )
        secret = self._secret("redis", {"redis.conf": conf, "REDISCLI_AUTH": password})
        statefulset = self._statefulset(
            "redis",
            image=args.redis_image,
            uid=REDIS_UID,
            port=catalog.REDIS_PORT,
            data_path="/data",
            storage=args.redis_storage,
            command=["redis-server", "/etc/redis/redis.conf"],
            env=[
                k8s.core.v1.EnvVarArgs(
                    name="REDISCLI_AUTH",
                    value_from=k8s.core.v1.EnvVarSourceArgs(
                        secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                            name=secret.metadata.name, key="REDISCLI_AUTH"
                        )
                    ),
                )
            ],
            config_secret=(secret.metadata.name, "redis.conf", "/etc/redis"),
            probe_exec=["sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q PONG"],
        )
        return statefulset, password

    def _minio(
        self, user: pulumi.Output[str], password: pulumi.Output[str]
    ) -> k8s.apps.v1.StatefulSet:
        """MinIO: the S3 API the services and the model publisher use locally."""
        args = self._args
        secret = self._secret("minio", {"MINIO_ROOT_USER": user, "MINIO_ROOT_PASSWORD": password})
        return self._statefulset(
            "minio",
            image=args.minio_image,
            uid=MINIO_UID,
            port=MINIO_PORT,
            data_path="/data",
            storage=args.object_storage,
            command=[
                "minio",
                "server",
                "/data",
                "--address",
                f":{MINIO_PORT}",
                "--certs-dir",
                _MINIO_CERTS_DIR,
            ],
            env=[k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")],  # noqa: S108
            env_from_secret=secret.metadata.name,
            probe_http=("/minio/health/live", "/minio/health/ready"),
        )

    def _password(self, purpose: str, length: int = 32) -> pulumi.Output[str]:
        # Alphanumeric only: the values go into URLs and a config file unescaped.
        return random.RandomPassword(
            f"{self._name}-{purpose}-password",
            length=length,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        ).result

    def _secret(self, store: str, values: Mapping[str, pulumi.Input[str]]) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-{store}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"{store}-credentials",
                namespace=self._args.namespace,
                labels=hardening.labels(store, hardening.COMPONENT_DATASTORE),
            ),
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in values.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _statefulset(
        self,
        store: str,
        *,
        image: str,
        uid: int,
        port: int,
        data_path: str,
        storage: str,
        command: Sequence[str] | None = None,
        args: Sequence[str] | None = None,
        env: Sequence[k8s.core.v1.EnvVarArgs] = (),
        env_from_secret: pulumi.Input[str] | None = None,
        extra_writable: Mapping[str, str] | None = None,
        config_secret: tuple[pulumi.Input[str], str, str] | None = None,
        probe_exec: Sequence[str] | None = None,
        probe_http: tuple[str, str] | None = None,
    ) -> k8s.apps.v1.StatefulSet:
        """One single-replica StatefulSet with a PVC template, plus its headless Service."""
        volumes, mounts = _volumes(data_path, extra_writable, config_secret)
        startup, liveness, readiness = _probes(port, probe_exec, probe_http)
        sizes = self._sizes(store)
        container = k8s.core.v1.ContainerArgs(
            name=store,
            image=image,
            image_pull_policy="IfNotPresent",
            command=list(command) if command else None,
            args=list(args) if args else None,
            ports=[k8s.core.v1.ContainerPortArgs(name="tcp", container_port=port)],
            env=list(env) or None,
            env_from=(
                [
                    k8s.core.v1.EnvFromSourceArgs(
                        secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=env_from_secret)
                    )
                ]
                if env_from_secret is not None
                else None
            ),
            startup_probe=startup,
            liveness_probe=liveness,
            readiness_probe=readiness,
            resources=hardening.resources(sizes.cpu, sizes.memory),
            security_context=hardening.container_security_context(uid=uid),
            volume_mounts=mounts,
        )
        service = self._headless_service(store, port)
        pod = k8s.core.v1.PodSpecArgs(
            automount_service_account_token=False,
            security_context=hardening.pod_security_context(uid=uid),
            containers=[container],
            volumes=volumes,
        )
        return self._statefulset_with_claim(store, service, pod, storage)

    def _sizes(self, store: str) -> catalog.Resources:
        """The store's requests and limits; Redis's memory follows its maxmemory."""
        args = self._args
        sizes = args.resources[store]
        if store == "redis":
            sizes = catalog.Resources(
                cpu=sizes.cpu, memory=redis_memory_limit(args.redis_maxmemory_mb)
            )
        return sizes

    def _headless_service(self, store: str, port: int) -> k8s.core.v1.Service:
        """Headless: one stable DNS name per pod, no virtual IP needed for one replica."""
        return k8s.core.v1.Service(
            f"{self._name}-{store}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=store,
                namespace=self._args.namespace,
                labels=hardening.labels(store, hardening.COMPONENT_DATASTORE),
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None",
                selector=hardening.selector_labels(store),
                ports=[k8s.core.v1.ServicePortArgs(name="tcp", port=port, target_port=port)],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _statefulset_with_claim(
        self,
        store: str,
        service: k8s.core.v1.Service,
        pod: k8s.core.v1.PodSpecArgs,
        storage: str,
    ) -> k8s.apps.v1.StatefulSet:
        """The StatefulSet of ``pod``: one replica and a ``data`` volume claim of ``storage``."""
        args = self._args
        labels = hardening.labels(store, hardening.COMPONENT_DATASTORE)
        return k8s.apps.v1.StatefulSet(
            f"{self._name}-{store}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=store,
                namespace=args.namespace,
                labels=labels,
                annotations=_LOCAL_ONLY_SKIPS,
            ),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name=service.metadata.name,
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels=hardening.selector_labels(store)
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels), spec=pod
                ),
                volume_claim_templates=[
                    k8s.core.v1.PersistentVolumeClaimArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(name="data", labels=labels),
                        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                            access_modes=["ReadWriteOnce"],
                            storage_class_name=args.storage_class,
                            resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                                requests={"storage": storage}
                            ),
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _bucket_job(
        self,
        args: DatastoresArgs,
        endpoint: pulumi.Output[str],
        access_key: pulumi.Input[str],
        secret_key: pulumi.Input[str],
        minio: pulumi.Resource,
    ) -> k8s.batch.v1.Job:
        """Create the buckets (idempotent) once MinIO is ready."""
        secret = self._secret(
            "bucket-init",
            {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
        )
        labels = hardening.labels("bucket-init", hardening.COMPONENT_JOB)
        buckets = ",".join(args.buckets)
        return k8s.batch.v1.Job(
            f"{self._name}-bucket-init",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=hardening.hashed_name("bucket-init", args.tools_image, buckets),
                namespace=args.namespace,
                labels=labels,
                annotations=hardening.SECRET_ENV_SKIP,
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=4,
                active_deadline_seconds=300,
                ttl_seconds_after_finished=7 * 24 * 3600,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="Never",
                        automount_service_account_token=False,
                        security_context=hardening.pod_security_context(),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="bucket-init",
                                image=args.tools_image,
                                image_pull_policy="IfNotPresent",
                                command=["python", "-c", _BUCKET_SCRIPT],
                                env=[
                                    k8s.core.v1.EnvVarArgs(name="S3_ENDPOINT_URL", value=endpoint),
                                    k8s.core.v1.EnvVarArgs(name="BUCKETS", value=buckets),
                                    k8s.core.v1.EnvVarArgs(name="AWS_REGION", value="us-east-1"),
                                    k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),  # noqa: S108
                                ],
                                env_from=[
                                    k8s.core.v1.EnvFromSourceArgs(
                                        secret_ref=k8s.core.v1.SecretEnvSourceArgs(
                                            name=secret.metadata.name
                                        )
                                    )
                                ],
                                resources=hardening.resources("100m", "256Mi"),
                                security_context=hardening.container_security_context(),
                                volume_mounts=[hardening.tmp_mount()],
                            )
                        ],
                        volumes=[hardening.tmp_volume()],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[minio]),
        )


def _volumes(
    data_path: str,
    extra_writable: Mapping[str, str] | None,
    config_secret: tuple[pulumi.Input[str], str, str] | None,
) -> tuple[list[k8s.core.v1.VolumeArgs], list[k8s.core.v1.VolumeMountArgs]]:
    """(volumes, mounts): /tmp, the data claim, small writable dirs, a read-only config file."""
    volumes = [hardening.tmp_volume()]
    mounts = [
        hardening.tmp_mount(),
        k8s.core.v1.VolumeMountArgs(name="data", mount_path=data_path),
    ]
    for volume, path in (extra_writable or {}).items():
        volumes.append(hardening.tmp_volume(volume, "64Mi"))
        mounts.append(hardening.tmp_mount(volume, path))
    if config_secret is not None:
        secret_name, key, path = config_secret
        volumes.append(
            k8s.core.v1.VolumeArgs(
                name="config",
                secret=k8s.core.v1.SecretVolumeSourceArgs(
                    secret_name=secret_name,
                    items=[k8s.core.v1.KeyToPathArgs(key=key, path=key)],
                    default_mode=0o440,
                ),
            )
        )
        mounts.append(k8s.core.v1.VolumeMountArgs(name="config", mount_path=path, read_only=True))
    return volumes, mounts


def _probes(
    port: int, probe_exec: Sequence[str] | None, probe_http: tuple[str, str] | None
) -> tuple[k8s.core.v1.ProbeArgs, k8s.core.v1.ProbeArgs, k8s.core.v1.ProbeArgs]:
    """(startup, liveness, readiness): HTTP (liveness, readiness paths) or the command."""

    def probe(period: int, failures: int, http_path: str | None) -> k8s.core.v1.ProbeArgs:
        if http_path is not None:
            return k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path=http_path, port=port),
                period_seconds=period,
                timeout_seconds=3,
                failure_threshold=failures,
            )
        return k8s.core.v1.ProbeArgs(
            exec_=k8s.core.v1.ExecActionArgs(command=list(probe_exec or [])),
            period_seconds=period,
            timeout_seconds=3,
            failure_threshold=failures,
        )

    live, ready = probe_http if probe_http is not None else (None, None)
    return probe(5, 24, live), probe(10, 3, live), probe(5, 3, ready)
