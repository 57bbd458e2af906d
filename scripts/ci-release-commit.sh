#!/usr/bin/env bash
# CI (release deploys): a tag deploys staging and production only when the
# commit it points at is on main, i.e. went through review and `make test`.
# Anyone who may push a tag could otherwise release a commit from any branch.
#   scripts/ci-release-commit.sh COMMIT [MAIN_REF]
# Needs the history of MAIN_REF (default origin/main): check out with fetch-depth 0.
set -euo pipefail
commit=${1:?usage: ci-release-commit.sh COMMIT [MAIN_REF]}
main=${2:-origin/main}

if ! git rev-parse --verify --quiet "$main^{commit}" >/dev/null; then
  echo "cannot see $main: check out with fetch-depth: 0" >&2
  exit 2
fi
if ! git merge-base --is-ancestor "$commit" "$main"; then
  echo "refusing to release $commit: it is not on $main (merge it through a pull request first)" >&2
  exit 1
fi
echo "release commit $commit is on $main"
