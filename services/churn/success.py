"""What counts as a successful churn intervention: one we delivered whose lead answered.

The seed's success rate is "responded or re-engaged, over delivered". The CRM
may report an outcome for any intervention (routes/outcomes.py stores it: a
lead that churned before we reached it still matters for churn reduction),
but only a delivered intervention can have succeeded: an outcome of one that
was pending, not sent, suppressed, cancelled or dead-lettered is the lead's
own doing, not the intervention's.

A success happens once: the statement that writes ``responded`` or
``re_engaged`` on a delivered intervention sets its ``succeeded_at``
(:data:`SUCCEEDED_AT_AFTER`), which is never set again nor cleared (a lead
that responds, is reported churned and responds again succeeded once; one
that answered before the intervention reached it did not succeed by it).
Every success count reads that column: ``/health/churn`` (runtime.py), the
impact aggregate's ``success_count`` (services/impact/aggregate.py) and
``churn_intervention_successes_total``, counted by routes/outcomes.py and
routes/signals.py for each statement that set it (:data:`BECAME_SUCCESS`).
"""

from __future__ import annotations

from typing import Final

#: The one status in which an intervention reached its lead.
DELIVERED: Final = "delivered"
#: A success, over a ``churn_interventions`` row (a ``FILTER``/``WHERE`` clause).
SUCCEEDED_SQL: Final = "succeeded_at IS NOT NULL"
#: ``succeeded_at`` after an UPDATE of ``churn_interventions i`` writes the outcome
#: ``$2`` at ``$3``: set at the first success-making outcome of a delivered row.
SUCCEEDED_AT_AFTER: Final = (
    "CASE WHEN i.succeeded_at IS NULL AND i.status = 'delivered' "
    "AND $2 IN ('responded', 're_engaged') THEN $3 ELSE i.succeeded_at END"
)
#: In that UPDATE's RETURNING, with the row as it was in ``previous``: whether
#: this statement made the intervention a success.
BECAME_SUCCESS: Final = (
    "(previous.succeeded_at IS NULL AND i.succeeded_at IS NOT NULL) AS became_success"
)
