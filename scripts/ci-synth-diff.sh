#!/usr/bin/env bash
# CI (pull requests): synthesize STACK at the base commit and at HEAD, offline,
# then diff the two (infra.deploy.diff) and run the policy pack over HEAD.
#   scripts/ci-synth-diff.sh STACK BASE_SHA OUT_DIR
# Writes OUT_DIR/{base,head}/resources.json, OUT_DIR/comment.md, OUT_DIR/plan.json
# and OUT_DIR/policies.txt. Exits non-zero when HEAD does not synthesize or a
# mandatory policy fails.
set -euo pipefail
stack=${1:?usage: ci-synth-diff.sh STACK BASE_SHA OUT_DIR}
base=${2:?usage: ci-synth-diff.sh STACK BASE_SHA OUT_DIR}
out=${3:?usage: ci-synth-diff.sh STACK BASE_SHA OUT_DIR}
root=$(pwd)
py="$root/.venv/bin/python"
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)

tree=$(mktemp -d)
git worktree add --detach --quiet "$tree/base" "$base"
trap 'git worktree remove --force "$tree/base"; rm -rf "$tree"' EXIT
# The base's own code and stack config; a stack the base does not have yet is
# diffed against an empty one.
if ! (cd "$tree/base" && "$py" -m infra.synth --stack "$stack" --out "$out/base"); then
  echo "::notice::the base commit does not synthesize stack $stack; diffing against an empty stack"
  mkdir -p "$out/base"
  printf '{"schemaVersion": 1, "stack": "%s", "resources": []}\n' "$stack" > "$out/base/resources.json"
fi
"$py" -m infra.synth --stack "$stack" --out "$out/head"
"$py" -m infra.deploy.diff --base "$out/base" --head "$out/head" \
  --markdown "$out/comment.md" --json "$out/plan.json"
status=0
"$py" -m policies --resources "$out/head" --stack "$stack" > "$out/policies.txt" || status=$?
cat "$out/policies.txt"
{
  echo
  echo "<details><summary>Policy pack (offline)</summary>"
  echo
  echo '```'
  tail -c 20000 "$out/policies.txt"
  echo '```'
  echo
  echo "</details>"
} >> "$out/comment.md"
exit "$status"
