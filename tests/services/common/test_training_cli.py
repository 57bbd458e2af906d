"""The options and ``python -m`` entry the two training commands share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.churn import training as churn_training
from services.ml import training as ml_training


@pytest.mark.parametrize(
    ("main", "floor"),
    [(ml_training.main, ml_training.MIN_ROWS), (churn_training.main, churn_training.MIN_ROWS)],
)
def test_python_m_refuses_fewer_rows_than_the_models_floor(
    main: Callable[[list[str]], int], floor: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--rows", str(floor - 1)])
    assert caught.value.code == 2
    assert f"must be >= {floor}" in capsys.readouterr().err


def test_python_m_trains_with_the_commands_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "churn.joblib"
    args = ["--out", str(out), "--rows", str(churn_training.MIN_ROWS), "--seed", "3"]
    assert churn_training.main(args) == 0
    assert out.exists()
    assert "AUC" in capsys.readouterr().out
