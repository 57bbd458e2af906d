"""Stand-ins that count what they receive (Slack, the Kubernetes API), and the settings."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.services.rollback.kubernetes_api import KubernetesApiStandIn, serve

WEBHOOK_TOKEN = "alertmanager-webhook-token-0123456789abcdef"


@dataclass
class SlackStandIn:
    """Slack's incoming-webhook endpoint on loopback: records each message it accepts.

    ``status`` other than 200 refuses posts (recorded in ``refused``); ``down``
    drops the connection without an answer; while ``hold`` is cleared a post
    waits (``holding`` is set when one does) before it is answered.
    """

    url: str
    messages: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    status: int = 200
    down: bool = False
    hold: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn("")
    stand_in.hold.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if stand_in.down:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if not stand_in.hold.is_set():
                stand_in.holding.set()
                stand_in.hold.wait(30)
            text = json.loads(body)["text"]
            if stand_in.status != 200:
                stand_in.refused.append(text)
                self.send_response(stand_in.status)
                self.end_headers()
                self.wfile.write(b"service_unavailable")
                return
            stand_in.messages.append(text)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_port}/services/T/B/X"
    try:
        yield stand_in
    finally:
        stand_in.hold.set()
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


# --------------------------------------------------------------- Kubernetes API

KUBERNETES_NAMESPACE = "enterprisehub"
SERVICE_ACCOUNT_TOKEN = "stand-in-service-account-token-0123456789"


@pytest.fixture(scope="session")
def api_server_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the stand-in's and the pod's ca.crt."""
    directory = tmp_path_factory.mktemp("kubernetes-tls")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=kubernetes", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def kubernetes_api(
    api_server_certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[KubernetesApiStandIn]:
    """The stand-in API server, and the pod's view of it: the ServiceAccount files
    (token, namespace, ca.crt) and KUBERNETES_SERVICE_HOST/PORT, as the kubelet gives them."""
    cert, key = api_server_certificate
    api = KubernetesApiStandIn(namespace=KUBERNETES_NAMESPACE, token=SERVICE_ACCOUNT_TOKEN)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(SERVICE_ACCOUNT_TOKEN)
    (account / "namespace").write_text(KUBERNETES_NAMESPACE)
    (account / "ca.crt").write_bytes(cert.read_bytes())
    monkeypatch.setenv("ROLLBACK_SERVICE_ACCOUNT_DIR", str(account))
    with serve(api, cert, key):
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
        yield api


# --------------------------------------------------------------- undoing deployments

FEATURE_DEPLOYMENTS = (
    '{"property_vision": ["ml-services"], "realtime_intelligence": ["websocket-manager"], '
    '"ai_coaching": ["coaching-engine"], "churn_prevention": ["churn-orchestrator"]}'
)


@pytest.fixture
def undoing(
    rollback_env: dict[str, str],
    kubernetes_api: KubernetesApiStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> KubernetesApiStandIn:
    """The stack's rollback.undoDeployments on: the handler's two settings."""
    monkeypatch.setenv("ROLLBACK_UNDO_DEPLOYMENTS", "true")
    monkeypatch.setenv("ROLLBACK_FEATURE_DEPLOYMENTS", FEATURE_DEPLOYMENTS)
    return kubernetes_api
