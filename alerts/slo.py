"""Service level objectives as data, turned into Prometheus rules.

One ``SLO`` per objective (``alerts/slos.yaml``) becomes, in ``alerts/rules/slo-<name>.yml``:

- recording rules for the bad and total event rates over 5 minutes, and from them
  the error ratio over every window the alerts use. Windows longer than 5 minutes
  are ``sum_over_time`` of the 5-minute rates divided by ``sum_over_time`` of the
  totals: weighted by requests, not an average of ratios (an average would let a
  quiet hour with one failure count as much as a busy hour);
- the SRE workbook's multi-window, multi-burn-rate alerts: burn 14.4 over 1 h
  confirmed over 5 m, or 6 over 6 h confirmed over 30 m, page
  (``ErrorBudgetBurnFast``, critical); burn 3 over 1 d / 2 h or 1 over 3 d / 6 h
  open a ticket (``ErrorBudgetBurnSlow``, warning). Each pair is guarded by a
  minimum request rate over its long window, so one error at night does not page.

Sloth and Pyrra generate the same shape but are Go binaries that cannot be
installed here; this module is small, and ``tests/alerts`` pins its output with
promtool unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

SliKind = Literal["http_errors", "availability"]

#: (burn rate, long window, short window) per alert. A burn rate is the share of
#: the 30-day budget spent in the long window times 30 d / window: 2% in 1 h
#: (14.4) and 5% in 6 h (6) page, 10% in 3 d (1) opens a ticket (the SRE
#: workbook, "Alerting on SLOs", table 5-8); 10% in 1 d (3) is the ticket pair
#: Sloth and Pyrra add between them. The short window is a twelfth of the long.
FAST_BURNS: tuple[tuple[float, str, str], ...] = ((14.4, "1h", "5m"), (6.0, "6h", "30m"))
SLOW_BURNS: tuple[tuple[float, str, str], ...] = ((3.0, "1d", "2h"), (1.0, "3d", "6h"))
WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
LONG_WINDOWS: tuple[str, ...] = ("1h", "6h", "1d", "3d")
#: The API's requests: every route of the services' APIs is under /v1; /health
#: (kubelet probes) and /metrics (Prometheus scrapes) are not.
API_ROUTES = 'route=~"/v1/.+"'

#: Runbook links are repository paths; the stack prefixes them with the repository's
#: web URL (monitoring config) when it wraps the files into PrometheusRule objects.
RUNBOOK_DIR = "docs/runbooks"


@dataclass(frozen=True, slots=True)
class SLO:
    """One objective of one service.

    ``sli`` is ``http_errors`` (bad events: responses with a 5xx status, out of all
    responses) or ``availability`` (bad events: scrape targets of the service that
    are down, out of all its targets; time-based, so a dead service that answers
    nothing still burns its budget).
    """

    name: str
    service: str
    objective: float
    sli: SliKind
    description: str
    #: Below this many requests per second over a long window the pair stays quiet.
    min_request_rate: float = 0.05

    def __post_init__(self) -> None:
        if not 0.9 <= self.objective < 1:
            raise ValueError(f"SLO {self.name}: objective {self.objective} must be in [0.9, 1)")
        if self.sli not in ("http_errors", "availability"):
            raise ValueError(f"SLO {self.name}: unknown sli {self.sli!r}")

    @property
    def error_budget(self) -> float:
        """The allowed bad-event ratio (1 - objective)."""
        return round(1 - self.objective, 10)

    @property
    def labels(self) -> dict[str, str]:
        """Labels every rule of this SLO carries."""
        return {"slo": self.name, "job": self.service}

    def _selector(self) -> str:
        return f'job="{self.service}"'

    def _api_selector(self) -> str:
        # The API's requests only: probes and scrapes are not users (alerts/rules/latency.yml).
        return f"{self._selector()},{API_ROUTES}"

    def bad_rate_5m(self) -> str:
        """PromQL: bad events per second over 5 minutes."""
        if self.sli == "http_errors":
            # `or ... * 0`: zero rather than no data while no 5xx series exists yet, so
            # ratios and error-budget panels read 0 % instead of going blank.
            return (
                f'sum(rate(http_requests_total{{{self._api_selector()},status=~"5.."}}[5m]))'
                f" or 0 * {self.total_rate_5m()}"
            )
        return f"sum(1 - avg_over_time(up{{{self._selector()}}}[5m]))"

    def total_rate_5m(self) -> str:
        """PromQL: all events per second over 5 minutes."""
        if self.sli == "http_errors":
            return f"sum(rate(http_requests_total{{{self._api_selector()}}}[5m]))"
        # Every target seen in the window, as the bad side counts them: with count(up), a
        # pod that was down and has been replaced still counted as bad for 5 minutes, out
        # of a total that no longer held it (one of three targets down read as 50%, not 33%).
        return f"count(avg_over_time(up{{{self._selector()}}}[5m]))"


def load_slos(path: Path) -> list[SLO]:
    """Read ``slos.yaml``; every field is checked and names are unique."""
    data = yaml.safe_load(path.read_text())
    slos = [SLO(**entry) for entry in data["slos"]]
    names = [slo.name for slo in slos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate SLO names in {path}: {', '.join(duplicates)}")
    return slos


def _selector(slo: SLO) -> str:
    return f'{{slo="{slo.name}"}}'


def _ratio(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def recording_rules(slo: SLO) -> list[dict[str, Any]]:
    """The 5-minute rates and the error ratio over every window."""
    labels = slo.labels
    rules: list[dict[str, Any]] = [
        # The objective as a series, so that dashboards can draw the remaining budget.
        {"record": "slo:objective:ratio", "expr": f"vector({slo.objective:g})", "labels": labels},
        {"record": "slo:sli_errors:rate5m", "expr": slo.bad_rate_5m(), "labels": labels},
        {"record": "slo:sli_requests:rate5m", "expr": slo.total_rate_5m(), "labels": labels},
        {
            "record": _ratio("5m"),
            "expr": (
                f"slo:sli_errors:rate5m{_selector(slo)} / slo:sli_requests:rate5m{_selector(slo)}"
            ),
            "labels": labels,
        },
    ]
    for window in WINDOWS[1:]:
        rules.append(
            {
                "record": _ratio(window),
                "expr": (
                    f"sum_over_time(slo:sli_errors:rate5m{_selector(slo)}[{window}])"
                    f" / sum_over_time(slo:sli_requests:rate5m{_selector(slo)}[{window}])"
                ),
                "labels": labels,
            }
        )
    for window in LONG_WINDOWS:
        rules.append(
            {
                "record": f"slo:sli_requests:rate{window}",
                "expr": f"avg_over_time(slo:sli_requests:rate5m{_selector(slo)}[{window}])",
                "labels": labels,
            }
        )
    return rules


def _burn_condition(slo: SLO, burn: float, long: str, short: str) -> str:
    threshold = f"({burn:g} * {slo.error_budget:g})"
    condition = (
        f"{_ratio(long)}{_selector(slo)} > {threshold}\n"
        f"and {_ratio(short)}{_selector(slo)} > {threshold}"
    )
    if slo.sli == "http_errors":
        condition += (
            f"\nand slo:sli_requests:rate{long}{_selector(slo)} >= {slo.min_request_rate:g}"
        )
    return f"(\n{condition}\n)"


@dataclass(frozen=True, slots=True)
class BurnAlert:
    """One burn-rate alert every SLO gets: its burn pairs, severity and timing."""

    name: str
    burns: Sequence[tuple[float, str, str]]
    severity: str
    #: How long a pair must hold before the alert fires.
    for_: str
    #: How long the alert keeps firing once no pair holds (no flapping on recovery).
    keep_firing_for: str
    #: "fast" or "slowly", for the summary.
    speed: str


#: The page (fast) and the ticket (slow); ``tests/alerts/test_thresholds.py`` halves
#: and doubles each burn rate and ``for:`` here and requires a promtool test to fail.
BURN_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert("ErrorBudgetBurnFast", FAST_BURNS, "critical", "2m", "5m", "fast"),
    BurnAlert("ErrorBudgetBurnSlow", SLOW_BURNS, "warning", "15m", "30m", "slowly"),
)


def _alert(slo: SLO, alert: BurnAlert) -> dict[str, Any]:
    expr = "\nor\n".join(_burn_condition(slo, *burn) for burn in alert.burns)
    budget_pct = f"{slo.error_budget * 100:g}%"
    name = alert.name
    # The slowest burn that fires it: any pair holding spends the budget at least this fast.
    spent_within = round(30 / min(burn for burn, _, _ in alert.burns), 1)
    return {
        "alert": name,
        "expr": expr,
        "for": alert.for_,
        "keep_firing_for": alert.keep_firing_for,
        "labels": {**slo.labels, "severity": alert.severity},
        "annotations": {
            "summary": (
                f"{slo.service}: {slo.description} is burning its error budget {alert.speed}"
            ),
            "description": (
                f"{slo.name}: objective {slo.objective * 100:g}% (budget {budget_pct}). "
                "The error ratio over the long window is {{ $value | humanizePercentage }}; "
                f"at this rate the 30-day budget is spent in {spent_within:g} days or less."
            ),
            "runbook_url": f"{RUNBOOK_DIR}/{name}.md",
        },
    }


def alert_rules(slo: SLO) -> list[dict[str, Any]]:
    """The page (fast) and ticket (slow) burn-rate alerts of one SLO."""
    return [_alert(slo, alert) for alert in BURN_ALERTS]


def rule_file(slo: SLO) -> dict[str, Any]:
    """One SLO's rule file: one group, recording rules first.

    Rules of one group are evaluated in order, so the alerts always read the
    ratios of the same evaluation; across groups Prometheus gives no order.
    """
    return {
        "groups": [{"name": f"slo-{slo.name}", "rules": recording_rules(slo) + alert_rules(slo)}]
    }


HEADER = (
    "# Generated by `python -m alerts render` from alerts/slos.yaml: do not edit.\n"
    "# `python -m alerts render --check` (run by the tests) fails when this file and\n"
    "# its source drift apart.\n"
)


class _RuleDumper(yaml.SafeDumper):
    """Block scalars for multi-line expressions, and no anchors for shared label dicts."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RuleDumper.add_representer(str, _str)


def render_rule_files(slos: Sequence[SLO]) -> dict[str, str]:
    """File name (``slo-<name>.yml``) -> text, one file per SLO, deterministic.

    One file per SLO keeps each promtool unit test to the rules it exercises.
    """
    return {
        f"slo-{slo.name}.yml": HEADER
        + yaml.dump(rule_file(slo), Dumper=_RuleDumper, sort_keys=False, width=120)
        for slo in slos
    }
