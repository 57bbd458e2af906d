#!/usr/bin/env bash
# make preview|up STACK=...: pre-flight checks, then the Pulumi CLI itself.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: scripts/pulumi.sh preview|up STACK}
stack=${2:?usage: scripts/pulumi.sh preview|up STACK}

.venv/bin/python -m infra.deploy.preflight "$stack"

case "$action" in
  preview) exec pulumi preview --stack "$stack" --diff ;;
  up)      exec pulumi up --stack "$stack" ;;
  *) echo "unknown action $action (preview|up)" >&2; exit 2 ;;
esac
