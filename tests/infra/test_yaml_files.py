"""Every YAML file in the repository says each key once.

PyYAML (and so every loader here: chart values, stack files, rules) keeps the
last of a repeated key without a word, which once turned the cert-manager
webhook's resources into an unknown field of the controller's configuration
(``charts/cert-manager/values.yaml``). Helm and Kubernetes read these files too,
with their own rules; a file must mean the same to all of them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _tracked_yaml() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "*.yaml", "*.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(path for path in listed if (REPO / path).is_file())


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key it has already seen."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found key {key!r} again (first at line {seen[key].line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def test_the_repository_has_yaml_to_check() -> None:
    assert "charts/cert-manager/values.yaml" in _tracked_yaml()


@pytest.mark.parametrize("path", _tracked_yaml())
def test_no_key_is_repeated(path: str) -> None:
    list(yaml.load_all((REPO / path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader))


def test_a_repeated_key_is_caught() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="found key 'config' again"):
        yaml.load("config: {a: 1}\nwebhook: {}\nconfig: {b: 2}\n", Loader=_UniqueKeyLoader)  # noqa: S506
