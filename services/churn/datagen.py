"""A documented generator of leads and whether they churned, for training and tests.

No CRM history ships with the project, so the model is trained on leads
drawn from a stated process (docs/churn-model.md). Each lead gets a latent
engagement ``e`` in (0, 1); its observable aggregates follow from ``e``
(engaged leads write more, answer sooner, book showings), and it churns (goes
silent for the next 30 days) with probability ``sigmoid(true_logit(x))``,
where the logit rises with silence and unanswered messages and falls with
recent replies, appointments and pipeline progress. The label depends on the
features only, so the generator's own AUC is the ceiling a model can reach;
training records it next to the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from services.churn.features import FEATURE_NAMES, MAX_AGE_HOURS


@dataclass(frozen=True)
class ChurnDataset:
    """Features (rows x ``FEATURE_NAMES``), labels (1 = churned), true probabilities."""

    x: NDArray[np.float64]
    y: NDArray[np.int64]
    p_true: NDArray[np.float64]


def true_logit(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The generator's log-odds of churn for feature rows ``x``."""
    col = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    days_quiet = col["hours_since_inbound"] / 24.0
    logit = (
        -1.6
        + 1.1 * np.log1p(days_quiet)
        - 0.9 * np.log1p(col["inbound_recent"])
        + 0.35 * np.minimum(col["unanswered_outbound"], 8)
        - 1.2 * np.log1p(col["appointments_recent"])
        - 0.4 * np.log1p(col["opens_recent"])
        - 0.3 * col["pipeline_stage"]
        + 0.15 * np.log1p(col["lead_age_days"])
        # Being chased without answering is worse than silence alone.
        + 0.25 * np.log1p(col["outbound_recent"]) * (col["inbound_recent"] < 0.5)
    )
    result: NDArray[np.float64] = logit
    return result


def generate(rows: int, *, seed: int) -> ChurnDataset:
    """``rows`` leads drawn from the process in the module docstring."""
    rng = np.random.default_rng(seed)
    engagement = rng.beta(2.0, 2.5, rows)
    age_days = rng.uniform(1.0, 180.0, rows)
    stage = rng.choice(6, size=rows, p=[0.3, 0.3, 0.18, 0.12, 0.06, 0.04]).astype(np.float64)
    inbound = rng.gamma(1.0 + 4.0 * engagement, 0.6)
    outbound = rng.gamma(2.0, 1.0, rows) + 0.5 * inbound
    opens = rng.poisson(3.0 * engagement).astype(np.float64)
    appointments = rng.poisson(0.6 * engagement * (stage + 1) / 3).astype(np.float64)
    hours_in = np.minimum(
        rng.exponential(24.0 * (1.0 + 30.0 * (1 - engagement) ** 2)), MAX_AGE_HOURS
    )
    hours_in = np.minimum(hours_in, age_days * 24.0)
    hours_out = np.minimum(rng.exponential(48.0, rows), age_days * 24.0)
    unanswered = rng.poisson(4.0 * (1 - engagement) ** 2 * (hours_in > hours_out)).astype(
        np.float64
    )
    x = np.column_stack(
        [hours_in, hours_out, inbound, outbound, opens, appointments, unanswered, age_days, stage]
    )
    p = expit(true_logit(x))
    y = (rng.random(rows) < p).astype(np.int64)
    return ChurnDataset(x=x, y=y, p_true=p)
