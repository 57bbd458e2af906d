"""The ``enterprisehub model ...`` subcommands (registered by services/cli.py).

enterprisehub model train   --out PATH [--seed N --rows N --estimator logistic|hgb]
enterprisehub model publish --from PATH --to s3://bucket/prefix
enterprisehub vision backfill --tenant T [--poll-seconds N]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from services.cli import EXIT_USAGE, CommandError, number_argument


def register_model_commands(subparsers: Any) -> None:
    """Add ``model train`` and ``model publish`` to the top-level subparsers.

    Each leaf parser sets ``handler`` to a function taking the parsed
    ``argparse.Namespace`` and returning the exit code.
    """
    # Here, not at the top: they import scikit-learn, which `vision` commands,
    # registered from this module too, do not need (services.cli.COMMAND_GROUPS).
    from services.ml.publish import add_publish_arguments, run_publish
    from services.ml.training import add_train_arguments, run_train

    model = subparsers.add_parser(
        "model", help="train the lead-scoring model; publish it or the churn model"
    )
    commands = model.add_subparsers(dest="model_command", required=True)
    train = commands.add_parser("train", help="train on generated leads; write PATH and PATH.json")
    add_train_arguments(train)
    train.set_defaults(handler=run_train)
    publish = commands.add_parser(
        "publish", help="upload a trained artifact (lead or churn model) to S3 (idempotent)"
    )
    add_publish_arguments(publish)
    publish.set_defaults(handler=run_publish)


def register_vision_commands(subparsers: Any) -> None:
    """Add ``vision backfill --tenant T`` to the top-level subparsers."""
    vision = subparsers.add_parser("vision", help="property vision operations")
    commands = vision.add_subparsers(dest="vision_command", required=True)
    backfill = commands.add_parser(
        "backfill",
        help="analyse a tenant's unanalysed photos through the Message Batches API (resumable)",
    )
    backfill.add_argument("--tenant", required=True, help="tenant id")
    backfill.add_argument(
        "--poll-seconds",
        # 0 or less polled the Batches API in a tight loop; NaN or inf never polled again.
        type=number_argument(float, 1.0, 3600.0, "is not a number of seconds from 1 to 3600"),
        default=30.0,
        help="seconds between batch status checks (1-3600, default 30)",
    )
    backfill.set_defaults(handler=run_vision_backfill)


def run_vision_backfill(args: argparse.Namespace) -> int:
    """Handler of ``vision backfill``: prints a one-line report, exit 0 when nothing failed."""
    from services.common.claude import create_claude
    from services.common.database import Database, DatabaseUnavailable
    from services.common.metrics import new_registry
    from services.common.storage import StorageUnavailable, create_storage
    from services.common.tenancy import InvalidTenantId, validate_tenant_id
    from services.ml.config import MLSettings
    from services.ml.vision.backfill import run_backfill
    from services.ml.vision.media import MediaStore

    try:
        validate_tenant_id(args.tenant)
    except InvalidTenantId as exc:
        raise CommandError(f"vision backfill: {exc}", EXIT_USAGE) from None
    settings = MLSettings.from_env()
    bucket = settings.media_bucket
    if not bucket:
        raise CommandError(
            "vision backfill: MEDIA_BUCKET is not set: set it to the bucket the photos are in"
        )

    async def run() -> int:
        db = await Database.connect(settings)
        claude = create_claude(settings, registry=new_registry(), db=db)
        if claude is None:
            await db.close()
            # Said how to go on: "nothing can be analysed" left the operator guessing.
            raise CommandError(
                "vision backfill: ANTHROPIC_API_KEY is not set, so nothing can be analysed: "
                "set it (and ANTHROPIC_BASE_URL for a stand-in) as the services have it"
            )
        try:
            report = await run_backfill(
                db=db,
                claude=claude,
                media=MediaStore(bucket, create_storage(settings).client),
                tenant_id=args.tenant,
                max_image_bytes=settings.vision_max_image_bytes,
                claim_stale_seconds=settings.vision_claim_stale_seconds,
                poll_seconds=args.poll_seconds,
            )
        finally:
            await claude.close()
            await db.close()
        print(
            f"planned {report.planned}, already analysed {report.already_done}, "
            f"submitted {report.submitted}, stored {report.stored}, failed {report.failed}, "
            f"batches {' '.join(report.batches) or '-'}"
        )
        return 0 if report.failed == 0 else 1

    try:
        return asyncio.run(run())
    except (DatabaseUnavailable, StorageUnavailable) as exc:
        # A traceback was all an operator saw when Postgres or the bucket was down.
        raise CommandError(
            f"vision backfill: {exc.reason}; run it again once it answers (it resumes)"
        ) from None
