"""Where the workloads run, and the Kubernetes provider that reaches it.

Three shapes, one interface (``provider``, plus the AWS facts IRSA and the
security groups need):

* :class:`EksCluster` creates an EKS cluster: private API endpoint (public only
  to listed CIDRs), Kubernetes secrets envelope-encrypted with a KMS key, every
  control-plane log type shipped to CloudWatch, managed node groups in the
  private subnets (each on its own launch template: a root volume encrypted
  with the cluster's volumes key, IMDSv2 within one hop), the core add-ons
  (VPC CNI, CoreDNS, kube-proxy, EBS CSI with its own IRSA role) at the
  versions ``charts/versions.yaml`` pins for the cluster's Kubernetes version,
  and an IAM OIDC provider for service-account roles.
* :class:`ExistingEksCluster` uses an EKS cluster created elsewhere, looked up
  by name (its VPC, subnets, cluster security group and OIDC issuer), and the
  STS interface endpoint its VPC must have.
* :class:`KubeconfigCluster` targets a context of the local kubeconfig (the
  ``local`` stack: kind, minikube, Docker Desktop).

The kubeconfig of an EKS cluster is rendered from the cluster's outputs with
``Output.all``; authentication runs ``aws eks get-token`` at use time, so no
credential is stored in it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.autoscaling import Karpenter, KarpenterArgs, KarpenterSpec
from infra.components.base import AwsComponent, Component
from infra.components.iam import (
    EBS_KEY_USE_ACTIONS,
    EKS_NODE_POLICIES,
    ebs_key_statements,
    irsa_trust_policy,
    managed_policy_attachment,
    managed_policy_attachments,
    policy_document,
    service_role,
)
from infra.components.load_balancer_controller import (
    LoadBalancerController,
    LoadBalancerControllerArgs,
)

CONTROL_PLANE_LOG_RETENTION_DAYS = 90
#: The daemonset add-ons, installed as soon as the control plane is up.
CORE_ADDONS = ("vpc-cni", "kube-proxy")
#: Every managed add-on the cluster declares; each needs a version pinned for the
#: cluster's Kubernetes version (``eksAddons`` in charts/versions.yaml).
MANAGED_ADDONS = (*CORE_ADDONS, "coredns", "aws-ebs-csi-driver")
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
#: The VPC CNI enforces NetworkPolicy only when told to (its network policy
#: agent); without it every policy is accepted and ignored.
ADDON_CONFIGURATION: dict[str, dict[str, str]] = {"vpc-cni": {"enableNetworkPolicy": "true"}}
#: The default StorageClass: encrypted gp3, bound where the pod lands.
STORAGE_CLASS = "gp3-encrypted"
#: EKS's managed access policy for full cluster administration.
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
#: The cluster input that gives the creator an admin access entry (a creation-only flag).
BOOTSTRAP_ADMIN_PATH = "accessConfig.bootstrapClusterCreatorAdminPermissions"
#: The admin role (``EksClusterArgs.admin_role_arns`` key) that runs `pulumi up`.
DEPLOY_ROLE = "deploy"
#: The root device of every AL2023 EKS AMI (``NodeGroupSpec.ami_type``), x86_64 and
#: arm64 alike. A mapping of another device would add a second volume and leave the
#: root one as the AMI has it (Bottlerocket's data volume, for one, is /dev/xvdb).
NODE_ROOT_DEVICE = "/dev/xvda"
#: Instance metadata of every node: IMDSv2 only, and one hop, so a pod on the pod
#: network (one hop further) gets no token and cannot take the node role's
#: credentials; the services use IRSA. hostNetwork pods (aws-node, kube-proxy,
#: node-exporter) share the node's network namespace and still reach it.
NODE_METADATA_OPTIONS: Mapping[str, Any] = {
    "http_endpoint": "enabled",
    "http_tokens": "required",
    "http_put_response_hop_limit": 1,
}
#: The role EC2 Auto Scaling launches a managed node group's instances with.
AUTOSCALING_SERVICE_ROLE = (
    "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
)


@dataclass(frozen=True, kw_only=True)
class NodeGroupSpec:
    """One managed node group (sizes decide resources at preview: plain values)."""

    name: str
    instance_types: Sequence[str]
    min_size: int
    desired_size: int
    max_size: int
    disk_size_gb: int
    capacity_type: str = "ON_DEMAND"
    #: Named, not left to EKS's default: the launch template encrypts the AMI's
    #: root device (``NODE_ROOT_DEVICE``), which a default that moved to another
    #: AMI family would make a second, unused volume.
    ami_type: str = "AL2023_x86_64_STANDARD"


@dataclass(frozen=True, kw_only=True)
class EksClusterArgs:
    """Inputs of :class:`EksCluster`."""

    cluster_name: str
    kubernetes_version: pulumi.Input[str]
    #: The version of each of ``MANAGED_ADDONS`` (``load_eks_addon_versions``
    #: for ``kubernetes_version``). Explicit and fixed: EKS never moves an
    #: installed add-on by itself, an unset version is read back from the cluster
    #: and never changes, and one resolved at deploy time (EKS's current default)
    #: would change under an unrelated `up` whenever AWS publishes a new build.
    addon_versions: Mapping[str, str]
    #: Private subnets for the control plane's network interfaces and the nodes.
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    #: Their VPC (the load balancer controller creates its security groups there).
    vpc_id: pulumi.Input[str]
    #: What gives those subnets their egress (route-table associations, default
    #: routes through NAT): the node groups wait for it. The subnet ids exist
    #: first, and a node that boots without a route out cannot pull images from
    #: ECR or join the cluster, so its node group fails (NodeCreationFailure).
    subnet_egress: Sequence[pulumi.Resource] = ()
    region: str
    endpoint_public_access: bool = False
    public_access_cidrs: Sequence[str] = ()
    #: Networks of an in-VPC deployer: HTTPS to the private endpoint is admitted from
    #: them. EKS's cluster security group admits only itself (the nodes), so without
    #: a rule a runner in the VPC cannot reach the API.
    deployer_cidrs: Sequence[str] = ()
    log_types: Sequence[str] = ("api", "audit", "authenticator", "controllerManager", "scheduler")
    node_groups: Sequence[NodeGroupSpec] = ()
    #: The account the cluster is in (the volumes key's policy names its roles).
    account_id: str
    #: Tags for what the nodes' launch templates create (instances, volumes): the
    #: provider's default tags reach only the resources Pulumi itself creates.
    node_tags: Mapping[str, str] = field(default_factory=dict)
    #: EKS upgrade policy; EXTENDED costs about 6x the standard control-plane price.
    support_type: str = "STANDARD"
    #: IAM roles given cluster-admin access entries (CI's deploy role, break-glass).
    admin_role_arns: Mapping[str, str] = field(default_factory=dict)
    #: Karpenter's NodePool; None leaves scaling to the managed node groups.
    autoscaling: KarpenterSpec | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def render_kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig (JSON) that authenticates with ``aws eks get-token``."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [
                {"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}
            ],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster_name,
                                "--region",
                                region,
                            ],
                        }
                    },
                }
            ],
        }
    )


def creator_is_admin(admin_role_arns: Mapping[str, str]) -> bool:
    """Whether EKS gives the cluster's creator an admin access entry at creation.

    Yes unless a deploy role is declared: then `pulumi up` runs as that role and
    its own entry below is the access (EKS refuses a second entry for one
    principal). A break-glass role alone changes nothing: whoever creates the
    cluster must still reach it to create the Kubernetes objects.
    """
    return DEPLOY_ROLE not in admin_role_arns


def admin_access_entries(
    name: str,
    cluster: aws.eks.Cluster,
    role_arns: Mapping[str, str],
    partition: str,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> list[pulumi.Resource]:
    """An access entry with the cluster-admin policy for each role (authentication mode API)."""
    created: list[pulumi.Resource] = []
    policy_arn = f"arn:{partition}:eks::aws:cluster-access-policy/{CLUSTER_ADMIN_POLICY}"
    for purpose, role_arn in sorted(role_arns.items()):
        entry = aws.eks.AccessEntry(
            f"{name}-{purpose}-access",
            cluster_name=cluster.name,
            principal_arn=role_arn,
            type="STANDARD",
            tags={**tags, "Purpose": purpose},
            opts=pulumi.ResourceOptions(parent=parent),
        )
        created.append(entry)
        created.append(
            aws.eks.AccessPolicyAssociation(
                f"{name}-{purpose}-admin",
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=policy_arn,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=entry),
            )
        )
    return created


def _first_issuer(identities: Any) -> str:
    """The OIDC issuer URL from an EKS cluster's ``identities`` output."""
    for identity in identities or []:
        oidcs = identity.get("oidcs") if isinstance(identity, dict) else identity.oidcs
        for oidc in oidcs or []:
            issuer = oidc.get("issuer") if isinstance(oidc, dict) else oidc.issuer
            if issuer:
                return str(issuer)
    raise ValueError("the EKS cluster reports no OIDC issuer")


