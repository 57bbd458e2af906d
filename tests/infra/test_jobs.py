"""PlatformJobs: migration, flags init and the model publishes, hardened and hash-named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra import catalog
from infra.components.jobs import ModelPublishArgs, PlatformJobs, PlatformJobsArgs
from infra.synth.mocks import ProgramRun, Secret, run_program

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/enterprisehub@sha256:" + "b" * 64
OTHER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/enterprisehub@sha256:" + "c" * 64
ROLE = "arn:aws:iam::123456789012:role/enterprisehub-model-publisher"
MODEL_URI = "s3://eh-models/lead-scoring/"
CHURN_MODEL_URI = "s3://eh-models/churn-risk/"
DESTINATIONS = {"lead-scoring": MODEL_URI, "churn-risk": CHURN_MODEL_URI}
#: Every Job of a full run (the CronJob's runs are not Jobs of the program).
ALL_JOBS = ("migrate", "flags-init", "model-publish", "churn-model-publish")


def _secrets() -> dict[str, pulumi.Output[str]]:
    """The stack's secret pool, built inside each program run.

    An Output is bound to the event loop current when it is made; one made at
    import time (collection) belongs to a loop that pytest-asyncio may have
    replaced by the time a Pulumi program runs, and fails with "attached to a
    different loop".
    """
    return {
        "MIGRATION_DATABASE_URL": pulumi.Output.secret("postgresql://owner:pw@db/eh"),
        "DATABASE_URL": pulumi.Output.secret("postgresql://app:pw@db/eh"),
        "REDIS_URL": pulumi.Output.secret("rediss://:token@cache:6379/0"),
        # In the pool, but no Job reads it: it must reach none of their Secrets.
        "ANTHROPIC_API_KEY": pulumi.Output.secret("sk-ant-not-for-jobs"),
    }


def _args(**overrides: Any) -> PlatformJobsArgs:
    values: dict[str, Any] = {
        "namespace": "enterprisehub",
        "image": IMAGE,
        "settings": {"ENVIRONMENT": "production", "LOG_LEVEL": "INFO"},
        "secrets": _secrets(),
        "model_publish": ModelPublishArgs(destinations=DESTINATIONS, role_arn=ROLE),
        **overrides,
    }
    return PlatformJobsArgs(**values)


def _run(**overrides: Any) -> ProgramRun:
    def program() -> None:
        PlatformJobs("jobs", _args(**overrides))

    return run_program("production", {}, program=program)


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return _run()


def _job(run: ProgramRun, job: str) -> dict[str, Any]:
    return run.one("kubernetes:batch/v1:Job", f"jobs-{job}").inputs


def _job_name(run: ProgramRun, job: str) -> str:
    name: str = _job(run, job)["metadata"]["name"]
    return name


def test_migration_runs_enterprisehub_migrate(run: ProgramRun) -> None:
    container = _job(run, "migrate")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["enterprisehub", "migrate"]
    assert container["image"] == IMAGE


def test_flags_init_runs_enterprisehub_flags_init_with_the_stack_seed() -> None:
    seed = '{"ai_coaching":{"enabled":true,"rolloutPercentage":10}}'
    run = _run(flag_seed=seed)
    container = _job(run, "flags-init")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["enterprisehub", "flags", "init", "--seed", seed]
    # A new seed is a new Job (its name hashes the command); init never overwrites.
    assert _job_name(run, "flags-init") != _job_name(_run(), "flags-init")


@pytest.mark.parametrize(
    ("job", "source", "destination"),
    [
        ("model-publish", "/app/models/lead-scoring/model.joblib", MODEL_URI),
        ("churn-model-publish", "/app/models/churn-risk/model.joblib", CHURN_MODEL_URI),
    ],
)
def test_model_publish_copies_the_image_model_to_the_bucket(
    run: ProgramRun, job: str, source: str, destination: str
) -> None:
    pod = _job(run, job)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == [
        "enterprisehub",
        "model",
        "publish",
        "--from",
        source,
        "--to",
        destination,
    ]
    assert container["image"] == IMAGE
    # Both publish under the one ServiceAccount the publisher role trusts.
    assert pod["serviceAccountName"] == "model-publisher"


@pytest.mark.parametrize("model", catalog.PUBLISHED_MODELS, ids=lambda m: m.name)
def test_model_source_is_where_the_dockerfile_puts_the_model(
    model: catalog.PublishedModel,
) -> None:
    # The Dockerfile trains into the build stage and copies the file here; the
    # image's default of the model's setting is the same path.
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    directory = model.image_path.rsplit("/", 1)[0]
    assert model.image_path == f"/app/models/{model.name}/model.joblib"
    assert f"{model.setting}={model.image_path}" in dockerfile
    assert f"--out /opt/models/{model.name}/model.joblib" in dockerfile
    assert f"COPY --from=build /opt/models/{model.name} {directory}" in dockerfile


def test_model_publish_waits_for_its_own_prerequisites() -> None:
    seen: dict[str, list[str]] = {}

    def program() -> None:
        bucket = pulumi.CustomResource("test:index:Bucket", "bucket")
        PlatformJobs(
            "jobs",
            _args(
                model_publish=ModelPublishArgs(
                    destinations=DESTINATIONS, role_arn=ROLE, depends_on=[bucket]
                )
            ),
        )
        bucket.urn.apply(lambda urn: seen.setdefault("bucket", [urn]))

    run = run_program("production", {}, program=program)
    for job in ("model-publish", "churn-model-publish"):
        assert seen["bucket"][0] in run.one("kubernetes:batch/v1:Job", f"jobs-{job}").dependencies
    assert seen["bucket"][0] not in run.one("kubernetes:batch/v1:Job", "jobs-migrate").dependencies


def test_model_publisher_account_has_the_irsa_role(run: ProgramRun) -> None:
    account = run.one("kubernetes:core/v1:ServiceAccount", "jobs-publisher-sa").inputs
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}
    assert account["automountServiceAccountToken"] is False


def test_migration_reads_the_owner_dsn_and_the_role_it_creates(run: ProgramRun) -> None:
    # It creates the application role from DATABASE_URL's credentials.
    secret = run.one("kubernetes:core/v1:Secret", "jobs-migrate-secret")
    assert set(secret.inputs["stringData"]) == {"MIGRATION_DATABASE_URL", "DATABASE_URL"}
    env_from = _job(run, "migrate")["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"secretRef": {"name": secret.inputs["metadata"]["name"]}} in env_from


def test_flags_job_never_sees_the_owner_dsn(run: ProgramRun) -> None:
    secret = run.one("kubernetes:core/v1:Secret", "jobs-flags-init-secret")
    assert set(secret.inputs["stringData"]) == {"DATABASE_URL", "REDIS_URL"}


def test_job_secrets_are_secret_outputs(run: ProgramRun) -> None:
    for secret in run.of_type("kubernetes:core/v1:Secret"):
        data = secret.raw_inputs["stringData"]
        assert isinstance(data, Secret) or all(isinstance(v, Secret) for v in data.values())


def test_jobs_have_retry_and_deadline(run: ProgramRun) -> None:
    for job in ALL_JOBS:
        spec = _job(run, job)["spec"]
        assert spec["backoffLimit"] == 2
        assert spec["activeDeadlineSeconds"] == 900
        assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_no_job_in_the_state_is_deleted_by_the_ttl_controller(run: ProgramRun) -> None:
    # A Job Kubernetes deletes after its TTL is still in Pulumi's state: the daily
    # drift check (`pulumi refresh --expect-no-changes`) would report it a week
    # after every deploy, and the next `up` would run it again.
    for job in ALL_JOBS:
        assert "ttlSecondsAfterFinished" not in _job(run, job)["spec"], job


def test_jobs_are_hardened(run: ProgramRun) -> None:
    for job in ALL_JOBS:
        pod = _job(run, job)["spec"]["template"]["spec"]
        context = pod["containers"][0]["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["containers"][0]["resources"]["limits"]


def test_flags_init_runs_after_the_migration(run: ProgramRun) -> None:
    migration = run.one("kubernetes:batch/v1:Job", "jobs-migrate")
    assert migration.urn in run.one("kubernetes:batch/v1:Job", "jobs-flags-init").dependencies


def test_job_names_are_stable_for_the_same_inputs(run: ProgramRun) -> None:
    again = _run()
    for job in ALL_JOBS:
        assert _job_name(run, job) == _job_name(again, job)
        assert _job_name(run, job).startswith(f"{job}-")


def test_a_new_image_gives_new_job_names(run: ProgramRun) -> None:
    upgraded = _run(image=OTHER_IMAGE)
    for job in ALL_JOBS:
        assert _job_name(run, job) != _job_name(upgraded, job)


def test_a_rotated_dsn_gives_a_new_migration_job(run: ProgramRun) -> None:
    rotated = _run(
        secrets={
            **_secrets(),
            "MIGRATION_DATABASE_URL": pulumi.Output.secret("postgresql://o:new@db/eh"),
        }
    )
    assert _job_name(run, "migrate") != _job_name(rotated, "migrate")
    assert _job_name(run, "flags-init") == _job_name(rotated, "flags-init")


def test_rollout_gate_is_every_job() -> None:
    # The component exposes the Jobs services must wait for; Pulumi awaits Job
    # completion by default, so depending on them orders the rollout.
    gate: list[str] = []

    def program() -> None:
        jobs = PlatformJobs("jobs", _args())
        gate.extend(type(r).__name__ for r in jobs.rollout_gate)

    run_program("production", {}, program=program)
    assert gate == ["Job"] * len(ALL_JOBS)


def test_only_the_models_given_are_published() -> None:
    run = _run(model_publish=ModelPublishArgs(destinations={"churn-risk": CHURN_MODEL_URI}))
    assert {job.name for job in run.of_type("kubernetes:batch/v1:Job")} == {
        "jobs-migrate",
        "jobs-flags-init",
        "jobs-churn-model-publish",
    }


@pytest.mark.parametrize("destinations", [{}, {"lead-scoring": MODEL_URI, "fraud": MODEL_URI}])
def test_a_destination_of_no_published_model_is_refused(destinations: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="must name published models"):
        PlatformJobs("jobs", _args(model_publish=ModelPublishArgs(destinations=destinations)))


def test_without_model_publish_only_two_jobs() -> None:
    run = _run(model_publish=None)
    assert {job.name for job in run.of_type("kubernetes:batch/v1:Job")} == {
        "jobs-migrate",
        "jobs-flags-init",
    }


def test_jobs_validate_against_the_kubernetes_schema(run: ProgramRun) -> None:
    for obj in run.kubernetes_objects():
        kubernetes_validate.validate(obj.inputs, "1.31.0", strict=True)


def test_each_job_secret_holds_exactly_its_catalog_keys(run: ProgramRun) -> None:
    # The owner-role DSN reaches the migration only; no Job gets a key it does not read.
    keys = {
        secret.inputs["metadata"]["name"].rsplit("-secret-", 1)[0]: set(secret.inputs["stringData"])
        for secret in run.kubernetes_objects("Secret")
    }
    assert keys == {
        "migrate": {"MIGRATION_DATABASE_URL", "DATABASE_URL"},
        "flags-init": {"DATABASE_URL", "REDIS_URL"},
        "impact-aggregate": {"DATABASE_URL"},
        "retention-prune": {"DATABASE_URL"},
    }


def test_missing_migration_dsn_is_named() -> None:
    without = {k: v for k, v in _secrets().items() if k != "MIGRATION_DATABASE_URL"}
    with pytest.raises(ValueError, match="MIGRATION_DATABASE_URL"):
        PlatformJobs("jobs", _args(secrets=without))


@pytest.mark.parametrize("key", ["DATABASE_URL", "MIGRATION_DATABASE_URL"])
def test_a_secret_key_in_the_settings_is_refused(key: str) -> None:
    # The Jobs' ConfigMap is readable by far more roles than their Secrets.
    settings = {"ENVIRONMENT": "production", key: "postgresql://owner:pw@db/eh"}
    with pytest.raises(ValueError, match=f"secret keys {key} must not be in the ConfigMap"):
        PlatformJobs("jobs", _args(settings=settings))


def test_a_tagged_image_is_refused() -> None:
    with pytest.raises(ValueError, match="not pinned by digest"):
        PlatformJobs("jobs", _args(image="enterprisehub:latest"))


def test_impact_aggregate_runs_daily_as_the_application_role(run: ProgramRun) -> None:
    cron = run.one("kubernetes:batch/v1:CronJob", "jobs-impact-aggregate").inputs
    assert cron["spec"]["schedule"] == "30 0 * * *"
    assert cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["enterprisehub", "impact", "aggregate", "--date", "yesterday"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    secret = run.one("kubernetes:core/v1:Secret", "jobs-impact-aggregate-secret")
    assert set(secret.inputs["stringData"]) == {"DATABASE_URL"}
    assert {"secretRef": {"name": secret.inputs["metadata"]["name"]}} in container["envFrom"]
    migration = run.one("kubernetes:batch/v1:Job", "jobs-migrate")
    assert (
        migration.urn
        in run.one("kubernetes:batch/v1:CronJob", "jobs-impact-aggregate").dependencies
    )


def test_retention_prune_runs_daily_after_the_aggregate_as_the_application_role(
    run: ProgramRun,
) -> None:
    cron = run.one("kubernetes:batch/v1:CronJob", "jobs-retention-prune").inputs
    assert cron["spec"]["schedule"] == "30 1 * * *"
    assert cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["enterprisehub", "retention", "prune"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    secret = run.one("kubernetes:core/v1:Secret", "jobs-retention-prune-secret")
    assert set(secret.inputs["stringData"]) == {"DATABASE_URL"}
    assert {"secretRef": {"name": secret.inputs["metadata"]["name"]}} in container["envFrom"]
    migration = run.one("kubernetes:batch/v1:Job", "jobs-migrate")
    assert (
        migration.urn in run.one("kubernetes:batch/v1:CronJob", "jobs-retention-prune").dependencies
    )


def test_every_daily_job_is_a_cronjob(run: ProgramRun) -> None:
    names = {cron.name for cron in run.of_type("kubernetes:batch/v1:CronJob")}
    assert names == {f"jobs-{spec.name}" for spec in catalog.DAILY_JOBS}


def test_no_schedule_no_cronjob() -> None:
    assert not _run(impact_schedule=None, retention_schedule=None).of_type(
        "kubernetes:batch/v1:CronJob"
    )
    only = _run(impact_schedule=None).of_type("kubernetes:batch/v1:CronJob")
    assert [cron.name for cron in only] == ["jobs-retention-prune"]
