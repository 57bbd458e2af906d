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
# The policy pack, as CI's previews and deploys run it (mandatory in staging and
# production): an operator's `make up STACK=production` meets the same rules.
# A stack without a config of its own is treated as dev (policies.pack.environment_of).
policy_config=policies/config/$stack.json
[ -f "$policy_config" ] || policy_config=policies/config/dev.json
flags=(--stack "$stack" --policy-pack policies --policy-pack-config "$policy_config")
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
