#!/usr/bin/env bash
# CI (deploy jobs): give STACK the secrets, the image digest and the runbooks'
# URL it needs, from the job's environment (GitHub environment secrets and the
# workflow's own GITHUB_* variables), before `pulumi up`.
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
set_secret encryptionKey "${ENCRYPTION_KEY:-}"
set_secret anthropicApiKey "${ANTHROPIC_API_KEY:-}"
set_secret ghlApiKey "${GHL_API_KEY:-}"
set_secret slackWebhookUrl "${SLACK_WEBHOOK_URL:-}"
set_secret jwtPreviousKeys "${JWT_PREVIOUS_KEYS:-}"

if [ -n "${IMAGE:-}" ]; then
  case "$IMAGE" in
    *@sha256:*) pulumi config set --stack "$stack" image "$IMAGE" ;;
    *) echo "IMAGE must be pinned by digest (REPOSITORY@sha256:...), got: $IMAGE" >&2; exit 2 ;;
  esac
  echo "image $IMAGE"
fi

# The alerts link the runbooks of the very commit being deployed.
if [ -n "${GITHUB_SHA:-}" ] && [ -n "${GITHUB_REPOSITORY:-}" ]; then
  runbooks="${GITHUB_SERVER_URL:-https://github.com}/$GITHUB_REPOSITORY/blob/$GITHUB_SHA/docs/runbooks/"
  pulumi config set --stack "$stack" runbookBaseUrl "$runbooks"
  echo "runbookBaseUrl $runbooks"
fi
