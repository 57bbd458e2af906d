"""The VPC of an AWS stack: public and private subnets across availability zones.

Workloads, the database and Redis live in the private subnets; only load
balancers and NAT gateways sit in the public ones. Subnets carry the tags the
AWS load balancer integration uses to find them (``kubernetes.io/role/elb`` and
``.../internal-elb``) and the cluster ownership tag.

Address plan for a /16: each private subnet is a /19 (8,190 addresses, because
the VPC CNI gives every pod a VPC address), and the public subnets are /22s
carved from the last /19. Smaller VPCs (down to /20) keep the same proportions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

import pulumi
import pulumi_aws as aws

#: Zone ids where EKS does not place control-plane network interfaces ("Amazon
#: EKS cluster VPC and subnet requirements": us-east-1 use1-az3, us-west-1
#: usw1-az2, ca-central-1 cac1-az3).
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")

# Eight equal blocks: up to six private subnets, the last block split for public ones.
_PRIVATE_SPLIT_BITS = 3
_PUBLIC_SPLIT_BITS = 3


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    """Inputs of :class:`Network`.

    The CIDR, the AZ count and the NAT layout decide how many resources exist, so
    they are plain values (known at preview), not Outputs.
    """

    vpc_cidr: str
    az_count: int
    #: One NAT gateway per AZ (production) or one shared gateway.
    nat_gateway_per_az: bool
    #: EKS cluster name for the ``kubernetes.io/cluster/<name>`` subnet tag.
    cluster_name: str
    region: str
    tags: Mapping[str, str] = field(default_factory=dict)


def subnet_plan(vpc_cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """(private CIDRs, public CIDRs), one of each per AZ, without overlap."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    blocks = list(vpc.subnets(prefixlen_diff=_PRIVATE_SPLIT_BITS))
    if az_count > len(blocks) - 1:
        raise ValueError(f"{vpc_cidr} holds at most {len(blocks) - 1} AZs' private subnets")
    private = [str(block) for block in blocks[:az_count]]
    public = [str(block) for block in blocks[-1].subnets(prefixlen_diff=_PUBLIC_SPLIT_BITS)]
    return private, public[:az_count]


#: The load-balancer role tag of each subnet tier: internet-facing NLBs go in the
#: public subnets, internal ones in the private subnets.
_ELB_ROLE: Final = {
    "public": "kubernetes.io/role/elb",
    "private": "kubernetes.io/role/internal-elb",
}


def _subnet(
    name: str,
    tier: Literal["public", "private"],
    index: int,
    zone: str,
    zone_id: str,
    cidr: str,
    vpc: aws.ec2.Vpc,
    tags: Mapping[str, str],
    route_table: aws.ec2.RouteTable,
) -> aws.ec2.Subnet:
    """One tier's subnet in one zone, tagged for the cluster's load balancers, and its routes."""
    subnet = aws.ec2.Subnet(
        f"{name}-{tier}-{index}",
        vpc_id=vpc.id,
        cidr_block=cidr,
        availability_zone_id=zone_id,
        # Nothing launched in either tier needs a public address but the NAT gateways'
        # Elastic IPs and the load balancers', which AWS assigns explicitly.
        map_public_ip_on_launch=False,
        tags={**tags, "Name": f"{name}-{tier}-{zone}", _ELB_ROLE[tier]: "1"},
        opts=pulumi.ResourceOptions(parent=vpc),
    )
    aws.ec2.RouteTableAssociation(
        f"{name}-{tier}-{index}-rta",
        subnet_id=subnet.id,
        route_table_id=route_table.id,
        opts=pulumi.ResourceOptions(parent=subnet),
    )
    return subnet


def _route_table(
    prefix: str,
    *,
    vpc: aws.ec2.Vpc,
    tags: Mapping[str, str],
    gateway_id: pulumi.Input[str] | None = None,
    nat_gateway_id: pulumi.Input[str] | None = None,
) -> aws.ec2.RouteTable:
    """A route table ``<prefix>-rt`` whose default route leaves by the one gateway given."""
    route_table = aws.ec2.RouteTable(
        f"{prefix}-rt", vpc_id=vpc.id, tags=tags, opts=pulumi.ResourceOptions(parent=vpc)
    )
    aws.ec2.Route(
        f"{prefix}-default",
        route_table_id=route_table.id,
        destination_cidr_block="0.0.0.0/0",
        gateway_id=gateway_id,
        nat_gateway_id=nat_gateway_id,
        opts=pulumi.ResourceOptions(parent=route_table),
    )
    return route_table


