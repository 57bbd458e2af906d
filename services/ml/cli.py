"""The ``enterprisehub model ...`` subcommands (registered by services/cli.py).

enterprisehub model train   --out PATH [--seed N --rows N --estimator logistic|hgb]
enterprisehub model publish --from PATH --to s3://bucket/prefix
"""

from __future__ import annotations

from typing import Any

from services.ml.publish import add_publish_arguments, run_publish
from services.ml.training import add_train_arguments, run_train


def register_model_commands(subparsers: Any) -> None:
    """Add ``model train`` and ``model publish`` to the top-level subparsers.

    Each leaf parser sets ``handler`` to a function taking the parsed
    ``argparse.Namespace`` and returning the exit code.
    """
    model = subparsers.add_parser("model", help="train and publish the lead-scoring model")
    commands = model.add_subparsers(dest="model_command", required=True)
    train = commands.add_parser("train", help="train on generated leads; write PATH and PATH.json")
    add_train_arguments(train)
    train.set_defaults(handler=run_train)
    publish = commands.add_parser("publish", help="upload a trained artifact to S3 (idempotent)")
    add_publish_arguments(publish)
    publish.set_defaults(handler=run_publish)
