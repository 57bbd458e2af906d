"""``enterprisehub serve dashboards``: run the Streamlit app as a server.

The settings are validated first, so a bad variable is one clear message
rather than a broken page; then this process becomes Streamlit's server
(``exec``), so signals and the exit code are Streamlit's own. Headless, no
usage statistics (the server must make no outbound connection), no file
watcher and no development mode: it serves, it does not reload. Messages and
uploads are capped to what the pages need (Streamlit's defaults are 200 MB).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.dashboards.config import DashboardSettings

APP = Path(__file__).with_name("app.py")
#: Streamlit's cap on a WebSocket message, either way, in MB (its default: 200).
#: Anyone who loads the page holds the socket before signing in, so the cap is
#: what the pages need: their largest message, a page of 50 analyses or
#: sessions or a lead window, is well under 1 MB; a bigger one is shown as an
#: error in the page rather than sent.
MAX_MESSAGE_MB = 16


def streamlit_command(*, host: str, port: int, log_level: str) -> list[str]:
    """The argv that serves the app on ``host:port``."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
        "--server.maxMessageSize",
        str(MAX_MESSAGE_MB),
        # No page uploads a file: Streamlit's upload route takes the least it can.
        "--server.maxUploadSize",
        "1",
        "--client.toolbarMode",
        "viewer",
        "--logger.level",
        log_level.lower(),
    ]


def serve(*, host: str, port: int) -> int:
    """Validate the settings, then replace this process with the Streamlit server."""
    settings = DashboardSettings.from_env()
    command = streamlit_command(host=host, port=port, log_level=settings.log_level)
    os.execv(command[0], command)  # noqa: S606 - our own interpreter and arguments
    return 0  # pragma: no cover - execv does not return
