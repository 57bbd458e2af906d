"""`make up` pre-flight: every missing prerequisite is named with its fix."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from infra.deploy import preflight


def _runner(returncode: int, stdout: str = "") -> preflight.Runner:
    def run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(cmd), returncode, stdout, "")

    return run


def test_missing_cli_names_the_install_command() -> None:
    problems = preflight.check_pulumi_cli(which=lambda _: None)
    assert len(problems) == 1
    assert "Pulumi CLI is not on PATH" in problems[0].what
    assert "get.pulumi.com" in problems[0].fix


def test_present_cli_passes() -> None:
    assert preflight.check_pulumi_cli(which=lambda _: "/usr/local/bin/pulumi") == []


def test_no_backend_suggests_local_login() -> None:
    problems = preflight.check_backend(_runner(255))
    assert "pulumi login --local" in problems[0].fix


def test_uninitialised_local_stack_suggests_passphrase_provider() -> None:
    problems = preflight.check_stack_selected("local", _runner(0, '[{"name": "dev"}]'))
    assert "pulumi stack init local --secrets-provider passphrase" in problems[0].fix


def test_uninitialised_cloud_stack_suggests_kms_provider() -> None:
    problems = preflight.check_stack_selected("production", _runner(0, "[]"))
    assert "awskms://alias/enterprisehub-production" in problems[0].fix


def test_initialised_stack_passes() -> None:
    assert preflight.check_stack_selected("dev", _runner(0, '[{"name": "dev"}]')) == []


def test_unknown_stack_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    problems = preflight.check_stack_file("qa", root=tmp_path)
    assert "stacks/Pulumi.qa.yaml does not exist" in problems[0].what


def _kubeconfig(path: Path, server: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "kind-enterprisehub",
                "contexts": [{"name": "kind-enterprisehub", "context": {"cluster": "kind"}}],
                "clusters": [{"name": "kind", "cluster": {"server": server}}],
            }
        )
    )


def test_missing_kubeconfig_suggests_a_local_cluster(tmp_path: Path) -> None:
    problems = preflight.check_local_cluster(env={"KUBECONFIG": str(tmp_path / "none")})
    assert "kind create cluster --name enterprisehub --config kind.yaml" in problems[0].fix
    # The walk-through's kind.yaml is the one that maps the edge's ports.
    assert "docs/deploying.md" in problems[0].fix
    assert "kind create cluster --name enterprisehub --config kind.yaml" in (
        Path(__file__).resolve().parents[2] / "docs" / "deploying.md"
    ).read_text(encoding="utf-8")


def test_unreachable_cluster_names_context_and_server(tmp_path: Path) -> None:
    config = tmp_path / "config"
    _kubeconfig(config, "https://127.0.0.1:1")
    problems = preflight.check_local_cluster(
        env={"KUBECONFIG": str(config)}, reachable=lambda _: False
    )
    assert "'kind-enterprisehub'" in problems[0].what
    assert "https://127.0.0.1:1" in problems[0].what


def test_reachable_cluster_passes(tmp_path: Path) -> None:
    config = tmp_path / "config"
    _kubeconfig(config, "https://127.0.0.1:6443")
    assert (
        preflight.check_local_cluster(env={"KUBECONFIG": str(config)}, reachable=lambda _: True)
        == []
    )


def _no_instance_role() -> bool:
    return False


def test_cloud_stack_without_aws_credentials_is_reported(tmp_path: Path) -> None:
    problems = preflight.check_aws_credentials(
        env={"HOME": str(tmp_path)}, instance_role=_no_instance_role
    )
    assert "AWS credentials" in problems[0].what


@pytest.mark.parametrize(
    "variable",
    ["AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"],
)
def test_a_profile_or_a_containers_endpoint_counts_as_credentials(
    tmp_path: Path, variable: str
) -> None:
    env = {"HOME": str(tmp_path), variable: "ops"}
    assert preflight.check_aws_credentials(env=env, instance_role=_no_instance_role) == []


def test_an_instance_profile_counts_as_credentials(tmp_path: Path) -> None:
    # A runner or bastion in the VPC, where the docs say to run `make up`: no file, no variable.
    env = {"HOME": str(tmp_path)}
    assert preflight.check_aws_credentials(env=env, instance_role=lambda: True) == []


def test_instance_metadata_is_not_asked_when_disabled(tmp_path: Path) -> None:
    def asked() -> bool:
        raise AssertionError("IMDS asked although AWS_EC2_METADATA_DISABLED is true")

    env = {"HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    assert preflight.check_aws_credentials(env=env, instance_role=asked)


def test_closed_port_is_unreachable() -> None:
    assert preflight._reachable("https://127.0.0.1:1", timeout=0.5) is False
