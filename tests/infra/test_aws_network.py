"""The VPC: three zones, private subnets for workloads and data, NAT per zone in production."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from infra.components.network import subnet_plan
from infra.synth.mocks import ProgramRun


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


def _subnets(run: ProgramRun, role: str) -> list[dict]:
    return [
        r.inputs
        for r in run.of_type("aws:ec2/subnet:Subnet")
        if f"kubernetes.io/role/{role}" in r.inputs["tags"]
    ]


def test_private_and_public_subnets_span_three_zones(production: ProgramRun) -> None:
    for role in ("internal-elb", "elb"):
        zones = {s["availabilityZoneId"] for s in _subnets(production, role)}
        assert len(zones) == 3, role


def test_subnets_carry_the_cluster_tag(production: ProgramRun) -> None:
    for subnet in production.of_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs["tags"]["kubernetes.io/cluster/enterprisehub-production"] == "shared"


def test_no_subnet_assigns_public_addresses(production: ProgramRun) -> None:
    assert all(
        s.inputs["mapPublicIpOnLaunch"] is False
        for s in production.of_type("aws:ec2/subnet:Subnet")
    )


def test_production_has_a_nat_gateway_per_zone(production: ProgramRun) -> None:
    assert len(production.of_type("aws:ec2/natGateway:NatGateway")) == 3


def test_dev_shares_one_nat_gateway(stack_run: Callable[[str], ProgramRun]) -> None:
    assert len(stack_run("dev").of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_subnet_plan_has_no_overlap() -> None:
    private, public = subnet_plan("10.40.0.0/16", 3)
    networks = [ipaddress.ip_network(cidr) for cidr in private + public]
    assert all(not a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])
    assert all(net.subnet_of(ipaddress.ip_network("10.40.0.0/16")) for net in networks)


def test_private_subnets_leave_room_for_pod_addresses() -> None:
    private, _ = subnet_plan("10.40.0.0/16", 3)
    assert all(ipaddress.ip_network(cidr).num_addresses >= 8192 for cidr in private)
