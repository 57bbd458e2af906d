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
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import ValidationError

from infra.config import ClusterConfig
from infra.environments import CLOUD_ENVIRONMENTS, ENVIRONMENTS
from infra.problems import PROJECT, Problem
from infra.stackfiles import stack_config

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


def stack_cluster(stack: str, root: Path = REPO_ROOT) -> ClusterConfig | Problem:
    """The stack's ``cluster`` settings as the program reads them (a Problem if invalid).

    The stack file as the CLI passes it (``infra.stackfiles``, Pulumi.yaml's
    defaults merged) into the program's own typed ``ClusterConfig``: the
    kubeconfig and context checked here are the ones the Kubernetes provider gets.
    """
    raw = stack_config(stack, root).get(f"{PROJECT}:cluster")
    try:
        return ClusterConfig.model_validate(json.loads(raw) if raw else {})
    except (json.JSONDecodeError, ValidationError) as error:
        return Problem.prerequisite(
            f"stacks/Pulumi.{stack}.yaml: cluster is not valid ({error})",
            f"make preview STACK={stack} lists what to change",
        )


def _kubeconfig_files(cluster: ClusterConfig, env: dict[str, str]) -> tuple[list[Path], str]:
    """The files the Kubernetes provider reads, and where that choice came from.

    ``cluster.kubeconfigPath`` alone when set (the provider is given that file);
    otherwise client-go's default: every file of $KUBECONFIG, else ~/.kube/config.
    """
    if cluster.kubeconfig_path:
        path = cluster.kubeconfig_path
        if path == "~" or path.startswith("~/"):  # expanded as the provider does
            path = env.get("HOME", "~") + path[1:]
        return [Path(path)], "the stack's cluster.kubeconfigPath"
    listed = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return listed, "$KUBECONFIG"
    return [Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"], "the default"


def _merged_kubeconfig(files: Sequence[Path]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(current-context, contexts, clusters) merged as client-go does: the first one wins."""
    current = ""
    contexts: dict[str, Any] = {}
    clusters: dict[str, Any] = {}
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        current = current or str(doc.get("current-context") or "")
        for entry in doc.get("contexts") or []:
            contexts.setdefault(entry.get("name"), entry.get("context") or {})
        for entry in doc.get("clusters") or []:
            clusters.setdefault(entry.get("name"), entry.get("cluster") or {})
    return current, contexts, clusters


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
    cluster: ClusterConfig | None = None,
    env: dict[str, str] | None = None,
    reachable: Callable[[str], bool] = _reachable,
) -> list[Problem]:
    """The local stack deploys into the kubeconfig and context its ``cluster`` settings name.

    ``cluster.kubeconfigPath`` and ``cluster.context`` when the stack sets them,
    else $KUBECONFIG or ~/.kube/config and its current context: what the
    program's Kubernetes provider uses.
    """
    cluster = ClusterConfig(mode="kubeconfig") if cluster is None else cluster
    env = dict(os.environ) if env is None else env
    files, source = _kubeconfig_files(cluster, env)
    present = [path for path in files if path.is_file()]
    if not present:
        return [
            Problem.prerequisite(
                f"no kubeconfig at {os.pathsep.join(map(str, files))} ({source})",
                # A bare `kind create cluster` maps no host ports: the edge's
                # NodePorts would be unreachable from the host.
                "start a local cluster with the edge's port mappings and a registry, as "
                "docs/deploying.md shows (kind create cluster --name enterprisehub "
                "--config kind.yaml), or minikube start, or Kubernetes in Docker Desktop; "
                "or point cluster.kubeconfigPath at your kubeconfig",
            )
        ]
    current, contexts, clusters = _merged_kubeconfig(present)
    where = os.pathsep.join(map(str, present))
    context = cluster.context or current
    if not context:
        return [
            Problem.prerequisite(
                f"{where} has no current-context and the stack names no cluster.context",
                "kubectl config use-context kind-enterprisehub (or your cluster's context)",
            )
        ]
    if context not in contexts:
        pinned = "cluster.context of the stack" if cluster.context else "current-context"
        return [
            Problem.prerequisite(
                f"context {context!r} ({pinned}) is not in {where}",
                "kubectl config get-contexts lists them; pulumi config set --path "
                "cluster.context <name> pins one",
            )
        ]
    server = (clusters.get(contexts[context].get("cluster")) or {}).get("server")
    if not server:
        return [
            Problem.prerequisite(
                f"context {context!r} in {where} names no cluster with a server",
                "kubectl config view shows it; recreate the context (kind export kubeconfig)",
            )
        ]
    if not reachable(str(server)):
        return [
            Problem.prerequisite(
                f"the cluster of context {context!r} at {server} is not reachable",
                "start it (kind/minikube/Docker Desktop) or switch context: "
                "kubectl config use-context <name> (or set cluster.context)",
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
    if stack in CLOUD_STACKS:
        return problems + check_aws_credentials()
    cluster = stack_cluster(stack)
    if isinstance(cluster, Problem):
        return [*problems, cluster]
    return problems + check_local_cluster(cluster)


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
