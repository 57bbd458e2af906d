"""LeadFeatures: strict validation with field-named errors, and the row encoding."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from services.common.scoring import FEATURE_NAMES, LeadFeatures
from services.ml import datagen


def _valid() -> dict[str, Any]:
    return datagen.generate_leads(1, seed=3)[0].model_dump()


def test_generated_lead_validates() -> None:
    assert LeadFeatures.model_validate(_valid()).model_dump() == _valid()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("email_opens", "3", "valid integer"),
        ("email_opens", -1, "greater than or equal to 0"),
        ("email_opens", 2.5, "valid integer"),
        ("budget_usd", math.nan, "finite number"),
        ("budget_usd", "500000", "valid number"),
        ("pre_approved", "yes", "valid boolean"),
        ("pre_approved", 1, "valid boolean"),
        ("source", "carrier_pigeon", "Input should be 'referral'"),
        ("days_since_last_contact", 10_000, "less than or equal to 3650"),
    ],
)
def test_invalid_value_names_field_and_reason(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LeadFeatures.model_validate({**_valid(), field: value})
    errors = caught.value.errors()
    assert [err["loc"] for err in errors] == [(field,)]
    assert fragment in errors[0]["msg"]


def test_unknown_and_missing_fields_are_rejected() -> None:
    payload = {**_valid(), "favourite_colour": "blue"}
    del payload["budget_usd"]
    with pytest.raises(ValidationError) as caught:
        LeadFeatures.model_validate(payload)
    kinds = {(err["loc"], err["type"]) for err in caught.value.errors()}
    assert kinds == {(("budget_usd",), "missing"), (("favourite_colour",), "extra_forbidden")}


def test_to_row_follows_feature_names_and_round_trips() -> None:
    data = datagen.generate(50, seed=11)
    for row in data.x:
        lead = datagen.row_to_features(row)
        assert np.array_equal(np.asarray(lead.to_row()), row)
    lead = datagen.row_to_features(data.x[0])
    encoded = dict(zip(FEATURE_NAMES, lead.to_row(), strict=True))
    assert encoded["budget_usd"] == lead.budget_usd
    assert encoded["showings_attended"] == lead.showings_attended


def test_equal_leads_share_a_row_and_hash() -> None:
    a, b = LeadFeatures(**_valid()), LeadFeatures(**_valid())
    assert a == b
    assert a.to_row() == b.to_row()
    assert hash(a) == hash(b)