class EksClusterOutputs:
    """What both cluster components offer: a new cluster or one managed elsewhere."""

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    #: The security group EKS attaches to the control plane and managed nodes.
    security_group_id: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider


class EksCluster(AwsComponent[EksClusterArgs], EksClusterOutputs):
    """An EKS cluster with node groups, core add-ons, OIDC provider and a k8s provider."""

    component_type = "enterprisehub:aws:EksCluster"

    def __init__(
        self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        missing = sorted(set(MANAGED_ADDONS) - set(args.addon_versions))
        if missing:
            raise ValueError(f"{name}: addon_versions lacks {', '.join(missing)}")
        super().__init__(name, args, opts)
        #: The AWS partition (aws, aws-cn, ...), for ARNs built beside the cluster.
        self.partition = aws.get_partition(opts=pulumi.InvokeOptions(parent=self)).partition
        self.storage_class = STORAGE_CLASS

        # Neither key is protected: the cluster is not, its Secrets are written
        # again by every `up` (their values are Pulumi secrets), and its volumes
        # hold the monitoring's working data (the stores are RDS, ElastiCache, S3).
        secrets_key = self._encryption_key(
            "Kubernetes secrets envelope encryption", purpose="secrets", protect=False
        )
        cluster_role, role_policies = self._cluster_role(secrets_key)
        log_group = self._control_plane_logs()
        cluster = self._cluster(cluster_role, secrets_key, [log_group, *role_policies])
        # One key for every EBS volume of the cluster: the nodes' root volumes and
        # the persistent volumes of the default StorageClass.
        volume_key = self._encryption_key(
            "EBS volumes (node root volumes, persistent volumes)",
            purpose="volumes",
            protect=False,
            policy=volume_key_policy(self.partition, args.account_id),
        )
        node_groups = self._node_groups(cluster, volume_key)
        admin_entries = admin_access_entries(
            name, cluster, args.admin_role_arns, self.partition, self._tags, cluster
        )
        issuer = cluster.identities.apply(_first_issuer)
        oidc = self._oidc_provider(cluster, issuer)
        addons = [
            *self._core_addons(cluster, node_groups),
            self._ebs_csi_driver(cluster, node_groups, oidc, issuer, volume_key),
        ]

        self.cluster_name = cluster.name
        self.endpoint = cluster.endpoint
        self.security_group_id = cluster.vpc_config.apply(_cluster_security_group)
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer_url = issuer
        self.kubeconfig = self._kubeconfig(cluster)
        deployer_rules = self._deployer_rules(cluster)
        # Cluster-wide objects (the default StorageClass, Karpenter and its node
        # pool) go through a provider of their own; the provider every workload
        # uses waits for them, so nothing claims storage or schedules pods first.
        ready: list[pulumi.Resource] = [*node_groups, *addons, *admin_entries]
        system_provider = self._k8s_provider("k8s-system", [*ready, *deployer_rules])
        ready.append(self._default_storage_class(volume_key, system_provider))
        self.karpenter = self._karpenter(
            cluster, oidc, issuer, volume_key, system_provider, after=[*node_groups, *addons]
        )
        if self.karpenter is not None:
            ready.append(self.karpenter)
        # The edge's NLB comes from this controller; its pod webhook must answer
        # before the proxies' namespace gets pods, and it must outlive their Service.
        ready.append(
            self._load_balancer_controller(
                oidc, issuer, system_provider, after=[*node_groups, *addons]
            )
        )
        # Workloads wait for nodes and cluster DNS: a Deployment applied to a
        # cluster without nodes would wait out its timeout and fail the update.
        self.provider = self._k8s_provider("k8s", ready)
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "endpoint": self.endpoint,
                "oidc_provider_arn": self.oidc_provider_arn,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _cluster_role(self, secrets_key: aws.kms.Key) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        """The control plane's role and its policies (the cluster waits for both)."""
        name = self._name
        role = service_role(
            f"{name}-cluster-role", "eks.amazonaws.com", parent=self, tags=self._tags
        )
        # The control plane encrypts and decrypts Secrets with this key only.
        policies = self._role_policies(
            f"{name}-cluster",
            role,
            "AmazonEKSClusterPolicy",
            secrets_key.arn.apply(_secrets_kms_policy),
        )
        return role, policies

    def _control_plane_logs(self) -> aws.cloudwatch.LogGroup:
        """Created before the cluster so that retention is ours, not "never expire"."""
        return aws.cloudwatch.LogGroup(
            f"{self._name}-control-plane-logs",
            name=f"/aws/eks/{self._args.cluster_name}/cluster",
            retention_in_days=CONTROL_PLANE_LOG_RETENTION_DAYS,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _cluster(
        self,
        role: aws.iam.Role,
        secrets_key: aws.kms.Key,
        depends_on: Sequence[pulumi.Resource],
    ) -> aws.eks.Cluster:
        """The control plane: private endpoint, API access entries, encrypted Secrets."""
        args = self._args
        return aws.eks.Cluster(
            f"{self._name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=args.endpoint_public_access,
                public_access_cidrs=(
                    list(args.public_access_cidrs) if args.endpoint_public_access else None
                ),
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=creator_is_admin(args.admin_role_arns),
            ),
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=args.support_type),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(args.log_types),
            tags=self._tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(depends_on),
                # The flag is part of the creation request only, and a change
                # replaces the cluster (forceNew): declaring a deploy role later
                # must not delete the cluster with every workload on it.
                ignore_changes=[BOOTSTRAP_ADMIN_PATH],
            ),
        )

    def _node_groups(
        self, cluster: aws.eks.Cluster, volume_key: aws.kms.Key
    ) -> list[aws.eks.NodeGroup]:
        """The nodes' role and one managed node group per spec, in the private subnets.

        Each group launches from its own launch template (:meth:`_launch_template`);
        EKS refuses ``diskSize`` beside one, so the disk size is the template's.
        """
        name, args = self._name, self._args
        role = service_role(f"{name}-node-role", "ec2.amazonaws.com", parent=self, tags=self._tags)
        attachments = managed_policy_attachments(
            f"{name}-node", role, partition=self.partition, policy_names=EKS_NODE_POLICIES
        )
        groups = []
        for spec in args.node_groups:
            template = self._launch_template(spec, volume_key)
            groups.append(self._node_group(spec, cluster, role, template, attachments))
        return groups

    def _launch_template(
        self, spec: NodeGroupSpec, volume_key: aws.kms.Key
    ) -> aws.ec2.LaunchTemplate:
        """What a node group's instances start with beyond EKS's own settings.

        The root volume encrypted with the volumes key whatever the account's EBS
        default, and IMDSv2 with one hop (``NODE_METADATA_OPTIONS``). No AMI and no
        user data, so EKS keeps choosing the AMI and bootstrapping the node; no
        instance type (the node group lists them); no security group, so EKS adds
        the cluster security group as it does without a template.
        """
        tags = dict(self._args.node_tags)
        return aws.ec2.LaunchTemplate(
            f"{self._name}-{spec.name}-nodes",
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=NODE_ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=spec.disk_size_gb,
                        volume_type="gp3",
                        encrypted="true",
                        kms_key_id=volume_key.arn,
                        delete_on_termination="true",
                    ),
                )
            ],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(**NODE_METADATA_OPTIONS),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
                for kind in ("instance", "volume")
            ],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _node_group(
        self,
        spec: NodeGroupSpec,
        cluster: aws.eks.Cluster,
        role: aws.iam.Role,
        template: aws.ec2.LaunchTemplate,
        attachments: Sequence[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        """The managed node group of ``spec``, launching from ``template``'s latest version.

        No ``nodeGroupName``: the auto-name lets a replacement (a changed template
        id, instance types, subnets) be created before the old group is deleted.
        """
        args = self._args
        return aws.eks.NodeGroup(
            f"{self._name}-{spec.name}",
            cluster_name=cluster.name,
            node_role_arn=role.arn,
            subnet_ids=args.subnet_ids,
            version=cluster.version,
            instance_types=list(spec.instance_types),
            capacity_type=spec.capacity_type,
            ami_type=spec.ami_type,
            # A new template version rolls the group's nodes, one at a time.
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=spec.min_size,
                desired_size=spec.desired_size,
                max_size=spec.max_size,
            ),
            # One node at a time, so PodDisruptionBudgets can hold during upgrades.
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            labels={"enterprisehub.io/node-group": spec.name},
            tags=self._tags,
            # The autoscaler owns the node count between min and max; an `up`
            # must not reset it to the configured desired size.
            opts=pulumi.ResourceOptions(
                parent=cluster,
                depends_on=[*attachments, *args.subnet_egress],
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )

    def _oidc_provider(
        self, cluster: aws.eks.Cluster, issuer: pulumi.Output[str]
    ) -> aws.iam.OpenIdConnectProvider:
        """The IAM OIDC provider that service-account roles (IRSA) trust."""
        return aws.iam.OpenIdConnectProvider(
            f"{self._name}-oidc",
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=cluster),
        )

    def _core_addons(
        self, cluster: aws.eks.Cluster, node_groups: Sequence[pulumi.Resource]
    ) -> list[aws.eks.Addon]:
        """VPC CNI and kube-proxy at once; CoreDNS, a Deployment, once there are nodes."""
        addons = [
            self._addon(
                addon,
                cluster=cluster,
                configuration_values=(
                    json.dumps(ADDON_CONFIGURATION[addon]) if addon in ADDON_CONFIGURATION else None
                ),
            )
            for addon in CORE_ADDONS
        ]
        addons.append(self._addon("coredns", cluster=cluster, depends_on=node_groups))
        return addons

    def _ebs_csi_driver(
        self,
        cluster: aws.eks.Cluster,
        node_groups: Sequence[pulumi.Resource],
        oidc: aws.iam.OpenIdConnectProvider,
        issuer: pulumi.Output[str],
        volume_key: aws.kms.Key,
    ) -> aws.eks.Addon:
        """The EBS CSI add-on with its IRSA role; a Deployment, so after the nodes."""
        name = self._name
        role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            assume_role_policy=irsa_trust_policy(oidc.arn, issuer, *EBS_CSI_SERVICE_ACCOUNT),
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=oidc),
        )
        # The managed policy covers EBS itself; a customer-managed key needs its own grant.
        policies = self._role_policies(
            f"{name}-ebs-csi",
            role,
            "service-role/AmazonEBSCSIDriverPolicy",
            volume_key.arn.apply(_ebs_kms_policy),
        )
        return self._addon(
            "aws-ebs-csi-driver",
            cluster=cluster,
            service_account_role_arn=role.arn,
            depends_on=[*node_groups, *policies],
        )

    def _role_policies(
        self, prefix: str, role: aws.iam.Role, managed_policy: str, key_policy: pulumi.Input[str]
    ) -> list[pulumi.Resource]:
        """``<prefix>-policy``, AWS's managed policy, and ``<prefix>-kms``, the role's key use."""
        return [
            managed_policy_attachment(
                f"{prefix}-policy", role, partition=self.partition, policy_name=managed_policy
            ),
            aws.iam.RolePolicy(
                f"{prefix}-kms",
                role=role.id,
                policy=key_policy,
                opts=pulumi.ResourceOptions(parent=role),
            ),
        ]

    def _deployer_rules(self, cluster: aws.eks.Cluster) -> list[aws.vpc.SecurityGroupIngressRule]:
        """HTTPS to the private endpoint from each in-VPC deployer network.

        The endpoint's interfaces carry the cluster security group, which admits
        only itself (the nodes) (EKS user guide, "Accessing a private only API server").
        """
        return [
            aws.vpc.SecurityGroupIngressRule(
                f"{self._name}-api-from-deployer-{index}",
                security_group_id=self.security_group_id,
                cidr_ipv4=cidr,
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                description=f"Kubernetes API from the deployer network {cidr}",
                opts=pulumi.ResourceOptions(parent=cluster),
            )
            for index, cidr in enumerate(self._args.deployer_cidrs)
        ]

    def _kubeconfig(self, cluster: aws.eks.Cluster) -> pulumi.Output[str]:
        """The cluster's kubeconfig, a secret (it names the endpoint and CA)."""
        region = self._args.region
        return pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
                lambda values: render_kubeconfig(
                    str(values[0]), str(values[1]), _ca_data(values[2]), region
                )
            )
        )

    def _k8s_provider(self, suffix: str, depends_on: Sequence[pulumi.Resource]) -> k8s.Provider:
        """A Kubernetes provider ``<name>-<suffix>`` that waits for ``depends_on``."""
        return k8s.Provider(
            f"{self._name}-{suffix}",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _default_storage_class(
        self, volume_key: aws.kms.Key, provider: k8s.Provider
    ) -> k8s.storage.v1.StorageClass:
        """The default StorageClass: gp3 encrypted with the volumes key."""
        return k8s.storage.v1.StorageClass(
            f"{self._name}-gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=STORAGE_CLASS,
                annotations={"storageclass.kubernetes.io/is-default-class": "true"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={
                "type": "gp3",
                "encrypted": "true",
                "kmsKeyId": volume_key.arn,
                "csi.storage.k8s.io/fstype": "ext4",
            },
            # A volume is created in the zone of the pod that claims it.
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )

    def _karpenter(
        self,
        cluster: aws.eks.Cluster,
        oidc: aws.iam.OpenIdConnectProvider,
        issuer: pulumi.Output[str],
        volume_key: aws.kms.Key,
        provider: k8s.Provider,
        after: Sequence[pulumi.Resource],
    ) -> Karpenter | None:
        """Karpenter and its NodePool, or None to leave scaling to the node groups."""
        args = self._args
        if args.autoscaling is None:
            return None
        return Karpenter(
            f"{self._name}-karpenter",
            KarpenterArgs(
                cluster_name=cluster.name,
                cluster_endpoint=cluster.endpoint,
                cluster_arn=cluster.arn,
                oidc_provider_arn=oidc.arn,
                oidc_issuer_url=issuer,
                subnet_ids=args.subnet_ids,
                security_group_id=self.security_group_id,
                volume_key_arn=volume_key.arn,
                node_tags=args.node_tags,
                partition=self.partition,
                region=args.region,
                spec=args.autoscaling,
                provider=provider,
                after=list(after),
                tags=self._tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _load_balancer_controller(
        self,
        oidc: aws.iam.OpenIdConnectProvider,
        issuer: pulumi.Output[str],
        provider: k8s.Provider,
        after: Sequence[pulumi.Resource],
    ) -> LoadBalancerController:
        """The AWS Load Balancer Controller, which makes the edge's NLB."""
        args = self._args
        return LoadBalancerController(
            f"{self._name}-lb-controller",
            LoadBalancerControllerArgs(
                cluster_name=args.cluster_name,
                vpc_id=args.vpc_id,
                cluster_security_group_id=self.security_group_id,
                oidc_provider_arn=oidc.arn,
                oidc_issuer_url=issuer,
                partition=self.partition,
                region=args.region,
                provider=provider,
                after=list(after),
                tags=self._tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _addon(
        self,
        addon: str,
        *,
        cluster: aws.eks.Cluster,
        configuration_values: str | None = None,
        service_account_role_arn: pulumi.Input[str] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> aws.eks.Addon:
        """The managed add-on ``<name>-<addon>`` at its pinned version."""
        return aws.eks.Addon(
            f"{self._name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            addon_version=self._args.addon_versions[addon],
            configuration_values=configuration_values,
            service_account_role_arn=service_account_role_arn,
            # On create, take over what EKS installed itself (aws-node, kube-proxy);
            # on update, keep what was changed in the cluster.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=cluster, depends_on=list(depends_on) or None),
        )


def _api_service_ip(configs: Sequence[Any] | None) -> str | None:
    """The first address of the cluster's IPv4 service range: the ``kubernetes`` Service's."""
    for config in configs or []:
        cidr = getattr(config, "service_ipv4_cidr", None)
        if cidr:
            return str(next(ipaddress.ip_network(cidr).hosts()))
    return None


def _cluster_security_group(vpc: Any) -> str:
    """The security group EKS made for the cluster, from its ``vpc_config`` output."""
    return str(
        vpc.get("cluster_security_group_id") or vpc.get("clusterSecurityGroupId")
        if isinstance(vpc, dict)
        else vpc.cluster_security_group_id
    )


def _secrets_kms_policy(key_arn: str) -> str:
    """What the control plane needs to envelope-encrypt Secrets with the key."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                "Resource": key_arn,
            }
        ]
    )


def _ebs_kms_policy(key_arn: str) -> str:
    """What the EBS CSI controller needs to create and attach volumes encrypted with a CMK."""
    return policy_document(
        ebs_key_statements(
            key_arn,
            sid="VolumeKey",
            grant_actions=("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"),
        )
    )


def volume_key_policy(partition: str, account_id: str) -> str:
    """The volumes key's policy: the account's IAM policies, and EC2 Auto Scaling's role.

    The first statement is KMS's default: IAM policies decide (the EBS CSI
    driver's and Karpenter's roles get the key that way). Auto Scaling launches a
    managed node group's instances with its service-linked role, which takes no
    IAM policy of ours: only the key policy can let it create the encrypted root
    volumes, or every launch fails with Client.InternalError (EC2 Auto Scaling
    User Guide, "Required AWS KMS key policy for use with encrypted volumes").

    The role is matched by ``aws:PrincipalArn`` under a ``*`` principal rather than
    named as the principal: KMS refuses a policy naming a principal that does not
    exist ("Policy contains a statement with one or more invalid principals"), and
    in an account that never ran an Auto Scaling group that role does not exist
    until EKS creates the first node group, after this key.
    """
    account = f"arn:{partition}:iam::{account_id}"
    as_autoscaling = {"ArnEquals": {"aws:PrincipalArn": f"{account}:{AUTOSCALING_SERVICE_ROLE}"}}
    return policy_document(
        [
            {
                "Sid": "AccountIamPolicies",
                "Effect": "Allow",
                "Principal": {"AWS": f"{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "AutoScalingNodeVolumes",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": list(EBS_KEY_USE_ACTIONS),
                "Resource": "*",
                "Condition": as_autoscaling,
            },
            {
                "Sid": "AutoScalingNodeVolumeGrants",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "kms:CreateGrant",
                "Resource": "*",
                "Condition": {**as_autoscaling, "Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
        ]
    )


def _ca_data(certificate_authority: Any) -> str:
    if isinstance(certificate_authority, dict):
        return str(certificate_authority.get("data", ""))
    return str(getattr(certificate_authority, "data", "") or "")


@dataclass(frozen=True, kw_only=True)
class ExistingEksClusterArgs:
    """Inputs of :class:`ExistingEksCluster`."""

    cluster_name: str
    region: str
    account_id: str


class ExistingEksCluster(Component[ExistingEksClusterArgs], EksClusterOutputs):
    """An EKS cluster managed elsewhere: its network, OIDC issuer and a k8s provider."""

    component_type = "enterprisehub:aws:ExistingEksCluster"

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    #: The VPC's STS interface endpoint, and the CIDRs of the subnets its network
    #: interfaces are in: where pods' NetworkPolicies let them reach STS.
    sts_endpoint_id: pulumi.Output[str]
    sts_cidrs: list[str]
    #: The ``kubernetes`` Service's address, from the cluster's own service range
    #: (None when EKS reports no IPv4 range).
    api_service_ip: str | None

    def __init__(
        self, name: str, args: ExistingEksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        found = aws.eks.get_cluster(name=args.cluster_name, opts=pulumi.InvokeOptions(parent=self))
        issuer = _first_issuer(found.identities)
        # IAM names an OIDC provider after its issuer, so the ARN follows from it;
        # the provider must already exist (eksctl utils associate-iam-oidc-provider).
        partition = aws.get_partition(opts=pulumi.InvokeOptions(parent=self)).partition
        provider_arn = (
            f"arn:{partition}:iam::{args.account_id}:oidc-provider/"
            f"{issuer.removeprefix('https://')}"
        )
        authorities = found.certificate_authorities or []
        vpc = found.vpc_config
        if not authorities or not vpc.subnet_ids or not vpc.cluster_security_group_id:
            raise ValueError(
                f"{name}: EKS cluster {args.cluster_name!r} reports no certificate authority, "
                "subnets or cluster security group; is it an active EKS cluster?"
            )
        ca_data = authorities[0].data
        sts_endpoint, self.sts_cidrs = self._sts_endpoint(str(vpc.vpc_id))
        # A cluster made elsewhere may have been given its own service range
        # (serviceIpv4Cidr): the address EKS picks by default is then not the API's.
        self.api_service_ip = _api_service_ip(found.kubernetes_network_configs)

        self.cluster_name = pulumi.Output.from_input(found.name)
        self.endpoint = pulumi.Output.from_input(found.endpoint)
        self.vpc_id = pulumi.Output.from_input(vpc.vpc_id)
        self.private_subnet_ids = pulumi.Output.from_input(list(vpc.subnet_ids))
        self.security_group_id = pulumi.Output.from_input(vpc.cluster_security_group_id)
        self.oidc_provider_arn = pulumi.Output.from_input(provider_arn)
        self.oidc_issuer_url = pulumi.Output.from_input(issuer)
        self.kubeconfig = pulumi.Output.secret(
            render_kubeconfig(found.name, found.endpoint, ca_data, args.region)
        )
        self.sts_endpoint_id = pulumi.Output.from_input(sts_endpoint)
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "endpoint": self.endpoint,
                "sts_endpoint_id": self.sts_endpoint_id,
            }
        )

    def _sts_endpoint(self, vpc_id: str) -> tuple[str, list[str]]:
        """(id, subnet CIDRs) of the VPC's STS interface endpoint; refuses a VPC without one.

        Every pod with an IAM role (IRSA) exchanges its token with STS, and its
        NetworkPolicy admits STS only at addresses inside the VPC: without an
        interface endpoint whose private DNS makes STS's regional name resolve
        there, the exchange times out (the model-publish Job first, hanging the
        deploy until its deadline). Checked here, at preview, before anything
        is deployed.
        """
        region = self._args.region
        service = f"com.amazonaws.{region}.sts"
        fix = (
            "create one with private DNS in the cluster's private subnets "
            f"(aws ec2 create-vpc-endpoint --vpc-endpoint-type Interface --vpc-id {vpc_id} "
            f"--service-name {service} --private-dns-enabled --subnet-ids ... "
            "--security-group-ids <a group admitting HTTPS from the pods>); "
            "docs/deploying.md, existing-eks"
        )
        try:
            endpoint = aws.ec2.get_vpc_endpoint(
                vpc_id=vpc_id,
                service_name=service,
                vpc_endpoint_type="Interface",
                state="available",
                opts=pulumi.InvokeOptions(parent=self),
            )
        # The provider reports "no matching endpoint" (or several) as a failed
        # invoke, a plain Exception; say what it means for this stack instead.
        except Exception as error:
            raise ValueError(
                f"{self._name}: VPC {vpc_id} of EKS cluster {self._args.cluster_name!r} has no "
                f"single available STS interface endpoint ({error}); {fix}"
            ) from error
        if not endpoint.private_dns_enabled or not endpoint.subnet_ids:
            raise ValueError(
                f"{self._name}: STS endpoint {endpoint.id} in VPC {vpc_id} has "
                f"{'no subnets' if endpoint.private_dns_enabled else 'private DNS disabled'}: "
                f"pods would resolve STS to its public addresses; {fix}"
            )
        cidrs = [
            str(aws.ec2.get_subnet(id=subnet, opts=pulumi.InvokeOptions(parent=self)).cidr_block)
            for subnet in sorted(endpoint.subnet_ids)
        ]
        return str(endpoint.id), cidrs


@dataclass(frozen=True, kw_only=True)
class KubeconfigClusterArgs:
    """Inputs of :class:`KubeconfigCluster`; both None means the current context."""

    context: str | None = None
    kubeconfig_path: str | None = None


class KubeconfigCluster(Component[KubeconfigClusterArgs]):
    """A cluster reached through the local kubeconfig (the local stack)."""

    component_type = "enterprisehub:k8s:KubeconfigCluster"

    provider: k8s.Provider

    def __init__(
        self, name: str, args: KubeconfigClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        # The provider reads $KUBECONFIG or ~/.kube/config itself when no path is given.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=args.kubeconfig_path,
            context=args.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
