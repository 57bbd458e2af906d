#!/usr/bin/env bash
# CI (drift.yml): does STACK's state still match what runs in its cloud?
#   scripts/ci-drift.sh STACK OUT_DIR
# `pulumi refresh --preview-only` reads every resource from its provider and
# compares it with the state, writing nothing; `--expect-no-changes` makes a
# difference an error whose text tells drift apart from a check that could not
# run (credentials, a stack locked by a running update, missing config). The
# CLI has worded it "no changes were expected but changes occurred" and, since
# its NoChangesExpectedError, "... but changes were proposed", optionally with
# "for refresh": all are drift.
# Writes OUT_DIR/status (none | drift | error), OUT_DIR/summary.md and
# OUT_DIR/refresh.txt. Exit 0 no drift, 1 drift, 2 the check failed.
set -euo pipefail
stack=${1:?usage: ci-drift.sh STACK OUT_DIR}
out=${2:?usage: ci-drift.sh STACK OUT_DIR}
mkdir -p "$out"

code=0
pulumi refresh --preview-only --expect-no-changes --diff --suppress-outputs \
  --non-interactive --color never --stack "$stack" > "$out/refresh.txt" 2>&1 || code=$?

if [ "$code" -eq 0 ]; then
  status=none heading="no drift"
elif grep -Eq "no changes were expected( for [a-z]+)? but changes (occurred|were proposed)" \
  "$out/refresh.txt"; then
  status=drift heading="DRIFT: resources changed outside Pulumi"
else
  status=error heading="the drift check failed (exit $code); drift unknown"
fi
echo "$status" > "$out/status"
{
  echo "### $stack: $heading"
  echo
  echo '```'
  tail -c 60000 "$out/refresh.txt"
  echo '```'
} > "$out/summary.md"
cat "$out/refresh.txt"
case "$status" in
  none) exit 0 ;;
  drift) exit 1 ;;
  *) exit 2 ;;
esac
