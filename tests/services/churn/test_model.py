"""The churn model: calibrated and reported on a held-out split, stored like the lead model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.churn.datagen import generate
from services.churn.features import FEATURE_NAMES, feature_matrix
from services.churn.model import ChurnModel
from services.churn.training import reliability_plot, train
from services.common.lead_model.artifact import ArtifactCompatibilityError, load_artifact


def test_training_reports_auc_brier_and_calibration(tmp_path: Path) -> None:
    _, report = train(rows=6000, seed=5)
    assert report.heldout_auc > 0.8
    assert report.heldout_auc <= report.ceiling_auc + 0.02
    # Calibrated: near the generator's own Brier score, and each bin near its observed rate.
    assert report.heldout_brier < report.ceiling_brier + 0.01
    assert report.expected_calibration_error < 0.05
    plot = tmp_path / "reliability.png"
    reliability_plot(report, plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_artifact_records_metrics_and_refuses_other_features(churn_artifact: Path) -> None:
    metadata = json.loads(Path(str(churn_artifact) + ".json").read_text())
    assert metadata["model_name"] == "churn-risk"
    assert metadata["features"] == list(FEATURE_NAMES)
    assert {"heldout_brier", "ceiling_auc", "expected_calibration_error"} <= set(
        metadata["training_info"]
    )
    # The lead model's loader (its own features) refuses the churn artifact.
    with pytest.raises(ArtifactCompatibilityError):
        load_artifact(str(churn_artifact))


def test_silence_raises_risk(churn_model: ChurnModel) -> None:
    now = 1_800_000_000.0
    base = {
        "lead_id": "l",
        "created_at": now - 30 * 86400,
        "last_outbound_at": now - 3600,
        "decay_at": now,
        "inbound_recent": 2.0,
        "outbound_recent": 3.0,
        "opens_recent": 1.0,
        "appointments_recent": 0.0,
        "unanswered_outbound": 0,
        "pipeline_stage": 1,
    }
    engaged = {**base, "last_inbound_at": now - 3600}
    silent = {
        **base,
        "last_inbound_at": now - 40 * 86400,
        "inbound_recent": 0.0,
        "unanswered_outbound": 6,
    }
    p = churn_model.predict(feature_matrix([engaged, silent], now=now))
    assert p[0] < 0.3 < 0.7 < p[1]
    # Decayed counts age with the clock: the same row scores riskier a month later.
    later = churn_model.predict(feature_matrix([engaged], now=now + 30 * 86400))
    assert later[0] > p[0]


def test_generator_is_reproducible() -> None:
    a, b = generate(500, seed=1), generate(500, seed=1)
    assert np.array_equal(a.x, b.x)
    assert np.array_equal(a.y, b.y)
