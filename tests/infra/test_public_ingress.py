"""The public edge: one Gateway API Gateway with TLS from cert-manager, and its routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from infra import catalog
from infra.components.public_ingress import (
    ApiRoute,
    GrafanaRoute,
    PublicIngress,
    PublicIngressArgs,
    edge_address_from_status,
)
from infra.environments import ENVIRONMENTS
from infra.platform import edge_service_type
from infra.stackfiles import STACKS
from infra.synth.mocks import ProgramRun, run_program

DASHBOARD_HOSTS = {
    "intelligence": "intelligence.enterprisehub.ai",
    "coaching": "coaching.enterprisehub.ai",
    "property": "property.enterprisehub.ai",
    "roi": "roi.enterprisehub.ai",
}
API_HOST = "api.enterprisehub.ai"
GRAFANA = GrafanaRoute(
    host="grafana.enterprisehub.ai", namespace="monitoring", service="kps-grafana"
)
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


def _args(**overrides: Any) -> PublicIngressArgs:
    values: dict[str, Any] = {
        "namespace": "enterprisehub",
        "api_host": API_HOST,
        "dashboard_hosts": DASHBOARD_HOSTS,
        "cluster_issuer": "letsencrypt",
        "grafana": GRAFANA,
        **overrides,
    }
    return PublicIngressArgs(**values)


def _exporting(args: PublicIngressArgs) -> Callable[[], None]:
    def program() -> None:
        pulumi.export("edgeAddress", PublicIngress("public", args).edge_address)

    return program


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program("production", {}, program=_exporting(_args()))


def _gateway(run: ProgramRun) -> dict[str, Any]:
    return run.one(GATEWAY).inputs


def _route(run: ProgramRun, name: str) -> dict[str, Any]:
    return run.one(ROUTE, f"public-{name}").inputs


def _listeners(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {listener["name"]: listener for listener in _gateway(run)["spec"]["listeners"]}


def test_the_gateway_asks_cert_manager_for_one_certificate_of_every_host(
    run: ProgramRun,
) -> None:
    gateway = _gateway(run)
    assert gateway["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert gateway["spec"]["gatewayClassName"] == "enterprisehub"
    https = [l for l in _listeners(run).values() if l["protocol"] == "HTTPS"]  # noqa: E741
    assert {l["hostname"] for l in https} == {  # noqa: E741
        API_HOST,
        GRAFANA.host,
        *DASHBOARD_HOSTS.values(),
    }
    for listener in https:
        assert listener["port"] == 443
        assert listener["tls"] == {
            "mode": "Terminate",
            "certificateRefs": [{"kind": "Secret", "name": "enterprisehub-tls"}],
        }


def test_port_80_redirects_to_https_for_every_host(run: ProgramRun) -> None:
    assert _listeners(run)["http"]["port"] == 80
    redirect = _route(run, "https-redirect")["spec"]
    assert redirect["parentRefs"] == [{"name": "enterprisehub", "sectionName": "http"}]
    assert set(redirect["hostnames"]) == {API_HOST, GRAFANA.host, *DASHBOARD_HOSTS.values()}
    (rule,) = redirect["rules"]
    assert rule["filters"] == [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    ]


def test_api_host_routes_each_prefix_to_its_service(run: ProgramRun) -> None:
    api = _route(run, "api")["spec"]
    assert api["hostnames"] == [API_HOST]
    routes = {rule["matches"][0]["path"]["value"]: rule for rule in api["rules"]}
    backends = {
        path: (rule["backendRefs"][0]["name"], rule["backendRefs"][0]["port"])
        for path, rule in routes.items()
    }
    assert backends["/v1/leads/events"] == ("websocket-manager", 8001)
    assert backends["/v1/leads/score"] == ("ml-services", 8002)
    assert backends["/v1/feed"] == ("websocket-manager", 8001)
    assert {name for name, _ in backends.values()} == set(catalog.SHIPPED_SERVICES)
    # The websocket feed has no request timeout; plain API calls keep the default.
    assert routes["/v1/feed"]["timeouts"] == {"request": "0s"}
    assert "timeouts" not in routes["/v1/leads/score"]


def test_dashboard_hosts_share_one_app_with_cookie_affinity(run: ProgramRun) -> None:
    route = _route(run, "dashboards")["spec"]
    assert {ref["sectionName"] for ref in route["parentRefs"]} == {
        f"https-{key}" for key in DASHBOARD_HOSTS
    }
    (rule,) = route["rules"]
    assert rule["backendRefs"] == [{"name": "dashboards", "port": 8501}]
    assert rule["timeouts"] == {"request": "0s"}
    policy = run.one("kubernetes:gateway.envoyproxy.io/v1alpha1:BackendTrafficPolicy").inputs
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "dashboards"}
    ]
    assert policy["spec"]["loadBalancer"]["consistentHash"]["type"] == "Cookie"


def test_grafana_route_lives_in_monitoring_and_only_it_may_attach(run: ProgramRun) -> None:
    route = _route(run, "grafana")
    assert route["metadata"]["namespace"] == "monitoring"
    assert route["spec"]["parentRefs"] == [
        {"name": "enterprisehub", "namespace": "enterprisehub", "sectionName": "https-grafana"}
    ]
    assert _listeners(run)["https-grafana"]["allowedRoutes"] == {
        "namespaces": {
            "from": "Selector",
            "selector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        }
    }
    assert _listeners(run)["https-api"]["allowedRoutes"] == {"namespaces": {"from": "Same"}}


def test_without_dashboards_or_grafana_only_the_api_is_public() -> None:
    run = run_program(
        "local",
        {},
        program=lambda: PublicIngress("public", _args(dashboard_hosts={}, grafana=None)),
    )
    assert set(_listeners(run)) == {"http", "https-api"}
    assert {route.name for route in run.of_type(ROUTE)} == {"public-https-redirect", "public-api"}


def test_a_hostname_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="hostnames used twice"):
        PublicIngress("public", _args(dashboard_hosts={"roi": API_HOST}))


def test_a_path_routed_twice_is_refused() -> None:
    routes = [ApiRoute("/v1/ml", "ml-services", 8002), ApiRoute("/v1/ml", "coaching-engine", 8003)]
    with pytest.raises(ValueError, match="routed twice"):
        PublicIngress("public", _args(api_routes=routes))


WAIT_FOR_ADDRESS = {"pulumi.com/waitFor": "jsonpath={.status.addresses[0].value}"}


def test_behind_a_load_balancer_up_waits_for_its_address_and_exports_it(run: ProgramRun) -> None:
    gateway = run.one(GATEWAY)
    annotations = gateway.inputs["metadata"]["annotations"]
    assert annotations.items() >= WAIT_FOR_ADDRESS.items()
    # What the provider returned once the wait held: Envoy Gateway's copy of the NLB's name.
    (address,) = gateway.outputs["status"]["addresses"]
    assert address["type"] == "Hostname"
    assert address["value"].endswith(".elb.amazonaws.com")
    assert run.plain_stack_outputs()["edgeAddress"] == address["value"]


def test_on_node_ports_nothing_waits_and_the_address_is_kinds_loopback() -> None:
    run = run_program("local", {}, program=_exporting(_args(proxy_service_type="NodePort")))
    gateway = run.one(GATEWAY)
    assert "pulumi.com/waitFor" not in gateway.inputs["metadata"]["annotations"]
    # Without a wait the provider returns the Gateway as created: no status yet.
    assert "status" not in gateway.outputs or not gateway.outputs["status"]
    assert run.plain_stack_outputs()["edgeAddress"] == "127.0.0.1"


def test_a_status_without_an_address_is_an_error_not_an_empty_output() -> None:
    # What the Gateway looks like when the provider did not wait (fresh object).
    with pytest.raises(ValueError, match="no address"):
        edge_address_from_status(None)
    with pytest.raises(ValueError, match="no address"):
        edge_address_from_status({"addresses": []})
    assert edge_address_from_status({"addresses": [{"value": "203.0.113.7"}]}) == "203.0.113.7"


def test_an_unknown_proxy_exposure_is_refused() -> None:
    with pytest.raises(ValueError, match="ClusterIP"):
        PublicIngress("public", _args(proxy_service_type="ClusterIP"))


def test_each_stack_waits_exactly_when_its_proxies_have_a_load_balancer(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    for stack in STACKS:
        run = stack_run(stack)
        environment = run.plain_stack_outputs()["environment"]
        gateway = run.one(GATEWAY)
        waits = "pulumi.com/waitFor" in gateway.inputs["metadata"]["annotations"]
        assert waits == (edge_service_type(environment) == "LoadBalancer"), stack
        address = run.plain_stack_outputs()["edgeAddress"]
        if waits:
            assert address == gateway.outputs["status"]["addresses"][0]["value"], stack
        else:
            assert address == "127.0.0.1", stack
    assert {edge_service_type(env) for env in ENVIRONMENTS} == {"LoadBalancer", "NodePort"}