class Network(pulumi.ComponentResource):
    """VPC, subnets, gateways, route tables, an S3 gateway and an STS interface endpoint."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    availability_zones: list[str]
    zone_ids: list[str]
    #: The S3 gateway endpoint and the prefix list of the S3 addresses it routes.
    s3_endpoint_id: pulumi.Output[str]
    s3_prefix_list_id: pulumi.Output[str]
    #: The STS interface endpoint; its addresses are in ``private_cidrs``.
    sts_endpoint_id: pulumi.Output[str]
    endpoint_security_group_id: pulumi.Output[str]
    private_cidrs: list[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("enterprisehub:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        # By zone id, not name: names are shuffled per account, ids are not, and
        # EKS refuses control-plane subnets in a few zone ids. Opt-in zones (Local
        # Zones) are left out: EKS control planes cannot use them.
        found = aws.get_availability_zones(
            state="available",
            filters=[
                aws.GetAvailabilityZonesFilterArgs(
                    name="opt-in-status", values=["opt-in-not-required"]
                )
            ],
            exclude_zone_ids=list(EKS_UNSUPPORTED_ZONE_IDS),
            opts=pulumi.InvokeOptions(parent=self),
        )
        zone_ids = sorted(found.zone_ids)
        if len(zone_ids) < args.az_count:
            raise ValueError(
                f"{name}: region {args.region} offers {len(zone_ids)} zones EKS accepts, "
                f"{args.az_count} requested"
            )
        self.zone_ids = zone_ids[: args.az_count]
        by_id = dict(zip(found.zone_ids, found.names, strict=True))
        self.availability_zones = [by_id[zone_id] for zone_id in self.zone_ids]
        private_cidrs, public_cidrs = subnet_plan(args.vpc_cidr, args.az_count)
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,  # EKS and RDS endpoints resolve through VPC DNS
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        vpc_child = pulumi.ResourceOptions(parent=vpc)
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-igw"}, opts=vpc_child
        )

        public_rt = _route_table(
            f"{name}-public", vpc=vpc, tags={**tags, "Name": f"{name}-public"}, gateway_id=igw.id
        )

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        nat_gateways: list[aws.ec2.NatGateway] = []
        private_route_tables: list[aws.ec2.RouteTable] = []
        for index, zone in enumerate(self.availability_zones):
            subnet_tags = {**tags, **cluster_tag}
            public = _subnet(
                name,
                "public",
                index,
                zone,
                self.zone_ids[index],
                public_cidrs[index],
                vpc,
                subnet_tags,
                public_rt,
            )
            public_subnets.append(public)

            if args.nat_gateway_per_az or index == 0:
                eip = aws.ec2.Eip(
                    f"{name}-nat-{index}-eip",
                    domain="vpc",
                    tags={**tags, "Name": f"{name}-nat-{zone}"},
                    opts=vpc_child,
                )
                nat_gateways.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{index}",
                        allocation_id=eip.allocation_id,
                        subnet_id=public.id,
                        tags={**tags, "Name": f"{name}-nat-{zone}"},
                        opts=pulumi.ResourceOptions(parent=public, depends_on=[igw]),
                    )
                )

            private_rt = _route_table(
                f"{name}-private-{index}",
                vpc=vpc,
                tags={**tags, "Name": f"{name}-private-{zone}"},
                # Per-AZ NAT keeps a zone's egress inside the zone; otherwise all
                # zones share the first gateway.
                nat_gateway_id=nat_gateways[index if args.nat_gateway_per_az else 0].id,
            )
            private = _subnet(
                name,
                "private",
                index,
                zone,
                self.zone_ids[index],
                private_cidrs[index],
                vpc,
                subnet_tags,
                private_rt,
            )
            private_subnets.append(private)
            private_route_tables.append(private_rt)

        # Model and media traffic to S3 stays on the AWS network and costs no NAT
        # data processing.
        s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_route_tables],
            tags={**tags, "Name": f"{name}-s3"},
            opts=vpc_child,
        )

        # STS (the pods' IRSA web-identity exchange) through an interface endpoint:
        # with private DNS its regional name resolves to addresses inside the
        # private subnets, so a NetworkPolicy can allow it without 0.0.0.0/0.
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg",
            description=f"{name}: HTTPS from the VPC to interface endpoints",
            vpc_id=vpc.id,
            tags={**tags, "Name": f"{name}-endpoints"},
            opts=vpc_child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https",
            security_group_id=endpoint_sg.id,
            cidr_ipv4=args.vpc_cidr,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="HTTPS from the VPC",
            opts=pulumi.ResourceOptions(parent=endpoint_sg),
        )
        sts_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-sts-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.sts",
            vpc_endpoint_type="Interface",
            private_dns_enabled=True,
            subnet_ids=[subnet.id for subnet in private_subnets],
            security_group_ids=[endpoint_sg.id],
            tags={**tags, "Name": f"{name}-sts"},
            opts=vpc_child,
        )
        self.s3_endpoint_id = s3_endpoint.id
        self.s3_prefix_list_id = s3_endpoint.prefix_list_id
        self.sts_endpoint_id = sts_endpoint.id
        self.endpoint_security_group_id = endpoint_sg.id
        self.private_cidrs = private_cidrs
        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
                "s3_prefix_list_id": self.s3_prefix_list_id,
                "sts_endpoint_id": self.sts_endpoint_id,
            }
        )
