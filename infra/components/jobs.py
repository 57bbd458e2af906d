"""One-shot Jobs that gate a rollout: schema migration, feature-flag init, model publishes.

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

No ``ttlSecondsAfterFinished``: a finished Job stays in the cluster until
Pulumi replaces it. Pulumi's state holds each Job, so a Job the TTL controller
deleted would read as drift in the daily ``pulumi refresh --preview-only
--expect-no-changes`` (``scripts/ci-drift.sh``) a week after every deploy,
and the next ``up`` would run it again. Finished Jobs do not pile up without
it: a deploy that changes a Job's spec changes its name, and Pulumi creates
the new Job and then deletes the old one, so each Job has one object in the
cluster, whose pod keeps the logs of the last run. (The commands are
idempotent all the same, ``alembic upgrade head`` on a current schema, flag
creation that never overwrites, publishing the same model file, so a Job
deleted by hand and recreated by ``up`` does no harm.) The daily CronJobs'
runs are not in the state; its history limits bound them.

Model publish. The image carries the models it was built with
(``catalog.PUBLISHED_MODELS``: the lead-scoring model at
``catalog.ML_MODEL_IMAGE_PATH`` and the churn-risk model at
``catalog.CHURN_MODEL_IMAGE_PATH``, both trained by the Dockerfile). One Job
per model runs ``enterprisehub model publish --from <image path> --to <URI>``
(its ``ML_MODEL_URI`` or ``CHURN_MODEL_URI``): it uploads the version if the
bucket lacks it and points the prefix's ``current.json`` alias at it. The
services load the same prefixes, and they are gated on these Jobs, so a pod
never starts before the model it will load is published, and deploying an
older image (a rollback) points the aliases back at that image's models. In
the cloud stacks the Jobs' ServiceAccount carries an IRSA role that may write
only under the model prefixes; locally it gets the in-cluster object store's
credentials through its own Secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening
from infra.components.base import Component
from infra.components.workload import refuse_secret_settings

#: ServiceAccount of the migration and flags Jobs (no cloud permissions).
JOBS_SERVICE_ACCOUNT: Final = "enterprisehub-jobs"
#: ServiceAccount of the model-publish Jobs; its IAM role may write the model prefixes.
MODEL_PUBLISHER_SERVICE_ACCOUNT: Final = "model-publisher"

#: Pulumi's await gives up after this margin beyond the Job's own deadline.
_AWAIT_MARGIN_SECONDS: Final = 120


@dataclass(frozen=True, kw_only=True)
class ModelPublishArgs:
    """The optional model-publish Jobs: copy the image's models to the models bucket."""

    #: Per ``catalog.PublishedModel.name``, the prefix its services load (their
    #: ``ML_MODEL_URI`` or ``CHURN_MODEL_URI``), e.g. ``{"churn-risk":
    #: "s3://enterprisehub-production-models-123456789012/churn-risk/"}``.
    #: One Job per entry.
    destinations: Mapping[str, pulumi.Input[str]]
    #: IAM role (IRSA) allowed to write the model prefixes; None for in-cluster storage.
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
    ``secrets`` is the pool the Jobs' Secrets are cut from: each Job's Secret
    holds exactly the keys its ``catalog.JobSpec`` names.
    """

    namespace: pulumi.Input[str]
    image: pulumi.Input[str]
    settings: Mapping[str, str]
    secrets: Mapping[str, pulumi.Input[str]]
    model_publish: ModelPublishArgs | None = None
    #: The stack's ``featureFlags`` as ``flags init --seed`` JSON: the initial
    #: state of flags that do not exist yet (existing ones are never touched).
    flag_seed: str = "{}"
    #: Cron schedule (UTC) of the daily business-impact aggregate of the day
    #: before; None declares no CronJob.
    impact_schedule: str | None = "30 0 * * *"
    #: Cron schedule (UTC) of the daily retention prune (events older than 30
    #: days, aggregates older than a year); None declares no CronJob. After the
    #: aggregate, so the day it restates is aggregated before anything is pruned.
    retention_schedule: str | None = "30 1 * * *"
    #: Retries after a failed attempt; a migration that fails twice needs a human.
    backoff_limit: int = 2
    #: Hard stop for one Job, all attempts included.
    active_deadline_seconds: int = 900
    resources: catalog.Resources = field(
        default_factory=lambda: catalog.Resources(cpu="500m", memory="512Mi")
    )
    #: What the Jobs need first (the database, or the in-cluster data stores).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class PlatformJobs(Component[PlatformJobsArgs]):
    """The migration Job, the feature-flags init Job, optionally the model publishes,
    and the daily CronJobs: business impact and retention."""

    component_type = "enterprisehub:k8s:PlatformJobs"

    migration_job_name: pulumi.Output[str]
    flags_job_name: pulumi.Output[str]
    #: Per published model name (``catalog.PublishedModel.name``), its Job's name.
    model_publish_job_names: dict[str, pulumi.Output[str]]
    impact_cronjob_name: pulumi.Output[str] | None
    retention_cronjob_name: pulumi.Output[str] | None
    #: What the feature services' Deployments must depend on.
    rollout_gate: list[pulumi.Resource]

    def __init__(
        self, name: str, args: PlatformJobsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate(args)
        super().__init__(name, args, opts)
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

        migration = self._catalog_job(
            catalog.MIGRATE_JOB, jobs_account, config, depends_on=list(args.depends_on)
        )
        # The flags Job writes rows the migration creates, so it runs second.
        flags = self._catalog_job(
            catalog.FLAGS_INIT_JOB,
            jobs_account,
            config,
            [migration],
            extra_args=("--seed", args.flag_seed),
        )
        self.migration_job_name = migration.metadata.name
        self.flags_job_name = flags.metadata.name
        self.rollout_gate = [migration, flags]
        self.model_publish_job_names = {}
        if args.model_publish is not None:
            for model, publish in self._model_publishes(args.model_publish, config).items():
                self.model_publish_job_names[model] = publish.metadata.name
                # The services load these models at start-up: they must be there first.
                self.rollout_gate.append(publish)
        self.impact_cronjob_name = self._cronjob(
            catalog.IMPACT_AGGREGATE_JOB, args.impact_schedule, jobs_account, config, [migration]
        )
        self.retention_cronjob_name = self._cronjob(
            catalog.RETENTION_PRUNE_JOB, args.retention_schedule, jobs_account, config, [migration]
        )

        outputs: dict[str, object] = {
            "migration_job_name": self.migration_job_name,
            "flags_job_name": self.flags_job_name,
        }
        if self.model_publish_job_names:
            outputs["model_publish_job_names"] = self.model_publish_job_names
        if self.impact_cronjob_name is not None:
            outputs["impact_cronjob_name"] = self.impact_cronjob_name
        if self.retention_cronjob_name is not None:
            outputs["retention_cronjob_name"] = self.retention_cronjob_name
        self.register_outputs(outputs)

    def _catalog_job(
        self,
        spec: catalog.JobSpec,
        account: k8s.core.v1.ServiceAccount,
        config: k8s.core.v1.ConfigMap,
        depends_on: Sequence[pulumi.Resource],
        extra_args: Sequence[str] = (),
    ) -> k8s.batch.v1.Job:
        """One of the catalog's Jobs with a Secret of exactly the keys it names."""
        secret = self._secret(spec.name, {key: self._args.secrets[key] for key in spec.secrets})
        return self._job(
            spec.name,
            (*spec.command, *extra_args),
            account=account.metadata.name,
            config=config.metadata.name,
            secret=secret.metadata.name,
            depends_on=depends_on,
        )

    def _model_publishes(
        self, publish: ModelPublishArgs, config: k8s.core.v1.ConfigMap
    ) -> dict[str, k8s.batch.v1.Job]:
        """One publish Job per model, under the ServiceAccount the IAM role trusts."""
        args = self._args
        publisher = k8s.core.v1.ServiceAccount(
            f"{self._name}-publisher-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=MODEL_PUBLISHER_SERVICE_ACCOUNT,
                namespace=args.namespace,
                labels=hardening.labels(MODEL_PUBLISHER_SERVICE_ACCOUNT, hardening.COMPONENT_JOB),
                annotations=hardening.irsa_annotations(publish.role_arn),
            ),
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        jobs = {}
        for model in catalog.PUBLISHED_MODELS:
            if model.name not in publish.destinations:
                continue
            spec = model.job
            values = {**{key: args.secrets[key] for key in spec.secrets}, **publish.secrets}
            secret = self._secret(spec.name, values).metadata.name if values else None
            jobs[model.name] = self._job(
                spec.name,
                spec.command,
                destination=publish.destinations[model.name],
                account=publisher.metadata.name,
                config=config.metadata.name,
                secret=secret,
                depends_on=[*args.depends_on, *publish.depends_on],
            )
        return jobs

    def _cronjob(
        self,
        spec: catalog.JobSpec,
        schedule: str | None,
        account: k8s.core.v1.ServiceAccount,
        config: k8s.core.v1.ConfigMap,
        depends_on: Sequence[pulumi.Resource],
    ) -> pulumi.Output[str] | None:
        """One of ``catalog.DAILY_JOBS`` on ``schedule`` (None: not declared); its name."""
        if schedule is None:
            return None
        args = self._args
        secret = self._secret(spec.name, {key: args.secrets[key] for key in spec.secrets})
        labels = hardening.labels(spec.name, hardening.COMPONENT_JOB)
        cronjob = k8s.batch.v1.CronJob(
            f"{self._name}-{spec.name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.name,
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
                        template=self._pod(
                            spec.name,
                            list(spec.command),
                            account=account.metadata.name,
                            config=config.metadata.name,
                            secret=secret.metadata.name,
                        ),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        return cronjob.metadata.name

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
    jobs: tuple[catalog.JobSpec, ...] = (
        catalog.MIGRATE_JOB,
        catalog.FLAGS_INIT_JOB,
        *(model.job for model in catalog.PUBLISHED_MODELS),
    )
    for daily, schedule in zip(
        catalog.DAILY_JOBS, (args.impact_schedule, args.retention_schedule), strict=True
    ):
        if schedule is not None:
            jobs = (*jobs, daily)
    for job in jobs:
        hardening.require_keys(owner, "secrets", args.secrets, job.secrets)
    if args.model_publish is not None:
        known = {model.name for model in catalog.PUBLISHED_MODELS}
        unknown = sorted(set(args.model_publish.destinations) - known)
        if unknown or not args.model_publish.destinations:
            raise ValueError(
                f"{owner}: model_publish.destinations must name published models "
                f"({', '.join(sorted(known))}), got {sorted(args.model_publish.destinations)}"
            )
    refuse_secret_settings(owner, args.settings)
    for label, value in (
        ("backoff_limit", args.backoff_limit),
        ("active_deadline_seconds", args.active_deadline_seconds),
    ):
        if value < (0 if label == "backoff_limit" else 1):
            raise ValueError(f"{owner}: {label} must be positive, got {value}")
