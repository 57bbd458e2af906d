"""Synthetic CRM leads with a documented ground-truth conversion function.

There is no real CRM data in this repository, so the model is trained on
leads drawn from the generative story below. The story is written down (and
repeated in docs/lead-scoring-model.md) so that the held-out AUC means
something: the model must recover non-linear effects and an interaction from
noisy labels, and its AUC can be compared with the ceiling set by the noise.

Generative story, per lead:

1. ``source`` and ``timeline`` are drawn from the fixed mixes in
   `SOURCE_MIX` / `TIMELINE_MIX`; ``budget_usd`` is log-normal around
   $450k; ``pre_approved`` is likelier for short timelines.
2. A latent ``engagement`` (gamma distributed) drives the activity counts:
   email opens and clicks, SMS replies, connected calls, property views,
   saved searches and showings (showings also need pre-approval more often).
3. ``response_time_minutes`` is log-normal (median 30 min); the lead's age
   and days since last contact are exponential-ish.

Ground-truth log-odds of converting (`true_logit`):

    intercept
    + SOURCE_EFFECT[source] + TIMELINE_EFFECT[timeline]
    - 0.5 * log(budget / 450k)^2                  (mid-market converts best)
    + 0.8 * pre_approved
    - 0.45 * log1p(response_time_minutes / 5)      (speed to lead)
    + 0.35 * log1p(email_clicks) + 0.3 * log1p(sms_replies)
    + 0.35 * log1p(calls_connected) + 0.25 * log1p(property_views)
    + 0.2 * min(saved_searches, 5)
    + 0.55 * min(showings_attended, 4) * (1 + 0.6 * pre_approved)   (interaction)
    - 2.0 * (1 - exp(-days_since_last_contact / 20))                  (going cold)
    - 0.3 * log1p(days_since_created / 30)

The label is Bernoulli(sigmoid(true_logit + N(0, LATENT_NOISE_SD))): the
gaussian term stands for everything a CRM does not record, so even a perfect
model of the observed attributes cannot reach AUC 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from services.common.scoring import FEATURE_NAMES, SOURCES, TIMELINES, LeadFeatures

SOURCE_MIX: Final = {
    "referral": 0.10,
    "website": 0.22,
    "zillow": 0.20,
    "realtor_com": 0.12,
    "open_house": 0.08,
    "social_media": 0.12,
    "paid_search": 0.11,
    "cold_call": 0.05,
}
SOURCE_EFFECT: Final = {
    "referral": 1.0,
    "website": 0.0,
    "zillow": 0.1,
    "realtor_com": 0.1,
    "open_house": 0.6,
    "social_media": -0.4,
    "paid_search": -0.2,
    "cold_call": -0.9,
}
TIMELINE_MIX: Final = {
    "immediate": 0.12,
    "1_3_months": 0.22,
    "3_6_months": 0.22,
    "6_12_months": 0.18,
    "over_12_months": 0.10,
    "unknown": 0.16,
}
TIMELINE_EFFECT: Final = {
    "immediate": 1.1,
    "1_3_months": 0.6,
    "3_6_months": 0.0,
    "6_12_months": -0.5,
    "over_12_months": -1.2,
    "unknown": -0.4,
}
INTERCEPT: Final = -3.1
LATENT_NOISE_SD: Final = 0.6
MEDIAN_BUDGET_USD: Final = 450_000.0

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
_INT_FEATURES = tuple(
    name for name, field in LeadFeatures.model_fields.items() if field.annotation is int
)


@dataclass(frozen=True)
class LeadDataset:
    """Encoded leads (rows in `FEATURE_NAMES` order), labels and the true log-odds."""

    x: NDArray[np.float64]
    y: NDArray[np.int64]
    true_logit: NDArray[np.float64]


def true_logit(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The ground-truth log-odds of conversion for encoded rows (see module docstring)."""
    source_effect = np.array([SOURCE_EFFECT[s] for s in SOURCES])
    timeline_effect = np.array([TIMELINE_EFFECT[t] for t in TIMELINES])

    def col(name: str) -> NDArray[np.float64]:
        return x[:, _COL[name]]

    pre = col("pre_approved")
    logit: NDArray[np.float64] = (
        INTERCEPT
        + source_effect[col("source").astype(np.int64)]
        + timeline_effect[col("timeline").astype(np.int64)]
        - 0.5 * np.log(col("budget_usd").clip(min=1.0) / MEDIAN_BUDGET_USD) ** 2
        + 0.8 * pre
        - 0.45 * np.log1p(col("response_time_minutes") / 5.0)
        + 0.35 * np.log1p(col("email_clicks"))
        + 0.3 * np.log1p(col("sms_replies"))
        + 0.35 * np.log1p(col("calls_connected"))
        + 0.25 * np.log1p(col("property_views"))
        + 0.2 * np.minimum(col("saved_searches"), 5.0)
        + 0.55 * np.minimum(col("showings_attended"), 4.0) * (1.0 + 0.6 * pre)
        - 2.0 * (1.0 - np.exp(-col("days_since_last_contact") / 20.0))
        - 0.3 * np.log1p(col("days_since_created") / 30.0)
    )
    return logit


