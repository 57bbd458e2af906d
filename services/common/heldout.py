"""The held-out split both trained models (lead conversion, churn risk) are judged on.

Each trains on generated rows and reports on a stratified 20% held out with
the training seed. Below a model's floor of rows that split says nothing, so
``check_row_count`` is the one rule for the library call and the command line
(``services.common.training_cli``).
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

HELDOUT_FRACTION: Final = 0.2


def check_row_count(rows: int, minimum: int) -> int:
    """``rows``, or ``ValueError`` when it is below ``minimum``."""
    if rows < minimum:
        raise ValueError(f"rows must be >= {minimum} for a meaningful held-out split, got {rows}")
    return rows


class HeldoutSplit(NamedTuple):
    """Training rows, held-out rows, and the generator's truth for the held-out rows."""

    x_train: NDArray[np.float64]
    x_test: NDArray[np.float64]
    y_train: NDArray[np.int64]
    y_test: NDArray[np.int64]
    truth_test: NDArray[np.float64]


def heldout_split(
    x: NDArray[np.float64], y: NDArray[np.int64], truth: NDArray[np.float64], *, seed: int
) -> HeldoutSplit:
    """Hold out ``HELDOUT_FRACTION`` of the rows, stratified by ``y``, shuffled by ``seed``.

    ``truth`` (the generator's probability or log-odds per row) is split alike,
    so a report can set the model against the best possible ranking.
    """
    x_train, x_test, y_train, y_test, _, truth_test = train_test_split(
        x, y, truth, test_size=HELDOUT_FRACTION, random_state=seed, stratify=y
    )
    return HeldoutSplit(x_train, x_test, y_train, y_test, truth_test)
