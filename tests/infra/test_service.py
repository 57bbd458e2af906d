"""FeatureService: one feature service's Kubernetes objects, as the seed's table says."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra import catalog
from infra.components.service import FeatureService, FeatureServiceArgs
from infra.synth.mocks import ProgramRun, RecordedResource, Secret, run_program

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/enterprisehub@sha256:" + "a" * 64
ROLE = "arn:aws:iam::123456789012:role/enterprisehub-ml-services"
SETTINGS = {"ENVIRONMENT": "production", "LOG_LEVEL": "INFO"}
SECRET_VALUE = "do-not-leak-"


def _args(spec: catalog.ServiceSpec, **overrides: Any) -> FeatureServiceArgs:
    values: dict[str, Any] = {
        "spec": spec,
        "namespace": "enterprisehub",
        "image": IMAGE,
        "settings": SETTINGS,
        "secrets": {key: pulumi.Output.secret(SECRET_VALUE + key) for key in spec.secrets},
        "role_arn": ROLE,
        **overrides,
    }
    return FeatureServiceArgs(**values)


def _program() -> None:
    gate = pulumi.CustomResource("test:index:Gate", "migration-gate", {})
    for spec in catalog.SERVICES.values():
        FeatureService(spec.name, _args(spec, depends_on=[gate]))


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program("production", {}, program=_program)


def _object(run: ProgramRun, kind: str, service: str) -> RecordedResource:
    suffix = {
        "Deployment": "deployment",
        "Service": "service",
        "HorizontalPodAutoscaler": "hpa",
        "PodDisruptionBudget": "pdb",
        "ServiceAccount": "sa",
        "ConfigMap": "config",
        "Secret": "secret",
    }[kind]
    (found,) = [r for r in run.kubernetes_objects(kind) if r.name == f"{service}-{suffix}"]
    return found


def _container(run: ProgramRun, service: str) -> dict[str, Any]:
    pod = _object(run, "Deployment", service).inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


SERVICES = list(catalog.SERVICES.values())
IDS = [spec.name for spec in SERVICES]


def test_every_service_declares_the_seven_objects(run: ProgramRun) -> None:
    kinds = (
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
    )
    for spec in SERVICES:
        for kind in kinds:
            assert _object(run, kind, spec.name).parent is not None


@pytest.mark.parametrize("spec", SERVICES, ids=IDS)
def test_hpa_bounds_come_from_the_seed_table(run: ProgramRun, spec: catalog.ServiceSpec) -> None:
    hpa = _object(run, "HorizontalPodAutoscaler", spec.name).inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        spec.scaling.min_replicas,
        spec.scaling.max_replicas,
    )
    assert isinstance(hpa["minReplicas"], int)
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": spec.name,
    }


@pytest.mark.parametrize("spec", SERVICES, ids=IDS)
def test_hpa_targets_cpu_and_memory_where_the_seed_gives_them(
    run: ProgramRun, spec: catalog.ServiceSpec
) -> None:
    metrics = _object(run, "HorizontalPodAutoscaler", spec.name).inputs["spec"]["metrics"]
    targets = {
        m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in metrics
    }
    expected = {"cpu": spec.scaling.cpu_target_percent}
    if spec.scaling.memory_target_percent is not None:
        expected["memory"] = spec.scaling.memory_target_percent
    assert targets == expected


def test_websocket_manager_scales_on_the_seeds_70_cpu_80_memory(run: ProgramRun) -> None:
    metrics = _object(run, "HorizontalPodAutoscaler", "websocket-manager").inputs["spec"]["metrics"]
    assert {
        m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in metrics
    } == {"cpu": 70, "memory": 80}


@pytest.mark.parametrize("spec", SERVICES, ids=IDS)
def test_readiness_uses_the_seeds_feature_health_path(
    run: ProgramRun, spec: catalog.ServiceSpec
) -> None:
    probe = _container(run, spec.name)["readinessProbe"]["httpGet"]
    assert probe["path"] == spec.health_path
    assert probe["port"] == "http"


@pytest.mark.parametrize("spec", SERVICES, ids=IDS)
def test_liveness_and_startup_use_the_process_health_path(
    run: ProgramRun, spec: catalog.ServiceSpec
) -> None:
    container = _container(run, spec.name)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("spec", SERVICES, ids=IDS)
def test_port_and_command_come_from_the_catalog(run: ProgramRun, spec: catalog.ServiceSpec) -> None:
    container = _container(run, spec.name)
    assert container["ports"] == [{"name": "http", "containerPort": spec.port}]
    assert container["command"] == list(spec.command)
    service = _object(run, "Service", spec.name).inputs["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"][0]["port"] == spec.port


@pytest.mark.parametrize("spec", SERVICES, ids=IDS)
def test_resources_are_the_seed_size_as_request_and_limit(
    run: ProgramRun, spec: catalog.ServiceSpec
) -> None:
    resources = _container(run, spec.name)["resources"]
    size = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    assert resources == {"requests": size, "limits": size}


def test_container_security_context_is_hardened(run: ProgramRun) -> None:
    for spec in SERVICES:
        context = _container(run, spec.name)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_runs_non_root_with_seccomp_and_no_token(run: ProgramRun) -> None:
    pod = _object(run, "Deployment", "ml-services").inputs["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "ml-services"


def test_read_only_root_gets_a_writable_tmp(run: ProgramRun) -> None:
    pod = _object(run, "Deployment", "coaching-engine").inputs["spec"]["template"]["spec"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_image_is_the_given_digest(run: ProgramRun) -> None:
    assert _container(run, "churn-orchestrator")["image"] == IMAGE


def test_rolling_update_never_drops_capacity(run: ProgramRun) -> None:
    strategy = _object(run, "Deployment", "websocket-manager").inputs["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_deployment_leaves_replicas_to_the_hpa(run: ProgramRun) -> None:
    assert "replicas" not in _object(run, "Deployment", "ml-services").inputs["spec"]


def test_pods_spread_across_zones(run: ProgramRun) -> None:
    pod = _object(run, "Deployment", "ml-services").inputs["spec"]["template"]["spec"]
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert "topology.kubernetes.io/zone" in keys


def test_pods_carry_prometheus_scrape_annotations(run: ProgramRun) -> None:
    template = _object(run, "Deployment", "ml-services").inputs["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8002",
        "prometheus.io/path": "/metrics",
    }
    service_labels = _object(run, "Service", "ml-services").inputs["metadata"]["labels"]
    assert service_labels["enterprisehub.ai/metrics"] == "true"


def test_pdb_lets_a_single_replica_service_drain(run: ProgramRun) -> None:
    pdb = _object(run, "PodDisruptionBudget", "churn-orchestrator").inputs["spec"]
    assert pdb["maxUnavailable"] == 1
    assert "minAvailable" not in pdb


def test_service_account_has_the_irsa_role_and_no_token(run: ProgramRun) -> None:
    account = _object(run, "ServiceAccount", "ml-services").inputs
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}
    assert account["automountServiceAccountToken"] is False


def test_config_map_carries_the_seed_settings(run: ProgramRun) -> None:
    data = _object(run, "ConfigMap", "websocket-manager").inputs["data"]
    for key, value in {**catalog.COMMON_SETTINGS, **catalog.WEBSOCKET_MANAGER.settings}.items():
        assert data[key] == value
    assert data["ENVIRONMENT"] == "production"


def test_secret_values_are_secret_outputs(run: ProgramRun) -> None:
    secret = _object(run, "Secret", "ml-services")
    string_data = secret.raw_inputs["stringData"]
    assert isinstance(string_data, Secret) or all(
        isinstance(value, Secret) for value in string_data.values()
    )
    assert set(secret.inputs["stringData"]) == set(catalog.ML_SERVICES.secrets)


def test_no_secret_value_or_key_reaches_a_config_map(run: ProgramRun) -> None:
    for config in run.kubernetes_objects("ConfigMap"):
        data = config.inputs["data"]
        assert not set(catalog.SERVICE_SECRET_KEYS) & set(data)
        assert not any(SECRET_VALUE in str(value) for value in data.values())


def test_pods_read_the_config_map_and_secret(run: ProgramRun) -> None:
    env_from = _container(run, "websocket-manager")["envFrom"]
    assert env_from == [
        {
            "configMapRef": {
                "name": _object(run, "ConfigMap", "websocket-manager").inputs["metadata"]["name"]
            }
        },
        {
            "secretRef": {
                "name": _object(run, "Secret", "websocket-manager").inputs["metadata"]["name"]
            }
        },
    ]


def test_deployment_waits_for_the_migration_gate(run: ProgramRun) -> None:
    gate = run.one("test:index:Gate")
    for spec in SERVICES:
        assert gate.urn in _object(run, "Deployment", spec.name).dependencies


def test_objects_validate_against_the_kubernetes_schema(run: ProgramRun) -> None:
    for obj in run.kubernetes_objects():
        kubernetes_validate.validate(obj.inputs, "1.31.0", strict=True)


def test_stack_overrides_replace_bounds_and_sizes() -> None:
    def program() -> None:
        FeatureService(
            "ml-services",
            _args(catalog.ML_SERVICES, min_replicas=1, max_replicas=2, cpu="500m", memory="1Gi"),
        )

    small = run_program("local", {}, program=program)
    hpa = small.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
    container = small.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}


def test_config_change_renames_the_config_map() -> None:
    names = []
    for level in ("INFO", "DEBUG"):

        def program(level: str = level) -> None:
            FeatureService(
                "coaching-engine",
                _args(catalog.COACHING_ENGINE, settings={**SETTINGS, "LOG_LEVEL": level}),
            )

        names.append(
            run_program("dev", {}, program=program)
            .one("kubernetes:core/v1:ConfigMap")
            .inputs["metadata"]["name"]
        )
    assert names[0] != names[1]
    assert all(name.startswith("coaching-engine-config-") for name in names)


@pytest.mark.parametrize(
    "image", ["enterprisehub:latest", "123456789012.dkr.ecr.us-east-1.amazonaws.com/eh:1.2.3"]
)
def test_a_mutable_image_reference_is_refused(image: str) -> None:
    with pytest.raises(ValueError, match="not pinned by digest"):
        FeatureService("ml-services", _args(catalog.ML_SERVICES, image=image))


def test_a_secret_key_in_settings_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be in the ConfigMap"):
        FeatureService(
            "ml-services",
            _args(catalog.ML_SERVICES, settings={**SETTINGS, "JWT_SECRET_KEY": "x"}),
        )


def test_the_owner_dsn_is_refused_in_a_services_secret() -> None:
    secrets = {key: "x" for key in catalog.ML_SERVICES.secrets}
    with pytest.raises(ValueError, match="migration Job only"):
        FeatureService(
            "ml-services",
            _args(catalog.ML_SERVICES, secrets={**secrets, "MIGRATION_DATABASE_URL": "x"}),
        )


def test_a_key_the_service_does_not_read_is_refused() -> None:
    # websocket-manager never calls Claude or the CRM: it must not hold their keys.
    secrets = {key: "x" for key in catalog.WEBSOCKET_MANAGER.secrets}
    for key in ("ANTHROPIC_API_KEY", "GHL_API_KEY", "SLACK_WEBHOOK_URL"):
        with pytest.raises(ValueError, match=f"{key} are not read by this service"):
            FeatureService(
                "websocket-manager",
                _args(catalog.WEBSOCKET_MANAGER, secrets={**secrets, key: "x"}),
            )


def test_a_missing_secret_key_is_named() -> None:
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        FeatureService(
            "ml-services",
            _args(catalog.ML_SERVICES, secrets={"DATABASE_URL": "x"}),
        )
