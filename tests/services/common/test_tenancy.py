"""Tenant ids and tenant-namespaced Redis keys."""

from __future__ import annotations

import importlib
import inspect

import pytest
from pydantic import BaseModel

from services.common.redis import tenant_key
from services.common.tenancy import InvalidTenantId, validate_tenant_id


def test_tenant_key_is_namespaced() -> None:
    assert tenant_key("acme-realty", "events") == "tenant:acme-realty:events"


def test_tenant_key_accepts_nested_parts() -> None:
    assert tenant_key("t1", "ws", "conn:42") == "tenant:t1:ws:conn:42"


@pytest.mark.parametrize("tenant_id", ["a:b", "a*", "a?", "[a]", "a b", "", "-a", "x" * 65])
def test_tenant_ids_that_could_escape_their_namespace_are_rejected(tenant_id: str) -> None:
    with pytest.raises(InvalidTenantId):
        tenant_key(tenant_id, "events")


def test_glob_characters_in_key_parts_are_rejected() -> None:
    with pytest.raises(ValueError, match="glob"):
        tenant_key("t1", "events*")


def test_uuid_tenant_ids_are_valid() -> None:
    tenant = "0b3f5c2e-8a1d-4c6b-9e2f-7d4a1b3c5e6f"
    assert validate_tenant_id(tenant) == tenant


def _schema_patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for value in node.values() for p in _schema_patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _schema_patterns(value)]
    return []


@pytest.mark.parametrize(
    "module",
    ["services.realtime.schemas", "services.ml.schemas", "services.coaching.schemas"],
)
def test_every_request_pattern_is_anchored_at_the_very_ends(module: str) -> None:
    # `^...$` lets "id\n" through wherever the pattern runs on Python's re (and
    # reads as if it did); `\A...\z` means the whole string in pydantic-core's
    # Rust engine, the only way a schema pattern can be a full match.
    models = [
        obj
        for _, obj in inspect.getmembers(importlib.import_module(module), inspect.isclass)
        if issubclass(obj, BaseModel) and obj.__module__ == module
    ]
    patterns = {p for model in models for p in _schema_patterns(model.model_json_schema())}
    assert patterns, module
    loose = sorted(p for p in patterns if not (p.startswith(r"\A") and p.endswith(r"\z")))
    assert loose == []
