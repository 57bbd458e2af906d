"""What counts as a successful churn intervention: one we delivered whose lead answered.

The seed's success rate is "responded or re-engaged, over delivered". The CRM
may report an outcome for any intervention (routes/outcomes.py stores it: a
lead that churned before we reached it still matters for churn reduction),
but only a delivered intervention can have succeeded: an outcome of one that
was pending, not sent, suppressed, cancelled or dead-lettered is the lead's
own doing, not the intervention's. Every success count reads this module:
``/health/churn`` (runtime.py), the impact aggregate's ``success_count``
(services/impact/aggregate.py) and ``churn_intervention_successes_total``, the
counter the dashboards' success rate reads (counted by routes/outcomes.py and
routes/signals.py when `becomes_success`).
"""

from __future__ import annotations

from typing import Final

#: The one status in which an intervention reached its lead.
DELIVERED: Final = "delivered"
#: The outcomes that make a delivered intervention a success.
SUCCESS_OUTCOMES: Final = frozenset({"responded", "re_engaged"})
#: A success, over a ``churn_interventions`` row (a ``FILTER``/``WHERE`` clause).
SUCCEEDED_SQL: Final = "status = 'delivered' AND outcome IN ('responded', 're_engaged')"


def becomes_success(previous: str | None, outcome: str) -> bool:
    """Whether a delivered intervention's outcome going ``previous -> outcome``
    makes it a success now (responded then re-engaged is one success, not two)."""
    return outcome in SUCCESS_OUTCOMES and previous not in SUCCESS_OUTCOMES
