#!/usr/bin/env bash
# One idempotent set-up for a fresh machine and a warm one alike:
# Debian packages (PostgreSQL 15, Redis 7, Prometheus/promtool), the project
# virtualenv from the lock file, and checkov in a venv of its own (its pins
# would otherwise drag pulumi back several releases).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8

bash scripts/install-system-packages.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
# --frozen: install exactly what uv.lock says; a stale lock is an error, not a
# silent re-resolve. --compile-bytecode: this machine sets PYTHONDONTWRITEBYTECODE,
# so without it every synthesis recompiles the Pulumi SDK (seconds per run).
.venv/bin/uv sync --frozen --compile-bytecode --quiet

if [ -f scripts/install-checkov.sh ]; then
  bash scripts/install-checkov.sh
fi
