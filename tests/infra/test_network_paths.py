"""Every allowed network path of the synthesized stacks, and that everything else is denied.

The policies are read from the manifests ``infra.synth`` writes and evaluated
with Kubernetes' semantics (tests/infra/netpol.py); the pods' labels come from
the synthesized Deployments and Jobs where the platform declares them, and
from the charts' documented labels for third-party pods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.components.network_policy import (
    ENVOY_PROXY_POD,
    ENVOY_READINESS_PORT,
    eks_service_ip,
)
from infra.synth import Synthesis
from tests.infra.netpol import Address, Pod, PolicySet, load_manifests

APP = "enterprisehub"
VPC = "10.40.0.0/16"
DB_HOST = Address("10.40.1.10")  # an RDS/ElastiCache interface in a private subnet
STS_ENI = Address("10.40.33.4")  # the STS interface endpoint in a private subnet
S3 = Address("52.216.8.1")  # inside the region's S3 prefix list (mocked us-east-1 ranges)
ANTHROPIC = Address("160.79.104.10")
CRM = Address("34.117.20.5")  # services.leadconnectorhq.com has no published ranges
INTERNET = Address("8.8.8.8")
CLIENT = Address("203.0.113.7")
NLB_NODE = Address("10.40.200.9")  # the NLB's address in a public subnet of the VPC
ACME_SERVER = Address("172.65.32.248")  # acme-v02.api.letsencrypt.org
METADATA = Address("169.254.169.254")
API_SERVICE = Address(eks_service_ip(VPC))
API_ENDPOINT = Address("10.40.70.12")

ENVOY_PROXY = Pod(
    "envoy-gateway-system",
    {**ENVOY_PROXY_POD, "gateway.envoyproxy.io/owning-gateway-name": APP},
)
ENVOY_CONTROLLER = Pod(
    "envoy-gateway-system",
    {"control-plane": "envoy-gateway", "app.kubernetes.io/name": "gateway-helm"},
)
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
ALERTMANAGER = Pod(
    "monitoring",
    {
        "app.kubernetes.io/name": "alertmanager",
        "alertmanager": "kube-prometheus-stack-alertmanager",
    },
)
GRAFANA = Pod("monitoring", {"app.kubernetes.io/name": "grafana"})
CERT_MANAGER = Pod("cert-manager", {"app.kubernetes.io/name": "cert-manager"})
ACME_SOLVER = Pod(APP, {"acme.cert-manager.io/http01-solver": "true"})
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"})


class Stack:
    """The synthesized manifests of one stack, its policies and its pods."""

    def __init__(self, synthesis: Synthesis) -> None:
        self.manifests = load_manifests(synthesis.manifests_dir)
        self.policies = PolicySet(self.manifests)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.manifests if doc["kind"] == kind]

    def pod(self, kind: str, name: str) -> Pod:
        """The pod a Deployment, StatefulSet or Job (by name prefix) would start."""
        for doc in self.objects(kind):
            if doc["metadata"]["name"].startswith(name):
                return Pod(
                    doc["metadata"]["namespace"], doc["spec"]["template"]["metadata"]["labels"]
                )
        raise AssertionError(f"no {kind} {name} in the synthesized stack")

    def allowed(
        self, source: Pod | Address, destination: Pod | Address, port: int, protocol: str = "TCP"
    ) -> bool:
        return self.policies.allowed(source, destination, port, protocol)


@pytest.fixture(scope="module")
def production(synthesized: Callable[[str], Synthesis]) -> Stack:
    return Stack(synthesized("production"))


@pytest.fixture(scope="module")
def local(synthesized: Callable[[str], Synthesis]) -> Stack:
    return Stack(synthesized("local"))


def _app_pods(stack: Stack) -> dict[str, Pod]:
    return {
        "websocket-manager": stack.pod("Deployment", "websocket-manager"),
        "ml-services": stack.pod("Deployment", "ml-services"),
        "migrate": stack.pod("Job", "migrate-"),
        "flags-init": stack.pod("Job", "flags-init-"),
        "model-publish": stack.pod("Job", "model-publish-"),
        "churn-orchestrator": stack.pod("Deployment", "churn-orchestrator"),
        "churn-model-publish": stack.pod("Job", "churn-model-publish-"),
        "rollback-handler": stack.pod("Deployment", "rollback-handler"),
    }


def test_every_pod_resolves_names(production: Stack) -> None:
    for pod in [*_app_pods(production).values(), ENVOY_PROXY, ENVOY_CONTROLLER, CERT_MANAGER]:
        assert production.allowed(pod, KUBE_DNS, 53, "UDP"), pod
        assert production.allowed(pod, KUBE_DNS, 53, "TCP"), pod
    assert not production.allowed(_app_pods(production)["ml-services"], KUBE_DNS, 9153)


def test_controllers_reach_the_api_server_at_its_service_ip_and_endpoints(
    production: Stack,
) -> None:
    for controller in (ENVOY_CONTROLLER, CERT_MANAGER):
        assert production.allowed(controller, API_SERVICE, 443), controller
        assert production.allowed(controller, API_ENDPOINT, 443), controller
    # The feature services never call the Kubernetes API.
    for pod in _app_pods(production).values():
        assert not production.allowed(pod, API_SERVICE, 443)
    assert not production.allowed(ENVOY_PROXY, API_SERVICE, 443)


def test_acme_http01_challenge_path(production: Stack) -> None:
    # The ACME server fetches the token through the public edge to the solver pod.
    assert production.allowed(CLIENT, ENVOY_PROXY, 10080)
    assert production.allowed(ENVOY_PROXY, ACME_SOLVER, 8089)
    # cert-manager talks to the ACME server and self-checks through the edge.
    assert production.allowed(CERT_MANAGER, ACME_SERVER, 443)
    assert production.allowed(CERT_MANAGER, Address("52.1.2.3"), 80)
    # Nobody else reaches the solver, and cert-manager no private address on 80.
    assert not production.allowed(CLIENT, ACME_SOLVER, 8089)
    assert not production.allowed(PROMETHEUS, ACME_SOLVER, 8089)
    assert not production.allowed(CERT_MANAGER, DB_HOST, 80)


def test_stores_only_from_the_workloads_that_use_them(production: Stack) -> None:
    pods = _app_pods(production)
    for name in ("websocket-manager", "ml-services", "migrate", "flags-init"):
        assert production.allowed(pods[name], DB_HOST, 5432), name
        assert production.allowed(pods[name], DB_HOST, 6379), name
        assert not production.allowed(pods[name], DB_HOST, 22), name
    for outsider in (ENVOY_PROXY, CERT_MANAGER, ENVOY_CONTROLLER):
        assert not production.allowed(outsider, DB_HOST, 5432), outsider


def test_buckets_through_the_vpc_endpoints_only(production: Stack) -> None:
    pods = _app_pods(production)
    for name in ("websocket-manager", "ml-services", "model-publish"):
        assert production.allowed(pods[name], S3, 443), name
        assert production.allowed(pods[name], STS_ENI, 443), name
        # No general HTTPS: a bucket user is not an internet client.
        assert not production.allowed(pods[name], INTERNET, 443), name
    for name in ("migrate", "flags-init"):
        assert not production.allowed(pods[name], S3, 443), name


def test_anthropic_only_for_the_services_that_call_claude(production: Stack) -> None:
    pods = _app_pods(production)
    assert production.allowed(pods["ml-services"], ANTHROPIC, 443)
    assert not production.allowed(pods["ml-services"], ANTHROPIC, 80)
    for name in ("websocket-manager", "migrate", "flags-init", "model-publish"):
        assert not production.allowed(pods[name], ANTHROPIC, 443), name


def test_prometheus_scrapes_the_services_and_the_edge(production: Stack) -> None:
    pods = _app_pods(production)
    assert production.allowed(PROMETHEUS, pods["websocket-manager"], 8001)
    assert production.allowed(PROMETHEUS, pods["ml-services"], 8002)
    assert production.allowed(PROMETHEUS, ENVOY_CONTROLLER, 19001)
    assert production.allowed(PROMETHEUS, ENVOY_PROXY, 19001)
    assert production.allowed(ENVOY_PROXY, ENVOY_CONTROLLER, 18000)
    assert not production.allowed(ENVOY_CONTROLLER, ENVOY_PROXY, 10443)
    assert not production.allowed(GRAFANA, pods["ml-services"], 8002)


def test_public_traffic_enters_through_the_edge_only(production: Stack) -> None:
    pods = _app_pods(production)
    assert production.allowed(CLIENT, ENVOY_PROXY, 10443)
    assert production.allowed(ENVOY_PROXY, pods["websocket-manager"], 8001)
    assert production.allowed(ENVOY_PROXY, pods["ml-services"], 8002)
    assert production.allowed(ENVOY_PROXY, GRAFANA, 3000)
    assert not production.allowed(CLIENT, pods["ml-services"], 8002)
    assert not production.allowed(CLIENT, ENVOY_CONTROLLER, 18000)
    assert not production.allowed(ENVOY_PROXY, pods["ml-services"], 9090)


def test_the_nlb_health_checks_envoys_readiness_from_inside_the_vpc(production: Stack) -> None:
    # The NLB asks /ready on the readiness port (charts/envoy-gateway/proxy-production.yaml);
    # a policy without it would mark every proxy unhealthy and take the edge down.
    assert production.allowed(NLB_NODE, ENVOY_PROXY, ENVOY_READINESS_PORT)
    assert not production.allowed(CLIENT, ENVOY_PROXY, ENVOY_READINESS_PORT)


def test_everything_else_is_denied(production: Stack) -> None:
    pods = _app_pods(production)
    ws, ml = pods["websocket-manager"], pods["ml-services"]
    # No east-west traffic between services, no metadata endpoint, no internet.
    assert not production.allowed(ws, ml, 8002)
    assert not production.allowed(ml, ws, 8001)
    for pod in pods.values():
        assert not production.allowed(pod, METADATA, 80)
        assert not production.allowed(pod, INTERNET, 80)
    assert not production.allowed(ENVOY_PROXY, INTERNET, 443)
    assert not production.allowed(ENVOY_PROXY, DB_HOST, 443)
    assert not production.allowed(PROMETHEUS, ws, 5432)


@pytest.mark.parametrize("stack", ["production", "local"])
def test_every_route_backend_is_reachable_from_the_edge(
    stack: str, synthesized: Callable[[str], Synthesis]
) -> None:
    """Each HTTPRoute backend's pods admit the proxies on the Service's target port."""
    synthesized_stack = Stack(synthesized(stack))
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s
        for s in synthesized_stack.objects("Service")
    }
    deployments = synthesized_stack.objects("Deployment")
    checked = 0
    for route in synthesized_stack.objects("HTTPRoute"):
        namespace = route["metadata"]["namespace"]
        for rule in route["spec"]["rules"]:
            for backend in rule.get("backendRefs", []):
                service = services.get((namespace, backend["name"]))
                if service is None:
                    continue  # a chart's Service (Grafana), checked above
                selector = service["spec"]["selector"]
                (deployment,) = [
                    d for d in deployments if d["spec"]["selector"]["matchLabels"] == selector
                ]
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                target = {p["name"]: p["containerPort"] for p in container["ports"]}[
                    service["spec"]["ports"][0]["targetPort"]
                ]
                pod = Pod(namespace, deployment["spec"]["template"]["metadata"]["labels"])
                assert synthesized_stack.allowed(ENVOY_PROXY, pod, target), backend
                checked += 1
    assert checked >= 3


def test_local_stack_reaches_in_cluster_stores(local: Stack) -> None:
    pods = _app_pods(local)
    postgres = local.pod("StatefulSet", "postgres")
    redis = local.pod("StatefulSet", "redis")
    minio = local.pod("StatefulSet", "minio")
    for name in ("websocket-manager", "ml-services", "migrate", "flags-init"):
        assert local.allowed(pods[name], postgres, 5432), name
        assert local.allowed(pods[name], redis, 6379), name
    assert local.allowed(pods["model-publish"], minio, 9000)
    assert local.allowed(pods["ml-services"], minio, 9000)
    assert not local.allowed(pods["migrate"], minio, 9000)
    assert not local.allowed(ENVOY_PROXY, postgres, 5432)
    assert not local.allowed(pods["ml-services"], postgres, 22)
    # kind's API server: the Service IP on 443, the control-plane node on 6443.
    assert local.allowed(CERT_MANAGER, Address("10.96.0.1"), 443)
    assert local.allowed(ENVOY_CONTROLLER, Address("172.18.0.2"), 6443)


def test_dashboards_paths(production: Stack) -> None:
    pods = _app_pods(production)
    dashboards = production.pod("Deployment", "dashboards")
    assert production.allowed(ENVOY_PROXY, dashboards, 8501)
    # Its metrics: Prometheus only, and only there.
    assert production.allowed(PROMETHEUS, dashboards, 9102)
    assert not production.allowed(ENVOY_PROXY, dashboards, 9102)
    assert not production.allowed(CLIENT, dashboards, 9102)
    assert not production.allowed(PROMETHEUS, dashboards, 8501)
    # The hub page reads the live feed in-cluster, and stored rows.
    assert production.allowed(dashboards, pods["websocket-manager"], 8001)
    assert production.allowed(dashboards, DB_HOST, 5432)
    assert production.allowed(dashboards, DB_HOST, 6379)
    assert not production.allowed(dashboards, pods["ml-services"], 8002)
    assert not production.allowed(dashboards, S3, 443)
    assert not production.allowed(dashboards, ANTHROPIC, 443)
    assert not production.allowed(CLIENT, dashboards, 8501)
    assert not production.allowed(pods["ml-services"], pods["websocket-manager"], 8001)


def test_churn_orchestrator_paths(production: Stack) -> None:
    pods = _app_pods(production)
    churn = pods["churn-orchestrator"]
    # Its stores (Postgres for everything, Redis for the feature flags), the churn
    # model in the models bucket (S3 through the gateway endpoint, STS for IRSA),
    # and the CRM's API, which delivers the interventions.
    assert production.allowed(churn, DB_HOST, 5432)
    assert production.allowed(churn, DB_HOST, 6379)
    assert production.allowed(churn, S3, 443)
    assert production.allowed(churn, STS_ENI, 443)
    assert production.allowed(churn, CRM, 443)
    assert not production.allowed(churn, CRM, 80)
    assert not production.allowed(churn, METADATA, 80)
    assert not production.allowed(churn, METADATA, 443)
    assert not production.allowed(churn, pods["ml-services"], 8002)
    # The CRM's signals arrive through the edge; Prometheus scrapes it.
    assert production.allowed(ENVOY_PROXY, churn, 8004)
    assert production.allowed(PROMETHEUS, churn, 8004)
    assert not production.allowed(CLIENT, churn, 8004)
    assert not production.allowed(pods["websocket-manager"], churn, 8004)
    assert not production.allowed(ENVOY_PROXY, churn, 9090)


def test_the_churn_model_publisher_reaches_the_bucket_only_from_its_job(
    production: Stack,
) -> None:
    pods = _app_pods(production)
    publisher = pods["churn-model-publish"]
    assert production.allowed(publisher, S3, 443)
    assert production.allowed(publisher, STS_ENI, 443)
    assert not production.allowed(publisher, INTERNET, 443)
    assert not production.allowed(publisher, CRM, 443)
    assert not production.allowed(publisher, ANTHROPIC, 443)


def test_local_churn_paths(local: Stack) -> None:
    pods = _app_pods(local)
    churn = pods["churn-orchestrator"]
    postgres = local.pod("StatefulSet", "postgres")
    redis = local.pod("StatefulSet", "redis")
    minio = local.pod("StatefulSet", "minio")
    assert local.allowed(churn, postgres, 5432)
    assert local.allowed(churn, redis, 6379)
    assert local.allowed(churn, minio, 9000)
    assert local.allowed(churn, CRM, 443)
    assert local.allowed(pods["churn-model-publish"], minio, 9000)
    assert not local.allowed(pods["churn-model-publish"], CRM, 443)
    assert local.allowed(ENVOY_PROXY, churn, 8004)


def test_rollback_handler_hears_only_alertmanager_and_prometheus(production: Stack) -> None:
    pods = _app_pods(production)
    handler = pods["rollback-handler"]
    assert production.allowed(ALERTMANAGER, handler, 8005)
    assert production.allowed(PROMETHEUS, handler, 8005)
    # Alertmanager's own egress is open (Slack, the handler): the path exists end to end.
    assert production.allowed(ALERTMANAGER, Address("8.8.4.4"), 443)
    assert not production.allowed(ALERTMANAGER, handler, 8080)
    for outsider in (
        ENVOY_PROXY,
        GRAFANA,
        CLIENT,
        pods["websocket-manager"],
        pods["ml-services"],
        production.pod("Deployment", "dashboards"),
        # Alertmanager's labels in any other namespace are not Alertmanager.
        Pod(APP, {"app.kubernetes.io/name": "alertmanager"}),
        Pod("envoy-gateway-system", {"app.kubernetes.io/name": "alertmanager"}),
    ):
        assert not production.allowed(outsider, handler, 8005), outsider


def test_rollback_handler_reaches_its_stores_and_slack_only(production: Stack) -> None:
    handler = _app_pods(production)["rollback-handler"]
    assert production.allowed(handler, DB_HOST, 5432)
    assert production.allowed(handler, DB_HOST, 6379)
    assert production.allowed(handler, KUBE_DNS, 53, "UDP")
    # The synthesis has a Slack URL: HTTPS to public addresses (Slack publishes no
    # ranges, so that includes S3's; the handler holds no AWS credentials).
    assert production.allowed(handler, INTERNET, 443)
    for denied, port in (
        (INTERNET, 80),
        (METADATA, 80),
        (METADATA, 443),
        (DB_HOST, 443),
        (API_SERVICE, 443),  # no Kubernetes API: it cannot touch a deployment
        (API_ENDPOINT, 443),
        (STS_ENI, 443),
    ):
        assert not production.allowed(handler, denied, port), (denied, port)
    for pod in _app_pods(production).values():
        if pod is not handler:
            assert not production.allowed(handler, pod, 8001)
            assert not production.allowed(handler, pod, 8002)


def test_local_rollback_handler_reaches_the_in_cluster_stores(local: Stack) -> None:
    handler = _app_pods(local)["rollback-handler"]
    assert local.allowed(handler, local.pod("StatefulSet", "postgres"), 5432)
    assert local.allowed(handler, local.pod("StatefulSet", "redis"), 6379)
    assert not local.allowed(handler, local.pod("StatefulSet", "minio"), 9000)
    assert local.allowed(ALERTMANAGER, handler, 8005)
