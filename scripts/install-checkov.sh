#!/usr/bin/env bash
# Install checkov into its own virtualenv, .venv-checkov.
#
# checkov pins an older pulumi (and much else), so it cannot share .venv with
# the Pulumi program; scripts/check-manifests.sh calls .venv-checkov/bin/checkov.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
cd "$(dirname "$0")/.."

if [ -x .venv-checkov/bin/checkov ] \
   && .venv-checkov/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('checkov') != '${CHECKOV_VERSION}')" 2>/dev/null; then
    exit 0
fi

# The project's pinned uv (scripts/setup.sh installs it), else one on PATH.
UV="${UV:-.venv/bin/uv}"
[ -x "$UV" ] || UV=uv
[ -d .venv-checkov ] || "$UV" venv --quiet .venv-checkov
"$UV" pip install --quiet --python .venv-checkov "checkov==${CHECKOV_VERSION}"
