"""What the model-training commands (``model train``, ``churn train``) share.

Both train on generated data: the same ``--out``, ``--seed`` and ``--rows``
options, with each model's defaults and its smallest useful row count.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.cli import seed_argument
from services.common.heldout import check_row_count


def add_training_arguments(
    parser: argparse.ArgumentParser, *, out: Path, seed: int, rows: int, min_rows: int, what: str
) -> None:
    """Add ``--out``, ``--seed`` and ``--rows`` (at least ``min_rows`` ``what``)."""

    def row_count(value: str) -> int:
        try:
            return check_row_count(int(value), min_rows)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument("--out", type=Path, default=out, help="model file to write")
    parser.add_argument("--seed", type=seed_argument, default=seed, help="generator and split seed")
    parser.add_argument("--rows", type=row_count, default=rows, help=f"{what} (>= {min_rows})")
