"""How ``services.dashboards.serve`` configures Streamlit, read back from Streamlit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.dashboards.serve import create_app, streamlit_options


@pytest.fixture
def streamlit_config(settings_env: dict[str, str]) -> Iterator[None]:
    """Streamlit's process-wide configuration, back to its defaults afterwards."""
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager

    pages_directory = PagesManager.uses_pages_directory
    yield
    config.get_config_options(force_reparse=True)
    PagesManager.uses_pages_directory = pages_directory


def test_every_option_reaches_streamlit(streamlit_config: None) -> None:
    # They were STREAMLIT_* variables, which only `streamlit run` reads: under
    # uvicorn Streamlit ran with its defaults (200 MB uploads, usage statistics
    # on, a file watcher, the "Deploy" button).
    from streamlit import config

    app = create_app()
    assert app.state["settings"].log_level == "INFO"
    options = streamlit_options(log_level="INFO")
    assert {name: config.get_option(name) for name in options} == options
    assert config.get_option("server.maxUploadSize") == 1
    assert config.get_option("browser.gatherUsageStats") is False
    # Streamlit's default drew an exception's traceback in the user's page.
    assert config.get_option("client.showErrorDetails") == "none"
