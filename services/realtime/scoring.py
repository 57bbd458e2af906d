"""What the ingest needs from the lead-scoring model.

The ingest scores in-process (an HTTP hop to ml-services would cost more
than the whole delivery budget) and in groups: the model answers one lead or
a batch of 32 in about the same time, so the events of a tenant that arrive
in the same loop turn are scored with one call (see `ingest`). Tenants stay
separate because the score cache is keyed by tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Scorer(Protocol):
    """What the ingest needs from `services.common.scoring.LeadScorer`."""

    @property
    def version(self) -> str:
        """The model artifact's version, stored with every score."""
        ...

    def score_rows(
        self, rows: Sequence[tuple[float, ...]], *, tenant_id: str | None = None
    ) -> list[float]:
        """Conversion probabilities of encoded rows, in input order."""
        ...
