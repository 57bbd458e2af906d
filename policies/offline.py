"""Run the pack's validators over a synthesis, as the engine does during preview.

Each resource of `resources.json` becomes the `ResourceValidationArgs` the
analyzer would build: its inputs wrapped in `unknown_checking_proxy` (reading
a value that is unknown in preview raises `UnknownValueError`; the policy is
then reported as unable to run, advisory, exactly as the engine does), its
options, its explicit provider with that provider's inputs, and the policy's
config. Stack policies get every resource at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy


@dataclass(frozen=True, order=True)
class Finding:
    """One violation, or a policy that could not run because a value is unknown."""

    level: str
    policy: str
    urn: str
    message: str

    def render(self) -> str:
        """One line for the terminal and the CI log."""
        return f"[{self.level}] {self.policy}: {self.message}"


def _options(entry: Mapping[str, Any]) -> PolicyResourceOptions:
    options = entry.get("options", {})
    return PolicyResourceOptions(
        protect=bool(options.get("protect", False)),
        ignore_changes=list(options.get("ignoreChanges", [])),
        delete_before_replace=options.get("deleteBeforeReplace"),
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(options.get("additionalSecretOutputs", [])),
        parent=entry.get("parent"),
    )


def _level(policy: Policy, config: Mapping[str, Any]) -> str:
    own = config.get(policy.name)
    if isinstance(own, str):
        return own
    if isinstance(own, Mapping) and "enforcementLevel" in own:
        return str(own["enforcementLevel"])
    if "all" in config:
        return str(config["all"])
    return policy.enforcement_level.value if policy.enforcement_level else "advisory"


def _policy_config(policy: Policy, config: Mapping[str, Any]) -> dict[str, Any]:
    own = config.get(policy.name)
    values = (
        {k: v for k, v in own.items() if k != "enforcementLevel"}
        if isinstance(own, Mapping)
        else {}
    )
    schema = policy.config_schema
    if schema is not None:
        for key, spec in schema.properties.items():
            if key not in values and "default" in spec:
                values[key] = spec["default"]
    return values


def evaluate(
    document: Mapping[str, Any], policies: Sequence[Policy], config: Mapping[str, Any]
) -> list[Finding]:
    """Every finding of `policies` over a resources.json document, sorted."""
    entries = list(document.get("resources", []))
    by_urn = {e["urn"]: e for e in entries}
    findings: list[Finding] = []

    def provider_of(entry: Mapping[str, Any]) -> PolicyProviderResource | None:
        provider = by_urn.get(entry.get("provider") or "")
        if provider is None:
            return None
        return PolicyProviderResource(
            provider["type"],
            unknown_checking_proxy(provider.get("inputs", {})),
            provider["urn"],
            provider["name"],
        )

    for policy in policies:
        level = _level(policy, config)
        if level == "disabled":
            continue
        if level == "remediate":
            level = "mandatory"
        settings = _policy_config(policy, config)

        def report(
            message: str,
            urn: str | None = None,
            *,
            _policy: Policy = policy,
            _level: str = level,
            _default: str = "",
        ) -> None:
            findings.append(Finding(_level, _policy.name, urn or _default, message))

        if isinstance(policy, ResourceValidationPolicy):
            for entry in entries:
                if not entry.get("custom", True):
                    continue
                args = ResourceValidationArgs(
                    entry["type"],
                    unknown_checking_proxy(entry.get("inputs", {})),
                    entry["urn"],
                    entry["name"],
                    _options(entry),
                    provider_of(entry),
                    settings,
                )

                def report_for(
                    message: str, urn: str | None = None, *, _urn: str = entry["urn"]
                ) -> None:
                    report(message, urn or _urn)

                try:
                    policy.validate(args, report_for)
                except UnknownValueError as exc:
                    findings.append(
                        Finding(
                            "advisory",
                            policy.name,
                            entry["urn"],
                            f"can't run during preview: {exc.message}",
                        )
                    )
        elif isinstance(policy, StackValidationPolicy):
            resources = [
                PolicyResource(
                    e["type"],
                    unknown_checking_proxy(e.get("inputs", {})),
                    e["urn"],
                    e["name"],
                    _options(e),
                    provider_of(e),
                    None,
                    [],
                    {},
                )
                for e in entries
                if e.get("custom", True)
            ]
            try:
                policy.validate(StackValidationArgs(resources, settings), report)
            except UnknownValueError as exc:
                findings.append(
                    Finding("advisory", policy.name, "", f"can't run during preview: {exc.message}")
                )
    return sorted(set(findings))


def load(path: Path) -> dict[str, Any]:
    """A resources.json, or the directory holding one."""
    if path.is_dir():
        path = path / "resources.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document
