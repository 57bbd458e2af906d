#!/usr/bin/env bash
# Synthesize a stack offline and check its Kubernetes manifests.
#
#   scripts/check-manifests.sh STACK [OUT_DIR]      (OUT_DIR defaults to build/synth/STACK)
#
# 1. python -m infra.synth writes OUT_DIR/resources.json and OUT_DIR/manifests/.
# 2. kubernetes-validate checks every manifest strictly against the OpenAPI
#    schema of the stack's kubernetesVersion. Kinds without a bundled schema
#    (custom resources such as cert-manager's) are skipped with a WARN line.
# 3. For production (or CHECKOV=1), checkov's Kubernetes checks run with the
#    skips listed, each with its reason, in .checkov.yaml.
set -euo pipefail

stack="${1:?usage: $0 STACK [OUT_DIR]}"
cd "$(dirname "$0")/.."
out="${2:-build/synth/$stack}"

.venv/bin/python -m infra.synth --stack "$stack" --out "$out"

version="$(.venv/bin/python -c '
import json, sys
config = json.load(open(sys.argv[1]))["config"]
print(config["enterprisehub:kubernetesVersion"])
' "$out/resources.json")"

shopt -s nullglob
manifests=("$out"/manifests/*.yaml)
if [ "${#manifests[@]}" -eq 0 ]; then
    echo "check-manifests: stack '$stack' produced no manifests" >&2
    exit 1
fi

echo "check-manifests: ${#manifests[@]} manifests against Kubernetes $version (strict)"
.venv/bin/kubernetes-validate -k "$version" --strict --quiet "${manifests[@]}"

if [ "$stack" = production ] || [ "${CHECKOV:-0}" = 1 ]; then
    ./scripts/install-checkov.sh
    echo "check-manifests: checkov (skips and their reasons: .checkov.yaml)"
    CKV_SKIP_PACKAGE_UPDATE_CHECK=true .venv-checkov/bin/checkov \
        --config-file .checkov.yaml -d "$out/manifests"
fi
echo "check-manifests: stack '$stack' OK"
