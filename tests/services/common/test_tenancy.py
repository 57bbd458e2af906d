"""Tenant ids and tenant-namespaced Redis keys."""

from __future__ import annotations

import importlib
import inspect

import pytest
from pydantic import BaseModel

from services.common.identifiers import IdentifierFormat
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


@pytest.mark.parametrize(
    "module",
    [
        "services.realtime.schemas",
        "services.ml.schemas",
        "services.coaching.schemas",
        "services.churn.schemas",
    ],
)
def test_ids_are_checked_by_the_one_identifier_format(module: str) -> None:
    """A ``pattern=`` of a field's own is a second way to check an id: as
    ``^...$`` it lets "id\\n" through wherever the pattern runs on Python's re
    (pydantic falls back to it), and as ``\\A...\\z`` it is published where a
    client's validator (ECMA-262) cannot read it. Ids are
    ``Annotated[str, IdentifierFormat(n)]`` (``services.common.identifiers``)."""
    models = [
        obj
        for _, obj in inspect.getmembers(importlib.import_module(module), inspect.isclass)
        if issubclass(obj, BaseModel) and obj.__module__ == module
    ]
    assert models, module
    own_patterns = [
        f"{model.__name__}.{name}: {meta.pattern}"
        for model in models
        for name, field in model.model_fields.items()
        for meta in field.metadata
        if isinstance(getattr(meta, "pattern", None), str)
        and not isinstance(meta, IdentifierFormat)
    ]
    assert own_patterns == []
