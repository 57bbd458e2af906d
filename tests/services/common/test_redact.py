"""What the log filter redacts: every credential, however the client encoded it."""

from __future__ import annotations

import logging

import httpx
import pytest

from services.common.serving import RedactCredentials, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0aWQiOiJ0In0.c2lnbmF0dXJl-_x"
ENCODED = JWT.replace(".", "%2E")


@pytest.mark.parametrize(
    "line",
    [
        f"WebSocket /v1/feed?access_token={JWT} [accepted]",
        f"WebSocket /v1/feed?access%5Ftoken={ENCODED} [accepted]",
        f"GET /health?token={ENCODED} HTTP/1.1",
        f"GET /health?token={ENCODED.replace('%', '%25')} HTTP/1.1",
        f"Authorization: Bearer {JWT}",
        "GET /x?a=b+c&access%5Ftoken=opaque-token-value",
    ],
)
def test_a_credential_is_redacted_however_it_was_encoded(line: str) -> None:
    redacted = redact(line)
    assert "[redacted]" in redacted
    assert "c2lnbmF0dXJl" not in redacted
    assert "opaque-token-value" not in redacted


@pytest.mark.parametrize(
    "line", ["GET /search?q=caf%C3%A9&page=2 200", "progress 100% done", "a %zz b %"]
)
def test_encoded_text_without_a_credential_is_left_as_it_is(line: str) -> None:
    assert redact(line) == line


def test_a_credential_in_a_log_argument_of_any_type_is_redacted() -> None:
    # httpx passes its URL object, not a string: the filter redacted strings and
    # bytes only, so a token in a logged URL object reached the line whole.
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s %d", None, None
    )
    record.args = ("GET", httpx.URL(f"http://feed.test/v1/feed?access_token={JWT}"), 200)
    assert RedactCredentials().filter(record)
    line = record.getMessage()
    assert "c2lnbmF0dXJl" not in line
    assert line == "HTTP Request: GET http://feed.test/v1/feed?access_token=[redacted] 200"
