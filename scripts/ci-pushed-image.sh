#!/usr/bin/env bash
# CI (deploy jobs): the image a repository already holds under TAG, as
# REPOSITORY@sha256:DIGEST, or nothing when the tag does not exist.
#   scripts/ci-pushed-image.sh REPOSITORY TAG
# The stacks' ECR repositories have immutable tags and CI tags each image with
# its commit: re-running a deploy job (after `pulumi up` failed, say) must
# deploy the image that commit already pushed, because pushing a rebuild
# under the same tag is refused (ImageTagAlreadyExistsException).
set -euo pipefail
repository=${1:?usage: ci-pushed-image.sh REPOSITORY TAG}
tag=${2:?usage: ci-pushed-image.sh REPOSITORY TAG}

if ! inspected=$(docker buildx imagetools inspect "$repository:$tag" 2>&1); then
  case "$inspected" in
    *"not found"* | *"MANIFEST_UNKNOWN"* | *"manifest unknown"*) exit 0 ;;
    *) echo "$inspected" >&2; exit 1 ;;
  esac
fi
digest=$(awk '$1 == "Digest:" { print $2; exit }' <<< "$inspected")
if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "cannot read the digest of $repository:$tag from: $inspected" >&2
  exit 1
fi
echo "$repository@$digest"
