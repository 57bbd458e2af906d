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

import pulumi
import pulumi_aws as aws

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


class Network(pulumi.ComponentResource):
    """VPC, subnets, internet and NAT gateways, route tables and an S3 gateway endpoint."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    availability_zones: list[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("enterprisehub:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        zones = aws.get_availability_zones(
            state="available", opts=pulumi.InvokeOptions(parent=self)
        ).names
        if len(zones) < args.az_count:
            raise ValueError(
                f"{name}: region {args.region} offers {len(zones)} AZs, {args.az_count} requested"
            )
        self.availability_zones = list(zones[: args.az_count])
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

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            tags={**tags, "Name": f"{name}-public"},
            opts=vpc_child,
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=pulumi.ResourceOptions(parent=public_rt),
        )

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        nat_gateways: list[aws.ec2.NatGateway] = []
        private_route_tables: list[aws.ec2.RouteTable] = []
        for index, zone in enumerate(self.availability_zones):
            public = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=vpc.id,
                cidr_block=public_cidrs[index],
                availability_zone=zone,
                # Nothing launched here needs a public address but the NAT gateways'
                # Elastic IPs and the load balancers', which AWS assigns explicitly.
                map_public_ip_on_launch=False,
                tags={
                    **tags,
                    **cluster_tag,
                    "Name": f"{name}-public-{zone}",
                    "kubernetes.io/role/elb": "1",
                },
                opts=vpc_child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}-rta",
                subnet_id=public.id,
                route_table_id=public_rt.id,
                opts=pulumi.ResourceOptions(parent=public),
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

            private = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                cidr_block=private_cidrs[index],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={
                    **tags,
                    **cluster_tag,
                    "Name": f"{name}-private-{zone}",
                    "kubernetes.io/role/internal-elb": "1",
                },
                opts=vpc_child,
            )
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-{index}-rt",
                vpc_id=vpc.id,
                tags={**tags, "Name": f"{name}-private-{zone}"},
                opts=vpc_child,
            )
            aws.ec2.Route(
                f"{name}-private-{index}-default",
                route_table_id=private_rt.id,
                destination_cidr_block="0.0.0.0/0",
                # Per-AZ NAT keeps a zone's egress inside the zone; otherwise all
                # zones share the first gateway.
                nat_gateway_id=nat_gateways[index if args.nat_gateway_per_az else 0].id,
                opts=pulumi.ResourceOptions(parent=private_rt),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}-rta",
                subnet_id=private.id,
                route_table_id=private_rt.id,
                opts=pulumi.ResourceOptions(parent=private),
            )
            private_subnets.append(private)
            private_route_tables.append(private_rt)

        # Model and media traffic to S3 stays on the AWS network and costs no NAT
        # data processing.
        aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_route_tables],
            tags={**tags, "Name": f"{name}-s3"},
            opts=vpc_child,
        )

        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )
