"""A stand-in Kubernetes API server on loopback, speaking the REST protocol of apps/v1.

It serves exactly what ``kubectl rollout undo`` uses, over TLS with a bearer
token like an in-cluster API server:

- ``GET   /apis/apps/v1/namespaces/NS/deployments/NAME``
- ``GET   /apis/apps/v1/namespaces/NS/replicasets?labelSelector=k=v,...``
- ``PATCH /apis/apps/v1/namespaces/NS/deployments/NAME`` with
  ``Content-Type: application/json-patch+json`` (RFC 6902 ``test`` and
  ``replace``; a failed ``test`` is a 422, as the real server answers)

Every write of a Deployment gives it a new ``metadata.resourceVersion``;
``after_list`` runs after ReplicaSets are listed (a concurrent writer).

Errors are ``Status`` objects as the real server sends them. Every request is
recorded, so a test can count what the handler sent. The Deployment
controller is not simulated: a patch changes the stored Deployment only.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_DEPLOYMENT = re.compile(r"/apis/apps/v1/namespaces/([a-z0-9-]+)/deployments/([a-z0-9.-]+)")
_REPLICA_SETS = re.compile(r"/apis/apps/v1/namespaces/([a-z0-9-]+)/replicasets")
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    authorization: str
    body: Any


@dataclass
class KubernetesApiStandIn:
    """Objects, recorded requests, and a failure switch (``fail_with``: an HTTP status)."""

    namespace: str
    token: str
    port: int = 0
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    replica_sets: list[dict[str, Any]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    fail_with: int | None = None
    #: Called after a list of ReplicaSets was served (before it is sent).
    after_list: Callable[[], None] | None = None
    #: Send each answer a byte at a time, this many seconds apart (a slow proxy):
    #: every byte comes well within a read timeout, the whole answer never does.
    trickle_seconds: float | None = None
    _version: int = 1

    def requests(self, method: str | None = None) -> list[Received]:
        """What arrived, optionally of one method."""
        return [r for r in self.received if method is None or r.method == method]

    def add_deployment(
        self, name: str, images: list[str], *, paused: bool = False, foreign: int = 0
    ) -> None:
        """A Deployment at revision ``len(images)`` with a ReplicaSet per image (revisions
        1..n), plus ``foreign`` ReplicaSets with the same labels owned by another object."""
        labels = {"app.kubernetes.io/name": name}
        uid = f"uid-{name}"
        for number, image in enumerate(images, start=1):
            self.replica_sets.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"{name}-{number}",
                        "namespace": self.namespace,
                        "labels": {**labels, "pod-template-hash": f"hash{number}"},
                        "annotations": {
                            "deployment.kubernetes.io/revision": str(number),
                            "deployment.kubernetes.io/desired-replicas": "2",
                            "pulumi.com/autonamed": "false",
                        },
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "name": name,
                                "uid": uid,
                                "controller": True,
                            }
                        ],
                    },
                    "spec": {"replicas": 0, "template": template(name, image, f"hash{number}")},
                }
            )
        for number in range(foreign):
            rs = copy.deepcopy(self.replica_sets[-1])
            rs["metadata"]["name"] = f"{name}-foreign-{number}"
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "99"
            rs["metadata"]["ownerReferences"][0]["uid"] = "uid-someone-else"
            self.replica_sets.append(rs)
        self.deployments[name] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": uid,
                "resourceVersion": self._next_version(),
                "annotations": {
                    "deployment.kubernetes.io/revision": str(len(images)),
                    "checkov.io/skip1": "CKV_K8S_35=by contract",
                },
            },
            "spec": {
                "selector": {"matchLabels": labels},
                "paused": paused,
                "template": template(name, images[-1], None),
            },
        }

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def roll_out(self, name: str) -> None:
        """What the Deployment controller does after a template change: the ReplicaSet
        with the Deployment's template (a new one if none has it) gets the next revision."""
        deployment = self.deployments[name]
        owned = [rs for rs in self.replica_sets if rs["metadata"]["name"].startswith(f"{name}-")]
        revision = 1 + max(
            int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in owned
        )
        wanted = deployment["spec"]["template"]
        for rs in owned:
            own = copy.deepcopy(rs["spec"]["template"])
            own["metadata"]["labels"].pop("pod-template-hash")
            if own == wanted:
                break
        else:
            rs = copy.deepcopy(owned[-1])
            rs["metadata"]["name"] = f"{name}-{revision}"
            rs["spec"]["template"] = copy.deepcopy(wanted)
            rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = f"hash{revision}"
            rs["metadata"]["labels"]["pod-template-hash"] = f"hash{revision}"
            self.replica_sets.append(rs)
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
        deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
        deployment["metadata"]["resourceVersion"] = self._next_version()

    def release(self, name: str, image: str) -> None:
        """A new release of ``name`` (as ``pulumi up`` with a new image), rolled out."""
        containers = self.deployments[name]["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = image
        self.roll_out(name)

    # ------------------------------------------------------------------ HTTP

    def answer(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, Any]:
        """(status, JSON body) for one request; records it first."""
        split = urlsplit(target)
        content_type = headers.get("content-type", "")
        parsed = json.loads(body) if body else None
        self.received.append(
            Received(
                method,
                split.path,
                parse_qs(split.query),
                content_type,
                headers.get("authorization", ""),
                parsed,
            )
        )
        if headers.get("authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        if self.fail_with is not None:
            reason = {403: "Forbidden", 500: "InternalError"}.get(self.fail_with, "Unknown")
            return _status(self.fail_with, reason, f"stand-in told to fail with {self.fail_with}")
        if match := _DEPLOYMENT.fullmatch(split.path):
            namespace, name = match.groups()
            found = self.deployments.get(name) if namespace == self.namespace else None
            if found is None:
                return _status(404, "NotFound", f'deployments.apps "{name}" not found')
            if method == "GET":
                return 200, found
            if method == "PATCH":
                status, answer = self._patch(found, content_type, parsed)
                if status == 200:
                    found["metadata"]["resourceVersion"] = self._next_version()
                return status, answer
        if (match := _REPLICA_SETS.fullmatch(split.path)) and method == "GET":
            wanted = _selector(parse_qs(split.query).get("labelSelector", [""])[0])
            items = [
                rs
                for rs in self.replica_sets
                if match.group(1) == self.namespace
                and wanted.items() <= rs["metadata"]["labels"].items()
            ]
            listing = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSetList",
                "metadata": {"resourceVersion": "1"},
                "items": copy.deepcopy(items),
            }
            if self.after_list is not None:
                self.after_list()
            return 200, listing
        return _status(404, "NotFound", f"{method} {split.path} is not served here")

    @staticmethod
    def _patch(found: dict[str, Any], content_type: str, patch: Any) -> tuple[int, Any]:
        if content_type != JSON_PATCH:
            return _status(415, "UnsupportedMediaType", f"{content_type} is not {JSON_PATCH}")
        # All or nothing, as the server applies a patch to a copy.
        patched = copy.deepcopy(found)
        for operation in patch:
            steps = operation["path"].strip("/").split("/")
            parent = patched
            for step in steps[:-1]:
                parent = parent[step]
            if operation["op"] not in ("replace", "test") or steps[-1] not in parent:
                return _status(422, "Invalid", f"cannot {operation['op']} {operation['path']}")
            if operation["op"] == "test":
                if parent[steps[-1]] != operation["value"]:
                    return _status(
                        422, "", f"testing value {operation['path']} failed: test failed"
                    )
                continue
            parent[steps[-1]] = operation["value"]
        found.clear()
        found.update(patched)
        return 200, found


def template(name: str, image: str, pod_hash: str | None) -> dict[str, Any]:
    """A pod template as the API server returns it (with its hash label in a ReplicaSet)."""
    labels = {"app.kubernetes.io/name": name}
    if pod_hash is not None:
        labels["pod-template-hash"] = pod_hash
    return {
        "metadata": {"labels": labels, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": name,
                    "image": image,
                    "ports": [{"name": "http", "containerPort": 8002, "protocol": "TCP"}],
                    # A field newer than any client model: it must survive the copy.
                    "futureField": {"kept": True},
                }
            ],
        },
    }


def _selector(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    return {key: value for key, value in pairs}


def _status(code: int, reason: str, message: str) -> tuple[int, Any]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@contextmanager
def serve(api: KubernetesApiStandIn, cert: Path, key: Path) -> Iterator[KubernetesApiStandIn]:
    """Serve ``api`` over TLS on loopback for the ``with`` block; the thread ends with it."""

    class Handler(BaseHTTPRequestHandler):
        def _respond(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length) if length else b""
            status, answer = api.answer(self.command, self.path, self.headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if api.trickle_seconds is None:
                self.wfile.write(data)
                return
            try:
                for index in range(len(data)):
                    if api.trickle_seconds is None:  # the server is stopping
                        self.wfile.write(data[index:])
                        return
                    self.wfile.write(data[index : index + 1])
                    self.wfile.flush()
                    time.sleep(api.trickle_seconds)
            except OSError:
                return  # the client gave up and closed the connection

        do_GET = do_PATCH = _respond  # noqa: N815 - http.server's names

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.trickle_seconds = None
        server.shutdown()
        server.server_close()
        thread.join()