def generate(rows: int, *, seed: int) -> LeadDataset:
    """Draw ``rows`` leads and their conversion labels, reproducibly from ``seed``."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    rng = np.random.default_rng(seed)
    x = np.zeros((rows, len(FEATURE_NAMES)), dtype=np.float64)

    def put(name: str, values: NDArray[np.float64] | NDArray[np.int64]) -> None:
        x[:, _COL[name]] = values

    put("source", rng.choice(len(SOURCES), size=rows, p=[SOURCE_MIX[s] for s in SOURCES]))
    timeline = rng.choice(len(TIMELINES), size=rows, p=[TIMELINE_MIX[t] for t in TIMELINES])
    put("timeline", timeline)
    put("budget_usd", np.round(rng.lognormal(np.log(MEDIAN_BUDGET_USD), 0.6, rows), -3))
    short_timeline = timeline <= TIMELINES.index("1_3_months")
    pre_approved = rng.random(rows) < np.where(short_timeline, 0.55, 0.25)
    put("pre_approved", pre_approved.astype(np.float64))
    put(
        "response_time_minutes",
        np.round(rng.lognormal(np.log(30.0), 1.5, rows).clip(max=10_080), 1),
    )

    engagement = rng.gamma(shape=1.2, scale=0.8, size=rows)
    opens = rng.poisson(2.0 + 6.0 * engagement)
    put("email_opens", opens)
    put("email_clicks", rng.binomial(opens, 0.1 + 0.2 * engagement / (1.0 + engagement)))
    put("sms_replies", rng.poisson(0.5 + 1.5 * engagement))
    put("calls_connected", rng.poisson(0.3 + engagement))
    put("property_views", rng.poisson(3.0 + 15.0 * engagement))
    put("saved_searches", rng.poisson(0.2 + 0.8 * engagement))
    put("showings_attended", rng.poisson((0.05 + 0.5 * engagement) * (1.0 + pre_approved)))

    last_contact = np.minimum(rng.exponential(12.0, rows).astype(np.int64), 3650)
    put("days_since_last_contact", last_contact)
    put(
        "days_since_created",
        np.minimum(last_contact + rng.exponential(40.0, rows).astype(np.int64), 3650),
    )

    logit = true_logit(x)
    converted = rng.random(rows) < expit(logit + rng.normal(0.0, LATENT_NOISE_SD, rows))
    return LeadDataset(x=x, y=converted.astype(np.int64), true_logit=logit)


def row_to_features(row: NDArray[np.float64]) -> LeadFeatures:
    """Turn one encoded row back into a validated `LeadFeatures` (for demos and benchmarks)."""
    values = dict(zip(FEATURE_NAMES, row.tolist(), strict=True))
    return LeadFeatures(
        source=SOURCES[int(values["source"])],  # type: ignore[arg-type]
        timeline=TIMELINES[int(values["timeline"])],  # type: ignore[arg-type]
        budget_usd=values["budget_usd"],
        pre_approved=bool(values["pre_approved"]),
        response_time_minutes=values["response_time_minutes"],
        **{name: int(values[name]) for name in _INT_FEATURES},
    )


def generate_leads(count: int, *, seed: int) -> list[LeadFeatures]:
    """Draw ``count`` synthetic leads as `LeadFeatures` (labels discarded)."""
    return [row_to_features(row) for row in generate(count, seed=seed).x]
