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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import pulumi
import pulumi_aws as aws

from infra.components.base import AwsComponent

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
) -> tuple[aws.ec2.Subnet, aws.ec2.RouteTableAssociation]:
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
    association = aws.ec2.RouteTableAssociation(
        f"{name}-{tier}-{index}-rta",
        subnet_id=subnet.id,
        route_table_id=route_table.id,
        opts=pulumi.ResourceOptions(parent=subnet),
    )
    return subnet, association


def _route_table(
    prefix: str,
    *,
    vpc: aws.ec2.Vpc,
    tags: Mapping[str, str],
    gateway_id: pulumi.Input[str] | None = None,
    nat_gateway_id: pulumi.Input[str] | None = None,
) -> tuple[aws.ec2.RouteTable, aws.ec2.Route]:
    """A route table ``<prefix>-rt`` and its default route out by the one gateway given."""
    route_table = aws.ec2.RouteTable(
        f"{prefix}-rt", vpc_id=vpc.id, tags=tags, opts=pulumi.ResourceOptions(parent=vpc)
    )
    default = aws.ec2.Route(
        f"{prefix}-default",
        route_table_id=route_table.id,
        destination_cidr_block="0.0.0.0/0",
        gateway_id=gateway_id,
        nat_gateway_id=nat_gateway_id,
        opts=pulumi.ResourceOptions(parent=route_table),
    )
    return route_table, default


