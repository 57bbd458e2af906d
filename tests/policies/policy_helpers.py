"""Building resources.json entries and running one policy over them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from policies.offline import Finding, evaluate
from policies.pack import POLICIES

PROVIDER_URN = "urn:pulumi:t::enterprisehub::pulumi:providers:aws::aws"


def entry(
    resource_type: str, inputs: Mapping[str, Any], name: str = "r", *, provider: str | None = None
) -> dict[str, Any]:
    """A resources.json entry with the given inputs."""
    return {
        "urn": f"urn:pulumi:t::enterprisehub::{resource_type}::{name}",
        "type": resource_type,
        "name": name,
        "custom": True,
        "parent": "urn:pulumi:t::enterprisehub::pulumi:pulumi:Stack::enterprisehub-t",
        "provider": provider,
        "dependencies": [],
        "propertyDependencies": {},
        "inputs": dict(inputs),
        "options": {"protect": False, "ignoreChanges": [], "additionalSecretOutputs": []},
    }


def aws_provider(tags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An explicit AWS provider entry whose default tags are `tags` (JSON-encoded, as sent)."""
    inputs = {"region": "us-east-1"}
    if tags is not None:
        inputs["defaultTags"] = json.dumps({"tags": dict(tags)})
    provider = entry("pulumi:providers:aws", inputs, "aws")
    provider["urn"] = PROVIDER_URN
    return provider


def findings(
    policy_name: str, resources: Sequence[Mapping[str, Any]], environment: str = "production"
) -> list[Finding]:
    """What one policy reports over `resources`, enforced as mandatory in `environment`."""
    policies = [p for p in POLICIES if p.name == policy_name]
    assert policies, f"no policy {policy_name}"
    config = {"all": "mandatory", policy_name: {"environment": environment}}
    return evaluate({"resources": list(resources)}, policies, config)
