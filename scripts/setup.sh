#!/usr/bin/env bash
# One idempotent set-up for a fresh machine and a warm one alike:
# Debian packages (PostgreSQL 15, Redis 7, Prometheus/promtool), the project
# virtualenv from the lock file, and checkov in a venv of its own (its pins
# would otherwise drag pulumi back several releases).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8

# Deploy jobs in CI need only the virtualenv (no databases, no checkov).
ONLY_VENV=${ENTERPRISEHUB_SETUP_ONLY_VENV:-0}

if [ "$ONLY_VENV" != 1 ]; then
  bash scripts/install-system-packages.sh
fi

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

if [ "$ONLY_VENV" != 1 ] && [ -f scripts/install-checkov.sh ]; then
  bash scripts/install-checkov.sh
fi
