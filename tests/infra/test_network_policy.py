"""Network policies: default-deny per namespace, then exactly the designed allows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

from infra import catalog
from infra.components import hardening
from infra.components.namespace import IsolatedNamespace, IsolatedNamespaceArgs
from infra.components.network_policy import (
    ENVOY_PROXY_POD,
    PROMETHEUS_POD,
    AddonNetworkPolicies,
    AddonNetworkPoliciesArgs,
    PlatformNetworkPolicies,
    PlatformNetworkPoliciesArgs,
    ip_blocks,
)
from infra.synth.mocks import ProgramRun, run_program
from tests.infra.netpol import Address, Pod, PolicySet

ANTHROPIC = ("160.79.104.0/23",)
PRIVATE_SUBNETS = ("10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19")
S3_PREFIX_LIST = ("52.216.0.0/15", "3.5.0.0/19")


@dataclass(frozen=True)
class Egress:
    cidrs: tuple[str, ...]
    port: int = 443


EGRESS = {
    catalog.EgressTarget.ANTHROPIC: Egress(ANTHROPIC),
    catalog.EgressTarget.CRM: Egress(("0.0.0.0/0",)),
}


def _cloud() -> None:
    IsolatedNamespace("app", IsolatedNamespaceArgs(name="enterprisehub"))
    PlatformNetworkPolicies(
        "netpol",
        PlatformNetworkPoliciesArgs(
            namespace="enterprisehub",
            services=list(catalog.SERVICES.values()),
            egress=EGRESS,
            datastore_cidrs=pulumi.Output.from_input(list(PRIVATE_SUBNETS)),
            s3_cidrs=list(S3_PREFIX_LIST),
            sts_cidrs=list(PRIVATE_SUBNETS),
        ),
    )
    AddonNetworkPolicies(
        "addon-netpol",
        AddonNetworkPoliciesArgs(
            edge_namespace="envoy-gateway-system",
            cert_manager_namespace="cert-manager",
            monitoring_namespace="monitoring",
            app_namespaces=["enterprisehub"],
        ),
    )


def _local() -> None:
    PlatformNetworkPolicies(
        "netpol",
        PlatformNetworkPoliciesArgs(
            namespace="enterprisehub",
            services=list(catalog.SERVICES.values()),
            egress=EGRESS,
            in_cluster_datastores=True,
        ),
    )


@pytest.fixture(scope="module")
def cloud() -> ProgramRun:
    return run_program("production", {}, program=_cloud)


@pytest.fixture(scope="module")
def local() -> ProgramRun:
    return run_program("local", {}, program=_local)


def _policy(run: ProgramRun, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", name).inputs[
        "spec"
    ]
    return spec


def _egress_ports(spec: dict[str, Any]) -> set[int]:
    return {port["port"] for rule in spec.get("egress", []) for port in rule["ports"]}


def _egress_cidrs(spec: dict[str, Any], port: int) -> set[str]:
    return {
        peer["ipBlock"]["cidr"]
        for rule in spec.get("egress", [])
        if any(p["port"] == port for p in rule["ports"])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    }


def test_namespace_denies_all_ingress_and_egress(cloud: ProgramRun) -> None:
    deny = _policy(cloud, "app-default-deny")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_namespace_enforces_restricted_pod_security(cloud: ProgramRun) -> None:
    labels = cloud.one("kubernetes:core/v1:Namespace").inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_pod_may_resolve_dns_in_kube_system(cloud: ProgramRun) -> None:
    dns = _policy(cloud, "app-allow-dns")
    assert dns["podSelector"] == {}
    (rule,) = dns["egress"]
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


@pytest.mark.parametrize("spec", list(catalog.SERVICES.values()), ids=list(catalog.SERVICES))
def test_ingress_controller_and_prometheus_reach_only_the_service_port(
    cloud: ProgramRun, spec: catalog.ServiceSpec
) -> None:
    policy = _policy(cloud, f"netpol-{spec.name}")
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": spec.port}]
    sources = {
        (
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        )
        for peer in rule["from"]
    }
    assert sources == {("envoy-gateway-system", "envoy"), ("monitoring", "prometheus")}


@pytest.mark.parametrize("spec", list(catalog.SERVICES.values()), ids=list(catalog.SERVICES))
def test_services_reach_postgres_and_redis_in_the_private_subnets(
    cloud: ProgramRun, spec: catalog.ServiceSpec
) -> None:
    policy = _policy(cloud, f"netpol-{spec.name}")
    assert _egress_cidrs(policy, 5432) == set(PRIVATE_SUBNETS)
    assert _egress_cidrs(policy, 6379) == set(PRIVATE_SUBNETS)


def test_anthropic_egress_only_for_services_that_call_claude(cloud: ProgramRun) -> None:
    for spec in catalog.SERVICES.values():
        cidrs = _egress_cidrs(_policy(cloud, f"netpol-{spec.name}"), 443)
        calls_claude = catalog.EgressTarget.ANTHROPIC in spec.egress
        assert ("160.79.104.0/23" in cidrs) is calls_claude, spec.name


def test_services_without_buckets_or_apis_get_no_https_egress(cloud: ProgramRun) -> None:
    for spec in catalog.SERVICES.values():
        ports = _egress_ports(_policy(cloud, f"netpol-{spec.name}"))
        assert (443 in ports) is bool(spec.buckets or spec.egress), spec.name


def test_public_internet_egress_excludes_private_and_metadata_ranges(cloud: ProgramRun) -> None:
    policy = _policy(cloud, "netpol-churn-orchestrator")
    blocks = [
        peer["ipBlock"]
        for rule in policy["egress"]
        for peer in rule.get("to", [])
        if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
    ]
    assert blocks
    for block in blocks:
        assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
            block["except"]
        )


def test_jobs_reach_only_postgres_and_redis(cloud: ProgramRun) -> None:
    policy = _policy(cloud, "netpol-jobs")
    assert policy["policyTypes"] == ["Egress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "job"
    assert _egress_ports(policy) == {5432, 6379}


def test_local_services_reach_datastore_pods_by_label(local: ProgramRun) -> None:
    policy = _policy(local, "netpol-ml-services")
    targets = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in policy["egress"]
        for peer in rule.get("to", [])
        if "podSelector" in peer
    }
    assert targets == {"postgres", "redis", "minio"}


def test_local_postgres_accepts_only_platform_workloads(local: ProgramRun) -> None:
    policy = _policy(local, "netpol-postgres")
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    (expression,) = rule["from"][0]["podSelector"]["matchExpressions"]
    assert set(expression["values"]) == {"api", "job", "dashboard"}


def test_cloud_stack_has_no_datastore_ingress_policies(cloud: ProgramRun) -> None:
    names = {p.name for p in cloud.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    assert not {"netpol-postgres", "netpol-redis", "netpol-minio"} & names


def test_monitoring_may_scrape_anywhere(cloud: ProgramRun) -> None:
    policy = _policy(cloud, "addon-netpol-monitoring")
    assert policy["egress"] == [{}]


def test_policies_validate_against_the_kubernetes_schema(cloud: ProgramRun) -> None:
    for obj in cloud.kubernetes_objects():
        kubernetes_validate.validate(obj.inputs, "1.31.0", strict=True)


def test_ip_blocks_leave_a_private_cidr_alone() -> None:
    (peer,) = ip_blocks(["10.40.0.0/19"])
    block = peer.ip_block
    assert isinstance(block, k8s.networking.v1.IPBlockArgs)
    assert block.cidr == "10.40.0.0/19"
    assert block.except_ is None


def test_ip_blocks_carve_private_ranges_out_of_the_internet() -> None:
    (peer,) = ip_blocks(["0.0.0.0/0"])
    block = peer.ip_block
    assert isinstance(block, k8s.networking.v1.IPBlockArgs)
    assert isinstance(block.except_, list)
    assert "169.254.0.0/16" in block.except_


def test_datastores_must_be_either_in_cluster_or_cidrs() -> None:
    with pytest.raises(ValueError, match="either in_cluster_datastores"):
        PlatformNetworkPolicies(
            "netpol",
            PlatformNetworkPoliciesArgs(namespace="enterprisehub", services=[], egress=EGRESS),
        )


def test_a_service_egress_without_cidrs_is_refused() -> None:
    with pytest.raises(ValueError, match="anthropic"):
        PlatformNetworkPolicies(
            "netpol",
            PlatformNetworkPoliciesArgs(
                namespace="enterprisehub",
                services=[catalog.ML_SERVICES],
                egress={},
                in_cluster_datastores=True,
            ),
        )


def test_slack_for_the_rollback_handler_needs_its_cidrs() -> None:
    with pytest.raises(ValueError, match="slack"):
        PlatformNetworkPolicies(
            "netpol",
            PlatformNetworkPoliciesArgs(
                namespace="enterprisehub",
                services=[],
                egress=EGRESS,
                rollback_handler=catalog.ROLLBACK_HANDLER,
                slack=True,
                in_cluster_datastores=True,
            ),
        )


def test_dashboards_reach_the_stores_and_the_feed_and_nothing_else() -> None:
    def program() -> None:
        IsolatedNamespace("app", IsolatedNamespaceArgs(name="enterprisehub"))
        PlatformNetworkPolicies(
            "netpol",
            PlatformNetworkPoliciesArgs(
                namespace="enterprisehub",
                services=list(catalog.SHIPPED_SERVICES.values()),
                egress=EGRESS,
                dashboards=catalog.DASHBOARDS,
                datastore_cidrs=list(PRIVATE_SUBNETS),
                s3_cidrs=list(S3_PREFIX_LIST),
                sts_cidrs=list(PRIVATE_SUBNETS),
            ),
        )

    run = run_program("production", {}, program=program)
    policies = PolicySet(obj.inputs for obj in run.kubernetes_objects())
    app = "enterprisehub"
    dashboards = Pod(app, hardening.labels("dashboards", hardening.COMPONENT_DASHBOARD))
    feed = Pod(app, hardening.labels("websocket-manager", hardening.COMPONENT_API))
    ml = Pod(app, hardening.labels("ml-services", hardening.COMPONENT_API))
    edge = Pod("envoy-gateway-system", dict(ENVOY_PROXY_POD))
    prometheus = Pod("monitoring", dict(PROMETHEUS_POD))
    assert policies.allowed(edge, dashboards, catalog.DASHBOARDS.port)
    # Prometheus on the metrics port only, the edge on the app's only: the
    # metrics are never one route away from the internet.
    assert catalog.DASHBOARDS.metrics_port is not None
    assert policies.allowed(prometheus, dashboards, catalog.DASHBOARDS.metrics_port)
    assert not policies.allowed(prometheus, dashboards, catalog.DASHBOARDS.port)
    assert not policies.allowed(edge, dashboards, catalog.DASHBOARDS.metrics_port)
    assert not policies.allowed(ml, dashboards, catalog.DASHBOARDS.metrics_port)
    assert policies.allowed(dashboards, feed, catalog.WEBSOCKET_MANAGER.port)
    assert policies.allowed(dashboards, Address("10.40.1.10"), catalog.POSTGRES_PORT)
    assert policies.allowed(dashboards, Address("10.40.1.10"), catalog.REDIS_PORT)
    assert not policies.allowed(dashboards, ml, catalog.ML_SERVICES.port)
    assert not policies.allowed(dashboards, Address("52.216.8.1"), 443)
    assert not policies.allowed(ml, feed, catalog.WEBSOCKET_MANAGER.port)
