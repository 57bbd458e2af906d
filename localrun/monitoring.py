"""Prometheus and Alertmanager on loopback, wired as in the cluster.

Shared by ``make run`` and the closed-loop benchmark. Prometheus scrapes each
service under its catalog name as the job (the rules select on ``job=``),
evaluates the project's rule files and sends its alerts to an Alertmanager
that runs the project's routing (``alerts/alertmanager/alertmanager.yml``)
with the receivers rewritten to loopback (``alerts.routing.local_config``):
rollback triggers go to the rollback handler at ``rollback_url`` with the
bearer token read from ``token_file``; the Slack receivers keep their routes
and send nowhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from alerts.catalog import rule_files as project_rule_files
from alerts.routing import local_config
from localrun.servers import (
    AlertmanagerServer,
    PrometheusServer,
    start_alertmanager,
    start_prometheus,
)

ROLLBACK_WEBHOOK_PATH = "/v1/alertmanager/webhook"
"""Where the rollback handler receives Alertmanager's notifications."""


@dataclass(frozen=True)
class Monitoring:
    """The running Prometheus and the Alertmanager it sends its alerts to."""

    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer


@contextlib.contextmanager
def start_monitoring(
    base_dir: Path,
    *,
    jobs: Mapping[str, Sequence[str]],
    rollback_url: str,
    token_file: Path,
    rule_files: Sequence[Path] | None = None,
    scrape_interval: str = "5s",
    evaluation_interval: str | None = None,
    group_wait: str | None = None,
    group_interval: str | None = None,
) -> Iterator[Monitoring]:
    """Start Alertmanager, then Prometheus pointed at it; stop both on exit.

    ``jobs`` maps a job name to its ``host:port`` targets; ``rule_files``
    defaults to the project's (``alerts/rules/*.yml``). ``group_wait`` and
    ``group_interval`` shorten the routes' waits (the closed loop's time scale).
    """
    alertmanager = start_alertmanager(
        base_dir,
        local_config(
            rollback_url=rollback_url,
            token_file=token_file,
            slack_url_file=None,
            group_wait=group_wait,
            group_interval=group_interval,
        ),
    )
    try:
        prometheus = start_prometheus(
            base_dir,
            jobs=jobs,
            rule_files=project_rule_files() if rule_files is None else rule_files,
            scrape_interval=scrape_interval,
            evaluation_interval=evaluation_interval,
            alertmanager=alertmanager.address,
        )
        try:
            yield Monitoring(prometheus=prometheus, alertmanager=alertmanager)
        finally:
            prometheus.stop()
    finally:
        alertmanager.stop()
