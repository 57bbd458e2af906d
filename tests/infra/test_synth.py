"""`python -m infra.synth`: every stack synthesizes, and the output keeps its contract.

The contract is docs/resources-json.md; these tests pin the parts other tools
rely on: the fields, their types, determinism, and that no secret leaks.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.stackfiles import STACKS
from infra.synth import MANIFESTS_DIR, RESOURCES_FILE, SCHEMA_VERSION, Synthesis, synthesize
from infra.synth.inputs import SECRETS_FILE, SYNTHETIC, synthetic_secret
from infra.synth.manifests import YAML_WIDTH
from infra.synth.mocks import Secret, unwrap_secrets

REPO = Path(__file__).resolve().parents[2]
URN = re.compile(r"^urn:pulumi:[A-Za-z0-9_.-]+::enterprisehub::[^:]+(:[^:]+)*::.+$")
RESOURCE_FIELDS = {
    "urn",
    "type",
    "name",
    "custom",
    "parent",
    "provider",
    "dependencies",
    "propertyDependencies",
    "inputs",
    "options",
}
OPTION_FIELDS = {
    "protect",
    "external",
    "deleteBeforeReplace",
    "retainOnDelete",
    "ignoreChanges",
    "additionalSecretOutputs",
}
# Random results the engine keeps secret; the synthesized output must not contain them.
GENERATED_SECRET_TYPES = (
    "random:index/randomPassword:RandomPassword",
    "random:index/randomString:RandomString",
)


def _document(synthesis: Synthesis) -> dict[str, Any]:
    out = synthesis.manifests_dir.parent
    document: dict[str, Any] = json.loads((out / RESOURCES_FILE).read_text())
    return document


def _files(directory: Path) -> Iterator[Path]:
    return (p for p in sorted(directory.rglob("*")) if p.is_file())


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_synthesizes(stack: str, synthesized: Callable[[str], Synthesis]) -> None:
    synthesis = synthesized(stack)
    document = _document(synthesis)
    assert document["stack"] == stack
    assert document["summary"]["resourceCount"] == len(document["resources"]) > 0
    assert list(synthesis.manifests_dir.glob("*.yaml"))


@pytest.mark.parametrize("stack", STACKS)
def test_resources_json_has_the_documented_fields(
    stack: str, synthesized: Callable[[str], Synthesis]
) -> None:
    document = _document(synthesized(stack))
    assert document["schemaVersion"] == SCHEMA_VERSION
    assert document["project"] == "enterprisehub"
    for resource in document["resources"]:
        assert set(resource) == RESOURCE_FIELDS, resource["urn"]
        assert set(resource["options"]) == OPTION_FIELDS, resource["urn"]
        assert URN.match(resource["urn"]), resource["urn"]
        assert resource["urn"].endswith(f"::{resource['name']}")
        assert isinstance(resource["inputs"], dict)


@pytest.mark.parametrize("stack", STACKS)
def test_resources_are_sorted_by_urn(stack: str, synthesized: Callable[[str], Synthesis]) -> None:
    urns = [r["urn"] for r in _document(synthesized(stack))["resources"]]
    assert urns == sorted(urns)
    assert len(urns) == len(set(urns))


@pytest.mark.parametrize("stack", STACKS)
def test_parents_providers_and_dependencies_name_declared_resources(
    stack: str, synthesized: Callable[[str], Synthesis]
) -> None:
    document = _document(synthesized(stack))
    root = f"urn:pulumi:{stack}::enterprisehub::pulumi:pulumi:Stack::enterprisehub-{stack}"
    known = {r["urn"] for r in document["resources"]}
    for resource in document["resources"]:
        assert resource["parent"] in known | {root}, resource["urn"]
        assert resource["provider"] is None or resource["provider"] in known, resource["urn"]
        assert set(resource["dependencies"]) <= known, resource["urn"]
        for urns in resource["propertyDependencies"].values():
            assert set(urns) <= set(resource["dependencies"]), resource["urn"]


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_value_appears_in_the_output(
    stack: str, synthesized: Callable[[str], Synthesis], injected_secrets: Mapping[str, str]
) -> None:
    synthesis = synthesized(stack)
    forbidden = set(injected_secrets.values())
    for resource in synthesis.run.resources:
        if resource.type in GENERATED_SECRET_TYPES:
            forbidden.add(resource.outputs["result"])
    forbidden |= {base64.b64encode(value.encode()).decode() for value in forbidden}
    for path in _files(synthesis.manifests_dir.parent):
        text = path.read_text()
        leaked = [value[:12] + "..." for value in forbidden if value in text]
        assert not leaked, f"{path.name} contains secret values starting {leaked}"


def test_injected_secrets_reach_the_program_as_secrets(
    synthesized: Callable[[str], Synthesis], injected_secrets: Mapping[str, str]
) -> None:
    # Guards the leak test above: it only means something if the values were used.
    run = synthesized("production").run
    joined = "\n".join(
        json.dumps(unwrap_secrets(leaf))
        for resource in run.resources
        for leaf in _walk_secrets(resource.raw_inputs)
    )
    assert injected_secrets["anthropicApiKey"] in joined


def _walk_secrets(value: Any) -> Iterator[Secret]:
    if isinstance(value, Secret):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk_secrets(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_secrets(item)


def test_resources_json_records_where_each_secret_came_from(
    synthesized: Callable[[str], Synthesis],
) -> None:
    document = _document(synthesized("production"))
    sources = document["synthetic"]["sources"]
    assert sources["enterprisehub:jwtSecretKey"] == SECRETS_FILE
    assert document["config"]["enterprisehub:jwtSecretKey"] == "[secret]"


def test_without_given_secrets_synthesis_uses_marked_stand_ins(tmp_path: Path) -> None:
    synthesis = synthesize("dev", tmp_path, environ={})
    sources = _document(synthesis)["synthetic"]["sources"]
    assert sources["enterprisehub:anthropicApiKey"] == SYNTHETIC
    assert synthetic_secret("dev", "enterprisehub:anthropicApiKey").startswith(
        "synthetic-not-a-secret-"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_each_manifest_file_holds_one_object_named_after_it(
    stack: str, synthesized: Callable[[str], Synthesis]
) -> None:
    for path in synthesized(stack).manifests_dir.glob("*.yaml"):
        documents = list(yaml.safe_load_all(path.read_text()))
        assert len(documents) == 1, path.name
        body = documents[0]
        assert {"apiVersion", "kind", "metadata"} <= set(body), path.name
        name = body["metadata"]["name"]
        assert path.name.endswith(f"-{body['kind'].lower()}-{name}.yaml"), path.name


def test_manifests_are_the_text_yaml_safe_dump_writes(
    synthesized: Callable[[str], Synthesis],
) -> None:
    """libyaml's emitter (used for speed) writes exactly what the pure-Python one would."""
    for path in synthesized("production").manifests_dir.glob("*.yaml"):
        text = path.read_text()
        body = yaml.safe_load(text)
        expected = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=YAML_WIDTH)
        assert text == expected, path.name


