"""The per-stack pull-request comment, against a local stand-in of GitHub's REST API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra.deploy.pr_comment import GitHub, GitHubError, upsert_comment

TOKEN = "ghs_test-token-value"
MARKER = "<!-- enterprisehub:synth-diff stack=dev -->"


class FakeGitHub:
    """Issue comments of one pull request, paginated two per page as the real API can."""

    def __init__(self) -> None:
        self.comments: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.next_id = 100

    def add(self, body: str, login: str = "github-actions[bot]") -> int:
        self.next_id += 1
        self.comments.append({"id": self.next_id, "body": body, "user": {"login": login}})
        return self.next_id


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, str]]:
    state = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, {"message": "Bad credentials"})
                return False
            return True

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            if not self.authorized():
                return
            if self.path == "/user":
                self.reply(200, {"login": "github-actions[bot]"})
                return
            page = int(self.path.split("page=")[-1]) if "&page=" in self.path else 1
            items = state.comments[(page - 1) * 2 : page * 2]
            headers = {}
            if page * 2 < len(state.comments):
                base = self.path.split("&page=")[0]
                headers["Link"] = (
                    f'<http://{self.headers["Host"]}{base}&page={page + 1}>; rel="next"'
                )
            self.reply(200, items, headers)

        def body(self) -> dict[str, Any]:
            payload: dict[str, Any] = json.loads(
                self.rfile.read(int(self.headers["Content-Length"]))
            )
            return payload

        def do_POST(self) -> None:
            state.requests.append(("POST", self.path))
            if not self.authorized():
                return
            comment_id = state.add(self.body()["body"])
            self.reply(201, {"id": comment_id})

        def do_PATCH(self) -> None:
            state.requests.append(("PATCH", self.path))
            if not self.authorized():
                return
            comment_id = int(self.path.rsplit("/", 1)[-1])
            for c in state.comments:
                if c["id"] == comment_id:
                    c["body"] = self.body()["body"]
            self.reply(200, {"id": comment_id})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_creates_then_edits_in_place(github: tuple[FakeGitHub, str]) -> None:
    state, url = github
    gh = GitHub(url, TOKEN)
    state.add("unrelated")
    state.add("someone quoting the marker " + MARKER, login="octocat")
    state.add("another")
    done, first = upsert_comment(gh, "acme/enterprisehub", 7, f"{MARKER}\nfirst body", MARKER)
    assert done == "created"
    done, second = upsert_comment(gh, "acme/enterprisehub", 7, f"{MARKER}\nsecond body", MARKER)
    assert (done, second) == ("updated", first)
    done, third = upsert_comment(gh, "acme/enterprisehub", 7, f"{MARKER}\nsecond body", MARKER)
    assert (done, third) == ("unchanged", first)
    ours = [
        c
        for c in state.comments
        if c["user"]["login"] == "github-actions[bot]" and MARKER in c["body"]
    ]
    assert [c["body"] for c in ours] == [f"{MARKER}\nsecond body"]
    assert (
        "GET",
        "/repos/acme/enterprisehub/issues/7/comments?per_page=100&page=2",
    ) in state.requests


def test_adds_the_marker_and_refuses_bad_input(github: tuple[FakeGitHub, str]) -> None:
    state, url = github
    gh = GitHub(url, TOKEN)
    upsert_comment(gh, "acme/enterprisehub", 7, "body without marker", MARKER)
    assert state.comments[-1]["body"].startswith(MARKER)
    # The rule GitHub (and the bootstrap's config) applies: no "_" or "." in an
    # owner, no ".." for a name (it would walk up the REST path).
    for repo in ("acme/../x", "acme/..", "ac_me/x", ".acme/x", "acme/enterprisehub\n"):
        with pytest.raises(ValueError, match="OWNER/NAME"):
            upsert_comment(gh, repo, 7, "b", MARKER)
    with pytest.raises(ValueError, match="limit"):
        upsert_comment(gh, "acme/enterprisehub", 7, "x" * 70_000, MARKER)


def test_errors_never_show_the_token(github: tuple[FakeGitHub, str]) -> None:
    _, url = github
    with pytest.raises(GitHubError) as info:
        upsert_comment(GitHub(url, "wrong-token"), "acme/enterprisehub", 7, "b", MARKER)
    assert "HTTP 401" in str(info.value)
    assert "wrong-token" not in str(info.value)
