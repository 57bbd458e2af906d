"""Lead events that are stage changes the business counts: new leads and conversions.

A CRM webhook's ``event_type`` is free-form (docs/contracts.md); two values are
part of the contract because the conversion rate is read from them:
``lead.created`` (a new lead entered the CRM) and ``lead.converted`` (the lead
became a client: the CRM's won or closed stage, which the integration maps to
this type). ``realtime_lead_stage_changes_total{stage}`` counts each stored
event of these types once (an idempotent retry stores nothing and counts
nothing); ``converted / created`` over the same window is the conversion rate
that the seed's business-impact trigger ``conversion_rate_drop`` watches
(alerts/rules/business.yml).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

CREATED: Final = "created"
CONVERTED: Final = "converted"
STAGES: Final[tuple[str, ...]] = (CREATED, CONVERTED)

#: The event types that are counted stage changes, and their ``stage`` label.
STAGE_BY_EVENT_TYPE: Final[Mapping[str, str]] = MappingProxyType(
    {"lead.created": CREATED, "lead.converted": CONVERTED}
)
