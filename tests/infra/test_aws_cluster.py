"""The EKS cluster: version from config, private endpoint, encrypted secrets, OIDC for IRSA."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.components.addons import CHARTS_DIR, load_eks_addon_versions
from infra.components.cluster import MANAGED_ADDONS, render_kubeconfig
from infra.stackfiles import STACKS, stack_config
from infra.synth.mock_values import CALL_HANDLERS, CallContext, CallFailure
from infra.synth.mocks import ProgramRun, run_program


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


@pytest.fixture(scope="module")
def cluster(production: ProgramRun) -> dict[str, Any]:
    return production.one("aws:eks/cluster:Cluster").inputs


def test_version_comes_from_kubernetes_version(cluster: dict[str, Any]) -> None:
    assert cluster["version"] == "1.35"


def test_upgrade_policy_is_standard_support(cluster: dict[str, Any]) -> None:
    # EXTENDED (the API's default) would bill extended support silently.
    assert cluster["upgradePolicy"] == {"supportType": "STANDARD"}


def test_api_endpoint_is_private(cluster: dict[str, Any]) -> None:
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["endpointPublicAccess"] is False


def test_secrets_are_envelope_encrypted(cluster: dict[str, Any]) -> None:
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:")


def test_every_control_plane_log_is_enabled(cluster: dict[str, Any]) -> None:
    assert set(cluster["enabledClusterLogTypes"]) == {
        "api", "audit", "authenticator", "controllerManager", "scheduler"
    }  # fmt: skip


def test_node_groups_follow_config(production: ProgramRun) -> None:
    group = production.one("aws:eks/nodeGroup:NodeGroup").inputs
    assert group["scalingConfig"] == {"minSize": 3, "desiredSize": 3, "maxSize": 5}
    assert group["version"] == "1.35"


NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
VOLUMES_KEY = "enterprisehub-production-cluster-volumes-key"
STACK_TAGS = {
    "Project": "enterprisehub",
    "Stack": "production",
    "Environment": "production",
    "ManagedBy": "pulumi",
}


def test_node_groups_launch_from_their_template_without_disk_size(production: ProgramRun) -> None:
    # EKS refuses diskSize beside a launch template; the size is the template's.
    group = production.one(NODE_GROUP)
    template = production.one(LAUNCH_TEMPLATE, "enterprisehub-production-cluster-system-nodes")
    assert "diskSize" not in group.inputs
    # The AMI whose root device the template maps, named rather than EKS's default.
    assert group.inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert group.inputs["launchTemplate"] == {"id": template.id, "version": "1"}
    assert template.urn in group.dependencies


def test_node_root_volumes_are_encrypted_with_the_volumes_key(production: ProgramRun) -> None:
    # Not left to the account's EBS encryption-by-default setting.
    template = production.one(LAUNCH_TEMPLATE).inputs
    key = production.one("aws:kms/key:Key", VOLUMES_KEY)
    assert template["blockDeviceMappings"] == [
        {
            "deviceName": "/dev/xvda",
            "ebs": {
                "volumeSize": 100,
                "volumeType": "gp3",
                "encrypted": "true",
                "kmsKeyId": key.raw_outputs["arn"],
                "deleteOnTermination": "true",
            },
        }
    ]
    storage_class = next(
        r for r in production.kubernetes_objects("StorageClass") if r.name.endswith("-gp3")
    )
    assert storage_class.inputs["parameters"]["kmsKeyId"] == key.raw_outputs["arn"]


def test_nodes_require_imdsv2_within_one_hop(production: ProgramRun) -> None:
    assert production.one(LAUNCH_TEMPLATE).inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }


def test_the_launch_template_leaves_ami_bootstrap_and_network_to_eks(
    production: ProgramRun,
) -> None:
    # An AMI or user data would make it a custom-AMI group that EKS no longer
    # bootstraps or upgrades; a security group would replace the cluster's.
    template = production.one(LAUNCH_TEMPLATE).inputs
    for owned_by_eks in (
        "imageId",
        "userData",
        "instanceType",
        "vpcSecurityGroupIds",
        "securityGroupNames",
        "networkInterfaces",
        "iamInstanceProfile",
    ):
        assert owned_by_eks not in template, owned_by_eks


def test_node_instances_and_volumes_carry_the_stack_tags(production: ProgramRun) -> None:
    specifications = production.one(LAUNCH_TEMPLATE).inputs["tagSpecifications"]
    assert {s["resourceType"]: s["tags"] for s in specifications} == {
        "instance": STACK_TAGS,
        "volume": STACK_TAGS,
    }


def test_node_groups_are_auto_named_so_a_replacement_is_created_first(
    production: ProgramRun,
) -> None:
    # A fixed nodeGroupName would force delete-before-replace: no nodes in between.
    group = production.one(NODE_GROUP)
    assert "nodeGroupName" not in group.inputs
    assert not group.delete_before_replace


def _key_policy_statements(production: ProgramRun) -> dict[str, dict[str, Any]]:
    policy = json.loads(production.one("aws:kms/key:Key", VOLUMES_KEY).inputs["policy"])
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def test_auto_scaling_may_encrypt_node_volumes_with_the_volumes_key(
    production: ProgramRun,
) -> None:
    # Auto Scaling launches the node groups' instances with its service-linked role;
    # without the key policy's consent each launch fails (Client.InternalError).
    role = (
        "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/"
        "AWSServiceRoleForAutoScaling"
    )
    statements = _key_policy_statements(production)
    use, grants = statements["AutoScalingNodeVolumes"], statements["AutoScalingNodeVolumeGrants"]
    for statement in (use, grants):
        assert statement["Effect"] == "Allow"
        assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": role}
    assert set(use["Action"]) >= {
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:DescribeKey",
    }
    assert grants["Action"] == "kms:CreateGrant"
    assert grants["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}


def test_the_volumes_key_still_defers_to_the_accounts_iam_policies(
    production: ProgramRun,
) -> None:
    # The EBS CSI driver's and Karpenter's roles use the key through IAM policies.
    account = _key_policy_statements(production)["AccountIamPolicies"]
    assert account["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert account["Action"] == "kms:*"


def test_pulumi_leaves_the_autoscaled_node_count_alone(production: ProgramRun) -> None:
    group = production.one("aws:eks/nodeGroup:NodeGroup")
    assert "scalingConfig.desiredSize" in group.ignore_changes


def test_oidc_provider_serves_sts(production: ProgramRun) -> None:
    provider = production.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert provider["clientIdLists"] == ["sts.amazonaws.com"]
    assert provider["url"].startswith("https://oidc.eks.")


def test_kubernetes_provider_uses_a_rendered_kubeconfig(production: ProgramRun) -> None:
    provider = production.one("pulumi:providers:kubernetes", "enterprisehub-production-cluster-k8s")
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "aws"


def test_kubeconfig_holds_no_credential() -> None:
    rendered = json.loads(render_kubeconfig("c", "https://x", "Q0E=", "us-east-1"))
    user = rendered["users"][0]["user"]
    assert set(user) == {"exec"}
    assert user["exec"]["args"][-3:] == ["c", "--region", "us-east-1"]


def test_local_stack_uses_the_kubeconfig_context(stack_run: Callable[[str], ProgramRun]) -> None:
    local = stack_run("local")
    assert not [r for r in local if r.package == "aws"]
    assert local.one("pulumi:providers:kubernetes")


def _existing_cluster_answer(ctx: CallContext) -> dict[str, Any]:
    """What eks:DescribeCluster returns for an active cluster (the fields the program reads)."""
    name = str(ctx.args["name"])
    return {
        "id": name,
        "name": name,
        "endpoint": "https://EXISTING.gr7.us-east-1.eks.amazonaws.com",
        "certificateAuthorities": [{"data": "Q0E="}],
        "identities": [
            {"oidcs": [{"issuer": "https://oidc.eks.us-east-1.amazonaws.com/id/EXISTING"}]}
        ],
        "vpcConfig": {
            "vpcId": "vpc-0existing",
            "subnetIds": ["subnet-0a", "subnet-0b", "subnet-0c"],
            "clusterSecurityGroupId": "sg-0existing",
            "securityGroupIds": [],
            "endpointPrivateAccess": True,
            "endpointPublicAccess": False,
            "publicAccessCidrs": [],
        },
        # DescribeCluster always reports the service range; this cluster was given
        # its own (serviceIpv4Cidr), not the 172.20.0.0/16 EKS picks for a 10.x VPC.
        "kubernetesNetworkConfigs": [{"ipFamily": "ipv4", "serviceIpv4Cidr": "10.200.0.0/16"}],
        "version": "1.31",
    }


@pytest.fixture
def existing_cluster_run(monkeypatch: pytest.MonkeyPatch) -> ProgramRun:
    monkeypatch.setitem(CALL_HANDLERS, "aws:eks/getCluster:getCluster", _existing_cluster_answer)
    return _run_existing_cluster()


def _run_existing_cluster() -> ProgramRun:
    config = stack_config("dev")
    config["enterprisehub:image"] = "registry.example.com/enterprisehub@sha256:" + "b" * 64
    config["enterprisehub:runbookBaseUrl"] = (
        "https://git.example.com/hub/blob/0123abc/docs/runbooks/"
    )
    cluster = {
        **json.loads(config["enterprisehub:cluster"]),
        "mode": "existing-eks",
        "name": "shared",
    }
    config["enterprisehub:cluster"] = json.dumps(cluster)
    secrets = {
        "jwtSecretKey": "j" * 64,
        "anthropicApiKey": "anthropic-test-key",
        "ghlApiKey": "ghl-test-key",
    }
    return run_program("dev", config, {f"enterprisehub:{k}": v for k, v in secrets.items()})


def test_existing_cluster_creates_no_cluster_or_network(existing_cluster_run: ProgramRun) -> None:
    types = {r.type for r in existing_cluster_run}
    assert "aws:eks/cluster:Cluster" not in types
    assert "aws:ec2/vpc:Vpc" not in types


def test_existing_cluster_places_data_stores_in_its_subnets(
    existing_cluster_run: ProgramRun,
) -> None:
    group = existing_cluster_run.one("aws:rds/subnetGroup:SubnetGroup").inputs
    assert group["subnetIds"] == ["subnet-0a", "subnet-0b", "subnet-0c"]


def test_existing_cluster_policies_admit_its_own_api_service_address(
    existing_cluster_run: ProgramRun,
) -> None:
    # The API's Service address was guessed from network.vpcCidr (EKS's default
    # range); for a cluster given its own range the add-ons' egress to the API
    # was admitted at an address nothing listens on.
    peers = {
        block["ipBlock"]["cidr"]
        for policy in existing_cluster_run.kubernetes_objects("NetworkPolicy")
        for rule in policy.inputs["spec"].get("egress") or []
        for block in rule.get("to") or []
        if "ipBlock" in block
    }
    assert "10.200.0.1/32" in peers
    assert "172.20.0.1/32" not in peers


def test_existing_cluster_roles_trust_its_oidc_issuer(existing_cluster_run: ProgramRun) -> None:
    role = existing_cluster_run.one("aws:iam/role:Role", "enterprisehub-dev-roles-ml-services")
    statement = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert statement["Principal"]["Federated"].endswith(
        ":oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXISTING"
    )


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "local"])
def test_every_managed_addon_is_pinned_for_the_stacks_kubernetes_version(stack: str) -> None:
    # A stack whose version has no pins would stop at its next preview.
    version = stack_config(stack)["enterprisehub:kubernetesVersion"]
    assert set(load_eks_addon_versions(version, MANAGED_ADDONS)) == set(MANAGED_ADDONS)


def test_the_addons_run_their_pinned_versions_whatever_eks_defaults_to(
    production: ProgramRun,
) -> None:
    # A version resolved at deploy time (EKS's current default) would upgrade the
    # add-ons on the first `up` after AWS published a new build, whatever it deployed.
    pinned = load_eks_addon_versions("1.35", MANAGED_ADDONS)
    addons = {
        a.inputs["addonName"]: a.inputs["addonVersion"]
        for a in production.of_type("aws:eks/addon:Addon")
    }
    assert addons == pinned
    assert not [c for c in production.calls if "getAddonVersion" in c.token]


def _charts_with(tmp_path: Path, version: str, pins: dict[str, str]) -> Path:
    document = yaml.safe_load((CHARTS_DIR / "versions.yaml").read_text(encoding="utf-8"))
    document["eksAddons"] = {version: pins}
    (tmp_path / "versions.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return tmp_path


def test_a_kubernetes_version_without_pins_is_refused_with_the_command(tmp_path: Path) -> None:
    charts = _charts_with(tmp_path, "1.35", {"vpc-cni": "v1.21.1-eksbuild.1"})
    with pytest.raises(ValueError, match="no version of kube-proxy, coredns") as refused:
        load_eks_addon_versions("1.35", MANAGED_ADDONS, charts)
    assert "aws eks describe-addon-versions --kubernetes-version 1.35" in str(refused.value)
    with pytest.raises(ValueError, match=r"for Kubernetes 1\.36"):
        load_eks_addon_versions("1.36", MANAGED_ADDONS, charts)


@pytest.mark.parametrize("version", ["latest", "v1.21", "1.21.1-eksbuild.1", "v1.21.1"])
def test_a_pin_that_is_not_an_eks_build_is_refused(tmp_path: Path, version: str) -> None:
    pins = dict.fromkeys(MANAGED_ADDONS, "v1.21.1-eksbuild.1") | {"coredns": version}
    with pytest.raises(ValueError, match=r"coredns .* is not an EKS add-on build"):
        load_eks_addon_versions("1.35", MANAGED_ADDONS, _charts_with(tmp_path, "1.35", pins))


#: The mocks' own answer, kept before any test replaces it.
_VPC_ENDPOINT = CALL_HANDLERS["aws:ec2/getVpcEndpoint:getVpcEndpoint"]


def _answer(run: ProgramRun, token: str) -> list[Any]:
    return [call.result for call in run.calls if call.token == token]


def test_existing_cluster_pods_reach_sts_only_at_the_vpcs_endpoint(
    existing_cluster_run: ProgramRun,
) -> None:
    # Not the whole VPC: STS's regional name resolves into the VPC only at an
    # interface endpoint with private DNS, and that is where IRSA's exchange goes.
    (endpoint,) = _answer(existing_cluster_run, "aws:ec2/getVpcEndpoint:getVpcEndpoint")
    call = next(c for c in existing_cluster_run.calls if c.token.endswith("getVpcEndpoint"))
    assert call.args["vpcId"] == "vpc-0existing"
    assert call.args["serviceName"] == "com.amazonaws.us-east-1.sts"
    assert call.args["state"] == "available"
    cidrs = sorted(
        s["cidrBlock"] for s in _answer(existing_cluster_run, "aws:ec2/getSubnet:getSubnet")
    )
    assert len(cidrs) == len(endpoint["subnetIds"]) == 2
    writers = existing_cluster_run.one(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "enterprisehub-dev-network-policies-object-storage-writers",
    )
    https = [
        sorted(peer["ipBlock"]["cidr"] for peer in rule["to"])
        for rule in writers.inputs["spec"]["egress"]
        if [p.get("port") for p in rule["ports"]] == [443]
    ]
    assert cidrs in https
    vpc_cidr = json.loads(stack_config("dev")["enterprisehub:network"])["vpcCidr"]
    assert [vpc_cidr] not in https
    exported = existing_cluster_run.plain_stack_outputs()["vpcEndpoints"]
    assert exported == {"sts": {"id": endpoint["id"], "cidrs": cidrs}}


def _refusal(monkeypatch: pytest.MonkeyPatch, answer: Callable[[CallContext], Any]) -> str:
    monkeypatch.setitem(CALL_HANDLERS, "aws:eks/getCluster:getCluster", _existing_cluster_answer)
    monkeypatch.setitem(CALL_HANDLERS, "aws:ec2/getVpcEndpoint:getVpcEndpoint", answer)
    with pytest.raises(ValueError, match="STS") as refused:
        _run_existing_cluster()
    return str(refused.value)


def test_an_existing_cluster_whose_vpc_has_no_sts_endpoint_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_endpoint(ctx: CallContext) -> dict[str, Any]:
        # What the provider answers when no endpoint matches.
        raise CallFailure("no matching EC2 VPC Endpoint found")

    message = _refusal(monkeypatch, no_endpoint)
    assert "VPC vpc-0existing" in message
    assert "no single available STS interface endpoint" in message
    assert "--private-dns-enabled" in message


def test_an_sts_endpoint_without_private_dns_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def without_private_dns(ctx: CallContext) -> dict[str, Any]:
        return {**_VPC_ENDPOINT(ctx), "privateDnsEnabled": False}

    assert "private DNS disabled" in _refusal(monkeypatch, without_private_dns)
