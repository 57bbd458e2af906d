#!/usr/bin/env bash
# CI (key-rotation.yml): the month's key-rotation issue, opened once. A rerun
# of the same month does nothing; earlier months still open are named in it.
#   scripts/ci-key-rotation-issue.sh YYYY-MM RUN_URL
# Needs `gh` with GH_TOKEN (issues: write) and GITHUB_REPOSITORY.
set -euo pipefail
month=${1:?usage: ci-key-rotation-issue.sh YYYY-MM RUN_URL}
run_url=${2:?usage: ci-key-rotation-issue.sh YYYY-MM RUN_URL}
repo=${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is not set}
if ! [[ $month =~ ^[0-9]{4}-(0[1-9]|1[0-2])$ ]]; then
  echo "month must be YYYY-MM, got '$month'" >&2
  exit 2
fi
title="Key rotation: $month"

gh label create key-rotation --repo "$repo" --force --color 5319E7 \
  --description "the monthly rotation of the stacks' keys (docs/deploying.md)"

# Every state: a month whose issue was opened and already closed (rotation
# done) is not opened again by a rerun of the workflow.
issues=$(gh issue list --repo "$repo" --label key-rotation --state all --limit 200 --json number,title,state)
if TITLE=$title "${PYTHON:-python3}" -c '
import json, os, sys
sys.exit(0 if any(i["title"] == os.environ["TITLE"] for i in json.load(sys.stdin)) else 1)
' <<< "$issues"; then
  echo "$title: already opened"
  exit 0
fi
earlier=$("${PYTHON:-python3}" -c '
import json, sys
numbers = sorted(i["number"] for i in json.load(sys.stdin) if i["state"].lower() == "open")
print(", ".join(f"#{number}" for number in numbers))
' <<< "$issues")

body=$(mktemp)
trap 'rm -f "$body"' EXIT
{
  echo "This month's rotation of each cloud stack's keys (dev, staging, production),"
  echo "as docs/deploying.md, \"Rotating keys\", describes. Close this issue when done."
  echo "Secrets change in each stack's GitHub environment, then a deploy: CI sets them"
  echo "from there, so a value set only with \`pulumi config set\` is undone by the next deploy."
  echo
  echo "- [ ] JWT signing key: the current key into \`JWT_PREVIOUS_KEYS\` under its \`kid\`, a new \`JWT_SECRET_KEY\`, the new \`jwtKeyId\` committed, deploy"
  echo "- [ ] ElastiCache auth token: \`ROTATE\`, \`pulumi up\`, then \`SET\` once every rollout is complete"
  echo "- [ ] Anthropic and CRM (GoHighLevel) API keys: a new key from the provider into \`ANTHROPIC_API_KEY\` / \`GHL_API_KEY\`, deploy, then revoke the old one"
  echo "- [ ] The generated database passwords: \`pulumi up --replace\` of their RandomPassword"
  echo "- [ ] Retired JWT keys older than the longest token lifetime removed from \`JWT_PREVIOUS_KEYS\`"
  if [ -n "$earlier" ]; then
    echo
    echo "Still open from earlier months: $earlier."
  fi
  echo
  echo "Opened by $run_url."
} > "$body"
gh issue create --repo "$repo" --title "$title" --label key-rotation --body-file "$body"
