"""What a real `pulumi up` needs on AWS (issue 17), checked on the production run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.components.network import EKS_UNSUPPORTED_ZONE_IDS
from infra.synth.mocks import ProgramRun

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


def test_vpc_cni_enforces_network_policies(production: ProgramRun) -> None:
    addons = {a.inputs["addonName"]: a.inputs for a in production.of_type("aws:eks/addon:Addon")}
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert {a["resolveConflictsOnCreate"] for a in addons.values()} == {"OVERWRITE"}


def test_every_addon_keeps_cluster_changes_and_the_deployments_wait_for_nodes(
    production: ProgramRun,
) -> None:
    addons = {a.inputs["addonName"]: a for a in production.of_type("aws:eks/addon:Addon")}
    assert {a.inputs["resolveConflictsOnUpdate"] for a in addons.values()} == {"PRESERVE"}
    assert all(a.inputs["addonVersion"] for a in addons.values())
    node_groups = {n.urn for n in production.of_type("aws:eks/nodeGroup:NodeGroup")}
    # CoreDNS and the EBS CSI controller run as Deployments; the daemonsets do not wait.
    assert node_groups <= set(addons["coredns"].dependencies)
    assert node_groups <= set(addons["aws-ebs-csi-driver"].dependencies)
    assert not node_groups & set(addons["vpc-cni"].dependencies)
    assert addons["aws-ebs-csi-driver"].inputs["serviceAccountRoleArn"]
    assert "serviceAccountRoleArn" not in addons["coredns"].inputs


def test_zones_are_chosen_by_id_without_the_ones_eks_refuses(production: ProgramRun) -> None:
    call = next(c for c in production.calls if c.token.endswith("getAvailabilityZones"))
    assert set(call.args["excludeZoneIds"]) >= set(EKS_UNSUPPORTED_ZONE_IDS)
    assert call.args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    zones = {s.inputs["availabilityZoneId"] for s in production.of_type("aws:ec2/subnet:Subnet")}
    assert len(zones) == 3
    assert not zones & set(EKS_UNSUPPORTED_ZONE_IDS)


def test_s3_gateway_and_sts_interface_endpoints_are_exported(production: ProgramRun) -> None:
    endpoints = production.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    kinds = {e.inputs["serviceName"].rsplit(".", 1)[1]: e.inputs for e in endpoints}
    assert kinds["s3"]["vpcEndpointType"] == "Gateway"
    assert kinds["sts"]["vpcEndpointType"] == "Interface"
    assert kinds["sts"]["privateDnsEnabled"] is True
    exported = production.plain_stack_outputs()["vpcEndpoints"]
    assert exported["sts"]["cidrs"]
    assert exported["s3"]["prefixListId"] is not None or "prefixListId" in exported["s3"]


def test_storage_class_is_default_encrypted_gp3_and_comes_first(production: ProgramRun) -> None:
    (storage,) = production.kubernetes_objects("StorageClass")
    assert storage.inputs["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert storage.inputs["parameters"]["type"] == "gp3"
    assert storage.inputs["parameters"]["encrypted"] == "true"
    assert storage.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    workloads = production.one(
        "pulumi:providers:kubernetes", "enterprisehub-production-cluster-k8s"
    )
    assert storage.urn in workloads.dependencies


def test_access_entries_come_from_config(run_mocked: Callable[..., ProgramRun]) -> None:
    from infra.synth import run_stack
    from infra.synth.inputs import stack_inputs

    inputs = stack_inputs("dev", environ={})
    cluster = json.loads(inputs.config["enterprisehub:cluster"])
    cluster["deployRoleArn"] = "arn:aws:iam::123456789012:role/ci-deploy"
    cluster["breakGlassRoleArn"] = "arn:aws:iam::123456789012:role/break-glass"
    config = {**inputs.config, "enterprisehub:cluster": json.dumps(cluster)}
    run = run_stack(type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources))
    entries = {e.inputs["principalArn"] for e in run.of_type("aws:eks/accessEntry:AccessEntry")}
    assert {cluster["deployRoleArn"], cluster["breakGlassRoleArn"]} <= entries
    policies = run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert {p.inputs["policyArn"].rsplit("/", 1)[1] for p in policies} == {
        "AmazonEKSClusterAdminPolicy"
    }
    eks = run.one("aws:eks/cluster:Cluster").inputs
    assert eks["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False


def test_karpenter_has_its_queue_rules_roles_and_node_pool(production: ProgramRun) -> None:
    queue = production.one("aws:sqs/queue:Queue").inputs
    assert queue["sqsManagedSseEnabled"] is True
    rules = production.of_type("aws:cloudwatch/eventRule:EventRule")
    assert len(rules) == len(production.of_type("aws:cloudwatch/eventTarget:EventTarget")) == 4
    releases = {
        r.inputs["name"]: r.inputs for r in production.of_type("kubernetes:helm.sh/v3:Release")
    }
    assert releases["karpenter"]["skipCrds"] is True
    assert "karpenter-crd" in releases
    kinds = {r.inputs.get("kind") for r in production.kubernetes_objects()}
    assert {"NodePool", "EC2NodeClass"} <= kinds


def test_rds_snapshot_id_is_unique_per_replacement_and_logs_expire(production: ProgramRun) -> None:
    instance = production.one("aws:rds/instance:Instance").inputs
    assert re.fullmatch(
        r"enterprisehub-production-postgres-final-[0-9a-f]{8}", instance["finalSnapshotIdentifier"]
    )
    suffix = production.one(
        "random:index/randomId:RandomId", "enterprisehub-production-database-final-snapshot-suffix"
    ).inputs
    assert suffix["keepers"]["identifier"] == instance["identifier"]
    for group in production.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs["retentionInDays"] > 0, group.name
    names = {g.inputs["name"] for g in production.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert "/aws/eks/enterprisehub-production/cluster" in names
    assert "/aws/rds/instance/enterprisehub-production-postgres/postgresql" in names


def test_the_dsns_verify_the_rds_certificate(production: ProgramRun) -> None:
    secrets = [
        s
        for s in production.kubernetes_objects("Secret")
        if "DATABASE_URL" in (s.inputs.get("stringData") or {})
    ]
    assert secrets
    for secret in secrets:
        assert "sslmode=verify-full&sslrootcert=" in secret.inputs["stringData"]["DATABASE_URL"]


def test_no_literal_aws_partition_in_the_program() -> None:
    for path in (REPO / "infra").rglob("*.py"):
        if "synth" in path.parts:
            continue
        assert "arn:aws:" not in path.read_text(), path


def test_external_dns_writes_only_the_stacks_zone() -> None:
    from infra.synth import run_stack
    from infra.synth.inputs import stack_inputs

    inputs = stack_inputs("dev", environ={})
    config = {**inputs.config, "enterprisehub:dns": json.dumps({"hostedZoneId": "Z0TESTZONE42"})}
    run = run_stack(type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources))
    release = next(
        r.inputs
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["name"] == "external-dns"
    )
    values = release["values"]
    assert values["extraArgs"] == ["--zone-id-filter=Z0TESTZONE42"]
    assert values["domainFilters"] == ["dev.enterprisehub.ai"]
    assert values["txtOwnerId"] == "enterprisehub-dev"
    assert values["policy"] == "upsert-only"
    policy = next(
        json.loads(p.inputs["policy"])
        for p in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.name.endswith("external-dns-route53")
    )
    change = next(
        s for s in policy["Statement"] if s["Action"] == "route53:ChangeResourceRecordSets"
    )
    assert change["Resource"] == "arn:aws:route53:::hostedzone/Z0TESTZONE42"


def test_external_dns_is_installed_after_the_gateway_api_crds() -> None:
    # external-dns exits when the route types it watches are not served ("failed
    # to sync ... context deadline exceeded"); installed beside the cluster, before
    # Envoy Gateway's chart brought the Gateway API CRDs, its Helm wait timed out
    # and failed the first `up`.
    from infra.synth import run_stack
    from infra.synth.inputs import stack_inputs

    inputs = stack_inputs("dev", environ={})
    config = {**inputs.config, "enterprisehub:dns": json.dumps({"hostedZoneId": "Z0TESTZONE42"})}
    run = run_stack(type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources))
    releases = {r.inputs["name"]: r for r in run.of_type("kubernetes:helm.sh/v3:Release")}
    assert "gateway-httproute" in releases["external-dns"].inputs["values"]["sources"]
    assert releases["envoy-gateway"].urn in releases["external-dns"].dependencies
    # Its IAM role is the stack's, through the stack's AWS provider (region, tags).
    role = next(r for r in run.of_type("aws:iam/role:Role") if "external-dns" in r.name)
    assert role.provider is not None
    assert role.provider.endswith("::pulumi:providers:aws::enterprisehub-dev-aws")


def test_external_dns_manages_a_hostname_set_outside_the_domain() -> None:
    # --domain-filter is a suffix match on record names: with only `domain` in it,
    # an override such as api-dev.enterprisehub.ai (in the stack's zone, not under
    # dev.enterprisehub.ai) was served by the Gateway and never given a record.
    from infra.synth import run_stack
    from infra.synth.inputs import stack_inputs

    inputs = stack_inputs("dev", environ={})
    config = {
        **inputs.config,
        "enterprisehub:dns": json.dumps({"hostedZoneId": "Z0TESTZONE42"}),
        "enterprisehub:hostnames": json.dumps({"api": "api-dev.enterprisehub.ai"}),
    }
    run = run_stack(type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources))
    release = next(
        r.inputs
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["name"] == "external-dns"
    )
    assert release["values"]["domainFilters"] == [
        "dev.enterprisehub.ai",
        "api-dev.enterprisehub.ai",
    ]


def test_without_a_zone_there_is_no_external_dns(production: ProgramRun) -> None:
    names = {r.inputs["name"] for r in production.of_type("kubernetes:helm.sh/v3:Release")}
    assert "external-dns" not in names


def _with_cluster(stack: str, **fields: object) -> ProgramRun:
    from infra.synth import run_stack
    from infra.synth.inputs import stack_inputs

    inputs = stack_inputs(stack, environ={})
    cluster = {**json.loads(inputs.config["enterprisehub:cluster"]), **fields}
    config = {**inputs.config, "enterprisehub:cluster": json.dumps(cluster)}
    return run_stack(type(inputs)(inputs.stack, config, inputs.secrets, inputs.sources))


def test_an_in_vpc_deployer_may_reach_the_private_endpoint(production: ProgramRun) -> None:
    # EKS's cluster security group admits only itself: without this rule a runner
    # in the VPC times out on the API and the first `up` fails on every object.
    eks = production.one("aws:eks/cluster:Cluster")
    [rule] = [
        r
        for r in production.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.name.endswith("-api-from-deployer-0")
    ]
    assert rule.inputs["securityGroupId"] == eks.outputs["vpcConfig"]["clusterSecurityGroupId"]
    vpc = production.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"]
    assert (rule.inputs["cidrIpv4"], rule.inputs["fromPort"], rule.inputs["toPort"]) == (
        vpc,
        443,
        443,
    )
    assert rule.inputs["ipProtocol"] == "tcp"
    # Kubernetes objects go through providers that wait for the rule.
    system = next(
        p
        for p in production.of_type("pulumi:providers:kubernetes")
        if p.name.endswith("-k8s-system")
    )
    assert rule.urn in system.dependencies


def test_the_deployers_networks_come_from_config(run_mocked: Callable[..., ProgramRun]) -> None:
    run = _with_cluster("dev", deployerCidrs=["10.8.0.0/22", "192.0.2.0/24"])
    cidrs = sorted(
        r.inputs["cidrIpv4"]
        for r in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if "-api-from-deployer-" in r.name
    )
    assert cidrs == ["10.8.0.0/22", "192.0.2.0/24"]
    public = _with_cluster(
        "dev",
        deployerInVpc=False,
        endpointPublicAccess=True,
        publicAccessCidrs=["198.51.100.7/32"],
    )
    assert not [
        r
        for r in public.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if "-api-from-deployer-" in r.name
    ]
