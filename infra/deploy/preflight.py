"""Checks that run before `make preview` / `make up` talk to the Pulumi CLI.

Each check answers one question a newcomer would otherwise learn from a stack
trace ten minutes into a deploy: is the CLI there, is a state backend chosen,
does the stack exist, can we reach the cluster or the AWS account. A failed
check says exactly what is missing and the command that fixes it.

Usage: ``python -m infra.deploy.preflight STACK``; exits 1 listing every
problem found, 0 when the deploy can go ahead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

import yaml

from infra.environments import CLOUD_ENVIRONMENTS, ENVIRONMENTS
from infra.problems import Problem

REPO_ROOT = Path(__file__).resolve().parents[2]
STACKS = ENVIRONMENTS
CLOUD_STACKS = CLOUD_ENVIRONMENTS


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    # The commands are fixed pulumi sub-commands built in this module, never user input.
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)  # noqa: S603


def check_pulumi_cli(which: Callable[[str], str | None] = shutil.which) -> list[Problem]:
    """The Pulumi CLI must be on PATH; pip's `pulumi` package is only the SDK."""
    if which("pulumi"):
        return []
    return [
        Problem.prerequisite(
            "the Pulumi CLI is not on PATH (the `pulumi` Python package is only the SDK)",
            "curl -fsSL https://get.pulumi.com | sh   (or: brew install pulumi), "
            "then open a new shell",
        )
    ]


def check_backend(run: Runner = _run) -> list[Problem]:
    """A state backend must be selected: Pulumi Cloud, S3 or a local directory."""
    result = run(["pulumi", "whoami", "--verbose"])
    if result.returncode == 0:
        return []
    return [
        Problem.prerequisite(
            "no Pulumi state backend is selected (`pulumi whoami` failed)",
            "for the local stack: pulumi login --local  (or pulumi login file://$PWD/var/state); "
            "for cloud stacks: pulumi login s3://<state-bucket> or pulumi login",
        )
    ]


def check_stack_file(stack: str, root: Path = REPO_ROOT) -> list[Problem]:
    """The stack's settings file must exist under stacks/."""
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    if path.is_file():
        return []
    return [
        Problem.prerequisite(
            f"{path.relative_to(root)} does not exist",
            f"pick one of {', '.join(STACKS)} (make up STACK=local)",
        )
    ]


def check_stack_selected(stack: str, run: Runner = _run) -> list[Problem]:
    """The stack must be initialised in the selected backend."""
    result = run(["pulumi", "stack", "ls", "--json"])
    if result.returncode == 0:
        try:
            names = {entry.get("name") for entry in json.loads(result.stdout or "[]")}
        except (json.JSONDecodeError, AttributeError):
            names = set()
        if stack in names:
            return []
    provider = (
        "--secrets-provider passphrase"
        if stack == "local"
        else f"--secrets-provider 'awskms://alias/enterprisehub-{stack}?region=<region>'"
    )
    return [
        Problem.prerequisite(
            f"stack {stack!r} is not initialised in this backend",
            f"pulumi stack init {stack} {provider}   (then set its secrets: see docs/deploying.md)",
        )
    ]


