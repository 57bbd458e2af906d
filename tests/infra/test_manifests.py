"""The synthesized manifests pass the Kubernetes schemas and checkov.

Schema validation uses kubernetes-validate's bundled OpenAPI schemas (offline)
for the stack's own `kubernetesVersion`, strictly: an unknown field fails.
checkov runs from its own virtualenv (scripts/install-checkov.sh), because it
pins an older pulumi than the program needs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from infra.stackfiles import STACKS
from infra.synth import Synthesis
from infra.synth.manifests import MANAGED_BY_LABEL, SECRET_DATA_MASK, manifests_for
from infra.synth.mock_values import AUTONAMED_ANNOTATION
from infra.synth.mocks import ProgramRun

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
# API groups served by Kubernetes itself: a kind of these groups must have a schema,
# so a skipped one means a wrong apiVersion or kind, not a custom resource.
BUILT_IN_GROUP_SUFFIX = ".k8s.io"


def _manifests(synthesis: Synthesis) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, yaml.safe_load(path.read_text()))
        for path in sorted(synthesis.manifests_dir.glob("*.yaml"))
    ]


def _version(synthesis: Synthesis) -> str:
    version = synthesis.document["config"]["enterprisehub:kubernetesVersion"]
    return f"{version}.0"


def _is_custom(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(BUILT_IN_GROUP_SUFFIX)


@pytest.mark.parametrize("stack", STACKS)
def test_manifests_validate_strictly_against_the_stack_kubernetes_version(
    stack: str, synthesized: Callable[[str], Synthesis]
) -> None:
    synthesis = synthesized(stack)
    failures = []
    for name, body in _manifests(synthesis):
        try:
            kubernetes_validate.validate(body, _version(synthesis), strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            # Custom resources have no bundled schema; checked by the test below.
            continue
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{name}: {error.message} at {'.'.join(map(str, error.path))}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("stack", STACKS)
def test_only_custom_resources_lack_a_schema(
    stack: str, synthesized: Callable[[str], Synthesis]
) -> None:
    synthesis = synthesized(stack)
    unexpected = []
    for name, body in _manifests(synthesis):
        try:
            kubernetes_validate.validate(body, _version(synthesis), strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if not _is_custom(body["apiVersion"]):
                unexpected.append(f"{name}: {body['apiVersion']} {body['kind']}")
        except kubernetes_validate.ValidationError:
            continue  # reported by the schema test
    assert not unexpected, "built-in kinds without a schema (typo?):\n" + "\n".join(unexpected)


def _checkov(executable: Path, directory: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(executable),
            "--config-file",
            str(REPO / ".checkov.yaml"),
            "-d",
            str(directory),
            "-o",
            "json",
        ],
        env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    # One framework gives one object; checkov gives a list when there are several.
    return report[0] if isinstance(report, list) else report


@pytest.fixture
def checkov() -> Path:
    """checkov's executable; a skip on a developer machine without it, a failure in CI."""
    if CHECKOV.exists():
        return CHECKOV
    message = "checkov not installed: run scripts/install-checkov.sh (make setup does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_checkov_passes_on_production_manifests(
    checkov: Path, synthesized: Callable[[str], Synthesis]
) -> None:
    report = _checkov(checkov, synthesized("production").manifests_dir)
    failed = report.get("results", {}).get("failed_checks", [])
    lines = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for c in failed
    ]
    assert not lines, "checkov findings:\n" + "\n".join(sorted(lines))
    assert report["summary"]["passed"] > 0


# ------------------------------------------- what the provider adds before sending


def _one_manifest(run: ProgramRun, kind: str) -> dict[str, Any]:
    (manifest,) = [m for m in manifests_for(run.resources) if m.kind == kind]
    return manifest.body


def test_an_unnamed_object_gets_the_provider_autoname_and_annotation(
    run_mocked: Callable[..., ProgramRun],
) -> None:
    run = run_mocked(lambda: k8s.core.v1.ConfigMap("settings", data={"A": "1"}))
    metadata = _one_manifest(run, "ConfigMap")["metadata"]
    assert re.fullmatch(r"settings-[0-9a-f]{8}", metadata["name"])
    assert metadata["annotations"] == {AUTONAMED_ANNOTATION: "true"}


def test_secret_data_is_masked_with_valid_base64(run_mocked: Callable[..., ProgramRun]) -> None:
    def program() -> None:
        token = pulumi.Config().require_secret("token")
        k8s.core.v1.Secret("creds", metadata={"name": "creds"}, data={"TOKEN": token})

    run = run_mocked(program, secrets={"token": "dG9wLXNlY3JldA=="})
    assert _one_manifest(run, "Secret")["data"] == {"TOKEN": SECRET_DATA_MASK}
    assert base64.b64decode(SECRET_DATA_MASK).decode() == "[secret]"


def test_client_side_apply_adds_the_managed_by_label(
    run_mocked: Callable[..., ProgramRun],
) -> None:
    def program() -> None:
        provider = k8s.Provider("csa", enable_server_side_apply=False)
        k8s.core.v1.ConfigMap(
            "settings",
            metadata={"name": "settings"},
            opts=pulumi.ResourceOptions(provider=provider),
        )

    labels = _one_manifest(run_mocked(program), "ConfigMap")["metadata"]["labels"]
    assert labels == {MANAGED_BY_LABEL: "pulumi"}


def test_server_side_apply_adds_no_label(run_mocked: Callable[..., ProgramRun]) -> None:
    run = run_mocked(lambda: k8s.core.v1.ConfigMap("settings", metadata={"name": "settings"}))
    assert "labels" not in _one_manifest(run, "ConfigMap")["metadata"]
