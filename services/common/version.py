"""The installed project's version: for the apps, their build_info and ``enterprisehub --version``.

A module of its own, free of the web stack, so that the command line can print
the version without importing FastAPI.
"""

from __future__ import annotations

from importlib import metadata

#: The distribution name in pyproject.toml.
DISTRIBUTION = "enterprisehub-phase3"


def package_version() -> str:
    """The installed project version, or ``0+unknown`` when run from a bare tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"
