"""The physical-name rules of every AWS resource type the program declares.

A real ``pulumi preview`` fails when a physical name breaks a rule of the
provider or of the AWS API; plain mocks accept anything. This table is what the
synthesis checks every AWS resource against, so that it fails where a preview
(or, worse, the ``up`` forty minutes in) would:

* **Auto-naming.** When the program leaves the name property unset, pulumi-aws
  names the resource ``<logical name>-<7 random hex>`` (``tfbridge.AutoName``,
  random length 7) and refuses, at preview, a logical name too long for the
  type's limit with the random part (pulumi ``resource.NewUniqueHex``: "name
  ... plus 7 random chars is longer than maximum length"). Some types lowercase
  the result (``lowercase``).
* **Explicit names** must fit the AWS API's length and character rules.

``RULES`` holds one ``NameRule`` per type: the property that carries the
physical name (``None`` for types that have none, e.g. a route table, which
AWS names by id), whether the provider auto-names it, the length limits, the
character rule as a full-match pattern, and where the limit comes from. A type
the program declares but the table lacks is itself an error
(``test_every_declared_aws_type_has_a_naming_rule``), so a new resource type
cannot slip past the check.

``TEXT_RULES`` does the same for free text that AWS checks as strictly as a
name: the descriptions of security groups and of their rules, which EC2
refuses outside ``a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*`` (an apostrophe fails the
create: "Invalid rule description. Valid descriptions are strings less than
256 characters from the following set ..."). pulumi-aws does not check them
at preview, so without this table the first ``up`` fails on the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Length of the random suffix pulumi-aws appends to an auto-name (plus one "-").
RANDOM_SUFFIX_LENGTH: Final = 7

# Letters, digits and hyphens, starting with a letter, without "--" or a
# trailing hyphen: the identifier rule of RDS and ElastiCache.
_AWS_IDENTIFIER = r"(?!.*--)[A-Za-z][A-Za-z0-9-]*(?<!-)"
_IAM_NAME = r"[\w+=,.@-]+"


@dataclass(frozen=True, slots=True)
class NameRule:
    """What AWS and the provider accept as one resource type's physical name."""

    #: The input property holding the name (camelCase, as on the wire); None: no name.
    field: str | None = None
    #: True when pulumi-aws generates the name if the program sets none.
    auto: bool = False
    max_length: int = 0
    min_length: int = 1
    #: Full-match pattern of an accepted name.
    pattern: str = ".*"
    #: The rule in words, for the error message.
    allowed: str = ""
    #: The provider stores the name lowercased (auto-names come out lowercase).
    lowercase: bool = False
    #: Where the limit is documented.
    source: str = ""

    def fullmatch(self, name: str) -> bool:
        """True if ``name`` has an accepted length and character set."""
        return self.min_length <= len(name) <= self.max_length and bool(
            re.fullmatch(self.pattern, name, flags=re.ASCII)
        )


_NO_NAME = NameRule(source="AWS assigns an id; the resource has no name property")

_API = "AWS API reference"
_PROVIDER = "pulumi-aws provider/resources.go (AutoName maxlen)"


def _iam_name(max_length: int, source: str) -> NameRule:
    """IAM's name rule (roles, policies, instance profiles): only the length differs."""
    return NameRule(
        field="name",
        auto=True,
        max_length=max_length,
        pattern=_IAM_NAME,
        allowed=f"1-{max_length} of A-Z a-z 0-9 _+=,.@-",
        source=source,
    )


def _eks_name(field: str, max_length: int, source: str) -> NameRule:
    """EKS's name rule (clusters, node groups): only the property and the length differ."""
    return NameRule(
        field=field,
        auto=True,
        max_length=max_length,
        pattern=r"[0-9A-Za-z][A-Za-z0-9_-]*",
        allowed=f"1-{max_length} of A-Z a-z 0-9 - _, starting with a letter or digit",
        source=source,
    )


def _aws_identifier(max_length: int, source: str, *, field: str = "name") -> NameRule:
    """The RDS and ElastiCache identifier rule; the provider lowercases these names."""
    return NameRule(
        field=field,
        auto=True,
        max_length=max_length,
        pattern=_AWS_IDENTIFIER,
        allowed=f"1-{max_length} letters, digits, hyphens; a letter first; no '--'; "
        "no trailing '-'",
        lowercase=True,
        source=source,
    )


