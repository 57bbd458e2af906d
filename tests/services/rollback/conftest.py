"""A Slack stand-in that counts what it receives, and rollback-handler's settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

WEBHOOK_TOKEN = "alertmanager-webhook-token-0123456789abcdef"


@dataclass
class SlackStandIn:
    """Slack's incoming-webhook endpoint on loopback: records each message."""

    url: str
    messages: list[str] = field(default_factory=list)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            received.append(json.loads(body)["text"])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SlackStandIn(f"http://127.0.0.1:{server.server_port}/services/T/B/X", received)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def rollback_env(
    settings_env: dict[str, str], slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    extra = {"ALERTMANAGER_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "SLACK_WEBHOOK_URL": slack.url}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return {**settings_env, **extra}
