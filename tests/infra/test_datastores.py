"""Datastores (local stack): PostgreSQL 15, Redis 7 and MinIO in the cluster."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra.components.datastores import REDIS_IMAGE, Datastores, DatastoresArgs
from infra.config import CacheConfig
from infra.environments import CLOUD_ENVIRONMENTS
from infra.stackfiles import stack_config
from infra.synth.cli import run_stack
from infra.synth.inputs import qualify, stack_inputs
from infra.synth.mocks import ProgramRun, Secret, run_program

IMAGE = "localhost:5001/enterprisehub@sha256:" + "e" * 64
UIDS = {"postgres": 999, "redis": 999, "minio": 1000}


def _program() -> None:
    stores = Datastores(
        "data",
        DatastoresArgs(
            namespace="enterprisehub",
            tools_image=IMAGE,
            buckets=["enterprisehub-local-media", "enterprisehub-local-models"],
            redis_maxmemory_mb=512,
        ),
    )
    for key in ("migration_database_url", "database_url", "redis_url", "s3_endpoint_url"):
        value = getattr(stores, key)
        pulumi.export(key, value)


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program("local", {}, program=_program)


def _statefulset(run: ProgramRun, store: str) -> dict[str, Any]:
    return run.one("kubernetes:apps/v1:StatefulSet", f"data-{store}").inputs


def _pod(run: ProgramRun, store: str) -> dict[str, Any]:
    pod: dict[str, Any] = _statefulset(run, store)["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("store", list(UIDS))
def test_each_store_is_a_statefulset_with_a_volume_claim(run: ProgramRun, store: str) -> None:
    spec = _statefulset(run, store)["spec"]
    assert spec["replicas"] == 1
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"] for m in spec["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert "data" in mounts


@pytest.mark.parametrize("store", list(UIDS))
def test_each_store_runs_as_its_images_user(run: ProgramRun, store: str) -> None:
    pod = _pod(run, store)
    uid = UIDS[store]
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["fsGroup"] == uid
    context = pod["containers"][0]["securityContext"]
    assert context["runAsUser"] == uid
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("store", list(UIDS))
def test_each_store_has_probes_and_resources(run: ProgramRun, store: str) -> None:
    container = _pod(run, store)["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]
    assert container["resources"]["limits"] == container["resources"]["requests"]


def test_images_are_postgres_15_redis_7_and_pinned(run: ProgramRun) -> None:
    images = {store: _pod(run, store)["containers"][0]["image"] for store in UIDS}
    assert images["postgres"].split(":")[-1].startswith("15.")
    assert images["redis"].split(":")[-1].startswith("7.")
    for image in images.values():
        assert ":latest" not in image
        assert ":" in image.rsplit("/", 1)[-1]


#: The Redis OSS line each ElastiCache engine version is compatible with
#: (ElastiCache, "Supported engine versions": "ElastiCache v7.1 is compatible
#: with Redis OSS v7.0"; upstream Redis has no 7.1).
ELASTICACHE_REDIS_OSS = {"7.0": "7.0", "7.1": "7.0"}


@pytest.mark.parametrize("stack", sorted(CLOUD_ENVIRONMENTS))
def test_local_redis_runs_the_line_the_cloud_stacks_run(stack: str) -> None:
    # A newer Redis locally than in the cloud hides incompatibilities until production.
    raw = stack_config(stack).get(qualify("cache"), "{}")
    engine = CacheConfig.model_validate(json.loads(raw)).engine_version
    tag = REDIS_IMAGE.rsplit(":", 1)[-1]
    assert tag.startswith(ELASTICACHE_REDIS_OSS[engine] + "."), (REDIS_IMAGE, stack, engine)


def test_the_local_postgres_takes_the_stacks_max_connections() -> None:
    run = run_stack(stack_inputs("local"))
    (postgres,) = [r for r in run.of_type("kubernetes:apps/v1:StatefulSet") if "postgres" in r.name]
    container = postgres.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["postgres", "-c", "max_connections=250"]
    assert "command" not in container  # the image's entrypoint still initialises the data


def test_postgres_keeps_data_below_the_volume_root(run: ProgramRun) -> None:
    env = {e["name"]: e.get("value") for e in _pod(run, "postgres")["containers"][0]["env"]}
    assert env["PGDATA"] == "/var/lib/postgresql/data/pgdata"


def test_redis_config_matches_the_elasticache_parameters(run: ProgramRun) -> None:
    secret = run.one("kubernetes:core/v1:Secret", "data-redis-secret").inputs
    conf = secret["stringData"]["redis.conf"]
    for line in ("maxmemory-policy allkeys-lru", "notify-keyspace-events Ex", "appendonly yes"):
        assert line in conf


def test_redis_evicts_below_its_memory_limit(run: ProgramRun) -> None:
    # The ceiling is written, so allkeys-lru evicts; the container limit sits above
    # it with room for buffers, so the kernel never OOM-kills Redis first.
    secret = run.one("kubernetes:core/v1:Secret", "data-redis-secret").inputs
    assert "maxmemory 512mb" in secret["stringData"]["redis.conf"].splitlines()
    redis = run.one("kubernetes:apps/v1:StatefulSet", "data-redis").inputs
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == "640Mi"
    assert container["resources"]["requests"]["memory"] == "640Mi"


def test_the_local_stack_passes_its_maxmemory_to_redis(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    run = stack_run("local")
    (secret,) = [
        s for s in run.kubernetes_objects("Secret") if s.name.endswith("datastores-redis-secret")
    ]
    conf = secret.inputs["stringData"]["redis.conf"]
    assert "maxmemory 512mb" in conf.splitlines()  # stacks/Pulumi.local.yaml: maxmemoryMb 512


def test_the_local_stack_passes_its_cache_parameters_to_redis() -> None:
    # The stack's cache parameters apply to the in-cluster Redis as they do to
    # ElastiCache's parameter group: none of them is a setting without effect.
    inputs = stack_inputs("local", environ={})
    cache = {
        **json.loads(inputs.config[qualify("cache")]),
        "maxmemoryPolicy": "volatile-lru",
        "notifyKeyspaceEvents": "Kx",
        "slowlogLogSlowerThan": 5000,
        "slowlogMaxLen": 64,
    }
    run = run_stack(
        dataclasses.replace(inputs, config={**inputs.config, qualify("cache"): json.dumps(cache)})
    )
    (secret,) = [
        s for s in run.kubernetes_objects("Secret") if s.name.endswith("datastores-redis-secret")
    ]
    conf = secret.inputs["stringData"]["redis.conf"].splitlines()
    for line in (
        "maxmemory-policy volatile-lru",
        "notify-keyspace-events Kx",
        "slowlog-log-slower-than 5000",
        "slowlog-max-len 64",
    ):
        assert line in conf


def test_credentials_are_secret(run: ProgramRun) -> None:
    for secret in run.of_type("kubernetes:core/v1:Secret"):
        data = secret.raw_inputs["stringData"]
        assert isinstance(data, Secret) or all(isinstance(v, Secret) for v in data.values())


def test_dsn_outputs_are_secret_and_point_at_the_services(run: ProgramRun) -> None:
    for key in ("migration_database_url", "database_url", "redis_url"):
        assert isinstance(run.stack_outputs[key], Secret), key
    plain = run.plain_stack_outputs()
    assert plain["migration_database_url"].startswith("postgresql://enterprisehub_owner:")
    assert plain["database_url"].startswith("postgresql://enterprisehub_app:")
    assert "@postgres.enterprisehub.svc.cluster.local:5432/enterprisehub" in plain["database_url"]
    assert plain["redis_url"].startswith("redis://:")
    assert plain["s3_endpoint_url"] == "http://minio.enterprisehub.svc.cluster.local:9000"


def test_bucket_job_creates_the_buckets_after_minio(run: ProgramRun) -> None:
    job = run.one("kubernetes:batch/v1:Job")
    env = {
        e["name"]: e.get("value")
        for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BUCKETS"] == "enterprisehub-local-media,enterprisehub-local-models"
    assert run.one("kubernetes:apps/v1:StatefulSet", "data-minio").urn in job.dependencies


def test_services_are_headless_on_the_store_ports(run: ProgramRun) -> None:
    ports = {}
    for service in run.of_type("kubernetes:core/v1:Service"):
        assert service.inputs["spec"]["clusterIP"] == "None"
        ports[service.inputs["metadata"]["name"]] = service.inputs["spec"]["ports"][0]["port"]
    assert ports == {"postgres": 5432, "redis": 6379, "minio": 9000}


def test_objects_validate_against_the_kubernetes_schema(run: ProgramRun) -> None:
    for obj in run.kubernetes_objects():
        kubernetes_validate.validate(obj.inputs, "1.31.0", strict=True)
