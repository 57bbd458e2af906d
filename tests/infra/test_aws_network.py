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


@pytest.mark.parametrize("stack", ["dev", "production"])
def test_node_groups_wait_for_the_private_subnets_egress(
    stack_run: Callable[[str], ProgramRun], stack: str
) -> None:
    # A node group needs only the subnet ids to start launching nodes; a node that
    # boots before its subnet's route out through NAT cannot pull images or join.
    run = stack_run(stack)
    private_subnets = {
        s.urn
        for s in run.of_type("aws:ec2/subnet:Subnet")
        if "kubernetes.io/role/internal-elb" in s.inputs["tags"]
    }
    associations = {
        a.urn
        for a in run.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
        if a.parent in private_subnets
    }
    nat_routes = {
        r.urn
        for r in run.of_type("aws:ec2/route:Route")
        if r.inputs["destinationCidrBlock"] == "0.0.0.0/0" and "natGatewayId" in r.inputs
    }
    assert len(associations) == len(private_subnets) == 3
    assert len(nat_routes) == 3
    node_groups = run.of_type("aws:eks/nodeGroup:NodeGroup")
    assert node_groups
    for group in node_groups:
        assert associations | nat_routes <= set(group.dependencies), group.name


def test_model_publish_jobs_wait_for_the_sts_endpoint(production: ProgramRun) -> None:
    # The publishers' NetworkPolicy admits STS only at the interface endpoint's
    # addresses: before the endpoint exists their IRSA token exchange times out.
    (sts,) = (
        e
        for e in production.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if e.inputs["serviceName"].endswith(".sts")
    )
    (https,) = (
        r
        for r in production.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.name.endswith("-endpoints-https")
    )
    publishers = [
        job
        for job in production.of_type("kubernetes:batch/v1:Job")
        if job.inputs["spec"]["template"]["spec"]["serviceAccountName"] == "model-publisher"
    ]
    assert len(publishers) == 2
    for job in publishers:
        assert {sts.urn, https.urn} <= set(job.dependencies), job.name
