"""The bootstrap stack under Pulumi's mocks: one OIDC provider, one role per stack,
each role trusting only its own GitHub environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.bootstrap.program import DEPLOY_SESSION_SECONDS, BootstrapConfigError, main
from infra.synth.mocks import ProgramRun, run_program

PROJECT = "enterprisehub-bootstrap"
REPO = Path(__file__).resolve().parents[3]
LOGIN_ACTION = "./.github/actions/pulumi-login"
#: IAM's bounds on a role's MaxSessionDuration (CreateRole/UpdateRole), in seconds.
IAM_SESSION_RANGE = (3600, 43200)


def run(**config: str) -> ProgramRun:
    values = {f"{PROJECT}:{k}": v for k, v in config.items()}
    return run_program(
        "github", {"aws:region": "us-east-1", **values}, program=main, project=PROJECT
    )


def test_one_provider_and_a_role_per_stack_with_environment_trust() -> None:
    result = run(repository="acme/enterprisehub")
    provider = result.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    roles = result.of_type("aws:iam/role:Role")
    assert sorted(r.name for r in roles) == [
        "enterprisehub-deploy-dev",
        "enterprisehub-deploy-production",
        "enterprisehub-deploy-staging",
    ]
    for role in roles:
        stack = role.name.rsplit("-", 1)[-1]
        policy = json.loads(role.inputs["assumeRolePolicy"])
        [statement] = policy["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"]["Federated"].startswith(
            "arn:aws:iam::123456789012:oidc-provider/"
        )
        subject = f"repo:acme/enterprisehub:environment:{stack}"
        assert statement["Condition"] == {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": subject,
            }
        }
        # No wildcard subject: a branch, a tag or a pull request cannot assume it.
        assert "StringLike" not in statement["Condition"]
        assert role.inputs["maxSessionDuration"] == DEPLOY_SESSION_SECONDS
    attachments = result.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert len(attachments) == 3
    exported = result.stack_outputs["deployRoleArns"]
    assert sorted(exported) == ["dev", "production", "staging"]


def test_existing_provider_and_custom_stacks() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    result = run(
        repository="acme/enterprisehub",
        existingOidcProviderArn=arn,
        stacks=json.dumps(["qa"]),
        deployPolicyArns=json.dumps(
            ["arn:aws:iam::aws:policy/PowerUserAccess", "arn:aws:iam::aws:policy/IAMFullAccess"]
        ),
    )
    assert result.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    [role] = result.of_type("aws:iam/role:Role")
    statement = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert statement["Principal"]["Federated"] == arn
    assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == (
        "repo:acme/enterprisehub:environment:qa"
    )
    policies = sorted(
        a.inputs["policyArn"]
        for a in result.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    )
    assert policies == [
        "arn:aws:iam::aws:policy/IAMFullAccess",
        "arn:aws:iam::aws:policy/PowerUserAccess",
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"repository": "acme"}, "not OWNER/NAME"),
        ({"repository": "acme/x/../y"}, "not OWNER/NAME"),
        ({"repository": "acme/.."}, "not OWNER/NAME"),
        ({"repository": "acme/enterprisehub", "stacks": json.dumps(["Prod*"])}, "not a stack name"),
        ({"repository": "acme/enterprisehub", "stacks": json.dumps(["dev", "dev"])}, "duplicates"),
        ({"repository": "acme/enterprisehub", "existingOidcProviderArn": "nope"}, "IAM ARN"),
        # A trailing newline ("$" would accept it) and non-ASCII digits ("\d" would).
        ({"repository": "acme/enterprisehub\n"}, "not OWNER/NAME"),
        ({"repository": "acme/enterprisehub", "stacks": json.dumps(["dev\n"])}, "not a stack name"),
        (
            {
                "repository": "acme/enterprisehub",
                "existingOidcProviderArn": "arn:aws:iam::" + "\u0661" * 12 + ":oidc-provider/x",
            },
            "IAM ARN",
        ),
    ],
)
def test_invalid_config_is_refused(config: dict[str, str], message: str) -> None:
    with pytest.raises(BootstrapConfigError, match=message):
        run(**config)


def _requested_session_seconds() -> int:
    action = yaml.safe_load((REPO / ".github/actions/pulumi-login/action.yml").read_text())
    [login] = [
        s for s in action["runs"]["steps"] if "configure-aws-credentials" in s.get("uses", "")
    ]
    # Unset, the action asks for one hour when it assumes the role through OIDC.
    return int(login["with"].get("role-duration-seconds", 3600))


def _jobs_using_the_deploy_role() -> dict[str, dict[str, Any]]:
    jobs = {}
    for path in sorted((REPO / ".github/workflows").glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            if any(step.get("uses") == LOGIN_ACTION for step in job.get("steps", [])):
                jobs[f"{path.name}:{name}"] = job
    return jobs


def test_deploy_credentials_outlast_every_job_that_uses_them() -> None:
    # STS refuses a session longer than the role's MaxSessionDuration, and the
    # credentials it returns are never renewed: a job that outlives them fails
    # every AWS call from then on, its state backend's checkpoint writes included.
    requested = _requested_session_seconds()
    [role, *_] = run(repository="acme/enterprisehub").of_type("aws:iam/role:Role")
    allowed = role.inputs["maxSessionDuration"]
    assert IAM_SESSION_RANGE[0] <= allowed <= IAM_SESSION_RANGE[1]
    assert requested <= allowed
    jobs = _jobs_using_the_deploy_role()
    assert jobs
    for name, job in jobs.items():
        assert int(job["timeout-minutes"]) * 60 <= requested, name
