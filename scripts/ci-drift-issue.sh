#!/usr/bin/env bash
# CI (drift.yml, report job): one open issue per stack whose drift check found
# drift or could not run, labelled `drift`, commented on by every later run
# that still finds it and closed by the first run that finds none. A failed
# scheduled run notifies only whoever last edited the cron line; an issue is
# where the operators already look.
#   scripts/ci-drift-issue.sh RESULTS_DIR RUN_URL
# RESULTS_DIR holds one drift-<stack>/ directory per stack (ci-drift.sh's
# OUT_DIR, downloaded as artifacts). Needs `gh` with GH_TOKEN (issues: write)
# and GITHUB_REPOSITORY.
set -euo pipefail
results=${1:?usage: ci-drift-issue.sh RESULTS_DIR RUN_URL}
run_url=${2:?usage: ci-drift-issue.sh RESULTS_DIR RUN_URL}
repo=${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is not set}

gh label create drift --repo "$repo" --force --color B60205 \
  --description "the drift workflow found a stack that differs from its state"

open_issue() {
  # The number of the open `drift` issue titled exactly $1, or nothing.
  gh issue list --repo "$repo" --label drift --state open --limit 100 --json number,title |
    TITLE=$1 "${PYTHON:-python3}" -c '
import json, os, sys
for issue in json.load(sys.stdin):
    if issue["title"] == os.environ["TITLE"]:
        print(issue["number"])
        break
'
}

body=$(mktemp)
trap 'rm -f "$body"' EXIT
for dir in "$results"/drift-*/; do
  [ -f "$dir/status" ] || continue
  stack=$(basename "$dir")
  stack=${stack#drift-}
  status=$(cat "$dir/status")
  title="Drift check: $stack"
  number=$(open_issue "$title")
  case "$status" in
    none)
      if [ -n "$number" ]; then
        gh issue close "$number" --repo "$repo" --comment "No drift in $stack any more: $run_url"
        echo "$stack: no drift; closed #$number"
      else
        echo "$stack: no drift"
      fi
      ;;
    drift | error)
      if [ "$status" = drift ]; then
        echo "Resources of stack \`$stack\` differ from its Pulumi state (changed outside Pulumi)." > "$body"
      else
        echo "The drift check of stack \`$stack\` could not run, so drift is unknown." > "$body"
      fi
      {
        echo
        echo "Run: $run_url (the refresh preview is in its summary)."
        echo "What to do: docs/deploying.md, \"Drift\"."
      } >> "$body"
      if [ -n "$number" ]; then
        gh issue comment "$number" --repo "$repo" --body-file "$body"
        echo "$stack: $status; commented on #$number"
      else
        gh issue create --repo "$repo" --title "$title" --label drift --body-file "$body"
        echo "$stack: $status; opened an issue"
      fi
      ;;
    *)
      echo "$stack: unknown status '$status'" >&2
      exit 2
      ;;
  esac
done
