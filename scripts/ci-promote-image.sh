#!/usr/bin/env bash
# CI (production deploy): promote the image staging was deployed with into
# another stack's ECR repository, byte for byte, instead of building it again.
#   scripts/ci-promote-image.sh SOURCE_IMAGE DEST_REPOSITORY TAG
# SOURCE_IMAGE is REPOSITORY@sha256:DIGEST. `imagetools create` with a single
# source and --prefer-index=false is a carbon copy (same manifest, same
# digest); the copy is read back and its digest checked, so production runs
# exactly what staging ran. A tag that already exists (a re-run) must hold
# that same digest. Prints DEST_REPOSITORY@sha256:DIGEST.
set -euo pipefail
source=${1:?usage: ci-promote-image.sh SOURCE_IMAGE DEST_REPOSITORY TAG}
dest=${2:?usage: ci-promote-image.sh SOURCE_IMAGE DEST_REPOSITORY TAG}
tag=${3:?usage: ci-promote-image.sh SOURCE_IMAGE DEST_REPOSITORY TAG}
here=$(dirname "$0")

if [[ ! "$source" =~ ^[^@[:space:]]+@sha256:[0-9a-f]{64}$ ]]; then
  echo "the image to promote must be pinned by digest (REPOSITORY@sha256:...), got: $source" >&2
  exit 2
fi
digest=${source##*@}

copied=$(bash "$here/ci-pushed-image.sh" "$dest" "$tag")
if [ -z "$copied" ]; then
  docker buildx imagetools create --prefer-index=false --tag "$dest:$tag" "$source" >&2
  copied=$(bash "$here/ci-pushed-image.sh" "$dest" "$tag")
fi
if [ "$copied" != "$dest@$digest" ]; then
  echo "$dest:$tag is ${copied:-missing}, not the promoted $digest; refusing to deploy it" >&2
  exit 1
fi
echo "$copied"
