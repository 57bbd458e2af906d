"""Realistic, deterministic values for resources and data sources under Pulumi mocks.

A cloud provider computes some outputs (ARNs, endpoints, generated names) that the
program then feeds into other resources: the EKS endpoint into the Kubernetes
provider, the RDS address into a connection string, the ECR URL into an image
reference. Under mocks nothing computes them, so this module does, in the shape
the real provider returns, so that everything downstream sees plausible input.

Every value is derived from the resource's URN (never from a clock or a random
generator), so two synthesis runs of the same program produce identical output.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from infra.synth.naming import RANDOM_SUFFIX_LENGTH, rule_for

# Documentation values only: 123456789012 is the account id AWS itself uses in
# its examples, and 203.0.113.0/24 is TEST-NET-3 (RFC 5737), never routed.
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"


class UnmockedCallError(LookupError):
    """A data source (invoke) the mocks have no answer for."""

    def __init__(self, token: str) -> None:
        super().__init__(
            f"infra.synth.mocks has no answer for the data source '{token}'. "
            "Add a handler for it to CALL_HANDLERS in infra/mock_values.py, "
            "returning the fields the real provider returns."
        )
        self.token = token


class CallFailure(Exception):  # noqa: N818 (it is the provider's answer, not an error of ours)
    """Raised by a handler to answer as a provider does when a data source finds nothing.

    The provider reports it as a failed invoke, which the program sees as an
    exception from the data-source call (`RecordingMocks.call` passes it on so).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ResourceContext:
    """What an output builder may use: the resource's identity and its plain inputs."""

    type: str
    name: str
    urn: str
    inputs: Mapping[str, Any]
    region: str
    account_id: str

    def digest(self, length: int, salt: str = "") -> str:
        """Lower-case hex derived from the URN; stable across runs."""
        return _hex(self.urn + salt, length)

    def upper(self, length: int, salt: str = "") -> str:
        """Upper-case alphanumerics derived from the URN (AWS ids such as AROA...)."""
        return _alnum(self.urn + salt, length).upper()

    def autoname(self, key: str = "name", *, lower: bool = False, max_len: int = 255) -> str:
        """The input `key` if the program set it, else Pulumi's auto-name.

        Pulumi names an unnamed cloud resource `<logical name>-<7 random hex>`;
        here the suffix comes from the URN so the name is stable.
        """
        given = self.inputs.get(key)
        if isinstance(given, str) and given:
            return given
        prefix = self.inputs.get(f"{key}Prefix")
        base = prefix if isinstance(prefix, str) and prefix else f"{self.name}-"
        suffix = self.digest(RANDOM_SUFFIX_LENGTH, key)
        rule = rule_for(self.type)
        if rule is not None and rule.field == key:
            # The provider never shortens: a name over the limit fails the
            # preview, which infra.synth.naming reports; the output stays whole.
            lower = lower or rule.lowercase
            generated = base + suffix
        else:
            generated = base[: max(max_len - len(suffix), 0)] + suffix
        return generated.lower() if lower else generated

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        """An ARN in the `aws` partition."""
        return ":".join(
            [
                "arn:aws",
                service,
                self.region if region else "",
                self.account_id if account else "",
                resource,
            ]
        )


