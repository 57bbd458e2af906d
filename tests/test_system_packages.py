"""scripts/install-system-packages.sh on a fresh Debian: what it asks apt for."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install-system-packages.sh"


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_a_python_without_venv_gets_python3_venv_before_the_virtualenv(tmp_path: Path) -> None:
    # Debian's python3 ships without ensurepip, so scripts/setup-deploy.sh's
    # `python3 -m venv` fails on a fresh machine unless python3-venv is installed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "apt-get.args"
    _fake(bin_dir, "dpkg-query", "exit 1")  # python3-venv: not installed
    _fake(bin_dir, "apt-get", f'echo "$@" >> "{asked}"')
    _fake(bin_dir, "sudo", '"$@"')
    _fake(bin_dir, "service", "exit 0")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, capture_output=True, text=True)

    install = [line for line in asked.read_text().splitlines() if " install " in f" {line} "]
    assert install, asked.read_text()
    assert "python3-venv" in install[0].split()
