"""Dashboard pages: each module defines ``TITLE``, ``ICON`` and ``render(ctx)``.

Register a page with one line in ``services/dashboards/app.py``'s ``PAGES``.
Keep data loading in plain async ``load_...`` functions that tests call
against the real Postgres (or feed); ``render`` only draws.
"""
