"""The stack's ``impactAssumptions`` reach the programs that price, and only them.

Deployed environments priced every feature with the seed's numbers: no stack
setting carried IMPACT_ASSUMPTIONS. What the program writes is read back by the
service's own parser (services/impact/assumptions.py), so the two sides cannot
disagree on a name (tests/infra/test_config.py checks the key's validation).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from infra import catalog
from infra.synth import run_stack
from infra.synth.inputs import qualify, stack_inputs
from infra.synth.mocks import ProgramRun
from services.impact.assumptions import NUMERIC_FIELDS, RANGES, load_assumptions

SETTING = catalog.IMPACT_ASSUMPTIONS_SETTING


def test_the_stack_names_are_the_services_names() -> None:
    from infra.config import ImpactAssumptions

    assert set(ImpactAssumptions.model_fields) == NUMERIC_FIELDS
    assert catalog.IMPACT_ASSUMPTION_RANGES == RANGES


@pytest.fixture(scope="module")
def priced() -> ProgramRun:
    """Production with an override of property_vision's value per match."""
    inputs = stack_inputs("production", environ={})
    overrides = {"property_vision": {"valuePerUnit": 90}}
    config = {**inputs.config, qualify("impactAssumptions"): json.dumps(overrides)}
    return run_stack(dataclasses.replace(inputs, config=config))


def _config_maps(run: ProgramRun) -> dict[str, dict[str, str]]:
    return {
        r.inputs["metadata"]["name"]: dict(r.inputs.get("data") or {})
        for r in run.kubernetes_objects("ConfigMap")
        if r.inputs["metadata"].get("namespace") == "enterprisehub"
    }


def test_the_dashboards_and_the_daily_aggregate_price_with_the_stacks_numbers(
    priced: ProgramRun,
) -> None:
    maps = _config_maps(priced)
    carrying = {name.rsplit("-", 1)[0] for name, data in maps.items() if SETTING in data}
    # The ROI page and the Jobs' ConfigMap (the impact-aggregate CronJob reads it);
    # the feature services do not price anything.
    assert carrying == {"dashboards-config", "jobs-config"}
    (value,) = {data[SETTING] for data in maps.values() if SETTING in data}
    assert load_assumptions(value)["property_vision"].value_per_unit == 90
