"""GitHub OIDC provider and per-stack deploy roles (see the package docstring)."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import github

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
# fullmatch only; [0-9] rather than \d, which accepts any Unicode digit.
_IAM_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+")
_STACK = re.compile(r"\A[a-z][a-z0-9-]{0,30}\Z")
#: The longest session a deploy role grants (IAM MaxSessionDuration, 1 to 12 hours).
#: A job's credentials must outlast its `pulumi up`: they are static environment
#: variables that nothing renews, and past their expiry every AWS call fails,
#: the S3 backend's checkpoint writes included, so an update that runs longer
#: stops half-way with its state unsaved. The pulumi-login action asks for this
#: much (``role-duration-seconds``); STS refuses a request above the role's maximum.
DEPLOY_SESSION_SECONDS = 2 * 3600


class BootstrapConfigError(ValueError):
    """The bootstrap config is invalid."""


@dataclass(frozen=True)
class BootstrapConfig:
    """The bootstrap project's config, validated."""

    repository: str
    stacks: tuple[str, ...]
    existing_oidc_provider_arn: str
    deploy_policy_arns: tuple[str, ...]

    def __post_init__(self) -> None:
        problems = []
        if not github.REPOSITORY.fullmatch(self.repository):
            problems.append(f"repository {self.repository!r} is not OWNER/NAME")
        if not self.stacks:
            problems.append("stacks is empty")
        problems += [
            f"stack {s!r} is not a stack name" for s in self.stacks if not _STACK.fullmatch(s)
        ]
        if len(set(self.stacks)) != len(self.stacks):
            problems.append("stacks has duplicates")
        if self.existing_oidc_provider_arn and not _IAM_ARN.fullmatch(
            self.existing_oidc_provider_arn
        ):
            problems.append("existingOidcProviderArn is not an IAM ARN")
        if problems:
            raise BootstrapConfigError("; ".join(problems))

    @classmethod
    def load(cls, config: pulumi.Config | None = None) -> BootstrapConfig:
        """Read `enterprisehub-bootstrap:*` once."""
        config = config or pulumi.Config()
        return cls(
            repository=config.require("repository"),
            stacks=tuple(config.get_object("stacks") or ("dev", "staging", "production")),
            existing_oidc_provider_arn=config.get("existingOidcProviderArn") or "",
            # Empty: AWS's AdministratorAccess in the provider's partition (see main).
            deploy_policy_arns=tuple(config.get_object("deployPolicyArns") or ()),
        )


def subject(repository: str, stack: str) -> str:
    """The `sub` claim of a job running in the environment named after `stack`."""
    return f"repo:{repository}:environment:{stack}"


def trust_policy(provider_arn: str, repository: str, stack: str) -> str:
    """Only that repository's jobs in that environment, with AWS STS as audience."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "GitHubEnvironment",
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{GITHUB_OIDC_HOST}:aud": AUDIENCE,
                            f"{GITHUB_OIDC_HOST}:sub": subject(repository, stack),
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


class GithubDeployAccess(pulumi.ComponentResource):
    """The OIDC provider (or an existing one) and a deploy role per stack."""

    provider_arn: pulumi.Output[str]
    role_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, config: BootstrapConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("enterprisehub:bootstrap:GithubDeployAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if config.existing_oidc_provider_arn:
            self.provider_arn = pulumi.Output.from_input(config.existing_oidc_provider_arn)
        else:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-github-oidc",
                url=GITHUB_OIDC_URL,
                client_id_lists=[AUDIENCE],
                tags={"ManagedBy": "pulumi", "Project": "enterprisehub"},
                opts=child,
            )
            self.provider_arn = provider.arn
        self.role_arns = {}
        # ARNs in the provider's partition (aws, aws-cn, aws-us-gov), never a literal one.
        partition = aws.get_partition().partition
        for stack in config.stacks:
            role = aws.iam.Role(
                f"{name}-deploy-{stack}",
                description=f"GitHub Actions deploys of stack {stack} from {config.repository}",
                assume_role_policy=self.provider_arn.apply(
                    functools.partial(trust_policy, repository=config.repository, stack=stack)
                ),
                max_session_duration=DEPLOY_SESSION_SECONDS,
                tags={"ManagedBy": "pulumi", "Project": "enterprisehub", "Stack": stack},
                opts=child,
            )
            policies = config.deploy_policy_arns or (
                f"arn:{partition}:iam::aws:policy/AdministratorAccess",
            )
            for index, policy_arn in enumerate(policies):
                aws.iam.RolePolicyAttachment(
                    f"{name}-deploy-{stack}-policy-{index}",
                    role=role.name,
                    policy_arn=policy_arn,
                    opts=pulumi.ResourceOptions(parent=role),
                )
            self.role_arns[stack] = role.arn
        self.register_outputs({"providerArn": self.provider_arn, "roleArns": self.role_arns})


def main() -> GithubDeployAccess:
    """Declare the access and export the role ARNs (one GitHub environment variable each)."""
    access = GithubDeployAccess("enterprisehub", BootstrapConfig.load())
    pulumi.export("oidcProviderArn", access.provider_arn)
    pulumi.export("deployRoleArns", access.role_arns)
    return access
