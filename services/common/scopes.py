"""The scopes a token may carry, and what each lets its holder do.

A scope per capability, so that a token leaked from one place cannot be used
for another: an agent's feed token cannot post CRM events, spend Claude money
on photo or call analyses, or open the tenant's dashboards. This module has no
dependencies, so the command line can list the scopes without importing any
service (``enterprisehub token --scope``). Each scope's longest lifetime is the
setting ``JWT_MAX_TTL_<SCOPE>`` (:func:`ttl_setting`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

FEED_READ: Final = "feed:read"
"""An agent's live lead feed (``WS /v1/feed``)."""
CRM_INGEST: Final = "crm:ingest"
"""The CRM integration: lead event webhooks, churn leads, signals and outcomes."""
LEADS_SCORE: Final = "leads:score"
"""The lead scoring API."""
VISION_ANALYZE: Final = "vision:analyze"
"""Property photo analyses: create (billed Claude calls) and read."""
COACHING_ANALYZE: Final = "coaching:analyze"
"""Coaching of agents' conversations: create (billed Claude calls) and read every agent's."""
DASHBOARDS_VIEW: Final = "dashboards:view"
"""Signing in to the tenant's dashboards (the lead hub also needs ``feed:read``)."""
OPERATOR: Final = "operator"
"""Operator APIs: interventions, dead letters, administration."""

#: Every scope, with the one line ``enterprisehub token --help`` shows for it.
SCOPE_DESCRIPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        FEED_READ: "an agent's live feed",
        CRM_INGEST: "the CRM integration's webhooks and churn input",
        LEADS_SCORE: "the scoring API",
        VISION_ANALYZE: "property photo analyses",
        COACHING_ANALYZE: "coaching analyses of agents' conversations",
        DASHBOARDS_VIEW: "the tenant's dashboards",
        OPERATOR: "operator APIs",
    }
)
SCOPES: Final[tuple[str, ...]] = tuple(SCOPE_DESCRIPTIONS)
"""Every scope a token may carry."""


def ttl_setting(scope: str) -> str:
    """The settings field that caps ``scope``'s token lifetime (``jwt_max_ttl_feed_read``)."""
    return "jwt_max_ttl_" + scope.replace(":", "_")
