"""`make up` pre-flight: every missing prerequisite is named with its fix."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from infra.config import ClusterConfig
from infra.deploy import preflight
from infra.problems import Problem


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


def _two_contexts(path: Path) -> None:
    """Current context ``old`` (a stopped cluster); ``kind-enterprisehub`` is the other."""
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "old",
                "contexts": [
                    {"name": "old", "context": {"cluster": "old"}},
                    {"name": "kind-enterprisehub", "context": {"cluster": "kind"}},
                ],
                "clusters": [
                    {"name": "old", "cluster": {"server": "https://127.0.0.1:1"}},
                    {"name": "kind", "cluster": {"server": "https://127.0.0.1:6443"}},
                ],
            }
        )
    )


def _local_stack(root: Path, cluster: dict[str, str]) -> None:
    """A repository whose local stack file sets ``cluster`` (Pulumi.yaml is the real one)."""
    repo = Path(__file__).resolve().parents[2]
    (root / "Pulumi.yaml").write_text((repo / "Pulumi.yaml").read_text(encoding="utf-8"))
    (root / "stacks").mkdir()
    config = {"enterprisehub:environment": "local", "enterprisehub:cluster": cluster}
    (root / "stacks" / "Pulumi.local.yaml").write_text(yaml.safe_dump({"config": config}))


def test_the_stacks_kubeconfig_path_is_used_without_a_default_kubeconfig(
    tmp_path: Path,
) -> None:
    # cluster.kubeconfigPath set, no ~/.kube/config and no $KUBECONFIG: the
    # provider reads that file, so the pre-flight must too.
    kubeconfig = tmp_path / "kind.yaml"
    _kubeconfig(kubeconfig, "https://127.0.0.1:6443")
    _local_stack(tmp_path, {"mode": "kubeconfig", "kubeconfigPath": str(kubeconfig)})
    cluster = preflight.stack_cluster("local", root=tmp_path)
    assert not isinstance(cluster, Problem)
    assert cluster.kubeconfig_path == str(kubeconfig)
    home = {"HOME": str(tmp_path / "home")}
    assert preflight.check_local_cluster(cluster, env=home, reachable=lambda _: True) == []


def test_the_stacks_kubeconfig_path_wins_over_kubeconfig_and_home(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    _kubeconfig(elsewhere, "https://127.0.0.1:6443")
    cluster = ClusterConfig(mode="kubeconfig", kubeconfig_path="~/missing.yaml")
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(elsewhere)}
    problems = preflight.check_local_cluster(cluster, env=env, reachable=lambda _: True)
    assert f"no kubeconfig at {tmp_path}/missing.yaml" in problems[0].what
    assert "cluster.kubeconfigPath" in problems[0].what


def test_a_pinned_context_is_checked_not_the_current_one(tmp_path: Path) -> None:
    config = tmp_path / "config"
    _two_contexts(config)
    _local_stack(tmp_path, {"mode": "kubeconfig", "context": "kind-enterprisehub"})
    cluster = preflight.stack_cluster("local", root=tmp_path)
    assert not isinstance(cluster, Problem)
    asked: list[str] = []

    def reachable(url: str) -> bool:
        asked.append(url)
        return url == "https://127.0.0.1:6443"

    env = {"KUBECONFIG": str(config)}
    assert preflight.check_local_cluster(cluster, env=env, reachable=reachable) == []
    assert asked == ["https://127.0.0.1:6443"]
    # Without the pin, the current context's (stopped) cluster is the one checked.
    unpinned = preflight.check_local_cluster(env=env, reachable=reachable)
    assert "'old'" in unpinned[0].what


def test_a_pinned_context_missing_from_the_kubeconfig_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config"
    _two_contexts(config)
    cluster = ClusterConfig(mode="kubeconfig", context="minikube")
    problems = preflight.check_local_cluster(
        cluster, env={"KUBECONFIG": str(config)}, reachable=lambda _: True
    )
    assert "context 'minikube' (cluster.context of the stack)" in problems[0].what


def test_kubeconfig_files_are_merged_first_one_winning(tmp_path: Path) -> None:
    # client-go merges every file of $KUBECONFIG; the context may live in the second.
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(yaml.safe_dump({"current-context": "kind-enterprisehub"}))
    _kubeconfig(second, "https://127.0.0.1:6443")
    env = {"KUBECONFIG": f"{first}:{tmp_path / 'absent'}:{second}"}
    assert preflight.check_local_cluster(env=env, reachable=lambda _: True) == []


def test_an_invalid_cluster_setting_is_a_preflight_problem(tmp_path: Path) -> None:
    _local_stack(tmp_path, {"mode": "kubeconfig", "kubeconfigPath": "relative/kubeconfig"})
    problem = preflight.stack_cluster("local", root=tmp_path)
    assert isinstance(problem, Problem)
    assert "an absolute path or one under ~/" in problem.what


def test_the_shipped_local_stack_uses_the_default_kubeconfig_and_current_context() -> None:
    cluster = preflight.stack_cluster("local")
    assert not isinstance(cluster, Problem)
    assert (cluster.kubeconfig_path, cluster.context) == (None, None)
