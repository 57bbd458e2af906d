"""Tenant ids and tenant-namespaced Redis keys."""

from __future__ import annotations

import pytest

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
