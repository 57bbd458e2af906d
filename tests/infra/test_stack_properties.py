"""Whole-program properties, per stack: the real program under mocks, one behaviour per test.

Each test reads the resources a stack declares (`stack_run`, see conftest) and
checks one promise of issue 11 by resource type and by the catalog's data, not
by logical names, so that refactoring a component does not break the tests
while breaking a promise does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest

from infra import catalog
from infra.components.hardening import NAME_LABEL
from infra.components.service import LIVENESS_PATH
from infra.stackfiles import STACKS
from infra.synth import run_stack
from infra.synth.inputs import stack_inputs
from infra.synth.mocks import ProgramRun, RecordedResource, Secret

AWS_STACKS = tuple(s for s in STACKS if s != "local")
RunFor = Callable[[str], ProgramRun]

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
JOB = "kubernetes:batch/v1:Job"
RDS = "aws:rds/instance:Instance"
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
REDIS_PARAMETERS = "aws:elasticache/parameterGroup:ParameterGroup"
BUCKET = "aws:s3/bucket:Bucket"
EKS = "aws:eks/cluster:Cluster"
ECR = "aws:ecr/repository:Repository"
SUBNET = "aws:ec2/subnet:Subnet"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
#: In-cluster data stores of the local stack, which run upstream images.
THIRD_PARTY_STORES = ("postgres", "redis", "minio")


# ------------------------------------------------------------------- helpers


def _pod_spec(resource: RecordedResource) -> dict[str, Any]:
    spec = resource.inputs.get("spec", {})
    if resource.type.endswith(":CronJob"):
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def _containers(resource: RecordedResource) -> Iterator[dict[str, Any]]:
    pod = _pod_spec(resource)
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def _workloads(run: ProgramRun) -> list[RecordedResource]:
    return [r for kind in WORKLOAD_KINDS for r in run.kubernetes_objects(kind)]


def _name(resource: RecordedResource) -> str:
    name: str = resource.outputs["metadata"]["name"]
    return name


def _namespace(resource: RecordedResource) -> str | None:
    namespace: str | None = resource.inputs.get("metadata", {}).get("namespace")
    return namespace


def _service_deployments(run: ProgramRun) -> dict[str, RecordedResource]:
    """Catalog service name -> its Deployment (by the app.kubernetes.io/name label)."""
    found = {}
    for deployment in run.of_type(DEPLOYMENT):
        label = deployment.inputs.get("metadata", {}).get("labels", {}).get(NAME_LABEL)
        if label in catalog.SERVICES:
            found[label] = deployment
    return found


def _service_container(
    deployment: RecordedResource, service: catalog.ServiceSpec
) -> dict[str, Any]:
    containers = _pod_spec(deployment)["containers"]
    return next((c for c in containers if c["name"] == service.name), containers[0])


def _ancestors(run: ProgramRun, resource: RecordedResource) -> Iterator[RecordedResource]:
    known = {r.urn: r for r in run}
    parent = resource.parent
    while parent in known:
        yield known[parent]
        parent = known[parent].parent


def _waits_for(run: ProgramRun, resource: RecordedResource, target: RecordedResource) -> bool:
    """Whether `resource` (or a component it lives in) depends, transitively, on `target`.

    Depending on a component means depending on everything inside it.
    """
    known = {r.urn: r for r in run}

    def inside(urn: str) -> set[str]:
        return {urn} | {d for c in run.children(urn) for d in inside(c.urn)}

    seen: set[str] = set()
    frontier = [resource, *_ancestors(run, resource)]
    while frontier:
        current = frontier.pop()
        for dependency in current.dependencies:
            for urn in inside(dependency):
                if urn == target.urn:
                    return True
                if urn not in seen and urn in known:
                    seen.add(urn)
                    frontier.append(known[urn])
    return False


def _bucket_children(run: ProgramRun, type_token: str, bucket: RecordedResource) -> list[Any]:
    return [r for r in run.of_type(type_token) if r.inputs.get("bucket") == bucket.id]


# ----------------------------------------------------------- every stack: services


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_service_has_a_deployment(stack: str, stack_run: RunFor) -> None:
    assert set(_service_deployments(stack_run(stack))) == set(catalog.SHIPPED_SERVICES)


@pytest.mark.parametrize("stack", ["local", "production"])
def test_services_the_image_does_not_serve_yet_are_not_deployed(
    stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Deployment whose command exits would hold `pulumi up` until it times out.
    # Every service ships today, so one is marked unshipped for this run.
    unshipped = dataclasses.replace(catalog.CHURN_ORCHESTRATOR, shipped=False)
    services = MappingProxyType({**catalog.SERVICES, unshipped.name: unshipped})
    monkeypatch.setattr(catalog, "SERVICES", services)
    monkeypatch.setattr(
        catalog,
        "SHIPPED_SERVICES",
        MappingProxyType({name: spec for name, spec in services.items() if spec.shipped}),
    )
    run = run_stack(stack_inputs(stack, environ={}))
    names = {_name(r) for r in run.kubernetes_objects()}
    assert {"websocket-manager", "ml-services"} <= names
    assert not any(name.startswith(unshipped.name) for name in names)


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_has_an_autoscaler_on_its_deployment(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    targets = {
        (_namespace(h), h.inputs["spec"]["scaleTargetRef"]["name"]) for h in run.of_type(HPA)
    }
    for name, deployment in _service_deployments(run).items():
        assert (_namespace(deployment), _name(deployment)) in targets, name


@pytest.mark.parametrize("stack", STACKS)
def test_autoscaler_bounds_are_ordered_and_at_least_one(stack: str, stack_run: RunFor) -> None:
    for hpa in stack_run(stack).of_type(HPA):
        spec = hpa.inputs["spec"]
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], hpa.urn


def test_production_autoscalers_use_the_seed_scaling_numbers(stack_run: RunFor) -> None:
    run = stack_run("production")
    by_target = {h.inputs["spec"]["scaleTargetRef"]["name"]: h for h in run.of_type(HPA)}
    expected = {
        name: (spec.scaling.min_replicas, spec.scaling.max_replicas)
        for name, spec in catalog.SERVICES.items()
    }
    # The one override of stacks/Pulumi.production.yaml: the policy pack's HA floor.
    expected["churn-orchestrator"] = (2, catalog.CHURN_ORCHESTRATOR.scaling.max_replicas)
    for name, deployment in _service_deployments(run).items():
        spec = by_target[_name(deployment)].inputs["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == expected[name], name


@pytest.mark.parametrize("stack", STACKS)
def test_readiness_probes_use_each_service_health_path(stack: str, stack_run: RunFor) -> None:
    for name, deployment in _service_deployments(stack_run(stack)).items():
        service = catalog.SERVICES[name]
        probe = _service_container(deployment, service)["readinessProbe"]
        assert probe["httpGet"]["path"] == service.health_path, name


@pytest.mark.parametrize("stack", STACKS)
def test_liveness_probes_use_the_overall_health_path(stack: str, stack_run: RunFor) -> None:
    # Liveness checks only that the process answers (the seed's /health): a
    # dependency outage must take pods out of the Service, not restart them all.
    for name, deployment in _service_deployments(stack_run(stack)).items():
        container = _service_container(deployment, catalog.SERVICES[name])
        assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH, name


@pytest.mark.parametrize("stack", STACKS)
def test_probes_target_the_service_port(stack: str, stack_run: RunFor) -> None:
    for name, deployment in _service_deployments(stack_run(stack)).items():
        service = catalog.SERVICES[name]
        container = _service_container(deployment, service)
        port_names = {
            p.get("name") for p in container["ports"] if p["containerPort"] == service.port
        }
        for probe in ("readinessProbe", "livenessProbe"):
            port = container[probe]["httpGet"]["port"]
            assert port == service.port or port in port_names, (name, probe, port)


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_has_a_disruption_budget(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    covered = {
        (_namespace(p), p.inputs["spec"]["selector"]["matchLabels"].get(NAME_LABEL))
        for p in run.of_type(PDB)
    }
    for name, deployment in _service_deployments(run).items():
        assert (_namespace(deployment), name) in covered, name


@pytest.mark.parametrize("stack", STACKS)
def test_services_roll_out_only_after_the_migration_job(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    migrations = [
        j
        for j in run.of_type(JOB)
        if "migrate" in " ".join(_pod_spec(j)["containers"][0].get("command", []))
    ]
    assert len(migrations) == 1
    for name, deployment in _service_deployments(run).items():
        assert _waits_for(run, deployment, migrations[0]), name


def _model_publish_jobs(run: ProgramRun) -> list[RecordedResource]:
    return [
        j
        for j in run.of_type(JOB)
        if _pod_spec(j)["containers"][0].get("command", [])[1:3] == ["model", "publish"]
    ]


def _env_sources(run: ProgramRun, workload: RecordedResource) -> tuple[dict[str, str], set[str]]:
    """The ConfigMap data a workload's first container reads, and its Secrets' keys."""
    config_maps = {_name(c): c.inputs.get("data", {}) for c in run.kubernetes_objects("ConfigMap")}
    secrets = {_name(c): c.inputs.get("stringData", {}) for c in run.kubernetes_objects("Secret")}
    data: dict[str, str] = {}
    secret_keys: set[str] = set()
    for source in _pod_spec(workload)["containers"][0].get("envFrom", []):
        if "configMapRef" in source:
            data.update(config_maps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            secret_keys.update(secrets[source["secretRef"]["name"]])
    return data, secret_keys


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_has_one_publish_job_per_model(stack: str, stack_run: RunFor) -> None:
    sources = [
        _pod_spec(job)["containers"][0]["command"][4]
        for job in _model_publish_jobs(stack_run(stack))
    ]
    assert sorted(sources) == sorted(model.image_path for model in catalog.PUBLISHED_MODELS)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("model", catalog.PUBLISHED_MODELS, ids=lambda m: m.name)
def test_model_publish_sends_the_image_model_where_the_services_load_it(
    stack: str, model: catalog.PublishedModel, stack_run: RunFor
) -> None:
    run = stack_run(stack)
    (job,) = [
        j
        for j in _model_publish_jobs(run)
        if _pod_spec(j)["containers"][0]["command"][4] == model.image_path
    ]
    command = _pod_spec(job)["containers"][0]["command"]
    assert command[:4] == [catalog.CLI, "model", "publish", "--from"]
    assert command[5] == "--to"
    loaded = {}
    for name, deployment in _service_deployments(run).items():
        settings, _ = _env_sources(run, deployment)
        models_bucket = settings["MODELS_BUCKET"]
        if model.setting in settings:  # the services that load this model
            loaded[name] = settings[model.setting]
    readers = {
        name
        for name, spec in catalog.SERVICES.items()
        if model.setting not in spec.unread_stack_settings
    }
    assert set(loaded) == readers
    # One URI for every service: the prefix of the models bucket, resolved via current.json.
    assert set(loaded.values()) == {command[6]}
    assert command[6] == f"s3://{models_bucket}/{model.prefix}"
    assert command[6].endswith("/")


@pytest.mark.parametrize("stack", STACKS)
def test_churn_orchestrator_loads_the_published_churn_model(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    settings, _ = _env_sources(run, _service_deployments(run)["churn-orchestrator"])
    assert settings["CHURN_MODEL_URI"] == f"s3://{settings['MODELS_BUCKET']}/churn-risk/"
    # The lead model's location means nothing to it: a setting without effect.
    assert "ML_MODEL_URI" not in settings


@pytest.mark.parametrize("stack", STACKS)
def test_services_roll_out_only_after_the_models_are_published(
    stack: str, stack_run: RunFor
) -> None:
    run = stack_run(stack)
    for publish in _model_publish_jobs(run):
        for name, deployment in _service_deployments(run).items():
            assert _waits_for(run, deployment, publish), name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_cloud_model_publish_uses_its_role_and_no_static_credentials(
    stack: str, stack_run: RunFor
) -> None:
    run = stack_run(stack)
    bucket = next(
        b
        for b in run.of_type(BUCKET)
        if b.inputs["bucket"].endswith(f"-{catalog.Bucket.MODELS}-123456789012")
    )
    accounts = {_name(a): a for a in run.kubernetes_objects("ServiceAccount")}
    publishes = _model_publish_jobs(run)
    assert len(publishes) == len(catalog.PUBLISHED_MODELS)
    for publish in publishes:
        _, secret_keys = _env_sources(run, publish)
        assert not secret_keys
        account = _pod_spec(publish)["serviceAccountName"]
        annotations = accounts[account].inputs["metadata"]["annotations"]
        role_arn = annotations["eks.amazonaws.com/role-arn"]
        role = next(r for r in run.of_type("aws:iam/role:Role") if r.outputs.get("arn") == role_arn)
        assert role.name.endswith(f"-{account}")
        policy = next(
            p
            for p in run.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.name == f"{role.name}-storage"
        )
        # It may write under every published model's prefix, and nowhere else.
        (objects,) = [
            s
            for s in json.loads(policy.inputs["policy"])["Statement"]
            if s["Sid"] == "PrefixObjects"
        ]
        assert objects["Resource"] == [
            f"{bucket.outputs['arn']}/{model.prefix}*" for model in catalog.PUBLISHED_MODELS
        ]
        # It waits for the bucket it writes to and for its role's policy: a first
        # attempt without them would fail with NoSuchBucket or AccessDenied.
        assert _waits_for(run, publish, bucket)
        assert _waits_for(run, publish, policy)


# ------------------------------------------------------- every stack: pods and images


def _images(run: ProgramRun) -> Iterator[tuple[RecordedResource, str]]:
    for workload in _workloads(run):
        for container in _containers(workload):
            yield workload, container["image"]


@pytest.mark.parametrize("stack", STACKS)
def test_platform_images_are_pinned_by_digest(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    unpinned = [
        f"{w.name}: {image}"
        for w, image in _images(run)
        if w.inputs["metadata"].get("labels", {}).get(NAME_LABEL) not in THIRD_PARTY_STORES
        and "@sha256:" not in image
    ]
    assert not unpinned, "\n".join(unpinned)


@pytest.mark.parametrize("stack", STACKS)
def test_images_without_a_digest_have_an_exact_tag_and_a_recorded_reason(
    stack: str, stack_run: RunFor
) -> None:
    # Upstream images whose digest cannot be looked up offline may use an exact
    # version tag, never `latest`, and must say why on the object (checkov skip).
    for workload, image in _images(stack_run(stack)):
        if "@sha256:" in image:
            continue
        tag = image.rpartition(":")[2]
        assert "/" not in tag, f"{image} has no tag"
        assert tag not in ("", "latest"), image
        annotations = workload.inputs["metadata"].get("annotations", {})
        assert any(v.startswith("CKV_K8S_43=") for v in annotations.values()), workload.name


@pytest.mark.parametrize("stack", STACKS)
def test_services_run_the_configured_image(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    images = {
        _service_container(d, catalog.SERVICES[n])["image"]
        for n, d in _service_deployments(run).items()
    }
    assert len(images) == 1
    assert images.pop().startswith("registry.invalid/enterprisehub/services@sha256:")


@pytest.mark.parametrize("stack", STACKS)
def test_service_containers_are_hardened(stack: str, stack_run: RunFor) -> None:
    for name, deployment in _service_deployments(stack_run(stack)).items():
        for container in _containers(deployment):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["seccompProfile"]["type"] == "RuntimeDefault", name


# ------------------------------------------------------------ every stack: network


def _is_default_deny(policy: RecordedResource) -> bool:
    spec = policy.inputs.get("spec", {})
    return (
        not spec.get("podSelector")
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes", []))
        and not spec.get("ingress")
        and not spec.get("egress")
    )


@pytest.mark.parametrize("stack", STACKS)
def test_every_created_namespace_has_a_default_deny_policy(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    denied = {_namespace(p) for p in run.of_type(NETWORK_POLICY) if _is_default_deny(p)}
    namespaces = [_name(n) for n in run.of_type(NAMESPACE)]
    assert namespaces
    missing = sorted(set(namespaces) - denied)
    assert not missing, f"namespaces without a default-deny NetworkPolicy: {missing}"


# ---------------------------------------------------------------- AWS stacks


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_database_is_not_publicly_accessible(stack: str, stack_run: RunFor) -> None:
    for database in stack_run(stack).of_type(RDS):
        assert database.inputs.get("publiclyAccessible", False) is False


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_database_storage_is_encrypted(stack: str, stack_run: RunFor) -> None:
    databases = stack_run(stack).of_type(RDS)
    assert databases
    for database in databases:
        assert database.inputs["storageEncrypted"] is True


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_database_is_postgres_15(stack: str, stack_run: RunFor) -> None:
    for database in stack_run(stack).of_type(RDS):
        assert database.inputs["engine"] == "postgres"
        assert str(database.inputs["engineVersion"]).split(".")[0] == "15"


def test_production_database_keeps_backups_30_days_from_0200_utc(stack_run: RunFor) -> None:
    database = stack_run("production").one(RDS)
    assert database.inputs["backupRetentionPeriod"] == 30
    assert database.inputs["backupWindow"].startswith("02:00-")


def test_production_database_is_multi_az(stack_run: RunFor) -> None:
    assert stack_run("production").one(RDS).inputs["multiAz"] is True


def test_production_database_has_deletion_protection(stack_run: RunFor) -> None:
    assert stack_run("production").one(RDS).inputs["deletionProtection"] is True


def test_production_database_has_100_gib_of_storage(stack_run: RunFor) -> None:
    assert stack_run("production").one(RDS).inputs["allocatedStorage"] == 100


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_redis_encrypts_in_transit_and_at_rest_with_an_auth_token(
    stack: str, stack_run: RunFor
) -> None:
    group = stack_run(stack).one(REDIS)
    assert group.inputs["transitEncryptionEnabled"] is True
    assert group.inputs["atRestEncryptionEnabled"] is True
    assert isinstance(group.raw_inputs["authToken"], Secret)


def test_production_redis_has_three_nodes_with_automatic_failover(stack_run: RunFor) -> None:
    group = stack_run("production").one(REDIS)
    assert group.inputs["numCacheClusters"] == 3
    assert group.inputs["automaticFailoverEnabled"] is True


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_redis_is_version_7_with_the_seed_parameters(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    assert str(run.one(REDIS).inputs["engineVersion"]).startswith("7")
    parameters = {p["name"]: p["value"] for p in run.one(REDIS_PARAMETERS).inputs["parameters"]}
    assert parameters == {
        "maxmemory-policy": "allkeys-lru",
        "notify-keyspace-events": "Ex",
        "slowlog-log-slower-than": "10000",
        "slowlog-max-len": "128",
    }


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_bucket_blocks_public_access(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    buckets = run.of_type(BUCKET)
    assert buckets
    for bucket in buckets:
        blocks = _bucket_children(
            run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket
        )
        assert len(blocks) == 1, bucket.name
        settings = blocks[0].inputs
        for key in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        ):
            assert settings[key] is True, (bucket.name, key)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_bucket_is_versioned(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    for bucket in run.of_type(BUCKET):
        versioning = _bucket_children(run, "aws:s3/bucketVersioning:BucketVersioning", bucket)
        assert [v.inputs["versioningConfiguration"]["status"] for v in versioning] == ["Enabled"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_bucket_is_encrypted_with_kms(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    token = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    for bucket in run.of_type(BUCKET):
        (encryption,) = _bucket_children(run, token, bucket)
        rule = encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert rule["sseAlgorithm"] == "aws:kms", bucket.name
        assert rule.get("kmsMasterKeyId"), bucket.name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_bucket_policy_denies_requests_without_tls(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    for bucket in run.of_type(BUCKET):
        (policy,) = _bucket_children(run, "aws:s3/bucketPolicy:BucketPolicy", bucket)
        statements = json.loads(policy.inputs["policy"])["Statement"]
        assert any(
            s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
            in ("false", False)
            for s in statements
        ), bucket.name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_bucket_has_lifecycle_rules(stack: str, stack_run: RunFor) -> None:
    run = stack_run(stack)
    token = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    for bucket in run.of_type(BUCKET):
        (lifecycle,) = _bucket_children(run, token, bucket)
        assert lifecycle.inputs["rules"], bucket.name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_cluster_api_endpoint_is_private_or_restricted(stack: str, stack_run: RunFor) -> None:
    vpc_config = stack_run(stack).one(EKS).inputs["vpcConfig"]
    if vpc_config.get("endpointPublicAccess", True):
        cidrs = vpc_config.get("publicAccessCidrs", [])
        assert cidrs, "public endpoint open to every address"
        assert "0.0.0.0/0" not in cidrs


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_cluster_has_an_oidc_provider_for_service_account_roles(
    stack: str, stack_run: RunFor
) -> None:
    run = stack_run(stack)
    (provider,) = run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    issuer = run.one(EKS).outputs["identities"][0]["oidcs"][0]["issuer"]
    assert provider.inputs["url"] == issuer


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_private_subnets_span_three_availability_zones(stack: str, stack_run: RunFor) -> None:
    subnets = stack_run(stack).of_type(SUBNET)
    private = [s for s in subnets if not s.inputs.get("mapPublicIpOnLaunch", False)]
    assert len({s.inputs["availabilityZoneId"] for s in private}) == 3


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_image_repository_is_immutable_and_scanned(stack: str, stack_run: RunFor) -> None:
    repository = stack_run(stack).one(ECR)
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["imageScanningConfiguration"]["scanOnPush"] is True


# ----------------------------------------------------------------- local stack


def test_local_stack_declares_no_aws_resources(stack_run: RunFor) -> None:
    aws = [
        r.urn for r in stack_run("local") if r.package == "aws" or r.type == "pulumi:providers:aws"
    ]
    assert not aws


@pytest.mark.parametrize("store", THIRD_PARTY_STORES)
def test_local_stack_runs_its_datastores_in_cluster_with_volumes(
    store: str, stack_run: RunFor
) -> None:
    sets = [
        s
        for s in stack_run("local").of_type(STATEFUL_SET)
        if s.inputs.get("metadata", {}).get("labels", {}).get(NAME_LABEL) == store
    ]
    assert len(sets) == 1, store
    assert sets[0].inputs["spec"]["volumeClaimTemplates"], store


def test_local_model_publish_reaches_minio_with_the_datastore_credentials(
    stack_run: RunFor,
) -> None:
    run = stack_run("local")
    bucket_init = next(j for j in run.of_type(JOB) if _name(j).startswith("bucket-init-"))
    publishes = _model_publish_jobs(run)
    assert len(publishes) == len(catalog.PUBLISHED_MODELS)
    for publish in publishes:
        settings, secret_keys = _env_sources(run, publish)
        assert settings["S3_ENDPOINT_URL"].startswith("http://minio.")
        assert secret_keys == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert _waits_for(run, publish, bucket_init)
