"""The dashboards (Streamlit in the cluster), from the catalog's DASHBOARDS entry."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra import catalog
from infra.components import hardening
from infra.components.dashboards import Dashboards, DashboardsArgs
from infra.synth.mocks import ProgramRun, run_program

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/enterprisehub@sha256:" + "d" * 64


def _args(**overrides: Any) -> DashboardsArgs:
    values: dict[str, Any] = {
        "namespace": "enterprisehub",
        "image": IMAGE,
        "settings": {"ENVIRONMENT": "production"},
        "secrets": {
            key: pulumi.Output.secret(f"value-of-{key}") for key in catalog.DASHBOARDS.secrets
        },
        **overrides,
    }
    return DashboardsArgs(**values)


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program("production", {}, program=lambda: Dashboards("dashboards", _args()))


def _container(run: ProgramRun) -> dict[str, Any]:
    deployment = run.one("kubernetes:apps/v1:Deployment").inputs
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_dashboards_run_the_catalogs_command(run: ProgramRun) -> None:
    container = _container(run)
    assert container["command"] == [
        "enterprisehub",
        "serve",
        "dashboards",
        "--host",
        "0.0.0.0",
        "--port",
        "8501",
    ]
    assert container["ports"] == [
        {"name": "http", "containerPort": catalog.DASHBOARDS.port},
        {"name": "metrics", "containerPort": catalog.DASHBOARDS.metrics_port},
    ]


def test_the_process_binds_the_metrics_port_its_service_exposes(run: ProgramRun) -> None:
    """The port is the catalog's, given last: no stack setting can move the
    listener away from the port the Service, the ServiceMonitor and the policy name."""
    config = run.one("kubernetes:core/v1:ConfigMap").inputs["data"]
    assert config["DASHBOARDS_METRICS_PORT"] == str(catalog.DASHBOARDS.metrics_port)
    overridden = run_program(
        "production",
        {},
        program=lambda: Dashboards(
            "dashboards", _args(settings={"DASHBOARDS_METRICS_PORT": "8501"})
        ),
    )
    data = overridden.one("kubernetes:core/v1:ConfigMap").inputs["data"]
    assert data["DASHBOARDS_METRICS_PORT"] == str(catalog.DASHBOARDS.metrics_port)


def test_the_service_carries_the_metrics_label_and_names_no_app_port_http(
    run: ProgramRun,
) -> None:
    """The ServiceMonitor scrapes /metrics on every port named `http` or `metrics`
    of the Services it selects: the app's port named `http`, Prometheus read
    Streamlit's page there, a target down for as long as the dashboards run."""
    service = run.one("kubernetes:core/v1:Service").inputs
    assert service["metadata"]["labels"][hardening.METRICS_LABEL] == "true"
    assert service["spec"]["ports"] == [
        {"name": "app", "port": catalog.DASHBOARDS.port, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "metrics",
            "port": catalog.DASHBOARDS.metrics_port,
            "targetPort": "metrics",
            "protocol": "TCP",
        },
    ]
    pod = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["metadata"]
    assert pod["labels"][hardening.METRICS_LABEL] == "true"
    assert pod["annotations"]["prometheus.io/port"] == str(catalog.DASHBOARDS.metrics_port)


def test_dashboards_probe_streamlits_health_endpoint(run: ProgramRun) -> None:
    container = _container(run)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/_stcore/health"


def test_dashboards_are_hardened(run: ProgramRun) -> None:
    context = _container(run)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert _container(run)["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}


def test_dashboards_keep_two_replicas_and_a_pdb(run: ProgramRun) -> None:
    # The autoscaler owns the count; the Deployment does not reset it on each `up`.
    assert "replicas" not in run.one("kubernetes:apps/v1:Deployment").inputs["spec"]
    hpa = run.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    pdb = run.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert pdb["maxUnavailable"] == 1


def test_the_secret_holds_exactly_the_keys_the_dashboards_read(run: ProgramRun) -> None:
    secret = run.one("kubernetes:core/v1:Secret").inputs
    assert set(secret["stringData"]) == set(catalog.DASHBOARDS.secrets)


def test_objects_validate_against_the_kubernetes_schema(run: ProgramRun) -> None:
    for obj in run.kubernetes_objects():
        kubernetes_validate.validate(obj.inputs, "1.35.0", strict=True)


def test_dashboards_without_a_database_url_are_refused() -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        Dashboards("dashboards", _args(secrets={"REDIS_URL": "x"}))


def test_a_key_the_dashboards_do_not_read_is_refused() -> None:
    secrets = {key: "x" for key in catalog.DASHBOARDS.secrets} | {"ANTHROPIC_API_KEY": "x"}
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        Dashboards("dashboards", _args(secrets=secrets))
