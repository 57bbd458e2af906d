#!/usr/bin/env bash
# The deployer's set-up: the project virtualenv from uv.lock, nothing else.
# `make preview`/`make up` need it and the Pulumi CLI; unlike scripts/setup.sh
# it installs no system packages, so it runs on macOS and any CI image.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8

if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv; then
    rm -rf .venv
    echo "python3 -m venv failed: on Debian or Ubuntu, the python3-venv package provides it" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
# --frozen: install exactly what uv.lock says; a stale lock is an error, not a
# silent re-resolve. --compile-bytecode: this machine sets PYTHONDONTWRITEBYTECODE,
# so without it every synthesis recompiles the Pulumi SDK (seconds per run).
.venv/bin/uv sync --frozen --compile-bytecode --quiet
