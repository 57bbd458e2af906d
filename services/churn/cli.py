"""``enterprisehub churn ...`` (registered by services/cli.py).

enterprisehub churn train --out PATH [--seed N --rows N --plot PNG]
"""

from __future__ import annotations

from typing import Any

from services.churn.training import add_train_arguments, run_train


def register_churn_commands(subparsers: Any) -> None:
    """Add ``churn train`` to the top-level subparsers."""
    churn = subparsers.add_parser("churn", help="train the churn-risk model")
    commands = churn.add_subparsers(dest="churn_command", required=True)
    train = commands.add_parser(
        "train", help="train the calibrated churn model; write PATH and PATH.json"
    )
    add_train_arguments(train)
    train.set_defaults(handler=run_train)
