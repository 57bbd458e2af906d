"""Fixtures for the local stand-ins (import the ones a test module uses).

``anthropic_api``: one ``AnthropicStandIn`` per test module (starting uvicorn
costs ~50 ms), reset before each test: counters at zero, no queued cases,
empty prompt cache, the default responder, token counts that answer.
(AWS's APIs: ``localrun.standins.aws.moto_server``.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localrun.standins.anthropic import AnthropicStandIn


@pytest.fixture(scope="module")
def _anthropic_server() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn() as server:
        yield server


@pytest.fixture
def anthropic_api(_anthropic_server: AnthropicStandIn) -> AnthropicStandIn:
    """The module's stand-in, reset for this test."""
    _anthropic_server.reset()
    _anthropic_server.responder = lambda _body: "{}"
    _anthropic_server.latency = 0.0
    _anthropic_server.count_tokens_status = 200
    _anthropic_server.batch_invisible_polls = 0
    _anthropic_server.batch_polls_to_end = 1
    return _anthropic_server
