"""One-shot Jobs that gate a rollout (schema migration, feature-flag init, model
publish) and the daily business-impact CronJob.

Ordering. The Pulumi Kubernetes provider waits for a Job to *complete* before
it reports the Job created (``skipAwait`` is false by default) and fails the
update if the Job fails. The feature services pass :attr:`PlatformJobs.rollout_gate`
as ``depends_on``, so no Deployment changes before the schema is migrated and
the flags exist; a failed migration stops the update with the old pods still
serving.

Naming. A Job's pod template is immutable, so a Job cannot be edited into
running a new image. Each Job's ``metadata.name`` is ``<job>-<hash>`` where the
hash covers the image, the command and the names of the ConfigMap/Secret it
reads (themselves content hashes). A new image or changed settings give a new
name, which Pulumi turns into "create the new Job (and wait for it), then
delete the old one"; an unchanged deploy keeps the name and runs nothing. The
name also tells an operator exactly which version a Job ran.

``ttlSecondsAfterFinished`` removes finished Jobs from the cluster after a
week (long enough to read the logs). Pulumi's state still holds the Job; a
later ``pulumi refresh`` notices it is gone and the next ``up`` recreates it,
which is safe because every command here is idempotent (``alembic upgrade
head`` on a current schema, flag creation that never overwrites, publishing
the same model file).

Model publish. The image carries the lead-scoring model it was built with
(``catalog.ML_MODEL_IMAGE_PATH``, trained by the Dockerfile). The publish Job
runs ``enterprisehub model publish --from <that path> --to <ML_MODEL_URI>``:
it uploads the version if the bucket lacks it and points the prefix's
``current.json`` alias at it. The services load the same prefix, and they are
gated on this Job, so a pod never starts before the model it will load is
published, and deploying an older image (a rollback) points the alias back at
that image's model. In the cloud stacks the Job's ServiceAccount carries an
IRSA role that may write only under the model prefix; locally it gets the
in-cluster object store's credentials through its own Secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening

#: ServiceAccount of the migration and flags Jobs (no cloud permissions).
JOBS_SERVICE_ACCOUNT: Final = "enterprisehub-jobs"
#: ServiceAccount of the model-publish Job; its IAM role may write the models bucket.
MODEL_PUBLISHER_SERVICE_ACCOUNT: Final = "model-publisher"

MIGRATE_COMMAND: Final = (catalog.CLI, "migrate")
FLAGS_INIT_COMMAND: Final = (catalog.CLI, "flags", "init")
#: The daily aggregate into phase3_business_metrics (idempotent, so a retry is safe).
IMPACT_AGGREGATE_COMMAND: Final = (catalog.CLI, "impact", "aggregate", "--date", "yesterday")
#: Where the image keeps the trained lead-scoring model (the Dockerfile puts it there).
MODEL_SOURCE_PATH: Final = catalog.ML_MODEL_IMAGE_PATH

#: Keys the flags Job needs: flags live in Redis, assignments and the audit in Postgres.
FLAGS_SECRET_KEYS: Final = ("DATABASE_URL", "REDIS_URL")

#: Pulumi's await gives up after this margin beyond the Job's own deadline.
_AWAIT_MARGIN_SECONDS: Final = 120


@dataclass(frozen=True, kw_only=True)
class ModelPublishArgs:
    """The optional model-publish Job: copies the image's model to the models bucket."""

    #: The prefix the services load (their ML_MODEL_URI), e.g.
    #: ``s3://enterprisehub-production-models-123456789012/lead-scoring/``.
    destination_uri: pulumi.Input[str]
    source_path: str = MODEL_SOURCE_PATH
    #: IAM role (IRSA) allowed to write the model prefix; None for in-cluster storage.
    role_arn: pulumi.Input[str] | None = None
    #: Credentials for S3-compatible storage (local MinIO: AWS_ACCESS_KEY_ID, ...).
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: What must exist before publishing (the bucket, the role's policy) on top
    #: of ``PlatformJobsArgs.depends_on``; an IRSA role whose policy is not yet
    #: attached would make the first attempt fail with AccessDenied.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class PlatformJobsArgs:
    """Inputs of :class:`PlatformJobs`.

    ``settings`` is the plain environment of every Job (ENVIRONMENT, LOG_LEVEL,
    AWS_REGION, S3_ENDPOINT_URL).
    """

    namespace: pulumi.Input[str]
    image: pulumi.Input[str]
    settings: Mapping[str, str]
    #: Must hold MIGRATION_DATABASE_URL (owner role); nothing else reads it.
    migration_secrets: Mapping[str, pulumi.Input[str]]
    #: Must hold DATABASE_URL and REDIS_URL (application role).
    flags_secrets: Mapping[str, pulumi.Input[str]]
    #: The stack's ``featureFlags`` as ``flags init --seed`` JSON: the initial
    #: state of flags that do not exist yet (existing ones are never touched).
    flag_seed: str = "{}"
    #: Cron schedule (UTC) of the daily business-impact aggregate of the day
    #: before; None declares no CronJob.
    impact_schedule: str | None = "30 0 * * *"
    model_publish: ModelPublishArgs | None = None
    #: Retries after a failed attempt; a migration that fails twice needs a human.
    backoff_limit: int = 2
    #: Hard stop for one Job, all attempts included.
    active_deadline_seconds: int = 900
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    resources: catalog.Resources = field(
        default_factory=lambda: catalog.Resources(cpu="500m", memory="512Mi")
    )
    #: What the Jobs need first (the database, or the in-cluster data stores).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class PlatformJobs(pulumi.ComponentResource):
    """The migration Job, the feature-flags init Job and optionally the model publish."""

    migration_job_name: pulumi.Output[str]
    flags_job_name: pulumi.Output[str]
    model_publish_job_name: pulumi.Output[str] | None
    #: What the feature services' Deployments must depend on.
    rollout_gate: list[pulumi.Resource]

    def __init__(
        self, name: str, args: PlatformJobsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate(args)
        super().__init__("enterprisehub:k8s:PlatformJobs", name, None, opts)
        self._name = name
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        common = hardening.labels(JOBS_SERVICE_ACCOUNT, hardening.COMPONENT_JOB)

        jobs_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=JOBS_SERVICE_ACCOUNT, namespace=args.namespace, labels=common
            ),
            automount_service_account_token=False,
            opts=child,
        )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=hardening.hashed_name("jobs-config", dict(args.settings)),
                namespace=args.namespace,
                labels=common,
            ),
            data=dict(args.settings),
            immutable=True,
            opts=child,
        )

        migration_secret = self._secret("migrate", args.migration_secrets)
        migration = self._job(
            "migrate",
            MIGRATE_COMMAND,
            account=jobs_account.metadata.name,
            config=config.metadata.name,
            secret=migration_secret.metadata.name,
            depends_on=list(args.depends_on),
        )

        flags_secret = self._secret("flags-init", args.flags_secrets)
        # The flags Job writes rows the migration creates, so it runs second.
        flags = self._job(
            "flags-init",
            (*FLAGS_INIT_COMMAND, "--seed", args.flag_seed),
            account=jobs_account.metadata.name,
            config=config.metadata.name,
            secret=flags_secret.metadata.name,
            depends_on=[migration],
        )

        self.impact_cronjob_name: pulumi.Output[str] | None = None
        if args.impact_schedule is not None:
            self.impact_cronjob_name = self._impact_cronjob(
                args.impact_schedule,
                account=jobs_account.metadata.name,
                config=config.metadata.name,
                depends_on=[migration],
            ).metadata.name

        self.migration_job_name = migration.metadata.name
        self.flags_job_name = flags.metadata.name
        self.rollout_gate = [migration, flags]
        self.model_publish_job_name = None
        if args.model_publish is not None:
            publish = args.model_publish
            publisher = k8s.core.v1.ServiceAccount(
                f"{name}-publisher-sa",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=MODEL_PUBLISHER_SERVICE_ACCOUNT,
                    namespace=args.namespace,
                    labels=hardening.labels(
                        MODEL_PUBLISHER_SERVICE_ACCOUNT, hardening.COMPONENT_JOB
                    ),
                    annotations=(
                        {"eks.amazonaws.com/role-arn": publish.role_arn}
                        if publish.role_arn is not None
                        else None
                    ),
                ),
                automount_service_account_token=False,
                opts=child,
            )
            publish_secret = (
                self._secret("model-publish", publish.secrets).metadata.name
                if publish.secrets
                else None
            )
            job = self._job(
                "model-publish",
                (catalog.CLI, "model", "publish", "--from", publish.source_path, "--to"),
                destination=publish.destination_uri,
                account=publisher.metadata.name,
                config=config.metadata.name,
                secret=publish_secret,
                depends_on=[*args.depends_on, *publish.depends_on],
            )
            self.model_publish_job_name = job.metadata.name
            # ml-services loads this model at start-up: it must be there first.
            self.rollout_gate.append(job)

        outputs: dict[str, object] = {
            "migration_job_name": self.migration_job_name,
            "flags_job_name": self.flags_job_name,
        }
        if self.model_publish_job_name is not None:
            outputs["model_publish_job_name"] = self.model_publish_job_name
        if self.impact_cronjob_name is not None:
            outputs["impact_cronjob_name"] = self.impact_cronjob_name
        self.register_outputs(outputs)

    def _impact_cronjob(
        self,
        schedule: str,
        *,
        account: pulumi.Input[str],
        config: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource],
    ) -> k8s.batch.v1.CronJob:
        """The daily ``impact aggregate`` (application role: it writes under RLS)."""
        args = self._args
        secret = self._secret(
            "impact-aggregate", {"DATABASE_URL": args.flags_secrets["DATABASE_URL"]}
        )
        labels = hardening.labels("impact-aggregate", hardening.COMPONENT_JOB)
        return k8s.batch.v1.CronJob(
            f"{self._name}-impact-aggregate",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="impact-aggregate",
                namespace=args.namespace,
                labels=labels,
                annotations=hardening.SECRET_ENV_SKIP,
            ),
            spec=k8s.batch.v1.CronJobSpecArgs(
                schedule=schedule,
                time_zone="Etc/UTC",
                # A run still going (or retrying) when the next is due: skip, not pile up.
                concurrency_policy="Forbid",
                starting_deadline_seconds=6 * 3600,
                successful_jobs_history_limit=3,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.batch.v1.JobSpecArgs(
                        backoff_limit=args.backoff_limit,
                        active_deadline_seconds=args.active_deadline_seconds,
                        ttl_seconds_after_finished=args.ttl_seconds_after_finished,
                        template=self._pod(
                            "impact-aggregate",
                            list(IMPACT_AGGREGATE_COMMAND),
                            account=account,
                            config=config,
                            secret=secret.metadata.name,
                        ),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _secret(self, job: str, values: Mapping[str, pulumi.Input[str]]) -> k8s.core.v1.Secret:
        """A Secret read by exactly one Job (least privilege: no Job sees another's DSN)."""
        secret_values = {key: pulumi.Output.secret(value) for key, value in values.items()}
        return k8s.core.v1.Secret(
            f"{self._name}-{job}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=hardening.hashed_name(f"{job}-secret", secret_values),
                namespace=self._args.namespace,
                labels=hardening.labels(job, hardening.COMPONENT_JOB),
            ),
            type="Opaque",
            string_data=secret_values,
            immutable=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _job(
        self,
        job: str,
        command: Sequence[str],
        *,
        account: pulumi.Input[str],
        config: pulumi.Input[str],
        secret: pulumi.Input[str] | None,
        depends_on: Sequence[pulumi.Resource],
        destination: pulumi.Input[str] | None = None,
    ) -> k8s.batch.v1.Job:
        """A hardened, hash-named Job running ``command`` from the project image."""
        args = self._args
        full_command: pulumi.Input[Sequence[str]] = (
            pulumi.Output.from_input(destination).apply(lambda uri: [*command, uri])
            if destination is not None
            else list(command)
        )
        labels = hardening.labels(job, hardening.COMPONENT_JOB)
        return k8s.batch.v1.Job(
            f"{self._name}-{job}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=hardening.hashed_name(job, args.image, full_command, config, secret),
                namespace=args.namespace,
                labels=labels,
                annotations=hardening.SECRET_ENV_SKIP if secret is not None else None,
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=args.backoff_limit,
                active_deadline_seconds=args.active_deadline_seconds,
                ttl_seconds_after_finished=args.ttl_seconds_after_finished,
                template=self._pod(
                    job, full_command, account=account, config=config, secret=secret
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(depends_on),
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{args.active_deadline_seconds + _AWAIT_MARGIN_SECONDS}s",
                    update=f"{args.active_deadline_seconds + _AWAIT_MARGIN_SECONDS}s",
                ),
            ),
        )

    def _pod(
        self,
        job: str,
        command: pulumi.Input[Sequence[str]],
        *,
        account: pulumi.Input[str],
        config: pulumi.Input[str],
        secret: pulumi.Input[str] | None,
    ) -> k8s.core.v1.PodTemplateSpecArgs:
        """The hardened pod of every Job: project image, settings and one Secret."""
        args = self._args
        env_from = [
            k8s.core.v1.EnvFromSourceArgs(
                config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=config)
            )
        ]
        if secret is not None:
            env_from.append(
                k8s.core.v1.EnvFromSourceArgs(
                    secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=secret)
                )
            )
        return k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(
                labels=hardening.labels(job, hardening.COMPONENT_JOB)
            ),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="Never",
                service_account_name=account,
                automount_service_account_token=False,
                security_context=hardening.pod_security_context(),
                containers=[
                    k8s.core.v1.ContainerArgs(
                        name=job,
                        image=args.image,
                        image_pull_policy="IfNotPresent",
                        command=command,
                        env_from=env_from,
                        env=[k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")],  # noqa: S108
                        resources=hardening.resources(args.resources.cpu, args.resources.memory),
                        security_context=hardening.container_security_context(),
                        volume_mounts=[hardening.tmp_mount()],
                    )
                ],
                volumes=[hardening.tmp_volume()],
            ),
        )


