"""Training on generated leads: real signal, recorded quality, reproducibility."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import sklearn

from services.cli import main as cli_main
from services.common.scoring import FEATURE_NAMES
from services.ml import datagen
from services.ml.training import train

# The generator's noise caps any model near 0.87 (see docs/lead-scoring-model.md);
# a model that learned the signal clears 0.83 comfortably at 20,000 rows.
AUC_FLOOR = 0.83


def test_artifact_records_quality_above_floor(
    artifact_path: Path, training_params: dict[str, int]
) -> None:
    metadata = json.loads(Path(str(artifact_path) + ".json").read_text())
    assert metadata["heldout_auc"] >= AUC_FLOOR
    # The model gets close to the best possible ranking of these labels.
    assert metadata["heldout_auc"] >= metadata["training_info"]["ceiling_auc"] - 0.02
    rows = training_params["rows"]
    assert metadata["training_rows"] + metadata["heldout_rows"] == rows
    assert metadata["heldout_rows"] == rows // 5
    assert metadata["seed"] == training_params["seed"]
    assert metadata["features"] == list(FEATURE_NAMES)
    assert metadata["sklearn_version"] == sklearn.__version__
    assert metadata["sha256"] == hashlib.sha256(artifact_path.read_bytes()).hexdigest()
    assert metadata["version"] == f"v1-{metadata['sha256'][:12]}"


def test_generator_is_reproducible_and_has_a_plausible_base_rate() -> None:
    first, second = datagen.generate(5_000, seed=1), datagen.generate(5_000, seed=1)
    assert np.array_equal(first.x, second.x)
    assert np.array_equal(first.y, second.y)
    assert 0.08 < first.y.mean() < 0.25
    assert not np.array_equal(first.x, datagen.generate(5_000, seed=2).x)


def test_labels_follow_the_documented_ground_truth() -> None:
    data = datagen.generate(20_000, seed=5)
    np.testing.assert_allclose(datagen.true_logit(data.x), data.true_logit)
    high = data.true_logit > np.quantile(data.true_logit, 0.8)
    low = data.true_logit < np.quantile(data.true_logit, 0.2)
    assert data.y[high].mean() > 4 * data.y[low].mean()


def test_gradient_boosting_alternative_also_learns() -> None:
    _, report = train(rows=10_000, seed=3, estimator="hgb")
    assert report.heldout_auc >= AUC_FLOOR - 0.02


def test_too_few_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="rows must be >= 1000"):
        train(rows=999, seed=1)


def test_cli_train_writes_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m" / "model.joblib"
    assert cli_main(["model", "train", "--out", str(out), "--rows", "5000", "--seed", "4"]) == 0
    assert out.exists()
    assert Path(str(out) + ".json").exists()
    assert "held-out AUC" in capsys.readouterr().out


def test_cli_refuses_too_few_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main(["model", "train", "--out", str(tmp_path / "m.joblib"), "--rows", "10"])
    assert caught.value.code == 2
    assert "must be >= 1000" in capsys.readouterr().err
