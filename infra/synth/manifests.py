"""Kubernetes manifests from recorded resources: the objects the provider would send.

For each `kubernetes:<group>/<version>:<Kind>` resource the manifest is its
inputs (already in Kubernetes casing on the wire: the SDK maps `match_labels`
to `matchLabels`) with what the provider adds before sending: the generated
`metadata.name` and its `pulumi.com/autonamed` annotation. Whole-number floats
become ints again, and secret values are masked (a Secret's `data` with the
base64 of the mask, so the object stays valid).

Not written: Helm releases (the provider hands a chart to Helm, not an object
to the API server; their chart and values are in resources.json) and the
provider resources themselves.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from infra.synth.mock_values import CLUSTER_SCOPED_KINDS
from infra.synth.mocks import SECRET_MASK, RecordedResource, mask_secrets, normalize_numbers

CLUSTER_SCOPE = "cluster"
DEFAULT_NAMESPACE = "default"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SECRET_DATA_MASK = base64.b64encode(SECRET_MASK.encode()).decode()
_HEAD = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class Manifest:
    """One object and the file it goes to."""

    urn: str
    kind: str
    namespace: str | None
    name: str
    body: dict[str, Any]

    @property
    def filename(self) -> str:
        """`<namespace>-<kind>-<name>.yaml`; `cluster-` for cluster-scoped kinds."""
        scope = CLUSTER_SCOPE if self.kind in CLUSTER_SCOPED_KINDS else self.namespace
        parts = (scope or DEFAULT_NAMESPACE, self.kind.lower(), self.name)
        return "-".join(re.sub(r"[^A-Za-z0-9.-]", "_", p) for p in parts) + ".yaml"


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def manifest_for(resource: RecordedResource, *, server_side_apply: bool = True) -> Manifest:
    """The object the Kubernetes provider would send for this resource.

    With client-side apply (a provider with `enableServerSideApply: false`) the
    provider also labels what it creates `app.kubernetes.io/managed-by: pulumi`;
    with server-side apply, the default since provider v4, field managers record
    that instead and no label is added.
    """
    body: dict[str, Any] = normalize_numbers(mask_secrets(resource.raw_inputs))
    kind = str(body.get("kind", resource.type.rsplit(":", 1)[1]))
    metadata = dict(body.get("metadata") or {})
    sent = resource.raw_outputs.get("metadata")
    if isinstance(sent, dict):
        # The provider's auto-name and its annotation (see infra.synth.mock_values).
        metadata["name"] = sent.get("name", metadata.get("name"))
        if "annotations" in sent:
            metadata["annotations"] = mask_secrets(sent["annotations"])
    if not server_side_apply:
        metadata["labels"] = {**(metadata.get("labels") or {}), MANAGED_BY_LABEL: "pulumi"}
    body["metadata"] = metadata
    if kind == "Secret" and isinstance(body.get("data"), dict):
        body["data"] = {
            k: SECRET_DATA_MASK if v == SECRET_MASK else v for k, v in body["data"].items()
        }
    ordered = {k: _sorted(body[k]) for k in _HEAD if k in body}
    ordered.update({k: _sorted(body[k]) for k in sorted(body) if k not in _HEAD})
    namespace = metadata.get("namespace")
    return Manifest(
        urn=resource.urn,
        kind=kind,
        namespace=str(namespace) if namespace else None,
        name=str(metadata.get("name", resource.name)),
        body=ordered,
    )


def _uses_server_side_apply(provider: RecordedResource | None) -> bool:
    if provider is None:
        return True
    setting = provider.inputs.get("enableServerSideApply", True)
    return str(setting).lower() != "false"


def manifests_for(resources: Iterable[RecordedResource]) -> list[Manifest]:
    """Manifests of every Kubernetes object; an error if two would share a file."""
    resources = list(resources)
    providers = {r.urn: r for r in resources if r.type == "pulumi:providers:kubernetes"}
    manifests = sorted(
        (
            manifest_for(
                r,
                server_side_apply=_uses_server_side_apply(providers.get(r.provider or "")),
            )
            for r in resources
            if r.is_kubernetes_object
        ),
        key=lambda m: m.filename,
    )
    seen: dict[str, str] = {}
    for manifest in manifests:
        if manifest.filename in seen:
            first = seen[manifest.filename]
            raise ValueError(f"two objects map to {manifest.filename}: {first} and {manifest.urn}")
        seen[manifest.filename] = manifest.urn
    return manifests


#: libyaml's emitter when PyYAML has it: the same text as yaml.safe_dump, about 5x faster.
_YAML_DUMPER: Final = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
#: No line is folded: the two emitters fold long quoted strings (PromQL in the
#: PrometheusRules) at different places, and an unfolded expression reads better.
YAML_WIDTH: Final = 1_000_000


def write_manifests(manifests: Iterable[Manifest], directory: Path) -> list[Path]:
    """Write one YAML document per file; stale `*.yaml` from an earlier run are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.yaml"):
        stale.unlink()
    written = []
    for manifest in manifests:
        path = directory / manifest.filename
        path.write_text(
            yaml.dump(
                manifest.body,
                Dumper=_YAML_DUMPER,
                sort_keys=False,
                default_flow_style=False,
                width=YAML_WIDTH,
            )
        )
        written.append(path)
    return written
