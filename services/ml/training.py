"""Train the lead-conversion model on generated leads and write a versioned artifact.

Entry point for operators: ``enterprisehub model train --out PATH [--seed N --rows N]``.
Training takes about a second for the default 50,000 rows; the held-out AUC
is recorded in the artifact's metadata.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from services.common.heldout import check_row_count, heldout_split
from services.common.lead_model.artifact import ArtifactMetadata, save_artifact
from services.common.lead_model.features import (
    BOOLEAN_FEATURES,
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    NUMERIC_FEATURES,
    SOURCES,
    TIMELINES,
)
from services.common.training_cli import add_training_arguments
from services.ml import datagen

Estimator = Literal["logistic", "hgb"]
ESTIMATORS: Final[tuple[str, ...]] = get_args(Estimator)
MODEL_NAME: Final = "lead-conversion"
DEFAULT_ROWS: Final = 50_000
DEFAULT_SEED: Final = 20_260_101
MIN_ROWS: Final = 1000
DEFAULT_OUT: Final = Path("models/lead_scoring.joblib")


def _columns(names: Sequence[str]) -> list[int]:
    return [FEATURE_NAMES.index(name) for name in names]


def build_pipeline(estimator: Estimator, *, seed: int) -> Pipeline:
    """Return the untrained model for ``estimator``.

    ``logistic`` (the default): one-hot categoricals with the fixed
    vocabularies (an unseen code is an error, not a silent zero row),
    log1p then standardisation of the heavy-tailed counts, budgets and
    durations, and an L2 logistic regression. It reaches nearly the
    ground-truth ceiling and answers a single lead in about a millisecond.
    ``hgb``: gradient-boosted trees on the raw encoding with native
    categorical splits; kept so the comparison in the docs can be rerun.
    """
    if estimator == "hgb":
        hgb = HistGradientBoostingClassifier(
            categorical_features=_columns(CATEGORICAL_FEATURES),
            learning_rate=0.05,
            max_iter=300,
            early_stopping=True,
            random_state=seed,
        )
        return Pipeline([("clf", hgb)])
    encoder = OneHotEncoder(
        categories=[np.arange(len(SOURCES), dtype=float), np.arange(len(TIMELINES), dtype=float)],
        sparse_output=False,
        handle_unknown="error",
    )
    numeric = Pipeline([("log1p", FunctionTransformer(np.log1p)), ("scale", StandardScaler())])
    preprocess = ColumnTransformer(
        [
            ("categorical", encoder, _columns(CATEGORICAL_FEATURES)),
            ("numeric", numeric, _columns(NUMERIC_FEATURES)),
            ("boolean", "passthrough", _columns(BOOLEAN_FEATURES)),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("clf", LogisticRegression(max_iter=1000))])


@dataclass(frozen=True)
class TrainingReport:
    """Quality of one training run on its held-out split."""

    estimator: str
    training_rows: int
    heldout_rows: int
    heldout_auc: float
    ceiling_auc: float
    positive_rate: float


def train(
    *, rows: int, seed: int, estimator: Estimator = "logistic"
) -> tuple[Pipeline, TrainingReport]:
    """Generate ``rows`` leads, fit on 80%, and score AUC on the stratified 20% held out.

    ``ceiling_auc`` is the AUC of the generator's own log-odds on the same
    held-out rows: the best any model of the observed attributes can expect,
    because the labels carry unobserved noise.
    """
    data = datagen.generate(check_row_count(rows, MIN_ROWS), seed=seed)
    x_train, x_test, y_train, y_test, logit_test = heldout_split(
        data.x, data.y, data.true_logit, seed=seed
    )
    model = build_pipeline(estimator, seed=seed)
    model.fit(x_train, y_train)
    report = TrainingReport(
        estimator=estimator,
        training_rows=len(y_train),
        heldout_rows=len(y_test),
        heldout_auc=float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])),
        ceiling_auc=float(roc_auc_score(y_test, logit_test)),
        positive_rate=float(data.y.mean()),
    )
    return model, report


def train_to_file(
    *,
    out: Path,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    estimator: Estimator = "logistic",
) -> tuple[ArtifactMetadata, TrainingReport]:
    """Train and write ``out`` plus ``out.json``; return the metadata and report."""
    model, report = train(rows=rows, seed=seed, estimator=estimator)
    metadata = save_artifact(
        model,
        out,
        model_name=MODEL_NAME,
        estimator=estimator,
        seed=seed,
        report=report,
    )
    return metadata, report


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model train`` options to ``parser`` (shared with the CLI)."""
    add_training_arguments(
        parser,
        out=DEFAULT_OUT,
        seed=DEFAULT_SEED,
        rows=DEFAULT_ROWS,
        min_rows=MIN_ROWS,
        what="leads to generate",
    )
    parser.add_argument(
        "--estimator", choices=ESTIMATORS, default="logistic", help="the model (default logistic)"
    )


def run_train(args: argparse.Namespace) -> int:
    """Run ``model train`` from parsed arguments; print the outcome."""
    metadata, report = train_to_file(
        out=args.out, rows=args.rows, seed=args.seed, estimator=args.estimator
    )
    print(
        f"wrote {args.out} (+ .json): version {metadata.version}, estimator {report.estimator}, "
        f"held-out AUC {report.heldout_auc:.4f} on {report.heldout_rows} rows "
        f"(ground-truth ceiling {report.ceiling_auc:.4f}), "
        f"trained on {report.training_rows} rows, seed {args.seed}"
    )
    return 0
