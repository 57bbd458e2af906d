"""``enterprisehub serve dashboards``: the Streamlit app on the services' own server.

The settings are validated first, so a bad variable is one clear message
rather than a broken page. The app is Streamlit's ASGI application
(``st.App``), run by the same uvicorn configuration as every service
(``services.cli.uvicorn_options``): request heads bounded and timed
(slowloris), unparseable requests answered ``{detail, reason}``, credentials
redacted from every log line (``services.common.serving``). ``streamlit run``
would start a server of its own with none of these, before any sign-in.

Streamlit is configured through its environment variables before it loads
its configuration: no usage statistics (the server makes no outbound
connection), no file watcher and no development mode (it serves, it does not
reload), the viewer's toolbar, and messages and uploads capped to what the
pages need (Streamlit's defaults are 200 MB each).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from services.dashboards.config import DashboardSettings

APP = Path(__file__).with_name("app.py")
#: Streamlit's cap on a WebSocket message, either way, in MB (its default: 200).
#: Anyone who loads the page holds the socket before signing in, so the cap is
#: what the pages need: their largest message, a page of 50 analyses or
#: sessions or a lead window, is well under 1 MB; a bigger one is shown as an
#: error in the page rather than sent.
MAX_MESSAGE_MB = 16
#: The same cap in bytes, as uvicorn reads client messages (``services.cli.SERVICES``).
MAX_MESSAGE_BYTES = MAX_MESSAGE_MB * 1_000_000


def streamlit_environment(*, log_level: str) -> dict[str, str]:
    """Streamlit's options, as the environment variables it reads them from."""
    return {
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
        "STREAMLIT_GLOBAL_DEVELOPMENT_MODE": "false",
        "STREAMLIT_CLIENT_TOOLBAR_MODE": "viewer",
        "STREAMLIT_SERVER_MAX_MESSAGE_SIZE": str(MAX_MESSAGE_MB),
        # No page uploads a file: Streamlit's upload route takes the least it can.
        "STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "1",
        "STREAMLIT_LOGGER_LEVEL": log_level.lower(),
    }


def create_app() -> Any:
    """Streamlit's ASGI application of the dashboards, configured (settings first)."""
    settings = DashboardSettings.from_env()
    os.environ.update(streamlit_environment(log_level=settings.log_level))
    import streamlit as st

    app = st.App(str(APP))
    app.state["settings"] = settings
    return app
