"""A numpy fast path for the fitted lead model: the same scores in microseconds.

The default model (`services.ml.training.build_pipeline`, ``logistic``) is a
scikit-learn ``Pipeline``: a ``ColumnTransformer`` (one-hot categoricals,
``log1p`` then ``StandardScaler`` on the numeric columns, passthrough
booleans) and a binary ``LogisticRegression``. ``predict_proba`` on it costs
about 1.6 ms per call whatever the batch size, almost all of it input
validation and the ColumnTransformer's joblib dispatch, while the arithmetic
is a few dozen flops per lead.

`compile_model` reads the fitted parameters once (categories, scaler means
and scales, coefficients) into arrays and scores rows with a few vector
operations: a table lookup per categorical column (the coefficient of the
one-hot column that would be 1), ``log1p``/standardise/dot for the numeric
block, a dot for passthrough columns, then the logistic function. It then
checks itself against the pipeline's ``predict_proba`` on a fixed sample
covering every category; any difference above `MAX_ABS_DIFF` (or any shape
it does not know, e.g. ``--estimator hgb``) makes it refuse with the reason,
and the caller keeps using the pipeline.

Unknown categorical codes raise ``ValueError``, as the pipeline's encoder
(``handle_unknown="error"``) does: a bad row is never scored as something else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import sklearn
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

log = logging.getLogger(__name__)

MAX_ABS_DIFF: Final = 1e-9
"""Largest probability difference from ``predict_proba`` accepted at load."""
SAMPLE_ROWS: Final = 512
SAMPLE_SEED: Final = 20_261_125

FloatArray = NDArray[np.float64]


class UnsupportedModelError(ValueError):
    """The fitted model has a shape the fast path does not reproduce."""


@dataclass(frozen=True, slots=True)
class _Categorical:
    column: int
    # category value -> the coefficient of its one-hot output column
    weights: dict[float, float]


@dataclass(frozen=True, slots=True)
class _Numeric:
    columns: NDArray[np.intp]
    log1p: bool
    mean: FloatArray | None
    scale: FloatArray | None
    weights: FloatArray
    weight_list: tuple[float, ...]


class FastLogistic:
    """Scores encoded rows exactly as the compiled pipeline's ``predict_proba[:, 1]``."""

    __slots__ = ("_categoricals", "_intercept", "_n_features", "_numerics")

    def __init__(
        self,
        *,
        n_features: int,
        intercept: float,
        categoricals: list[_Categorical],
        numerics: list[_Numeric],
    ) -> None:
        self._n_features = n_features
        self._intercept = intercept
        self._categoricals = categoricals
        self._numerics = numerics

    def decision(self, x: FloatArray) -> FloatArray:
        """The logistic regression's decision function of an ``(n, features)`` matrix."""
        if x.ndim != 2 or x.shape[1] != self._n_features:
            raise ValueError(f"expected rows of {self._n_features} features, got shape {x.shape}")
        z = np.full(x.shape[0], self._intercept)
        for cat in self._categoricals:
            weights = cat.weights
            try:
                z += [weights[value] for value in x[:, cat.column].tolist()]
            except KeyError as exc:
                raise ValueError(
                    f"unknown category {exc.args[0]!r} in column {cat.column}"
                ) from None
        for num in self._numerics:
            block = x[:, num.columns]
            if num.log1p:
                block = np.log1p(block)
            if num.mean is not None:
                block = block - num.mean
            if num.scale is not None:
                block = block / num.scale
            # Column by column, in a fixed order: a matrix product or a row
            # reduction sums in an order that depends on the batch size, and a
            # lead must get bit-for-bit the same score alone or in any batch.
            for k, weight in enumerate(num.weight_list):
                z += block[:, k] * weight
        return z

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """P(class 1) of each encoded row, in input order."""
        if not rows:
            return []
        z = self.decision(np.asarray(rows, dtype=np.float64))
        # expit, as LogisticRegression's binary predict_proba computes it.
        p: FloatArray = 1.0 / (1.0 + np.exp(-z))
        return list(p.tolist())


