"""The mocks give a Gateway the status Envoy Gateway would, from its class's EnvoyProxy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from infra.components.public_ingress import Gateway
from infra.synth.envoy_gateway import KIND_NODE_ADDRESS, EnvoyGatewayModel
from infra.synth.kubernetes_await import UnsatisfiedWaitError
from infra.synth.mocks import ProgramRun, run_program

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"


def _edge(service_type: str | None, wait_for: str) -> ProgramRun:
    """An EnvoyProxy exposing the proxies as `service_type`, its class, and a waiting Gateway."""

    def program() -> None:
        service = {"type": service_type} if service_type else {}
        proxy = k8s.apiextensions.CustomResource(
            "proxy",
            api_version="gateway.envoyproxy.io/v1alpha1",
            kind="EnvoyProxy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="edge", namespace="envoy-gateway-system"),
            spec={"provider": {"type": "Kubernetes", "kubernetes": {"envoyService": service}}},
        )
        gateway_class = k8s.apiextensions.CustomResource(
            "class",
            api_version="gateway.networking.k8s.io/v1",
            kind="GatewayClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="edge"),
            spec={
                "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": "edge",
                    "namespace": "envoy-gateway-system",
                },
            },
            opts=pulumi.ResourceOptions(depends_on=[proxy]),
        )
        Gateway(
            "gateway",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="edge", namespace="apps", annotations={"pulumi.com/waitFor": wait_for}
            ),
            spec={"gatewayClassName": "edge", "listeners": []},
            opts=pulumi.ResourceOptions(depends_on=[gateway_class]),
        )

    return run_program("local", {}, program=program)


def _addresses(run: ProgramRun) -> list[dict[str, Any]]:
    return list(run.one(GATEWAY).outputs["status"]["addresses"])


def test_behind_a_load_balancer_the_gateway_gets_its_dns_name() -> None:
    (address,) = _addresses(_edge("LoadBalancer", "jsonpath={.status.addresses[0].value}"))
    assert address["type"] == "Hostname"
    assert address["value"].endswith(".elb.amazonaws.com")


def test_without_a_service_type_envoy_gateway_makes_a_load_balancer() -> None:
    (address,) = _addresses(_edge(None, "condition=Programmed"))
    assert address["type"] == "Hostname"


def test_on_node_ports_the_gateway_gets_node_ips() -> None:
    assert _addresses(_edge("NodePort", "jsonpath={.status.addresses[0].value}")) == [
        {"type": "IPAddress", "value": KIND_NODE_ADDRESS}
    ]


def test_waiting_for_a_hostname_on_node_ports_never_ends() -> None:
    with pytest.raises(UnsatisfiedWaitError, match="never holds"):
        _edge("NodePort", "jsonpath={.status.addresses[0].type}=Hostname")


def test_the_local_stacks_proxies_would_publish_a_node_ip(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    """Why the local Gateway does not wait: its address would be inside Docker's network."""
    model = EnvoyGatewayModel()
    run = stack_run("local")
    for resource in run.kubernetes_objects():
        model.observe(resource.inputs)
    gateway = run.one(GATEWAY).inputs
    assert model.service_type(gateway) == "NodePort"
    status = model.gateway_status(gateway, load_balancer_hostname="unused")
    assert status["addresses"] == [{"type": "IPAddress", "value": KIND_NODE_ADDRESS}]
    production = stack_run("production")
    model = EnvoyGatewayModel()
    for resource in production.kubernetes_objects():
        model.observe(resource.inputs)
    assert model.service_type(production.one(GATEWAY).inputs) == "LoadBalancer"