def _current_kube_server(kubeconfig: Path) -> tuple[str, str] | None:
    """Return (context, server URL) of the kubeconfig's current context."""
    try:
        doc = yaml.safe_load(kubeconfig.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    current = doc.get("current-context")
    contexts = {c.get("name"): c.get("context", {}) for c in doc.get("contexts") or []}
    clusters = {c.get("name"): c.get("cluster", {}) for c in doc.get("clusters") or []}
    context = contexts.get(current)
    if not context:
        return None
    server = clusters.get(context.get("cluster"), {}).get("server")
    return (str(current), str(server)) if server else None


def _reachable(url: str, timeout: float = 3.0) -> bool:
    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_local_cluster(
    env: dict[str, str] | None = None, reachable: Callable[[str], bool] = _reachable
) -> list[Problem]:
    """The local stack deploys into the kubeconfig's current context."""
    env = dict(os.environ) if env is None else env
    first = env.get("KUBECONFIG", "").split(os.pathsep)[0]
    kubeconfig = Path(first) if first else Path(env.get("HOME", "~")).expanduser() / ".kube/config"
    if not kubeconfig.is_file():
        return [
            Problem.prerequisite(
                f"no kubeconfig at {kubeconfig}",
                # A bare `kind create cluster` maps no host ports: the edge's
                # NodePorts would be unreachable from the host.
                "start a local cluster with the edge's port mappings and a registry, as "
                "docs/deploying.md shows (kind create cluster --name enterprisehub "
                "--config kind.yaml), or minikube start, or Kubernetes in Docker Desktop",
            )
        ]
    found = _current_kube_server(kubeconfig)
    if found is None:
        return [
            Problem.prerequisite(
                f"{kubeconfig} has no usable current-context",
                "kubectl config use-context kind-enterprisehub (or your cluster's context)",
            )
        ]
    context, server = found
    if not reachable(server):
        return [
            Problem.prerequisite(
                f"the cluster of context {context!r} at {server} is not reachable",
                "start it (kind/minikube/Docker Desktop) or switch context: "
                "kubectl config use-context <name>",
            )
        ]
    return []


#: Variables naming a credentials source of the SDKs' default chain (keys, a
#: profile, a web identity token, an ECS/CodeBuild/EKS Pod Identity container endpoint).
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def instance_role_credentials() -> bool:
    """Whether this machine's instance metadata hands out a role's credentials.

    An EC2 runner or bastion in the stack's VPC (docs/deploying.md, "Reaching the
    cluster") has no credentials file; the AWS provider and the KMS secrets provider
    take the instance profile's. botocore asks IMDS (v2, then v1) once, waiting at
    most a second: elsewhere the address does not answer and this is False.
    """
    # Imported here: botocore is slow to import, and only a cloud stack without
    # any other credentials gets this far.
    from botocore.utils import InstanceMetadataFetcher

    return bool(InstanceMetadataFetcher(timeout=1, num_attempts=1).retrieve_iam_role_credentials())


def check_aws_credentials(
    env: dict[str, str] | None = None,
    instance_role: Callable[[], bool] = instance_role_credentials,
) -> list[Problem]:
    """Cloud stacks need AWS credentials for the provider and the KMS secrets provider.

    Any source of the SDKs' default chain counts: the environment, ``~/.aws``, a
    container's credentials endpoint, or the instance profile (asked last).
    """
    env = dict(os.environ) if env is None else env
    if any(env.get(name) for name in CREDENTIAL_VARIABLES):
        return []
    home = Path(env.get("HOME", "~")).expanduser()
    if (home / ".aws" / "credentials").is_file() or (home / ".aws" / "config").is_file():
        return []
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true" and instance_role():
        return []
    return [
        Problem.prerequisite(
            "no AWS credentials found (env, AWS_PROFILE, ~/.aws, a container or an "
            "instance profile)",
            "aws configure sso  (or export AWS_PROFILE=<profile>); the same identity needs "
            "kms:Encrypt/Decrypt on the stack's secrets key",
        )
    ]


def preflight(stack: str, run: Runner = _run) -> list[Problem]:
    """Every problem standing between this machine and `pulumi up --stack STACK`."""
    problems = check_stack_file(stack)
    if problems:
        return problems
    problems += check_pulumi_cli()
    if not problems:
        problems += check_backend(run)
        if not problems:
            problems += check_stack_selected(stack, run)
    problems += check_aws_credentials() if stack in CLOUD_STACKS else check_local_cluster()
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Print what is missing for STACK; exit 1 if anything is."""
    parser = argparse.ArgumentParser(prog="python -m infra.deploy.preflight")
    parser.add_argument("stack")
    args = parser.parse_args(argv)
    problems = preflight(args.stack)
    if not problems:
        print(f"pre-flight for stack {args.stack!r}: ready")
        return 0
    print(f"pre-flight for stack {args.stack!r}: {len(problems)} problem(s)", file=sys.stderr)
    for problem in problems:
        print(problem.render(), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
