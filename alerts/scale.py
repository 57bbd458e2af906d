"""Rule files with every duration divided by a factor, for closed-loop tests.

A production rule says "p95 above 200 ms for 10 minutes over a 5-minute rate";
an end-to-end test on a laptop cannot wait that long. Dividing every duration
(``for``, ``keep_firing_for``, group ``interval``, range selectors and
``offset``) by the same factor keeps the rules' shape: a test at factor 60 runs
the production logic with seconds where production has minutes. The scrape and
evaluation intervals must shrink by the same factor (15-30 s -> under 1 s).
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_IN_EXPR = re.compile(r"(\[|offset\s+)((?:\d+(?:ms|s|m|h|d|w|y))+)")


def seconds(duration: str) -> float:
    """``1h30m`` -> 5400.0."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def scaled(duration: str, factor: float) -> str:
    """``duration`` divided by ``factor``, in milliseconds (at least 1 ms)."""
    return f"{max(1, round(seconds(duration) * 1000 / factor))}ms"


def scale_expr(expr: str, factor: float) -> str:
    """Every range and offset of a PromQL expression divided by ``factor``."""
    return _IN_EXPR.sub(lambda m: m.group(1) + scaled(m.group(2), factor), expr)


def scale_rule_file(data: dict[str, Any], factor: float) -> dict[str, Any]:
    """A copy of a parsed rule file with every duration divided by ``factor``."""
    groups = []
    for group in data["groups"]:
        new_group = {**group, "rules": []}
        if "interval" in group:
            new_group["interval"] = scaled(group["interval"], factor)
        for rule in group["rules"]:
            new_rule = {**rule, "expr": scale_expr(rule["expr"], factor)}
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    new_rule[key] = scaled(rule[key], factor)
            new_group["rules"].append(new_rule)
        groups.append(new_group)
    return {"groups": groups}
