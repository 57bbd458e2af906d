"""What counts as a successful churn intervention: one we delivered whose lead answered.

The seed's success rate is ``sum(churn_interventions_successful) /
sum(churn_interventions_total)`` with a 65% target (``SUCCESS_RATE_TARGET``),
and it defines neither counter. Here the rate is successes over *delivered*
interventions, not over every intervention staged. That is this project's
choice, not the seed's words, made because an intervention can end without
reaching its lead by design: cancelled because the lead re-engaged on its own
before the send, suppressed by the contact rules, not sent because the lead
churned first. Counted as failures, those would make the rate measure
detection timing and contact rules rather than whether an intervention that
reached a lead worked. Failures to deliver (dead letters) are not hidden: the
dashboard charts the delivery rate beside the success rate, and
``/health/churn`` gives ``interventions_24h`` beside ``delivered_24h``. The
price of the choice: this rate is at least the successes-over-all-interventions
rate, so it meets the 65% target no later than that one would.

The CRM may report an outcome for any intervention (routes/outcomes.py stores
it: a lead that churned before we reached it still matters for churn
reduction), but only a delivered intervention can have succeeded: an outcome
of one that was pending, not sent, suppressed, cancelled or dead-lettered is
the lead's own doing, not the intervention's.

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

#: The seed's "65% intervention success" (Success Metrics, Business Impact), against
#: the success rate over delivered interventions (see above).
SUCCESS_RATE_TARGET: Final = 0.65
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