RULES: Final[Mapping[str, NameRule]] = {
    # ---- networking (ids only; `Name` tags are free text)
    "aws:ec2/vpc:Vpc": _NO_NAME,
    "aws:ec2/subnet:Subnet": _NO_NAME,
    "aws:ec2/internetGateway:InternetGateway": _NO_NAME,
    "aws:ec2/natGateway:NatGateway": _NO_NAME,
    "aws:ec2/eip:Eip": _NO_NAME,
    "aws:ec2/routeTable:RouteTable": _NO_NAME,
    "aws:ec2/route:Route": _NO_NAME,
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _NO_NAME,
    "aws:ec2/vpcEndpoint:VpcEndpoint": _NO_NAME,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _NO_NAME,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _NO_NAME,
    "aws:ec2/securityGroupRule:SecurityGroupRule": _NO_NAME,
    "aws:ec2/launchTemplate:LaunchTemplate": NameRule(
        field="name",
        auto=True,
        min_length=3,
        max_length=128,
        pattern=r"[A-Za-z0-9().\-/_]+",
        allowed="3-128 of A-Z a-z 0-9 ( ) . - / _",
        source=f"{_API}, EC2 CreateLaunchTemplate LaunchTemplateName",
    ),
    "aws:ec2/securityGroup:SecurityGroup": NameRule(
        field="name",
        auto=True,
        max_length=255,
        pattern=r"(?!sg-)[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+",
        allowed="up to 255 of a-z A-Z 0-9 space ._-:/()#,@[]+=&;{}!$*, not starting sg-",
        source=f"{_API}, EC2 CreateSecurityGroup GroupName; {_PROVIDER} 255",
    ),
    # ---- EKS
    "aws:eks/cluster:Cluster": _eks_name(
        "name", 100, f"{_API}, EKS CreateCluster name; pulumi_aws.eks.Cluster docstring"
    ),
    "aws:eks/nodeGroup:NodeGroup": _eks_name(
        "nodeGroupName", 63, f"{_API}, EKS CreateNodegroup; pulumi_aws.eks.NodeGroup docstring"
    ),
    "aws:eks/addon:Addon": NameRule(source="addonName is one of EKS's add-on names"),
    "aws:eks/accessEntry:AccessEntry": NameRule(source="identified by the principal ARN"),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": _NO_NAME,
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": _NO_NAME,
    # ---- IAM
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": NameRule(
        source="identified by the issuer URL"
    ),
    "aws:iam/role:Role": _iam_name(
        64, f"{_API}, IAM CreateRole RoleName (IAM quotas: 64); {_PROVIDER} 64"
    ),
    "aws:iam/rolePolicy:RolePolicy": _iam_name(128, f"{_API}, IAM PutRolePolicy PolicyName"),
    "aws:iam/policy:Policy": _iam_name(128, f"{_API}, IAM CreatePolicy PolicyName"),
    "aws:iam/instanceProfile:InstanceProfile": _iam_name(
        128, f"{_API}, IAM CreateInstanceProfile InstanceProfileName"
    ),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _NO_NAME,
    # ---- KMS
    "aws:kms/key:Key": _NO_NAME,
    "aws:kms/alias:Alias": NameRule(
        field="name",
        auto=True,
        max_length=256,
        pattern=r"alias/(?!aws/)[A-Za-z0-9/_-]+",
        allowed="alias/ then 1-250 of A-Z a-z 0-9 / _ -, not alias/aws/",
        source=f"{_API}, KMS CreateAlias AliasName",
    ),
    # ---- RDS
    "aws:rds/instance:Instance": _aws_identifier(
        63,
        f"{_API}, RDS CreateDBInstance DBInstanceIdentifier; {_PROVIDER} 63, lowercase",
        field="identifier",
    ),
    "aws:rds/subnetGroup:SubnetGroup": NameRule(
        field="name",
        auto=True,
        max_length=255,
        pattern=r"(?!default$)[a-z0-9._ -]+",
        allowed="up to 255 of a-z 0-9 . _ - and space, not 'default'",
        lowercase=True,
        source=f"{_API}, RDS CreateDBSubnetGroup DBSubnetGroupName",
    ),
    "aws:rds/parameterGroup:ParameterGroup": _aws_identifier(
        255,
        f"{_API}, RDS CreateDBParameterGroup DBParameterGroupName",
    ),
    # ---- ElastiCache
    "aws:elasticache/replicationGroup:ReplicationGroup": _aws_identifier(
        40,
        (
            f"{_API}, ElastiCache CreateReplicationGroup ReplicationGroupId; "
            f"{_PROVIDER} 40, lowercase"
        ),
        field="replicationGroupId",
    ),
    "aws:elasticache/subnetGroup:SubnetGroup": NameRule(
        field="name",
        auto=True,
        max_length=255,
        pattern=r"[a-z0-9-]+",
        allowed="up to 255 of a-z 0-9 -",
        lowercase=True,
        source=f"{_API}, ElastiCache CreateCacheSubnetGroup CacheSubnetGroupName",
    ),
    "aws:elasticache/parameterGroup:ParameterGroup": _aws_identifier(
        255,
        f"{_API}, ElastiCache CreateCacheParameterGroup CacheParameterGroupName",
    ),
    # ---- S3 (a bucket's sub-resources are keyed by the bucket)
    "aws:s3/bucket:Bucket": NameRule(
        field="bucket",
        auto=True,
        min_length=3,
        max_length=63,
        pattern=r"(?!xn--)(?!.*\.\.)(?!.*-s3alias$)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]*[a-z0-9]",
        allowed="3-63 of a-z 0-9 . -, starting and ending with a letter or digit",
        lowercase=True,
        source="S3 User Guide, general purpose bucket naming rules; pulumi-aws 63, lowercase",
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _NO_NAME,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _NO_NAME,
    "aws:s3/bucketVersioning:BucketVersioning": _NO_NAME,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        _NO_NAME
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _NO_NAME,
    "aws:s3/bucketPolicy:BucketPolicy": _NO_NAME,
    # ---- ECR
    "aws:ecr/repository:Repository": NameRule(
        field="name",
        min_length=2,
        max_length=256,
        pattern=r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
        allowed="2-256 lowercase path segments of a-z 0-9 separated by . _ -",
        source=f"{_API}, ECR CreateRepository repositoryName",
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": _NO_NAME,
    # ---- CloudWatch, EventBridge, SQS
    "aws:cloudwatch/logGroup:LogGroup": NameRule(
        field="name",
        auto=True,
        max_length=512,
        pattern=r"[.\-_/#A-Za-z0-9]+",
        allowed="1-512 of A-Z a-z 0-9 . - _ / #",
        source=f"{_API}, CloudWatch Logs CreateLogGroup logGroupName",
    ),
    "aws:cloudwatch/eventRule:EventRule": NameRule(
        field="name",
        auto=True,
        max_length=64,
        pattern=r"[.\-_A-Za-z0-9]+",
        allowed="1-64 of A-Z a-z 0-9 . - _",
        source=f"{_API}, EventBridge PutRule Name; {_PROVIDER} 64",
    ),
    "aws:cloudwatch/eventTarget:EventTarget": NameRule(
        field="targetId",
        max_length=64,
        pattern=r"[.\-_A-Za-z0-9]+",
        allowed="1-64 of A-Z a-z 0-9 . - _ (the provider generates one when unset)",
        source=f"{_API}, EventBridge PutTargets Target.Id",
    ),
    "aws:sqs/queue:Queue": NameRule(
        field="name",
        auto=True,
        max_length=80,
        pattern=r"[A-Za-z0-9_-]+(?:\.fifo)?",
        allowed="1-80 of A-Z a-z 0-9 _ - (FIFO queues end in .fifo)",
        source=f"{_API}, SQS CreateQueue QueueName; {_PROVIDER} 80",
    ),
    "aws:sqs/queuePolicy:QueuePolicy": _NO_NAME,
}

#: EC2's character set for a security group's and a security group rule's description.
_EC2_DESCRIPTION: Final = NameRule(
    field="description",
    min_length=0,
    max_length=255,
    pattern=r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*",
    allowed="up to 255 of a-z A-Z 0-9 space ._-:/()#,@[]+=&;{}!$* (no apostrophe, quote, "
    "'>' or non-ASCII)",
    source=(
        f"{_API}, EC2 CreateSecurityGroup GroupDescription and IpRange/"
        "SecurityGroupRule descriptions (InvalidParameterValue otherwise)"
    ),
)

#: Free-text properties AWS checks like names, per type (checked only when set).
TEXT_RULES: Final[Mapping[str, tuple[NameRule, ...]]] = {
    "aws:ec2/securityGroup:SecurityGroup": (_EC2_DESCRIPTION,),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (_EC2_DESCRIPTION,),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (_EC2_DESCRIPTION,),
    "aws:ec2/securityGroupRule:SecurityGroupRule": (_EC2_DESCRIPTION,),
}


@dataclass(frozen=True, slots=True)
class NameViolation:
    """A physical name the provider or AWS would reject."""

    type: str
    logical_name: str
    field: str
    name: str
    rule: NameRule
    auto: bool

    def render(self) -> str:
        """One line saying which resource, which limit, and how to fix it."""
        where = f"{self.type} '{self.logical_name}'"
        if self.auto:
            return (
                f"{where}: {self.field} is unset, so pulumi-aws would auto-name it "
                f"'{self.logical_name}-' + {RANDOM_SUFFIX_LENGTH} random characters "
                f"({len(self.logical_name) + 1 + RANDOM_SUFFIX_LENGTH} characters), over the "
                f"limit of {self.rule.max_length} ({self.rule.allowed}; {self.rule.source}). "
                f"Fix: set {self.field} explicitly, or shorten the logical name to at most "
                f"{self.rule.max_length - 1 - RANDOM_SUFFIX_LENGTH} characters."
            )
        return (
            f"{where}: {self.field} '{self.name}' ({len(self.name)} characters) is rejected: "
            f"{self.rule.allowed} ({self.rule.source}). Fix: derive a value that fits."
        )


class PhysicalNameError(ValueError):
    """The program declares physical names a real preview would reject."""

    def __init__(self, violations: list[NameViolation]) -> None:
        self.violations = tuple(violations)
        lines = "\n".join(f"  - {v.render()}" for v in violations)
        count = f"{len(violations)} physical name" + ("s" if len(violations) != 1 else "")
        super().__init__(f"{count} the AWS provider would reject:\n{lines}")


def rule_for(type_token: str) -> NameRule | None:
    """The rule of an AWS type (None for non-AWS types and types without an entry)."""
    return RULES.get(type_token)


def auto_name(rule: NameRule, logical_name: str, suffix: str) -> str:
    """What pulumi-aws generates: ``<logical>-<suffix>``, lowercased where the type says."""
    name = f"{logical_name}-{suffix[:RANDOM_SUFFIX_LENGTH]}"
    return name.lower() if rule.lowercase else name


def check_text(
    type_token: str, logical_name: str, inputs: Mapping[str, Any]
) -> list[NameViolation]:
    """The free-text properties of this resource that AWS would refuse (``TEXT_RULES``)."""
    violations = []
    for rule in TEXT_RULES.get(type_token, ()):
        if rule.field is None:
            continue
        given = inputs.get(rule.field)
        if isinstance(given, str) and not rule.fullmatch(given):
            violations.append(
                NameViolation(type_token, logical_name, rule.field, given, rule, auto=False)
            )
    return violations


def check(type_token: str, logical_name: str, inputs: Mapping[str, Any]) -> NameViolation | None:
    """The violation of this resource's physical name, if any."""
    rule = RULES.get(type_token)
    if rule is None or rule.field is None:
        return None
    given = inputs.get(rule.field)
    if isinstance(given, str) and given:
        name = given.lower() if rule.lowercase else given
        if rule.fullmatch(name):
            return None
        return NameViolation(type_token, logical_name, rule.field, given, rule, auto=False)
    prefix = inputs.get(f"{rule.field}Prefix")
    if not rule.auto or (isinstance(prefix, str) and prefix):
        return None
    candidate = auto_name(rule, logical_name, "0" * RANDOM_SUFFIX_LENGTH)
    if len(candidate) <= rule.max_length:
        # Characters outside the set are the logical name's; report them too.
        if rule.fullmatch(candidate):
            return None
        return NameViolation(type_token, logical_name, rule.field, candidate, rule, auto=False)
    return NameViolation(type_token, logical_name, rule.field, candidate, rule, auto=True)
