#!/usr/bin/env bash
# One idempotent set-up for a fresh machine and a warm one alike:
# Debian packages (PostgreSQL 15, Redis 7, Prometheus/promtool), the project
# virtualenv from the lock file, and checkov in a venv of its own (its pins
# would otherwise drag pulumi back several releases).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-packages.sh

# The virtualenv from uv.lock (all that deploying needs: make setup-deploy).
bash scripts/setup-deploy.sh

if [ -f scripts/install-checkov.sh ]; then
  bash scripts/install-checkov.sh
fi