@pytest.mark.parametrize("stack", STACKS)
def test_manifests_hold_integers_as_integers(
    stack: str, synthesized: Callable[[str], Synthesis]
) -> None:
    for path in synthesized(stack).manifests_dir.glob("*.yaml"):
        body = yaml.safe_load(path.read_text())
        floats = [v for v in _walk(body) if isinstance(v, float) and v.is_integer()]
        assert not floats, f"{path.name} has whole-number floats {floats}"


def test_replicas_and_ports_are_ints_in_a_deployment(
    synthesized: Callable[[str], Synthesis],
) -> None:
    deployments = [
        yaml.safe_load(p.read_text())
        for p in synthesized("production").manifests_dir.glob("*-deployment-*.yaml")
    ]
    assert deployments
    for body in deployments:
        for container in body["spec"]["template"]["spec"]["containers"]:
            for port in container.get("ports", []):
                assert type(port["containerPort"]) is int


def test_synthesis_is_deterministic(
    synthesized: Callable[[str], Synthesis], secrets_file: Path, tmp_path: Path
) -> None:
    first = synthesized("production")
    second = synthesize("production", tmp_path, secrets_file=secrets_file)
    first_out = first.manifests_dir.parent
    assert (first_out / RESOURCES_FILE).read_text() == (tmp_path / RESOURCES_FILE).read_text()
    for path in first.manifests_dir.glob("*.yaml"):
        assert path.read_text() == (second.manifests_dir / path.name).read_text(), path.name


def _synth_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "infra.synth", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of Pulumi.yaml and stacks/ that a test may break."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    return root


def test_cli_writes_the_output_and_reports_counts(tmp_path: Path) -> None:
    result = _synth_cli("--stack", "dev", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "resources" in result.stdout
    assert (tmp_path / "out" / RESOURCES_FILE).is_file()
    assert (tmp_path / "out" / MANIFESTS_DIR).is_dir()


def test_invalid_config_exits_non_zero_naming_the_key(project_copy: Path, tmp_path: Path) -> None:
    stack_file = project_copy / "stacks" / "Pulumi.production.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["enterprisehub:database"]["backupRetentionDays"] = 0
    stack_file.write_text(yaml.safe_dump(document))
    result = _synth_cli(
        "--stack", "production", "--out", str(tmp_path / "out"), "--project-dir", str(project_copy)
    )
    assert result.returncode == 2
    assert "backupRetentionDays" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / RESOURCES_FILE).exists()


def test_unknown_stack_exits_non_zero_naming_it(tmp_path: Path) -> None:
    result = _synth_cli("--stack", "nosuchstack", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "nosuchstack" in result.stderr
