"""Tenant identifiers: one rule shared by Postgres, Redis and the JWT layer.

A tenant id ends up inside Redis keys (``tenant:{id}:...``) and patterns, so it
must not carry the key separator ``:`` or glob characters (``* ? [ ]``) that
would let one tenant's key or SCAN pattern reach another's.
"""

from __future__ import annotations

import re

# Always used with fullmatch: "$" (and so ".match") would accept a trailing newline.
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TENANT_ID_RULE = "1-64 characters from A-Z a-z 0-9 _ . - starting with a letter or digit"


class InvalidTenantId(ValueError):  # noqa: N818 - reads as the condition it names
    """A tenant id does not satisfy ``TENANT_ID_RULE``."""


def validate_tenant_id(tenant_id: str) -> str:
    """Return ``tenant_id`` unchanged if valid, else raise ``InvalidTenantId``."""
    if not isinstance(tenant_id, str) or not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise InvalidTenantId(f"tenant id {tenant_id!r} is invalid: expected {TENANT_ID_RULE}")
    return tenant_id
