#!/usr/bin/env bash
# CI (deploy, preview, drift and rollback jobs): give STACK the secrets, the
# image digest and the runbooks' URL it needs, from the job's environment
# (GitHub environment secrets and the workflow's own GITHUB_* variables),
# before `pulumi up`, `preview` or `refresh`.
#   scripts/ci-stack-config.sh STACK
# Secrets are piped on stdin, so they never appear in a process list or a log;
# a variable that is unset or empty is skipped (the stack keeps its value).
set -euo pipefail
stack=${1:?usage: ci-stack-config.sh STACK}

set_secret() {
  local key=$1 value=$2
  if [ -n "$value" ]; then
    printf '%s' "$value" | pulumi config set --secret --stack "$stack" "$key"
    echo "set secret $key"
  fi
}

set_secret jwtSecretKey "${JWT_SECRET_KEY:-}"
set_secret anthropicApiKey "${ANTHROPIC_API_KEY:-}"
set_secret ghlApiKey "${GHL_API_KEY:-}"
set_secret slackWebhookUrl "${SLACK_WEBHOOK_URL:-}"
set_secret jwtPreviousKeys "${JWT_PREVIOUS_KEYS:-}"

# Without IMAGE (previews, drift checks, the rollback job) the stack keeps the
# image it runs: the one its newest successful update recorded. The stack
# files in git hold none, and `image` is required config, so without this a
# preview or a refresh stops at "missing configuration value 'image'".
#   recorded_value KEY: KEY's value in the newest successful update that has one.
recorded_value() {
  pulumi stack history --json --stack "$stack" --page-size 50 --page 1 |
    KEY=$1 "${PYTHON:-python3}" -c '
import json, os, sys
updates = sorted(json.load(sys.stdin), key=lambda u: u.get("version") or 0, reverse=True)
for update in updates:
    if update.get("kind") == "update" and update.get("result") == "succeeded":
        value = (update.get("config") or {}).get(os.environ["KEY"]) or {}
        if value.get("value"):
            print(value["value"])
            break
'
}
deploying=${IMAGE:+yes}
if [ -z "${IMAGE:-}" ]; then
  IMAGE=$(recorded_value enterprisehub:image)
  if [ -z "$IMAGE" ]; then
    echo "stack $stack has no successful update with an image: deploy it once first (docs/deploying.md)" >&2
    exit 2
  fi
  echo "image of the last successful update:"
fi

if [ -n "${IMAGE:-}" ]; then
  case "$IMAGE" in
    *@sha256:*) pulumi config set --stack "$stack" image "$IMAGE" ;;
    *) echo "IMAGE must be pinned by digest (REPOSITORY@sha256:...), got: $IMAGE" >&2; exit 2 ;;
  esac
  echo "image $IMAGE"
fi

# The alerts link the runbooks of the very commit being deployed. Nothing is
# deployed from this commit without IMAGE: the stack keeps the runbooks it links
# now, or every preview would show each PrometheusRule changed (and a pull
# request's GITHUB_SHA is a test merge that no deployed link should name).
runbooks=
if [ -z "$deploying" ]; then
  runbooks=$(recorded_value enterprisehub:runbookBaseUrl)
fi
if [ -z "$runbooks" ] && [ -n "${GITHUB_SHA:-}" ] && [ -n "${GITHUB_REPOSITORY:-}" ]; then
  runbooks="${GITHUB_SERVER_URL:-https://github.com}/$GITHUB_REPOSITORY/blob/$GITHUB_SHA/docs/runbooks/"
fi
if [ -n "$runbooks" ]; then
  pulumi config set --stack "$stack" runbookBaseUrl "$runbooks"
  echo "runbookBaseUrl $runbooks"
fi
