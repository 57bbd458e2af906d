"""Train the calibrated churn-risk model and write a versioned artifact and its report.

``enterprisehub churn train --out models/churn_risk.joblib [--plot PATH]``.
Gradient-boosted trees rank the leads; isotonic calibration fitted on folds
the trees did not see makes the
probabilities mean what they say (of the leads scored 0.7, about 70% churn),
which the stages' thresholds rely on. The held-out AUC, Brier score and the
reliability curve are recorded in the artifact's metadata and drawn by
``reliability_plot`` (docs/churn-model.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score

from services.churn.datagen import generate
from services.churn.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from services.common.heldout import check_row_count, heldout_split
from services.common.lead_model.artifact import ArtifactMetadata, save_artifact
from services.common.training_cli import add_training_arguments

MODEL_NAME: Final = "churn-risk"
DEFAULT_ROWS: Final = 30_000
DEFAULT_SEED: Final = 20_261_203
MIN_ROWS: Final = 2000
RELIABILITY_BINS: Final = 10
DEFAULT_OUT: Final = Path("models/churn_risk.joblib")


def build_model(*, seed: int) -> CalibratedClassifierCV:
    """Boosted trees wrapped in 3-fold isotonic calibration (untrained)."""
    trees = HistGradientBoostingClassifier(
        learning_rate=0.1, max_iter=120, max_leaf_nodes=31, early_stopping=True, random_state=seed
    )
    return CalibratedClassifierCV(trees, method="isotonic", cv=3)


@dataclass(frozen=True)
class ReliabilityBin:
    """Held-out leads whose predicted probability fell in [low, high)."""

    low: float
    high: float
    count: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class ChurnReport:
    """Quality of one training run on its held-out split."""

    training_rows: int
    heldout_rows: int
    heldout_auc: float
    heldout_brier: float
    uncalibrated_brier: float
    ceiling_auc: float
    ceiling_brier: float
    expected_calibration_error: float
    positive_rate: float
    bins: list[ReliabilityBin] = field(default_factory=list)
    uncalibrated_bins: list[ReliabilityBin] = field(default_factory=list)


def reliability(
    y: NDArray[np.int64], p: NDArray[np.float64], *, bins: int = RELIABILITY_BINS
) -> list[ReliabilityBin]:
    """Equal-width reliability bins of ``p`` against the observed outcomes ``y``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    result = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        if count:
            result.append(
                ReliabilityBin(
                    low=float(edges[b]),
                    high=float(edges[b + 1]),
                    count=count,
                    mean_predicted=float(p[mask].mean()),
                    observed_rate=float(y[mask].mean()),
                )
            )
    return result


def _ece(bins: list[ReliabilityBin], total: int) -> float:
    return sum(b.count / total * abs(b.mean_predicted - b.observed_rate) for b in bins)


def train(*, rows: int, seed: int) -> tuple[CalibratedClassifierCV, ChurnReport]:
    """Generate ``rows`` leads, fit on 80%, report on the stratified 20% held out."""
    data = generate(check_row_count(rows, MIN_ROWS), seed=seed)
    x_train, x_test, y_train, y_test, p_true_test = heldout_split(
        data.x, data.y, data.p_true, seed=seed
    )
    model = build_model(seed=seed)
    model.fit(x_train, y_train)
    p = model.predict_proba(x_test)[:, 1]
    # The trees before calibration: the average of the folds' uncalibrated models.
    p_raw = np.mean(
        [fold.estimator.predict_proba(x_test)[:, 1] for fold in model.calibrated_classifiers_],
        axis=0,
    )
    bins = reliability(y_test, p)
    report = ChurnReport(
        training_rows=len(y_train),
        heldout_rows=len(y_test),
        heldout_auc=float(roc_auc_score(y_test, p)),
        heldout_brier=float(brier_score_loss(y_test, p)),
        uncalibrated_brier=float(brier_score_loss(y_test, p_raw)),
        ceiling_auc=float(roc_auc_score(y_test, p_true_test)),
        ceiling_brier=float(brier_score_loss(y_test, p_true_test)),
        expected_calibration_error=_ece(bins, len(y_test)),
        positive_rate=float(data.y.mean()),
        bins=bins,
        uncalibrated_bins=reliability(y_test, p_raw),
    )
    return model, report


