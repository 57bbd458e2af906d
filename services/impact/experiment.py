"""Experiment input: a CSV of per-tenant units, validated, into the arrays ``stats`` needs.

Columns: ``unit_id,variant,value`` (variant ``control`` or ``treatment``), an
optional ``pre_value`` (the same metric before the experiment, for CUPED)
and an optional ``used`` (1/0: the tenant used the feature in the window;
the share among treatment tenants is the adoption ``rollout advance`` checks).
One row per unit: randomisation is by tenant, so a unit id may
appear once. Every problem names its line.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from services.impact.stats import Array

VARIANTS = ("control", "treatment")
MAX_ROWS = 10_000_000

#: The CSV's columns: the required ones, then the optional ones. ``experiment
#: export`` writes them, ``read_units`` reads them: one spelling of each.
UNIT_ID, VARIANT, VALUE, PRE_VALUE, USED = "unit_id", "variant", "value", "pre_value", "used"
REQUIRED_COLUMNS: tuple[str, ...] = (UNIT_ID, VARIANT, VALUE)


class InputError(ValueError):
    """The CSV is not a valid experiment input; the message names the line."""


@dataclass(frozen=True)
class Units:
    """Per-variant values (and pre-period values when given)."""

    control: Array
    treatment: Array
    pre_control: Array | None = None
    pre_treatment: Array | None = None
    #: Share of treatment units with ``used`` = 1 (None without the column).
    adoption: float | None = None


def _number(raw: str, column: str, line: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"line {line}: {column} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"line {line}: {column} must be finite, got {raw!r}")
    return value


#: ``--input -``: the CSV comes on standard input (``experiment export | experiment analyze``).
STDIN = Path("-")


def read_units(path: Path) -> Units:
    """Read and validate the CSV (``STDIN``: from standard input)."""
    try:
        handle: TextIO = (
            io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
            if path == STDIN
            else path.open(newline="", encoding="utf-8")
        )
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    reader = csv.DictReader(handle)
    try:
        with handle:
            return _units(reader)
    except csv.Error as exc:
        # The csv module's own refusals (a field over its size limit) were tracebacks.
        # line_num counts the lines read whole: the refused one is the next.
        raise InputError(f"line {reader.line_num + 1}: {exc}") from None


def _units(reader: csv.DictReader[str]) -> Units:
    """The units of an open reader (``read_units``)."""
    columns = set(reader.fieldnames or ())
    missing = set(REQUIRED_COLUMNS) - columns
    if missing:
        raise InputError(f"missing column(s): {', '.join(sorted(missing))}")
    has_pre = PRE_VALUE in columns
    has_used = USED in columns
    used: list[bool] = []
    values: dict[str, list[float]] = {v: [] for v in VARIANTS}
    pres: dict[str, list[float]] = {v: [] for v in VARIANTS}
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        if line > MAX_ROWS:
            raise InputError(f"more than {MAX_ROWS} rows")
        unit, variant = (row.get(UNIT_ID) or "").strip(), (row.get(VARIANT) or "").strip()
        if not unit:
            raise InputError(f"line {line}: empty unit_id")
        if unit in seen:
            raise InputError(f"line {line}: unit {unit!r} appears twice (one row per tenant)")
        seen.add(unit)
        if variant not in VARIANTS:
            raise InputError(f"line {line}: variant must be control or treatment, not {variant!r}")
        values[variant].append(_number(row.get(VALUE) or "", VALUE, line))
        if has_pre:
            pres[variant].append(_number(row.get(PRE_VALUE) or "", PRE_VALUE, line))
        if has_used and variant == "treatment":
            flag = (row.get(USED) or "").strip()
            if flag not in {"0", "1"}:
                raise InputError(f"line {line}: used must be 0 or 1, not {flag!r}")
            used.append(flag == "1")
    for variant in VARIANTS:
        if len(values[variant]) < 2:
            raise InputError(f"{variant} has {len(values[variant])} unit(s); at least 2 are needed")
    as_array = lambda items: np.asarray(items, dtype=np.float64)  # noqa: E731
    return Units(
        as_array(values["control"]),
        as_array(values["treatment"]),
        as_array(pres["control"]) if has_pre else None,
        as_array(pres["treatment"]) if has_pre else None,
        sum(used) / len(used) if has_used and used else None,
    )
