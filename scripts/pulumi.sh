#!/usr/bin/env bash
# make preview|up STACK=...: pre-flight checks, then the Pulumi CLI itself.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: scripts/pulumi.sh preview|up STACK}
stack=${2:?usage: scripts/pulumi.sh preview|up STACK}

.venv/bin/python -m infra.deploy.preflight "$stack"

# In CI (CI=true, as every major CI sets it) nothing may prompt: no colour
# codes, no confirmation; `up` applies what the preview shows.
# The array is never empty: macOS's bash 3.2 under `set -u` calls an empty
# array's "${flags[@]}" an unbound variable and stops.
flags=(--stack "$stack")
if [ "${CI:-}" = "true" ]; then
  flags+=(--non-interactive --color never)
fi
case "$action" in
  preview) exec pulumi preview --diff "${flags[@]}" ;;
  up)
    if [ "${CI:-}" = "true" ]; then flags+=(--yes); fi
    exec pulumi up "${flags[@]}" ;;
  *) echo "unknown action $action (preview|up)" >&2; exit 2 ;;
esac
