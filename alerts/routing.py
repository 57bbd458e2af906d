"""The Alertmanager configuration, adapted to where it runs.

``alerts/alertmanager/alertmanager.yml`` is written for the cluster: the
rollback handler's Service URL and the secret files Kubernetes mounts. On a
laptop (``make run``) and in the closed-loop test the same routes and
inhibitions apply; only the receivers' endpoints and credentials change, and
the grouping waits shrink with the test's time scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alerts import ALERTMANAGER_CONFIG
from alerts.scale import seconds


def load() -> dict[str, Any]:
    """The committed configuration, parsed."""
    data: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    return data


def local_config(
    *,
    rollback_url: str,
    token_file: Path,
    slack_url_file: Path | None,
    group_wait: str | None = None,
    group_interval: str | None = None,
) -> dict[str, Any]:
    """The configuration with loopback receivers.

    ``group_wait`` and ``group_interval`` cap the routes' own (each keeps a
    shorter one). Without a Slack URL the Slack receivers keep their routes but send nowhere
    (a receiver with no integration), so no notification fails for lack of a file.
    """
    config = load()
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = rollback_url
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        if "slack_configs" in receiver:
            if slack_url_file is None:
                del receiver["slack_configs"]
            else:
                for slack in receiver["slack_configs"]:
                    slack["api_url_file"] = str(slack_url_file)
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        for key, cap in (("group_wait", group_wait), ("group_interval", group_interval)):
            # A cap, never a longer wait: the rollback route's 0s stays 0s, so
            # a run on a laptop measures the loop production has.
            if cap is not None and key in route and seconds(cap) < seconds(route[key]):
                route[key] = cap
    return config
