#!/usr/bin/env bash
# make preview|up STACK=...: pre-flight checks, then the Pulumi CLI itself.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: scripts/pulumi.sh preview|up STACK}
stack=${2:?usage: scripts/pulumi.sh preview|up STACK}

.venv/bin/python -m infra.deploy.preflight "$stack"

# In CI (CI=true, as every major CI sets it) nothing may prompt: no colour
# codes, no confirmation; `up` applies what the preview shows.
flags=()
if [ "${CI:-}" = "true" ]; then
  flags=(--non-interactive --color never)
fi
case "$action" in
  preview) exec pulumi preview --stack "$stack" --diff "${flags[@]}" ;;
  up)
    if [ "${CI:-}" = "true" ]; then flags+=(--yes); fi
    exec pulumi up --stack "$stack" "${flags[@]}" ;;
  *) echo "unknown action $action (preview|up)" >&2; exit 2 ;;
esac