def _transformer_ops(transformer: Any) -> tuple[bool, FloatArray | None, FloatArray | None]:
    """``(log1p, mean, scale)`` of an element-wise numeric transformer chain."""
    steps = (
        [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    )
    log1p = False
    mean: FloatArray | None = None
    scale: FloatArray | None = None
    for position, step in enumerate(steps):
        if step is None or step == "passthrough":
            continue
        if type(step) is FunctionTransformer:
            if step.kw_args:
                raise UnsupportedModelError("FunctionTransformer with kw_args")
            if step.func is None:
                continue
            if step.func is np.log1p and not log1p and mean is None and scale is None:
                log1p = True
                continue
            raise UnsupportedModelError(
                f"FunctionTransformer func {step.func!r} at step {position}"
            )
        if type(step) is StandardScaler and mean is None and scale is None:
            mean = None if step.mean_ is None else np.asarray(step.mean_, dtype=np.float64)
            scale = None if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
            continue
        raise UnsupportedModelError(f"transformer {type(step).__name__} at step {position}")
    return log1p, mean, scale


def _columns(columns: Any, n_features: int) -> list[int]:
    values = np.asarray(columns)
    if values.dtype.kind not in "iu" or values.ndim != 1:
        raise UnsupportedModelError(f"column selector {columns!r} (only integer lists)")
    out = [int(c) for c in values]
    if any(c < 0 or c >= n_features for c in out):
        raise UnsupportedModelError(f"column selector {columns!r} out of range")
    return out


def _compile(model: Any) -> tuple[FastLogistic, list[tuple[int, list[float]]]]:
    if not isinstance(model, Pipeline):
        raise UnsupportedModelError(f"model is {type(model).__name__}, not a Pipeline")
    clf = model.steps[-1][1]
    if type(clf) is not LogisticRegression:
        raise UnsupportedModelError(f"final estimator is {type(clf).__name__}")
    if len(model.steps) != 2:
        raise UnsupportedModelError(f"{len(model.steps)} pipeline steps, not preprocess + clf")
    pre = model.steps[0][1]
    if len(clf.classes_) != 2 or clf.coef_.shape[0] != 1:
        raise UnsupportedModelError("LogisticRegression is not binary")
    if type(pre) is not ColumnTransformer:
        raise UnsupportedModelError(f"preprocessing is {type(pre).__name__}")
    if pre.sparse_output_:
        raise UnsupportedModelError("ColumnTransformer has sparse output")
    coef = np.asarray(clf.coef_[0], dtype=np.float64)
    n_features = int(pre.n_features_in_)
    categoricals: list[_Categorical] = []
    numerics: list[_Numeric] = []
    categories: list[tuple[int, list[float]]] = []
    width = 0
    for name, transformer, columns in pre.transformers_:
        out = pre.output_indices_[name]
        width += out.stop - out.start
        if transformer == "drop" or out.stop == out.start:
            continue
        cols = _columns(columns, n_features)
        weights = coef[out]
        if type(transformer) is OneHotEncoder:
            enc = transformer
            if enc.drop_idx_ is not None or enc.handle_unknown != "error":
                raise UnsupportedModelError("OneHotEncoder with drop or handle_unknown != error")
            if getattr(enc, "_infrequent_enabled", False):
                raise UnsupportedModelError("OneHotEncoder with infrequent categories")
            offset = 0
            for column, cats in zip(cols, enc.categories_, strict=True):
                if cats.dtype.kind not in "fiu":
                    raise UnsupportedModelError("non-numeric categories")
                values = [float(c) for c in cats]
                table = {v: float(weights[offset + k]) for k, v in enumerate(values)}
                categoricals.append(_Categorical(column=column, weights=table))
                categories.append((column, values))
                offset += len(values)
            if offset != len(weights):
                raise UnsupportedModelError("one-hot width differs from its coefficients")
            continue
        log1p, mean, scale = _transformer_ops(transformer)
        if len(cols) != len(weights):
            raise UnsupportedModelError(f"transformer {name!r} is not one-to-one")
        numerics.append(
            _Numeric(
                columns=np.asarray(cols, dtype=np.intp),
                log1p=log1p,
                mean=mean,
                scale=scale,
                weights=np.ascontiguousarray(weights),
                weight_list=tuple(float(w) for w in weights),
            )
        )
    if width != coef.shape[0]:
        raise UnsupportedModelError("transformed width differs from the coefficients")
    fast = FastLogistic(
        n_features=n_features,
        intercept=float(clf.intercept_[0]),
        categoricals=categoricals,
        numerics=numerics,
    )
    return fast, categories


def verification_sample(
    n_features: int, categories: list[tuple[int, list[float]]], *, rows: int = SAMPLE_ROWS
) -> FloatArray:
    """Fixed rows covering every category and a wide range of non-negative values."""
    rng = np.random.default_rng(SAMPLE_SEED)
    # Heavy-tailed magnitudes (0 to ~1e7) like budgets, counts and durations,
    # with exact zeros and small integers mixed in.
    x = np.exp(rng.uniform(-2.0, 16.0, size=(rows, n_features)))
    x[rng.random((rows, n_features)) < 0.2] = 0.0
    small = rng.random((rows, n_features)) < 0.3
    x[small] = rng.integers(0, 5, size=int(small.sum()))
    for column, values in categories:
        x[:, column] = np.resize(np.asarray(values), rows)
    return x


def compile_model(model: Any) -> FastLogistic | None:
    """A verified fast path for ``model``, or None (logged) when there is none."""
    try:
        fast, categories = _compile(model)
        sample = verification_sample(fast._n_features, categories)
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            expected = model.predict_proba(sample)[:, 1]
        got = np.asarray(fast.predict(sample.tolist()))
        diff = float(np.max(np.abs(got - expected)))
    except UnsupportedModelError as exc:
        log.info("lead model fast path off, scoring with the pipeline: %s", exc)
        return None
    except Exception as exc:  # an unforeseen fitted shape: never worse than the pipeline
        log.warning("lead model fast path off, scoring with the pipeline: %r", exc)
        return None
    if not diff <= MAX_ABS_DIFF:
        log.warning(
            "lead model fast path off, scoring with the pipeline: "
            "max abs difference %.3g from predict_proba exceeds %g",
            diff,
            MAX_ABS_DIFF,
        )
        return None
    log.info("lead model fast path on (max abs difference %.3g on %d rows)", diff, len(sample))
    return fast


__all__ = [
    "MAX_ABS_DIFF",
    "FastLogistic",
    "UnsupportedModelError",
    "compile_model",
    "verification_sample",
]