def _hex(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def _alnum(seed: str, length: int) -> str:
    # base32 of a digest: letters and digits only, like most AWS generated ids.
    raw = base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode().rstrip("=")
    return raw.lower()[:length]


def _uuid(seed: str) -> str:
    return str(uuid.UUID(hex=_hex(seed, 32)))


def _region_code(region: str) -> str:
    """`us-east-1` -> `use1`, the short form ElastiCache puts in endpoints."""
    parts = region.split("-")
    if len(parts) != 3:
        return region.replace("-", "")
    return f"{parts[0]}{parts[1][0]}{parts[2]}"


Outputs = tuple[str, dict[str, Any]]
Builder = Callable[[ResourceContext], Outputs]


def _prefixed(prefix: str, arn_kind: str | None = None, service: str = "ec2") -> Builder:
    """Builder for EC2-style resources whose id is `<prefix>-<17 hex>`."""

    def build(ctx: ResourceContext) -> Outputs:
        resource_id = f"{prefix}-{ctx.digest(17)}"
        out: dict[str, Any] = {"ownerId": ctx.account_id}
        if arn_kind:
            out["arn"] = ctx.arn(service, f"{arn_kind}/{resource_id}")
        return resource_id, out

    return build


def _vpc(ctx: ResourceContext) -> Outputs:
    resource_id = f"vpc-{ctx.digest(17)}"
    return resource_id, {
        "arn": ctx.arn("ec2", f"vpc/{resource_id}"),
        "defaultSecurityGroupId": f"sg-{ctx.digest(17, 'sg')}",
        "defaultNetworkAclId": f"acl-{ctx.digest(17, 'acl')}",
        "mainRouteTableId": f"rtb-{ctx.digest(17, 'rtb')}",
        "ownerId": ctx.account_id,
    }


def _security_group(ctx: ResourceContext) -> Outputs:
    resource_id = f"sg-{ctx.digest(17)}"
    return resource_id, {
        "arn": ctx.arn("ec2", f"security-group/{resource_id}"),
        "name": ctx.autoname(),
        "ownerId": ctx.account_id,
    }


def _eip(ctx: ResourceContext) -> Outputs:
    resource_id = f"eipalloc-{ctx.digest(17)}"
    octet = int(ctx.digest(2), 16) % 254 + 1
    return resource_id, {
        "allocationId": resource_id,
        "publicIp": f"203.0.113.{octet}",
        "publicDns": f"ec2-203-0-113-{octet}.compute-1.amazonaws.com",
        "arn": ctx.arn("ec2", f"elastic-ip/{resource_id}"),
    }


def _nat_gateway(ctx: ResourceContext) -> Outputs:
    resource_id = f"nat-{ctx.digest(17)}"
    return resource_id, {"networkInterfaceId": f"eni-{ctx.digest(17, 'eni')}"}


def _eks_cluster(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname(max_len=100)
    host = ctx.digest(32).upper()
    ca_pem = "-----BEGIN CERTIFICATE-----\nU1lOVEhFVElDLU1PQ0stQ0E=\n-----END CERTIFICATE-----\n"
    vpc_config = dict(ctx.inputs.get("vpcConfig") or {})
    vpc_config.setdefault("clusterSecurityGroupId", f"sg-{ctx.digest(17, 'cluster-sg')}")
    vpc_config.setdefault("vpcId", f"vpc-{ctx.digest(17, 'vpc')}")
    return name, {
        "name": name,
        "arn": ctx.arn("eks", f"cluster/{name}"),
        "endpoint": f"https://{host}.gr7.{ctx.region}.eks.amazonaws.com",
        "certificateAuthority": {"data": base64.b64encode(ca_pem.encode()).decode()},
        "identities": [
            {"oidcs": [{"issuer": f"https://oidc.eks.{ctx.region}.amazonaws.com/id/{host}"}]}
        ],
        "platformVersion": "eks.1",
        "status": "ACTIVE",
        "version": ctx.inputs.get("version") or "1.31",
        "vpcConfig": vpc_config,
        "clusterId": _uuid(ctx.urn),
    }


def _eks_node_group(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname("nodeGroupName")
    cluster = ctx.inputs.get("clusterName", "cluster")
    return f"{cluster}:{name}", {
        "nodeGroupName": name,
        "arn": ctx.arn("eks", f"nodegroup/{cluster}/{name}/{_uuid(ctx.urn)}"),
        "status": "ACTIVE",
        "resources": [{"autoscalingGroups": [{"name": f"eks-{name}-{_uuid(ctx.urn)}"}]}],
    }


def _launch_template(ctx: ResourceContext) -> Outputs:
    """A new template is at version 1, its latest and default (EC2 CreateLaunchTemplate)."""
    resource_id = f"lt-{ctx.digest(17)}"
    return resource_id, {
        "name": ctx.autoname(max_len=128),
        "arn": ctx.arn("ec2", f"launch-template/{resource_id}"),
        "latestVersion": 1,
        "defaultVersion": 1,
    }


def _eks_addon(ctx: ResourceContext) -> Outputs:
    cluster = ctx.inputs.get("clusterName", "cluster")
    addon = ctx.inputs.get("addonName", ctx.name)
    return f"{cluster}:{addon}", {
        "arn": ctx.arn("eks", f"addon/{cluster}/{addon}/{_uuid(ctx.urn)}"),
        "addonVersion": ctx.inputs.get("addonVersion") or "v1.0.0-eksbuild.1",
    }


def _oidc_provider(ctx: ResourceContext) -> Outputs:
    url = str(ctx.inputs.get("url", f"https://oidc.eks.{ctx.region}.amazonaws.com/id/X"))
    arn = ctx.arn("iam", f"oidc-provider/{url.removeprefix('https://')}", region=False)
    return arn, {"arn": arn}


def _iam_role(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname(max_len=64)
    path = ctx.inputs.get("path") or "/"
    return name, {
        "name": name,
        "arn": ctx.arn("iam", f"role{path}{name}", region=False),
        "uniqueId": f"AROA{ctx.upper(17)}",
        "createDate": "2025-01-01T00:00:00Z",
    }


def _iam_policy(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname(max_len=128)
    path = ctx.inputs.get("path") or "/"
    arn = ctx.arn("iam", f"policy{path}{name}", region=False)
    return arn, {"name": name, "arn": arn, "policyId": f"ANPA{ctx.upper(17)}"}


def _iam_role_policy(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname()
    return f"{ctx.inputs.get('role', 'role')}:{name}", {"name": name}


def _iam_instance_profile(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname(max_len=128)
    return name, {
        "name": name,
        "arn": ctx.arn("iam", f"instance-profile/{name}", region=False),
        "uniqueId": f"AIPA{ctx.upper(17)}",
    }


def _rds_instance(ctx: ResourceContext) -> Outputs:
    identifier = ctx.autoname("identifier", lower=True, max_len=63)
    port = ctx.inputs.get("port") or 5432
    address = f"{identifier}.{_alnum(ctx.urn, 12)}.{ctx.region}.rds.amazonaws.com"
    resource_id = f"db-{ctx.upper(26)}"
    out: dict[str, Any] = {
        "identifier": identifier,
        "address": address,
        "port": port,
        "endpoint": f"{address}:{int(port)}",
        "arn": ctx.arn("rds", f"db:{identifier}"),
        "resourceId": resource_id,
        "hostedZoneId": "Z2R2ITUGPM61AM",
        "status": "available",
        "engineVersionActual": ctx.inputs.get("engineVersion") or "15",
    }
    if ctx.inputs.get("manageMasterUserPassword"):
        out["masterUserSecrets"] = [
            {
                "secretArn": ctx.arn(
                    "secretsmanager", f"secret:rds!db-{_uuid(ctx.urn)}-{_alnum(ctx.urn, 6)}"
                ),
                "kmsKeyId": ctx.inputs.get("masterUserSecretKmsKeyId")
                or ctx.arn("kms", f"key/{_uuid(ctx.urn + 'kms')}"),
                "secretStatus": "active",
            }
        ]
    return resource_id, out


def _named_arn(service: str, kind: str, sep: str = ":", *, lower: bool = False) -> Builder:
    """Builder for resources whose id is their (auto-)name and whose ARN ends `kind<sep>name`."""

    def build(ctx: ResourceContext) -> Outputs:
        name = ctx.autoname(lower=lower)
        return name, {"name": name, "arn": ctx.arn(service, f"{kind}{sep}{name}")}

    return build


def _replication_group(ctx: ResourceContext) -> Outputs:
    group_id = ctx.autoname("replicationGroupId", lower=True, max_len=40)
    suffix = f"{_alnum(ctx.urn, 6)}.{_region_code(ctx.region)}.cache.amazonaws.com"
    count = int(ctx.inputs.get("numCacheClusters") or 1)
    out: dict[str, Any] = {
        "replicationGroupId": group_id,
        "arn": ctx.arn("elasticache", f"replicationgroup:{group_id}"),
        "port": ctx.inputs.get("port") or 6379,
        "memberClusters": [f"{group_id}-{i:03d}" for i in range(1, count + 1)],
        "engineVersionActual": ctx.inputs.get("engineVersion") or "7.1",
    }
    cluster_mode = (
        ctx.inputs.get("clusterMode") == "enabled" or int(ctx.inputs.get("numNodeGroups") or 1) > 1
    )
    if cluster_mode:
        out["configurationEndpointAddress"] = f"clustercfg.{group_id}.{suffix}"
    else:
        prefix = "master." if ctx.inputs.get("transitEncryptionEnabled") else ""
        out["primaryEndpointAddress"] = f"{prefix}{group_id}.{suffix}"
        out["readerEndpointAddress"] = f"replica.{group_id}.{suffix}"
    return group_id, out


def _s3_bucket(ctx: ResourceContext) -> Outputs:
    bucket = ctx.autoname("bucket", lower=True, max_len=63)
    return bucket, {
        "bucket": bucket,
        "arn": f"arn:aws:s3:::{bucket}",
        "bucketDomainName": f"{bucket}.s3.amazonaws.com",
        "bucketRegionalDomainName": f"{bucket}.s3.{ctx.region}.amazonaws.com",
        "hostedZoneId": "Z3AQBSTGFYJSTF",
        "region": ctx.region,
    }


def _bucket_child(ctx: ResourceContext) -> Outputs:
    # Bucket sub-resources (versioning, encryption, policy, ...) are keyed by bucket.
    return str(ctx.inputs.get("bucket") or ctx.name), {}


def _kms_key(ctx: ResourceContext) -> Outputs:
    key_id = _uuid(ctx.urn)
    return key_id, {"keyId": key_id, "arn": ctx.arn("kms", f"key/{key_id}")}


def _kms_alias(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname()
    target = str(ctx.inputs.get("targetKeyId", ""))
    target_arn = target if target.startswith("arn:") else ctx.arn("kms", f"key/{target}")
    return name, {"name": name, "arn": ctx.arn("kms", name), "targetKeyArn": target_arn}


def _ecr_repository(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname(lower=True, max_len=256)
    return name, {
        "name": name,
        "arn": ctx.arn("ecr", f"repository/{name}"),
        "registryId": ctx.account_id,
        "repositoryUrl": f"{ctx.account_id}.dkr.ecr.{ctx.region}.amazonaws.com/{name}",
    }


def _ecr_lifecycle(ctx: ResourceContext) -> Outputs:
    return str(ctx.inputs.get("repository") or ctx.name), {"registryId": ctx.account_id}


def _secretsmanager_secret(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname()
    arn = ctx.arn("secretsmanager", f"secret:{name}-{_alnum(ctx.urn, 6)}")
    return arn, {"name": name, "arn": arn}


def _secretsmanager_version(ctx: ResourceContext) -> Outputs:
    version = _uuid(ctx.urn)
    return f"{ctx.inputs.get('secretId', 'secret')}|{version}", {
        "versionId": version,
        "arn": ctx.inputs.get("secretId", ""),
    }


def _log_group(ctx: ResourceContext) -> Outputs:
    name = ctx.autoname(max_len=512)
    return name, {"name": name, "arn": ctx.arn("logs", f"log-group:{name}")}


def _acm_certificate(ctx: ResourceContext) -> Outputs:
    arn = ctx.arn("acm", f"certificate/{_uuid(ctx.urn)}")
    domain = str(ctx.inputs.get("domainName", "example.invalid"))
    names = [domain, *(ctx.inputs.get("subjectAlternativeNames") or [])]
    options = [
        {
            "domainName": d,
            "resourceRecordName": f"_{_hex(ctx.urn + d, 32)}.{d}.",
            "resourceRecordType": "CNAME",
            "resourceRecordValue": f"_{_hex(d + ctx.urn, 32)}.acm-validations.aws.",
        }
        for d in names
    ]
    return arn, {"arn": arn, "status": "ISSUED", "domainValidationOptions": options}


def _route53_zone(ctx: ResourceContext) -> Outputs:
    zone_id = f"Z{ctx.upper(20)}"
    return zone_id, {
        "zoneId": zone_id,
        "arn": f"arn:aws:route53:::hostedzone/{zone_id}",
        "nameServers": [f"ns-{i}.awsdns-{i:02d}.org" for i in range(1, 5)],
    }


def _route53_record(ctx: ResourceContext) -> Outputs:
    name = str(ctx.inputs.get("name", ctx.name))
    return f"{ctx.inputs.get('zoneId', 'Z')}_{name}_{ctx.inputs.get('type', 'A')}", {"fqdn": name}


def _random_password(ctx: ResourceContext) -> Outputs:
    length = int(ctx.inputs.get("length") or 16)
    # Visibly synthetic, so nobody mistakes a synthesized value for a credential.
    value = ("synthetic" + _hex(ctx.urn, 64)) * (length // 73 + 1)
    return "none", {
        "result": value[:length],
        "bcryptHash": "$2a$10$" + _alnum(ctx.urn, 53),
    }


def _random_id(ctx: ResourceContext) -> Outputs:
    size = int(ctx.inputs.get("byteLength") or 8)
    # Changed keepers replace the resource, and a replacement draws a new value.
    keepers = json.dumps(ctx.inputs.get("keepers") or {}, sort_keys=True)
    raw = hashlib.sha256(f"{ctx.urn}\n{keepers}".encode()).digest()[:size]
    prefix = str(ctx.inputs.get("prefix") or "")
    b64url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return prefix + b64url, {
        "hex": prefix + raw.hex(),
        "b64Url": prefix + b64url,
        "b64Std": prefix + base64.b64encode(raw).decode(),
        "dec": prefix + str(int.from_bytes(raw, "big")),
    }


def _random_uuid(ctx: ResourceContext) -> Outputs:
    value = _uuid(ctx.urn)
    return value, {"result": value}


def _random_integer(ctx: ResourceContext) -> Outputs:
    low = int(ctx.inputs.get("min") or 0)
    return str(low), {"result": low}


def _random_pet(ctx: ResourceContext) -> Outputs:
    pet = f"{ctx.inputs.get('prefix', '')}synthetic-{ctx.digest(6)}"
    return pet, {}


RESOURCE_BUILDERS: dict[str, Builder] = {
    "aws:ec2/vpc:Vpc": _vpc,
    "aws:ec2/subnet:Subnet": _prefixed("subnet", "subnet"),
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:ec2/securityGroupRule:SecurityGroupRule": _prefixed("sgrule"),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _prefixed(
        "sgr", "security-group-rule"
    ),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _prefixed(
        "sgr", "security-group-rule"
    ),
    "aws:ec2/internetGateway:InternetGateway": _prefixed("igw", "internet-gateway"),
    "aws:ec2/natGateway:NatGateway": _nat_gateway,
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/routeTable:RouteTable": _prefixed("rtb", "route-table"),
    "aws:ec2/route:Route": _prefixed("r-rtb"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _prefixed("rtbassoc"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": _prefixed("vpce", "vpc-endpoint"),
    "aws:ec2/flowLog:FlowLog": _prefixed("fl", "vpc-flow-log"),
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:ec2/networkAcl:NetworkAcl": _prefixed("acl", "network-acl"),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": _security_group,
    "aws:eks/cluster:Cluster": _eks_cluster,
    "aws:eks/nodeGroup:NodeGroup": _eks_node_group,
    "aws:eks/addon:Addon": _eks_addon,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": _oidc_provider,
    "aws:iam/role:Role": _iam_role,
    "aws:iam/policy:Policy": _iam_policy,
    "aws:iam/rolePolicy:RolePolicy": _iam_role_policy,
    "aws:iam/instanceProfile:InstanceProfile": _iam_instance_profile,
    "aws:rds/instance:Instance": _rds_instance,
    "aws:rds/subnetGroup:SubnetGroup": _named_arn("rds", "subgrp", lower=True),
    "aws:rds/parameterGroup:ParameterGroup": _named_arn("rds", "pg", lower=True),
    "aws:elasticache/replicationGroup:ReplicationGroup": _replication_group,
    "aws:elasticache/subnetGroup:SubnetGroup": _named_arn("elasticache", "subnetgroup", lower=True),
    "aws:elasticache/parameterGroup:ParameterGroup": _named_arn(
        "elasticache", "parametergroup", lower=True
    ),
    "aws:s3/bucket:Bucket": _s3_bucket,
    "aws:s3/bucketV2:BucketV2": _s3_bucket,
    "aws:kms/key:Key": _kms_key,
    "aws:kms/alias:Alias": _kms_alias,
    "aws:ecr/repository:Repository": _ecr_repository,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": _ecr_lifecycle,
    "aws:ecr/repositoryPolicy:RepositoryPolicy": _ecr_lifecycle,
    "aws:secretsmanager/secret:Secret": _secretsmanager_secret,
    "aws:secretsmanager/secretVersion:SecretVersion": _secretsmanager_version,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:acm/certificate:Certificate": _acm_certificate,
    "aws:route53/zone:Zone": _route53_zone,
    "aws:route53/record:Record": _route53_record,
    "aws:sns/topic:Topic": _named_arn("sns", "", sep=""),
    "random:index/randomPassword:RandomPassword": _random_password,
    "random:index/randomString:RandomString": _random_password,
    "random:index/randomId:RandomId": _random_id,
    "random:index/randomUuid:RandomUuid": _random_uuid,
    "random:index/randomInteger:RandomInteger": _random_integer,
    "random:index/randomPet:RandomPet": _random_pet,
}


def aws_fallback(ctx: ResourceContext) -> Outputs:
    """Outputs for an AWS type without its own builder: an id and a plausible ARN."""
    module, kind = ctx.type.split(":")[1].split("/")[0], ctx.type.rsplit(":", 1)[1]
    if module.startswith("s3") and "bucket" in ctx.inputs:
        return _bucket_child(ctx)
    resource_id = f"{ctx.name}-{ctx.digest(8)}"
    return resource_id, {"arn": ctx.arn(module, f"{kind.lower()}/{resource_id}")}


# ---------------------------------------------------------------- Kubernetes


# Kinds the API server keeps outside any namespace; all others are namespaced.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "StorageClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "PriorityClass",
        "IngressClass",
        "GatewayClass",
        "RuntimeClass",
        "CustomResourceDefinition",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CertificateSigningRequest",
        "FlowSchema",
        "PriorityLevelConfiguration",
        "ClusterIssuer",
        # Karpenter (karpenter.sh, karpenter.k8s.aws)
        "NodePool",
        "EC2NodeClass",
    }
)

AUTONAMED_ANNOTATION = "pulumi.com/autonamed"


def is_kubernetes_object_type(type_token: str) -> bool:
    """True for `kubernetes:<group>/<version>:<Kind>` object resources.

    Excluded: providers, Helm releases and charts, and the yaml/kustomize
    components, which are not objects the provider sends to the API server.
    """
    if not type_token.startswith("kubernetes:"):
        return False
    module = type_token.split(":")[1]
    return not module.startswith(("helm.sh/", "yaml", "kustomize")) and "/" in module


def kubernetes_autoname(name: str, urn: str) -> str:
    """The name the Kubernetes provider gives an object without `metadata.name`.

    The provider appends 8 random characters to the logical name; here they
    come from the URN, so synthesis is reproducible.
    """
    return f"{name}-{_hex(urn, 8)}"


def _kubernetes_object(ctx: ResourceContext) -> Outputs:
    metadata = dict(ctx.inputs.get("metadata") or {})
    if not metadata.get("name"):
        metadata["name"] = kubernetes_autoname(ctx.name, ctx.urn)
        # The provider marks objects it named, and sends the annotation with them.
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            AUTONAMED_ANNOTATION: "true",
        }
    kind = str(ctx.inputs.get("kind", ""))
    namespace = metadata.get("namespace")
    resource_id = (
        metadata["name"]
        if kind in CLUSTER_SCOPED_KINDS or not namespace
        else f"{namespace}/{metadata['name']}"
    )
    out: dict[str, Any] = {"metadata": metadata}
    spec = ctx.inputs.get("spec") or {}
    if kind == "Ingress" or (kind == "Service" and spec.get("type") == "LoadBalancer"):
        out["status"] = {"loadBalancer": {"ingress": [{"hostname": load_balancer_hostname(ctx)}]}}
    return resource_id, out


def load_balancer_hostname(ctx: ResourceContext) -> str:
    """The DNS name AWS gives a load balancer created for this object."""
    return f"a{ctx.digest(31)}-{int(ctx.digest(8), 16) % 10**10}.{ctx.region}.elb.amazonaws.com"


def _helm_release(ctx: ResourceContext) -> Outputs:
    name = str(ctx.inputs.get("name") or kubernetes_autoname(ctx.name, ctx.urn))
    namespace = str(ctx.inputs.get("namespace") or "default")
    return f"{namespace}/{name}", {
        "name": name,
        "status": {
            "name": name,
            "namespace": namespace,
            "chart": ctx.inputs.get("chart", ""),
            "version": ctx.inputs.get("version", ""),
            "appVersion": ctx.inputs.get("version", ""),
            "revision": 1,
            "status": "deployed",
        },
    }


def resource_outputs(ctx: ResourceContext) -> Outputs:
    """The id and computed outputs for one resource (merged over its inputs by the caller)."""
    builder = RESOURCE_BUILDERS.get(ctx.type)
    if builder is not None:
        return builder(ctx)
    if ctx.type.startswith("pulumi:providers:"):
        # Real provider ids are UUIDs; resources reference them as `urn::id`.
        return _uuid(ctx.urn), {}
    if ctx.type == "kubernetes:helm.sh/v3:Release":
        return _helm_release(ctx)
    if is_kubernetes_object_type(ctx.type):
        return _kubernetes_object(ctx)
    if ctx.type.startswith("aws:"):
        return aws_fallback(ctx)
    return f"{ctx.name}-{ctx.digest(8)}", {}


# ---------------------------------------------------------------- data sources


@dataclass(frozen=True)
class CallContext:
    """What a data-source handler may use."""

    token: str
    args: Mapping[str, Any]
    region: str
    account_id: str


CallHandler = Callable[[CallContext], dict[str, Any]]


def _availability_zones(ctx: CallContext) -> dict[str, Any]:
    """Six zones whose names and ids are paired as in a real account: not in order.

    AWS maps zone names to zone ids per account, so ``us-east-1a`` is not
    ``use1-az1``; the shuffle here makes a program that picks zones by name
    (instead of by id) visibly wrong. ``excludeZoneIds``/``excludeNames`` and the
    ``opt-in-status`` filter are honoured (every zone here is opt-in-not-required).
    """
    code = _region_code(ctx.region)
    names = [f"{ctx.region}{x}" for x in "abcdef"]
    ids = [f"{code}-az{i}" for i in (4, 6, 1, 2, 3, 5)]
    excluded_ids = set(ctx.args.get("excludeZoneIds") or [])
    excluded_names = set(ctx.args.get("excludeNames") or [])
    for item in ctx.args.get("filters") or []:
        if item.get("name") == "opt-in-status" and "opt-in-not-required" not in item.get(
            "values", []
        ):
            excluded_ids |= set(ids)
    pairs = [
        (name, zone_id)
        for name, zone_id in zip(names, ids, strict=True)
        if zone_id not in excluded_ids and name not in excluded_names
    ]
    return {
        "id": ctx.region,
        "names": [name for name, _ in pairs],
        "zoneIds": [zone_id for _, zone_id in pairs],
        "groupNames": [ctx.region],
        "state": ctx.args.get("state", "available"),
    }


def _caller_identity(ctx: CallContext) -> dict[str, Any]:
    return {
        "id": ctx.account_id,
        "accountId": ctx.account_id,
        "arn": f"arn:aws:iam::{ctx.account_id}:user/synthesis",
        "userId": "AIDASYNTHESIS0000000",
    }


def _region(ctx: CallContext) -> dict[str, Any]:
    region = ctx.args.get("region") or ctx.args.get("name") or ctx.region
    return {
        "id": region,
        "name": region,
        "region": region,
        "description": f"Synthetic ({region})",
        "endpoint": f"ec2.{region}.amazonaws.com",
    }


def _partition(_: CallContext) -> dict[str, Any]:
    return {
        "id": "aws",
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
    }


def _one_or_many(values: list[str]) -> str | list[str]:
    # IAM's own rendering: a single value is a string, several are a sorted list.
    return values[0] if len(values) == 1 else sorted(values)


def _render_statement(statement: Mapping[str, Any]) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    if statement.get("sid"):
        rendered["Sid"] = statement["sid"]
    rendered["Effect"] = statement.get("effect") or "Allow"
    for key, field in (
        ("actions", "Action"),
        ("notActions", "NotAction"),
        ("resources", "Resource"),
        ("notResources", "NotResource"),
    ):
        if statement.get(key):
            rendered[field] = _one_or_many(list(statement[key]))
    for key, field in (("principals", "Principal"), ("notPrincipals", "NotPrincipal")):
        principals = statement.get(key) or []
        if not principals:
            continue
        if any(p.get("type") == "*" for p in principals):
            rendered[field] = "*"
            continue
        grouped: dict[str, list[str]] = {}
        for principal in principals:
            grouped.setdefault(principal["type"], []).extend(principal.get("identifiers") or [])
        rendered[field] = {kind: _one_or_many(ids) for kind, ids in sorted(grouped.items())}
    conditions: dict[str, dict[str, str | list[str]]] = {}
    for condition in statement.get("conditions") or []:
        by_variable = conditions.setdefault(condition["test"], {})
        by_variable[condition["variable"]] = _one_or_many(list(condition.get("values") or []))
    if conditions:
        rendered["Condition"] = conditions
    return rendered


def render_policy_document(args: Mapping[str, Any]) -> dict[str, Any]:
    """Render `aws.iam.get_policy_document` the way the provider does.

    Statements of `sourcePolicyDocuments` come first; the document's own
    statements and then `overridePolicyDocuments` replace any with the same Sid.
    """
    merged: list[dict[str, Any]] = []

    def add(statement: dict[str, Any]) -> None:
        sid = statement.get("Sid")
        for i, existing in enumerate(merged):
            if sid and existing.get("Sid") == sid:
                merged[i] = statement
                return
        merged.append(statement)

    for source in args.get("sourcePolicyDocuments") or []:
        for statement in _statements(json.loads(source)):
            add(statement)
    for statement in args.get("statements") or []:
        add(_render_statement(statement))
    for override in args.get("overridePolicyDocuments") or []:
        for statement in _statements(json.loads(override)):
            add(statement)
    document: dict[str, Any] = {"Version": args.get("version") or "2012-10-17"}
    if args.get("policyId"):
        document["Id"] = args["policyId"]
    document["Statement"] = merged
    text = json.dumps(document, indent=2)
    minified = json.dumps(document, separators=(",", ":"))
    return {"id": str(int(_hex(minified, 8), 16)), "json": text, "minifiedJson": minified}


def _statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement") or []
    return [statements] if isinstance(statements, dict) else list(statements)


def _policy_document(ctx: CallContext) -> dict[str, Any]:
    return render_policy_document(ctx.args)


def _eks_get_cluster(ctx: CallContext) -> dict[str, Any]:
    """`aws.eks.get_cluster`: the data source's shape, which differs from the resource's.

    It has `certificateAuthorities` (a list) where the resource has
    `certificateAuthority`, and a fully populated `vpcConfig`.
    """
    name = str(ctx.args.get("name", "cluster"))
    fake = ResourceContext(
        "aws:eks/cluster:Cluster", name, f"data::{name}", {"name": name}, ctx.region, ctx.account_id
    )
    _, cluster = _eks_cluster(fake)
    subnets = [f"subnet-{fake.digest(17, f'subnet{i}')}" for i in range(3)]
    return {
        "id": name,
        "name": name,
        "arn": cluster["arn"],
        "clusterId": cluster["clusterId"],
        "createdAt": "2025-01-01T00:00:00Z",
        "endpoint": cluster["endpoint"],
        "certificateAuthorities": [cluster["certificateAuthority"]],
        "identities": cluster["identities"],
        "platformVersion": cluster["platformVersion"],
        "roleArn": fake.arn("iam", f"role/{name}-cluster", region=False),
        "status": "ACTIVE",
        "version": cluster["version"],
        "vpcConfig": {
            "clusterSecurityGroupId": cluster["vpcConfig"]["clusterSecurityGroupId"],
            "endpointPrivateAccess": True,
            "endpointPublicAccess": False,
            "publicAccessCidrs": [],
            "securityGroupIds": [],
            "subnetIds": subnets,
            "vpcId": cluster["vpcConfig"]["vpcId"],
        },
        "kubernetesNetworkConfigs": [{"ipFamily": "ipv4", "serviceIpv4Cidr": "172.20.0.0/16"}],
        "tags": {},
    }


def _eks_get_cluster_auth(ctx: CallContext) -> dict[str, Any]:
    name = str(ctx.args.get("name", "cluster"))
    return {"id": name, "name": name, "token": "k8s-aws-v1.synthetic-token-not-a-credential"}


def _vpc_endpoint(ctx: CallContext) -> dict[str, Any]:
    """`aws.ec2.get_vpc_endpoint`: an available interface endpoint with private DNS.

    In the VPC and for the service asked; its network interfaces sit in two of
    that VPC's subnets (ids as `_subnet_lookup` answers them).
    """
    vpc_id = str(ctx.args.get("vpcId") or "vpc-0mock")
    service = str(ctx.args.get("serviceName") or f"com.amazonaws.{ctx.region}.sts")
    endpoint_id = f"vpce-{_hex(vpc_id + service, 17)}"
    subnets = [f"subnet-{_hex(f'{vpc_id}-endpoint-{i}', 17)}" for i in range(2)]
    return {
        "id": endpoint_id,
        "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account_id}:vpc-endpoint/{endpoint_id}",
        "vpcId": vpc_id,
        "serviceName": service,
        "state": "available",
        "vpcEndpointType": "Interface",
        "privateDnsEnabled": True,
        "subnetIds": subnets,
        "networkInterfaceIds": [f"eni-{_hex(subnet, 17)}" for subnet in subnets],
        "securityGroupIds": [f"sg-{_hex(endpoint_id, 17)}"],
        "routeTableIds": [],
        "cidrBlocks": [],
        "dnsEntries": [],
        "tags": {},
    }


def _subnet_lookup(ctx: CallContext) -> dict[str, Any]:
    """`aws.ec2.get_subnet` by id: a /19 of 10.0.0.0/16 chosen from the id."""
    subnet_id = str(ctx.args.get("id") or "subnet-0mock")
    block = int(_hex(subnet_id, 4), 16) % 7
    return {
        "id": subnet_id,
        "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account_id}:subnet/{subnet_id}",
        "cidrBlock": f"10.0.{block * 32}.0/19",
        "vpcId": str(ctx.args.get("vpcId") or "vpc-0mock"),
        "availabilityZone": f"{ctx.region}a",
        "state": "available",
        "tags": {},
    }


def _prefix_list(ctx: CallContext) -> dict[str, Any]:
    # An AWS-managed prefix list (e.g. com.amazonaws.us-east-1.s3): public ranges.
    name = str(ctx.args.get("name") or f"com.amazonaws.{ctx.region}.s3")
    return {
        "id": "pl-63a5400a",
        "name": name,
        "cidrBlocks": ["3.5.0.0/19", "52.216.0.0/15", "54.231.0.0/16"],
    }


def _yaml_decode(ctx: CallContext) -> dict[str, Any]:
    # kubernetes.yaml.ConfigFile (v1) parses its text through this invoke.
    text = str(ctx.args.get("text", ""))
    return {"result": [doc for doc in yaml.safe_load_all(text) if doc]}


CALL_HANDLERS: dict[str, CallHandler] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": _availability_zones,
    "aws:index/getCallerIdentity:getCallerIdentity": _caller_identity,
    "aws:index/getRegion:getRegion": _region,
    "aws:index/getPartition:getPartition": _partition,
    "aws:iam/getPolicyDocument:getPolicyDocument": _policy_document,
    "aws:eks/getCluster:getCluster": _eks_get_cluster,
    "aws:eks/getClusterAuth:getClusterAuth": _eks_get_cluster_auth,
    "aws:ec2/getPrefixList:getPrefixList": _prefix_list,
    "aws:ec2/getVpcEndpoint:getVpcEndpoint": _vpc_endpoint,
    "aws:ec2/getSubnet:getSubnet": _subnet_lookup,
    "kubernetes:yaml:decode": _yaml_decode,
}


def call_outputs(ctx: CallContext) -> dict[str, Any]:
    """The result of one data-source call; UnmockedCallError for unknown tokens."""
    handler = CALL_HANDLERS.get(ctx.token)
    if handler is None:
        raise UnmockedCallError(ctx.token)
    return handler(ctx)
