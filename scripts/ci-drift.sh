#!/usr/bin/env bash
# CI (drift.yml): does STACK's state still match what runs in its cloud?
#   scripts/ci-drift.sh STACK OUT_DIR
# `pulumi refresh --preview-only` reads every resource from its provider and
# compares it with the state, writing nothing; `--expect-no-changes` makes a
# difference an error whose text tells drift apart from a check that could not
# run (credentials, missing config, an update that overlapped it). The
# CLI has worded it "no changes were expected but changes occurred" and, since
# its NoChangesExpectedError, "... but changes were proposed", optionally with
# "for refresh": all are drift.
# A refresh preview takes no stack lock (pulumi/pulumi#8642 for previews,
# #22385 for `refresh --preview-only`), so a check that overlaps a deploy
# compares the cloud with a state the deploy is still writing, and reports the
# deploy's own changes as drift. The newest update is read before and after the
# check: when it differs, or is still running, the result is "could not run".
# Writes OUT_DIR/status (none | drift | error), OUT_DIR/summary.md and
# OUT_DIR/refresh.txt. Exit 0 no drift, 1 drift, 2 the check failed.
set -euo pipefail
stack=${1:?usage: ci-drift.sh STACK OUT_DIR}
out=${2:?usage: ci-drift.sh STACK OUT_DIR}
mkdir -p "$out"

#   newest_update: "<version> <result>" of the stack's newest update ("none" without one).
newest_update() {
  pulumi stack history --json --stack "$stack" --page-size 1 --page 1 |
    "${PYTHON:-python3}" -c '
import json, sys
updates = sorted(json.load(sys.stdin), key=lambda u: u.get("version") or 0, reverse=True)
print(" ".join(str(updates[0].get(k)) for k in ("version", "result")) if updates else "none")
'
}

before=$(newest_update)
code=0
pulumi refresh --preview-only --expect-no-changes --diff --suppress-outputs \
  --non-interactive --color never --stack "$stack" > "$out/refresh.txt" 2>&1 || code=$?
after=$(newest_update)

if [ "$before" != "$after" ] || [ "${after#* }" = "in-progress" ]; then
  status=error heading="an update ran during the check ($before, then $after); drift unknown, run it again"
elif [ "$code" -eq 0 ]; then
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
