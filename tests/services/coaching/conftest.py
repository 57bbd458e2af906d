"""Fixtures of the coaching tests: the Anthropic Messages API stand-in."""

from tests.standins import _anthropic_server, anthropic_api  # noqa: F401