def _validate(args: PlatformJobsArgs) -> None:
    """Fail before any resource on inputs that would make a Job unsafe or unable to run."""
    owner = "PlatformJobs"
    hardening.check_image(args.image, owner)
    hardening.require_keys(
        owner, "migration_secrets", args.migration_secrets, catalog.MIGRATION_SECRET_KEYS
    )
    hardening.require_keys(owner, "flags_secrets", args.flags_secrets, FLAGS_SECRET_KEYS)
    if set(catalog.MIGRATION_SECRET_KEYS).intersection(args.flags_secrets):
        raise ValueError(f"{owner}: the flags Job must not receive the owner-role DSN")
    leaked = sorted(
        set(catalog.SERVICE_SECRET_KEYS + catalog.MIGRATION_SECRET_KEYS).intersection(args.settings)
    )
    if leaked:
        raise ValueError(f"{owner}: secret keys {', '.join(leaked)} must not be in the ConfigMap")
    for label, value in (
        ("backoff_limit", args.backoff_limit),
        ("active_deadline_seconds", args.active_deadline_seconds),
        ("ttl_seconds_after_finished", args.ttl_seconds_after_finished),
    ):
        if value < (0 if label == "backoff_limit" else 1):
            raise ValueError(f"{owner}: {label} must be positive, got {value}")
