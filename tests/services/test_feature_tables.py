"""Every table keyed by feature covers exactly the flags' features.

A feature's name is written in several tables (the flags, the rollout plans,
the business-impact assumptions and sources); a feature missing from one
would surface only as a ``KeyError`` in ``rollout advance`` or the daily
impact aggregate, on the day it ran.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from services.common.flags import FEATURES
from services.common.settings import CommonSettings
from services.impact.aggregate import SOURCES
from services.impact.assumptions import ASSUMPTIONS, PRIMARY_METRICS
from services.rollout.schedule import PLANS


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("PLANS", PLANS),
        ("ASSUMPTIONS", ASSUMPTIONS),
        ("SOURCES", SOURCES),
        ("PRIMARY_METRICS", PRIMARY_METRICS),
    ],
)
def test_the_table_covers_every_feature(name: str, table: Mapping[str, object]) -> None:
    assert sorted(table) == sorted(FEATURES), name


def test_the_rollout_plans_judge_each_feature_by_the_services_target() -> None:
    # The services report against their settings' targets (the seed's
    # variables); `rollout advance` judges against PLANS: one number each.
    targets = CommonSettings.model_construct().targets_seconds
    for feature, plan in PLANS.items():
        assert plan.latency_target_seconds == pytest.approx(targets[feature]), feature
