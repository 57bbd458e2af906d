"""The held-out split and row floor the two training commands share."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.heldout import HELDOUT_FRACTION, check_row_count, heldout_split


def test_check_row_count_returns_rows_at_the_floor_and_refuses_below() -> None:
    assert check_row_count(1000, 1000) == 1000
    with pytest.raises(ValueError, match=r"rows must be >= 1000 .* got 999"):
        check_row_count(999, 1000)


def test_heldout_split_is_stratified_seeded_and_keeps_truth_aligned() -> None:
    rows = 1000
    x = np.arange(rows, dtype=np.float64).reshape(-1, 1)
    y = (np.arange(rows) % 10 == 0).astype(np.int64)  # 10% positives
    truth = x[:, 0] * 2.0
    x_train, x_test, y_train, y_test, truth_test = heldout_split(x, y, truth, seed=4)
    assert len(x_test) == len(y_test) == len(truth_test) == rows * HELDOUT_FRACTION
    assert len(x_train) == len(y_train) == rows - len(x_test)
    assert y_test.mean() == pytest.approx(0.1)  # stratified: the same share of positives
    np.testing.assert_array_equal(truth_test, x_test[:, 0] * 2.0)
    again = heldout_split(x, y, truth, seed=4)
    np.testing.assert_array_equal(again.x_test, x_test)
    assert not np.array_equal(heldout_split(x, y, truth, seed=5).x_test, x_test)