class Network(AwsComponent[NetworkArgs]):
    """VPC, subnets, gateways, route tables, an S3 gateway and an STS interface endpoint."""

    component_type = "enterprisehub:aws:Network"

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
    #: For ``depends_on``: that endpoint and the rule admitting HTTPS to it. With
    #: private DNS, STS's regional name resolves inside the VPC only once the
    #: endpoint exists, and until then a pod whose NetworkPolicy admits only
    #: ``private_cidrs`` cannot exchange its IRSA token.
    sts_ready: list[pulumi.Resource]
    #: For ``depends_on`` of whatever launches instances in the private subnets:
    #: their route-table associations and default routes through NAT. A subnet id
    #: exists before either, and a node booted without egress cannot pull its
    #: images or register with the cluster.
    private_egress: list[pulumi.Resource]
    endpoint_security_group_id: pulumi.Output[str]
    private_cidrs: list[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        self.zone_ids, self.availability_zones = self._zones()
        self.private_cidrs, public_cidrs = subnet_plan(args.vpc_cidr, args.az_count)

        vpc = self._vpc()
        igw = aws.ec2.InternetGateway(
            f"{name}-igw",
            vpc_id=vpc.id,
            tags={**self._tags, "Name": f"{name}-igw"},
            opts=pulumi.ResourceOptions(parent=vpc),
        )
        public_subnets = self._public_subnets(vpc, igw, public_cidrs)
        nat_gateways = self._nat_gateways(vpc, igw, public_subnets)
        private_subnets, private_route_tables, self.private_egress = self._private_subnets(
            vpc, nat_gateways
        )
        s3_endpoint = self._s3_endpoint(vpc, private_route_tables)
        endpoint_sg, endpoint_https = self._endpoint_security_group(vpc)
        sts_endpoint = self._sts_endpoint(vpc, private_subnets, endpoint_sg)
        self.sts_ready = [sts_endpoint, endpoint_https]

        self.s3_endpoint_id = s3_endpoint.id
        self.s3_prefix_list_id = s3_endpoint.prefix_list_id
        self.sts_endpoint_id = sts_endpoint.id
        self.endpoint_security_group_id = endpoint_sg.id
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

    def _zones(self) -> tuple[list[str], list[str]]:
        """(zone ids, zone names) of the first ``az_count`` zones EKS accepts, by id.

        By zone id, not name: names are shuffled per account, ids are not, and
        EKS refuses control-plane subnets in a few zone ids. Opt-in zones (Local
        Zones) are left out: EKS control planes cannot use them.
        """
        args = self._args
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
                f"{self._name}: region {args.region} offers {len(zone_ids)} zones EKS accepts, "
                f"{args.az_count} requested"
            )
        chosen = zone_ids[: args.az_count]
        by_id = dict(zip(found.zone_ids, found.names, strict=True))
        return chosen, [by_id[zone_id] for zone_id in chosen]

    def _vpc(self) -> aws.ec2.Vpc:
        """The VPC, with DNS: EKS and RDS endpoints resolve through VPC DNS."""
        return aws.ec2.Vpc(
            f"{self._name}-vpc",
            cidr_block=self._args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**self._tags, "Name": f"{self._name}-vpc"},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _tier_subnets(
        self,
        tier: Literal["public", "private"],
        vpc: aws.ec2.Vpc,
        cidrs: Sequence[str],
        route_tables: Sequence[aws.ec2.RouteTable],
    ) -> list[tuple[aws.ec2.Subnet, aws.ec2.RouteTableAssociation]]:
        """One subnet of ``tier`` per zone, each associated with its route table."""
        cluster_tag = {f"kubernetes.io/cluster/{self._args.cluster_name}": "shared"}
        return [
            _subnet(
                self._name,
                tier,
                index,
                zone,
                self.zone_ids[index],
                cidrs[index],
                vpc,
                {**self._tags, **cluster_tag},
                route_tables[index],
            )
            for index, zone in enumerate(self.availability_zones)
        ]

    def _public_subnets(
        self, vpc: aws.ec2.Vpc, igw: aws.ec2.InternetGateway, cidrs: Sequence[str]
    ) -> list[aws.ec2.Subnet]:
        """The public subnets, sharing one route table out through the internet gateway."""
        name = self._name
        route_table, _ = _route_table(
            f"{name}-public",
            vpc=vpc,
            tags={**self._tags, "Name": f"{name}-public"},
            gateway_id=igw.id,
        )
        return [
            subnet
            for subnet, _ in self._tier_subnets("public", vpc, cidrs, [route_table] * len(cidrs))
        ]

    def _nat_gateways(
        self,
        vpc: aws.ec2.Vpc,
        igw: aws.ec2.InternetGateway,
        public_subnets: Sequence[aws.ec2.Subnet],
    ) -> list[aws.ec2.NatGateway]:
        """A NAT gateway (and its Elastic IP) in each zone's public subnet, or the first only."""
        name, tags = self._name, self._tags
        gateways: list[aws.ec2.NatGateway] = []
        for index, zone in enumerate(self.availability_zones):
            if not (self._args.nat_gateway_per_az or index == 0):
                continue
            eip = aws.ec2.Eip(
                f"{name}-nat-{index}-eip",
                domain="vpc",
                tags={**tags, "Name": f"{name}-nat-{zone}"},
                opts=pulumi.ResourceOptions(parent=vpc),
            )
            gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    allocation_id=eip.allocation_id,
                    subnet_id=public_subnets[index].id,
                    tags={**tags, "Name": f"{name}-nat-{zone}"},
                    opts=pulumi.ResourceOptions(parent=public_subnets[index], depends_on=[igw]),
                )
            )
        return gateways

    def _private_subnets(
        self, vpc: aws.ec2.Vpc, nat_gateways: Sequence[aws.ec2.NatGateway]
    ) -> tuple[list[aws.ec2.Subnet], list[aws.ec2.RouteTable], list[pulumi.Resource]]:
        """The private subnets, each with a route table out through a NAT gateway.

        The third item is their egress: each subnet's route-table association and
        each table's default route.
        """
        name = self._name
        tables_and_routes = [
            _route_table(
                f"{name}-private-{index}",
                vpc=vpc,
                tags={**self._tags, "Name": f"{name}-private-{zone}"},
                # Per-AZ NAT keeps a zone's egress inside the zone; otherwise all
                # zones share the first gateway.
                nat_gateway_id=nat_gateways[index if self._args.nat_gateway_per_az else 0].id,
            )
            for index, zone in enumerate(self.availability_zones)
        ]
        route_tables = [table for table, _ in tables_and_routes]
        placed = self._tier_subnets("private", vpc, self.private_cidrs, route_tables)
        egress: list[pulumi.Resource] = [
            *(association for _, association in placed),
            *(route for _, route in tables_and_routes),
        ]
        return [subnet for subnet, _ in placed], route_tables, egress

    def _s3_endpoint(
        self, vpc: aws.ec2.Vpc, route_tables: Sequence[aws.ec2.RouteTable]
    ) -> aws.ec2.VpcEndpoint:
        """S3 through a gateway endpoint in the private route tables.

        Model and media traffic to S3 stays on the AWS network and costs no NAT
        data processing.
        """
        return aws.ec2.VpcEndpoint(
            f"{self._name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{self._args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in route_tables],
            tags={**self._tags, "Name": f"{self._name}-s3"},
            opts=pulumi.ResourceOptions(parent=vpc),
        )

    def _endpoint_security_group(
        self, vpc: aws.ec2.Vpc
    ) -> tuple[aws.ec2.SecurityGroup, aws.vpc.SecurityGroupIngressRule]:
        """The interface endpoints' security group and its rule: HTTPS from the VPC."""
        name = self._name
        group = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg",
            description=f"{name}: HTTPS from the VPC to interface endpoints",
            vpc_id=vpc.id,
            tags={**self._tags, "Name": f"{name}-endpoints"},
            opts=pulumi.ResourceOptions(parent=vpc),
        )
        https = aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https",
            security_group_id=group.id,
            cidr_ipv4=self._args.vpc_cidr,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="HTTPS from the VPC",
            opts=pulumi.ResourceOptions(parent=group),
        )
        return group, https

    def _sts_endpoint(
        self,
        vpc: aws.ec2.Vpc,
        private_subnets: Sequence[aws.ec2.Subnet],
        security_group: aws.ec2.SecurityGroup,
    ) -> aws.ec2.VpcEndpoint:
        """STS (the pods' IRSA web-identity exchange) through an interface endpoint.

        With private DNS its regional name resolves to addresses inside the
        private subnets, so a NetworkPolicy can allow it without 0.0.0.0/0.
        """
        return aws.ec2.VpcEndpoint(
            f"{self._name}-sts-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{self._args.region}.sts",
            vpc_endpoint_type="Interface",
            private_dns_enabled=True,
            subnet_ids=[subnet.id for subnet in private_subnets],
            security_group_ids=[security_group.id],
            tags={**self._tags, "Name": f"{self._name}-sts"},
            opts=pulumi.ResourceOptions(parent=vpc),
        )
