"""Dashboards (Streamlit in the cluster) and the public Ingresses with TLS."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra import catalog
from infra.components.dashboards import (
    DASHBOARDS_COMMAND,
    ApiRoute,
    Dashboards,
    DashboardsArgs,
    PublicIngress,
    PublicIngressArgs,
)
from infra.synth.mocks import ProgramRun, run_program

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/enterprisehub@sha256:" + "d" * 64
DASHBOARD_HOSTS = {
    "intelligence": "intelligence.enterprisehub.ai",
    "coaching": "coaching.enterprisehub.ai",
    "property": "property.enterprisehub.ai",
    "roi": "roi.enterprisehub.ai",
}
API_HOST = "api.enterprisehub.ai"
NGINX = "nginx.ingress.kubernetes.io"


def _dashboards_args(**overrides: Any) -> DashboardsArgs:
    values: dict[str, Any] = {
        "namespace": "enterprisehub",
        "image": IMAGE,
        "settings": {"ENVIRONMENT": "production"},
        "secrets": {
            "DATABASE_URL": pulumi.Output.secret("postgresql://app:pw@db/eh"),
            "REDIS_URL": pulumi.Output.secret("rediss://:t@cache:6379/0"),
        },
        **overrides,
    }
    return DashboardsArgs(**values)


def _ingress_args(**overrides: Any) -> PublicIngressArgs:
    values: dict[str, Any] = {
        "namespace": "enterprisehub",
        "api_host": API_HOST,
        "dashboard_hosts": DASHBOARD_HOSTS,
        "cluster_issuer": "letsencrypt",
        **overrides,
    }
    return PublicIngressArgs(**values)


def _program() -> None:
    dashboards = Dashboards("dashboards", _dashboards_args())
    PublicIngress("public", _ingress_args(dashboards_service=dashboards.service_name))


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program("production", {}, program=_program)


def _ingress(run: ProgramRun, name: str) -> dict[str, Any]:
    return run.one("kubernetes:networking.k8s.io/v1:Ingress", name).inputs


def _container(run: ProgramRun) -> dict[str, Any]:
    deployment = run.one("kubernetes:apps/v1:Deployment").inputs
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_dashboards_run_the_streamlit_command(run: ProgramRun) -> None:
    container = _container(run)
    assert container["command"] == list(DASHBOARDS_COMMAND)
    assert "--browser.gatherUsageStats" in container["command"]
    assert container["ports"] == [{"name": "http", "containerPort": 8501}]


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
    assert run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["replicas"] == 2
    pdb = run.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert pdb["maxUnavailable"] == 1


def test_ingresses_use_the_nginx_class(run: ProgramRun) -> None:
    for ingress in run.of_type("kubernetes:networking.k8s.io/v1:Ingress"):
        assert ingress.inputs["spec"]["ingressClassName"] == "nginx"


def test_one_ingress_requests_the_certificate_for_every_host(run: ProgramRun) -> None:
    annotated = [
        i.inputs
        for i in run.of_type("kubernetes:networking.k8s.io/v1:Ingress")
        if "cert-manager.io/cluster-issuer" in i.inputs["metadata"].get("annotations", {})
    ]
    assert len(annotated) == 1
    (tls,) = annotated[0]["spec"]["tls"]
    assert set(tls["hosts"]) == {API_HOST, *DASHBOARD_HOSTS.values()}
    assert (
        annotated[0]["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    )


def test_every_ingress_serves_tls_from_the_same_secret(run: ProgramRun) -> None:
    secrets = {
        tls["secretName"]
        for ingress in run.of_type("kubernetes:networking.k8s.io/v1:Ingress")
        for tls in ingress.inputs["spec"]["tls"]
    }
    assert secrets == {"enterprisehub-tls"}


def test_dashboard_hosts_route_to_the_dashboards(run: ProgramRun) -> None:
    rules = _ingress(run, "public-dashboards")["spec"]["rules"]
    assert {rule["host"] for rule in rules} == set(DASHBOARD_HOSTS.values())
    for rule in rules:
        (path,) = rule["http"]["paths"]
        assert path["path"] == "/"
        assert path["backend"]["service"] == {"name": "dashboards", "port": {"number": 8501}}


def test_dashboards_get_websocket_timeouts_and_session_affinity(run: ProgramRun) -> None:
    annotations = _ingress(run, "public-dashboards")["metadata"]["annotations"]
    assert annotations[f"{NGINX}/proxy-read-timeout"] == "3600"
    assert annotations[f"{NGINX}/affinity"] == "cookie"


def test_the_feed_has_its_own_ingress_with_long_timeouts(run: ProgramRun) -> None:
    feed = _ingress(run, "public-feed")
    annotations = feed["metadata"]["annotations"]
    assert annotations[f"{NGINX}/proxy-read-timeout"] == "3600"
    assert annotations[f"{NGINX}/proxy-send-timeout"] == "3600"
    (rule,) = feed["spec"]["rules"]
    assert rule["host"] == API_HOST
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/v1/feed"
    assert path["backend"]["service"]["name"] == "websocket-manager"


def test_api_host_routes_each_prefix_to_its_service(run: ProgramRun) -> None:
    api = _ingress(run, "public-api")
    assert f"{NGINX}/proxy-read-timeout" not in api["metadata"]["annotations"]
    (rule,) = api["spec"]["rules"]
    routes = {
        p["path"]: (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
        for p in rule["http"]["paths"]
    }
    assert routes["/v1/leads/events"] == ("websocket-manager", 8001)
    assert routes["/v1/leads/score"] == ("ml-services", 8002)
    assert {name for name, _ in routes.values()} == set(catalog.SHIPPED_SERVICES)
    for spec in catalog.SHIPPED_SERVICES.values():
        assert all(port == spec.port for name, port in routes.values() if name == spec.name)
    assert "/v1/feed" not in routes


def test_objects_validate_against_the_kubernetes_schema(run: ProgramRun) -> None:
    for obj in run.kubernetes_objects():
        kubernetes_validate.validate(obj.inputs, "1.31.0", strict=True)


def test_skip_await_annotation_for_clusters_without_a_load_balancer() -> None:
    def program() -> None:
        PublicIngress("public", _ingress_args(skip_await=True))

    local = run_program("local", {}, program=program)
    for ingress in local.of_type("kubernetes:networking.k8s.io/v1:Ingress"):
        assert ingress.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_a_hostname_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="hostnames used twice"):
        PublicIngress("public", _ingress_args(dashboard_hosts={"roi": API_HOST}))


def test_a_path_routed_twice_is_refused() -> None:
    routes = [ApiRoute("/v1/ml", "ml-services", 8002), ApiRoute("/v1/ml", "coaching-engine", 8003)]
    with pytest.raises(ValueError, match="routed twice"):
        PublicIngress("public", _ingress_args(api_routes=routes))


def test_dashboards_without_a_database_url_are_refused() -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        Dashboards("dashboards", _dashboards_args(secrets={"REDIS_URL": "x"}))
