"""Fixtures for the policy tests: a resources.json per stack, and a runner for one policy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
STACKS = ("local", "dev", "staging", "production")


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """`synthesis("production")`: the stack's resources.json, synthesized once per session."""
    cache: dict[str, dict[str, Any]] = {}

    def get(stack: str) -> dict[str, Any]:
        if stack not in cache:
            out = tmp_path_factory.mktemp(f"synth-{stack}")
            subprocess.run(
                [sys.executable, "-m", "infra.synth", "--stack", stack, "--out", str(out)],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            cache[stack] = json.loads((out / "resources.json").read_text())
        return cache[stack]

    return get
