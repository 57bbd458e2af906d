"""The repository's stack files are parsed once per process, and re-read when they change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import stackfiles


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each YAML text stackfiles parses, in order (the cache emptied first)."""
    stackfiles._parsed.cache_clear()
    seen: list[str] = []
    real = yaml.load

    def counting(text: str, Loader: Any) -> Any:  # noqa: N803 - yaml.load's own keyword
        seen.append(text)
        return real(text, Loader=Loader)

    monkeypatch.setattr(stackfiles.yaml, "load", counting)
    return seen


def test_one_synthesis_worth_of_reads_parses_each_file_once(parses: list[str]) -> None:
    stackfiles.stack_config("production")
    stackfiles.secure_keys("production")
    stackfiles.project_defaults()
    # Pulumi.yaml and stacks/Pulumi.production.yaml, nothing twice.
    assert len(parses) == 2


def test_a_changed_file_is_read_again(tmp_path: Path, parses: list[str]) -> None:
    project = tmp_path / "Pulumi.yaml"
    project.write_text("name: first\n", encoding="utf-8")
    assert stackfiles.project_file(tmp_path)["name"] == "first"
    project.write_text("name: second-value\n", encoding="utf-8")
    assert stackfiles.project_file(tmp_path)["name"] == "second-value"
    assert len(parses) == 2


def test_each_caller_gets_its_own_copy(parses: list[str]) -> None:
    first = stackfiles.project_file()
    first["config"].clear()
    assert stackfiles.project_file()["config"]
