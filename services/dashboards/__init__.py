"""The Streamlit dashboards: one multipage app (``enterprisehub serve dashboards``)."""
