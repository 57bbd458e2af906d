"""The mocks honour pulumi-kubernetes' ``pulumi.com/waitFor`` as the provider does.

A wait that the controller's status never satisfies would hold ``pulumi up``
until its timeout; the synthesis must fail on it instead.
"""

from __future__ import annotations

import json

import pulumi_kubernetes as k8s
import pytest

from infra.components.public_ingress import Gateway
from infra.synth.kubernetes_await import (
    UnsatisfiedWaitError,
    check_wait,
    jsonpath_value,
    wait_expressions,
)
from infra.synth.mocks import ProgramRun, run_program

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
LIVE = {
    "status": {
        "addresses": [{"type": "Hostname", "value": "a1.elb.amazonaws.com"}],
        "conditions": [{"type": "Programmed", "status": "True"}],
    }
}


def _gateway_waiting_for(wait_for: str) -> ProgramRun:
    def program() -> None:
        Gateway(
            "edge",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="edge", namespace="apps", annotations={"pulumi.com/waitFor": wait_for}
            ),
            spec={"gatewayClassName": "edge", "listeners": []},
        )

    return run_program("production", {}, program=program)


@pytest.mark.parametrize(
    "wait_for",
    [
        "jsonpath={.status.addresses[0].value}",
        "jsonpath={.status.addresses[0].type}=Hostname",
        "condition=Programmed",
        json.dumps(["condition=Accepted", "jsonpath={.status.addresses[0].value}"]),
    ],
)
def test_a_wait_envoy_gateway_satisfies_returns_the_status(wait_for: str) -> None:
    gateway = _gateway_waiting_for(wait_for).one(GATEWAY)
    assert gateway.outputs["status"]["addresses"][0]["type"] == "Hostname"


@pytest.mark.parametrize(
    "wait_for",
    [
        # A typo in the path: nothing is ever there.
        "jsonpath={.status.address[0].value}",
        # Envoy Gateway sets Accepted and Programmed on a Gateway, never Ready.
        "condition=Ready",
        # An NLB has a DNS name only.
        "jsonpath={.status.addresses[0].type}=IPAddress",
        json.dumps(["condition=Programmed", "condition=Ready"]),
    ],
)
def test_a_wait_that_never_holds_fails_the_synthesis(wait_for: str) -> None:
    with pytest.raises(UnsatisfiedWaitError, match="never holds") as raised:
        _gateway_waiting_for(wait_for)
    (problem,) = raised.value.problems
    assert "Gateway edge" in problem


def test_a_custom_resource_without_a_wait_comes_back_without_status() -> None:
    def program() -> None:
        Gateway(
            "edge",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="edge", namespace="apps"),
            spec={"gatewayClassName": "edge", "listeners": []},
        )

    gateway = run_program("local", {}, program=program).one(GATEWAY)
    assert not gateway.outputs.get("status")


def test_forms_the_provider_does_not_accept_are_refused() -> None:
    with pytest.raises(UnsatisfiedWaitError, match="neither"):
        _gateway_waiting_for("status=Programmed")
    with pytest.raises(ValueError, match=r"only \.member and"):
        check_wait(
            "Gateway",
            "edge",
            {"pulumi.com/waitFor": 'jsonpath={.status.conditions[?(@.type=="Programmed")]}'},
            LIVE,
        )
    with pytest.raises(ValueError, match="must hold strings"):
        wait_expressions({"pulumi.com/waitFor": "[1]"})


def test_jsonpath_steps() -> None:
    assert jsonpath_value(LIVE, ".status.addresses[0].value") == "a1.elb.amazonaws.com"
    assert jsonpath_value(LIVE, ".status.addresses[1].value") is None
    assert jsonpath_value(LIVE, ".status.missing") is None
    assert wait_expressions({}) == []
