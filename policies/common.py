"""What the policy modules share: environments, settings, reading properties.

Policies read everything through `args.props` (in preview, an
`unknown_checking_proxy`: reading a value that is not known yet raises
`UnknownValueError`, which the engine turns into an advisory "can't run during
preview" note). They never read the stack name: the environment and its
thresholds come from the policy config (`policies/config/<stack>.json`, built
by `policy_config`), so the same pack serves every stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

ENVIRONMENTS = ("local", "dev", "staging", "production")
#: Mandatory where a violation must stop the update; advisory where it should
#: only be seen (the issue: mandatory in staging and production).
ENFORCEMENT = {
    "local": "advisory",
    "dev": "advisory",
    "staging": "mandatory",
    "production": "mandatory",
}


@dataclass(frozen=True)
class EnvironmentRules:
    """The thresholds that differ per environment."""

    min_backup_days: int
    require_deletion_protection: bool
    require_multi_az: bool
    min_hpa_replicas: int
    database_classes: tuple[str, ...]
    cache_node_types: tuple[str, ...]
    node_instance_types: tuple[str, ...]


_SMALL_DB = ("db.t4g.micro", "db.t4g.small", "db.t4g.medium", "db.t4g.large")
_PROD_DB = ("db.r6g.large", "db.r6g.xlarge", "db.r6g.2xlarge", "db.r7g.large", "db.r7g.xlarge")
_SMALL_CACHE = ("cache.t4g.micro", "cache.t4g.small", "cache.t4g.medium")
_PROD_CACHE = ("cache.m7g.large", "cache.m7g.xlarge", "cache.r7g.large", "cache.r7g.xlarge")
_SMALL_NODES = ("m6i.large", "m6i.xlarge", "m5.large", "m5.xlarge", "m7i.large", "m7i.xlarge")
_PROD_NODES = (
    "m6i.xlarge",
    "m6i.2xlarge",
    "m6i.4xlarge",
    "m7i.xlarge",
    "m7i.2xlarge",
    "c6i.2xlarge",
)

RULES: Mapping[str, EnvironmentRules] = {
    "local": EnvironmentRules(7, False, False, 1, _SMALL_DB, _SMALL_CACHE, _SMALL_NODES),
    "dev": EnvironmentRules(7, False, False, 1, _SMALL_DB, _SMALL_CACHE, _SMALL_NODES),
    "staging": EnvironmentRules(
        7,
        False,
        False,
        1,
        _SMALL_DB + _PROD_DB,
        _SMALL_CACHE + _PROD_CACHE,
        _SMALL_NODES + _PROD_NODES,
    ),
    "production": EnvironmentRules(30, True, True, 2, _PROD_DB, _PROD_CACHE, _PROD_NODES),
}

ENVIRONMENT_SCHEMA = PolicyConfigSchema(
    properties={"environment": {"type": "string", "enum": list(ENVIRONMENTS), "default": "dev"}},
)


def environment(args: ResourceValidationArgs | StackValidationArgs) -> str:
    """The environment the policy config names (dev when none is given)."""
    value = args.get_config().get("environment", "dev")
    return value if value in RULES else "dev"


def rules(args: ResourceValidationArgs | StackValidationArgs) -> EnvironmentRules:
    """The thresholds for the configured environment."""
    return RULES[environment(args)]


def get(props: Any, path: str, default: Any = None) -> Any:
    """`props["a"]["b"]` for `path="a.b"`, `default` when any step is missing.

    Reading through the preview proxy raises `UnknownValueError` for an unknown
    value, on purpose: the engine reports that the policy could not run.
    """
    current = props
    for key in path.split("."):
        if isinstance(current, Mapping) and key in current:
            current = current[key]
        else:
            return default
    return current


def say(resource: str, prop: str, problem: str, fix: str) -> str:
    """The one message shape: which resource, which property, what is wrong, the fix."""
    return f"{resource}: `{prop}` {problem}. Fix: {fix}"


#: `report(message)` or `report(message, urn)`, as the engine's callback accepts.
Report = Callable[..., None]
Validator = Callable[[ResourceValidationArgs, Report], None]
StackValidator = Callable[[StackValidationArgs, Report], None]

#: policy name -> the resource types it looks at (read by the coverage check).
TARGETS: dict[str, frozenset[str]] = {}


def resource_policy(
    name: str, description: str, types: Iterable[str], validate: Validator
) -> ResourceValidationPolicy:
    """A resource policy that only runs on `types`; advisory unless config says mandatory."""
    wanted = frozenset(types)
    TARGETS[name] = wanted

    def only_targets(args: ResourceValidationArgs, report: Report) -> None:
        if args.resource_type in wanted:
            validate(args, report)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=only_targets,
        enforcement_level=EnforcementLevel.ADVISORY,
        config_schema=ENVIRONMENT_SCHEMA,
    )


def stack_policy(
    name: str, description: str, types: Iterable[str], validate: StackValidator
) -> StackValidationPolicy:
    """A stack policy (it relates several resources); advisory unless config says mandatory."""
    TARGETS[name] = frozenset(types)
    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.ADVISORY,
        config_schema=ENVIRONMENT_SCHEMA,
    )


def provider_default_tags(args: ResourceValidationArgs) -> dict[str, str]:
    """The AWS provider's `defaultTags.tags`, which the provider merges into every resource.

    Provider inputs reach the engine as strings for structured values (the
    provider schema's JSON encoding), so both forms are read.
    """
    provider = args.provider
    if provider is None:
        return {}
    value = get(provider.props, "defaultTags")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    tags = get(value, "tags", {})
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}