def train_to_file(
    *, out: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, plot: Path | None = None
) -> tuple[ArtifactMetadata, ChurnReport]:
    """Train and write ``out`` plus ``out.json`` (the lead model's artifact format).

    ``plot``, when given, gets the reliability diagram first: a path the
    system refuses then fails the command before any model is written, rather
    than after it replaced the one in ``out``.
    """
    model, report = train(rows=rows, seed=seed)
    if plot is not None:
        reliability_plot(report, plot)
    metadata = save_artifact(
        model,
        out,
        model_name=MODEL_NAME,
        estimator="hgb+isotonic",
        seed=seed,
        report=report,
        model_info={
            "heldout_brier": round(report.heldout_brier, 5),
            "uncalibrated_brier": round(report.uncalibrated_brier, 5),
            "ceiling_brier": round(report.ceiling_brier, 5),
            "expected_calibration_error": round(report.expected_calibration_error, 5),
        },
        features=FEATURE_NAMES,
        feature_schema_version=FEATURE_SCHEMA_VERSION,
    )
    return metadata, report


def reliability_plot(report: ChurnReport, path: Path, *, size: int = 640) -> None:
    """Draw the reliability diagram (calibrated and raw trees) as a PNG with Pillow."""
    from PIL import Image, ImageDraw

    margin = 70
    side = size - 2 * margin
    image = Image.new("RGB", (size, size + 40), "white")
    draw = ImageDraw.Draw(image)

    def point(x: float, y: float) -> tuple[float, float]:
        return margin + x * side, margin + (1 - y) * side

    for tick in range(11):
        v = tick / 10
        draw.line([point(v, 0), point(v, 1)], fill=(235, 235, 235))
        draw.line([point(0, v), point(1, v)], fill=(235, 235, 235))
        draw.text((point(v, 0)[0] - 8, margin + side + 8), f"{v:.1f}", fill="black")
        draw.text((margin - 34, point(0, v)[1] - 6), f"{v:.1f}", fill="black")
    draw.rectangle([point(0, 1), point(1, 0)], outline="black")
    draw.line([point(0, 0), point(1, 1)], fill=(150, 150, 150), width=1)
    for bins, colour in ((report.uncalibrated_bins, (230, 120, 40)), (report.bins, (30, 90, 200))):
        points = [point(b.mean_predicted, b.observed_rate) for b in bins]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        for x, y in points:
            draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=colour)
    draw.text((margin, 20), "Churn model reliability (held-out split)", fill="black")
    draw.text(
        (margin, 38),
        f"AUC {report.heldout_auc:.3f}   Brier {report.heldout_brier:.4f}   "
        f"ECE {report.expected_calibration_error:.4f}",
        fill="black",
    )
    draw.text(
        (margin + side / 2 - 60, margin + side + 28), "mean predicted probability", fill="black"
    )
    draw.text((8, margin - 20), "observed churn rate", fill="black")
    legend_y = size + 10
    draw.rectangle([margin, legend_y, margin + 14, legend_y + 10], fill=(30, 90, 200))
    draw.text((margin + 20, legend_y), "calibrated (isotonic)", fill="black")
    draw.rectangle([margin + 200, legend_y, margin + 214, legend_y + 10], fill=(230, 120, 40))
    draw.text((margin + 220, legend_y), "trees before calibration", fill="black")
    draw.text((margin + 420, legend_y), "grey: perfect", fill=(120, 120, 120))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``churn train`` options."""
    add_training_arguments(
        parser,
        out=DEFAULT_OUT,
        seed=DEFAULT_SEED,
        rows=DEFAULT_ROWS,
        min_rows=MIN_ROWS,
        what="leads",
    )
    parser.add_argument("--plot", type=Path, default=None, help="write the reliability PNG here")


def run_train(args: argparse.Namespace) -> int:
    """Run ``churn train``; print the held-out report."""
    metadata, report = train_to_file(out=args.out, rows=args.rows, seed=args.seed, plot=args.plot)
    print(
        f"wrote {args.out} (+ .json): version {metadata.version}; held-out "
        f"({report.heldout_rows} rows): AUC {report.heldout_auc:.4f} "
        f"(ceiling {report.ceiling_auc:.4f}), Brier {report.heldout_brier:.4f} "
        f"(before calibration {report.uncalibrated_brier:.4f}, ceiling "
        f"{report.ceiling_brier:.4f}), ECE {report.expected_calibration_error:.4f}, "
        f"churn rate {report.positive_rate:.3f}"
    )
    for b in report.bins:
        print(
            f"  [{b.low:.1f}, {b.high:.1f}): {b.count:6d} leads, predicted "
            f"{b.mean_predicted:.3f}, observed {b.observed_rate:.3f}"
        )
    return 0
