"""The options the two training commands share, through ``enterprisehub``."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.churn import training as churn_training
from services.cli import main as cli_main
from services.ml import training as ml_training


@pytest.mark.parametrize(
    ("command", "floor"),
    [("model", ml_training.MIN_ROWS), ("churn", churn_training.MIN_ROWS)],
)
def test_train_refuses_fewer_rows_than_the_models_floor(
    command: str, floor: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main([command, "train", "--rows", str(floor - 1)])
    assert caught.value.code == 2
    assert f"must be >= {floor}" in capsys.readouterr().err


def test_churn_train_writes_the_model_with_the_shared_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "churn.joblib"
    args = ["churn", "train", "--out", str(out), "--rows", str(churn_training.MIN_ROWS)]
    assert cli_main([*args, "--seed", "3"]) == 0
    assert out.exists()
    assert "AUC" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["model", "churn"])
@pytest.mark.parametrize("seed", ["-1", "4294967296", "1e400"])
def test_train_refuses_a_seed_numpy_would_refuse_after_generating_the_data(
    command: str, seed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main([command, "train", "--seed", seed])
    assert caught.value.code == 2
    assert f"argument --seed: '{seed}' is not a seed (0-4294967295)" in capsys.readouterr().err
