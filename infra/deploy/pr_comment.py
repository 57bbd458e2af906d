"""Post or edit one pull-request comment per stack, found again by its marker.

`python -m infra.deploy.pr_comment --repo OWNER/NAME --pr N --file BODY.md
--marker '<!-- ... -->'` looks through the pull request's comments for one
that contains the marker and was written by the same token's user; it edits
that comment when the body changed and creates it otherwise, so each push
updates the stack's comment in place instead of adding another. The token
comes from `GITHUB_TOKEN` and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from infra import github
from infra.deploy.diff import GITHUB_COMMENT_LIMIT

_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHubError(RuntimeError):
    """The API answered with an error status."""


@dataclass(frozen=True)
class GitHub:
    """The few REST calls this module needs, over urllib."""

    api_url: str
    token: str

    def request(self, method: str, url: str, body: Any = None) -> tuple[Any, str]:
        """One call; returns the decoded JSON and the Link header."""
        if urlparse(url).scheme not in {"https", "http"}:
            raise GitHubError(f"refusing a non-HTTP URL: {url}")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (checked above)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                payload = resp.read()
                link = resp.headers.get("Link", "")
        except urllib.error.HTTPError as exc:
            exc.close()
            raise GitHubError(f"{method} {url}: HTTP {exc.code}") from None
        return (json.loads(payload) if payload else None), link

    def paginate(self, url: str) -> list[Any]:
        """Every item of a list endpoint, following `Link: rel="next"`."""
        items: list[Any] = []
        next_url: str | None = url
        while next_url:
            page, link = self.request("GET", next_url)
            items.extend(page)
            match = _NEXT.search(link)
            next_url = match.group(1) if match else None
        return items


def upsert_comment(gh: GitHub, repo: str, pr: int, body: str, marker: str) -> tuple[str, int]:
    """Create or edit the comment carrying `marker`; returns (what was done, comment id)."""
    if not github.REPOSITORY.fullmatch(repo):
        raise ValueError(f"not an OWNER/NAME repository: {repo!r}")
    if marker not in body:
        body = f"{marker}\n{body}"
    if len(body) > GITHUB_COMMENT_LIMIT:
        raise ValueError(f"comment is {len(body)} characters, above GitHub's limit")
    user, _ = gh.request("GET", f"{gh.api_url}/user")
    login = user.get("login") if isinstance(user, dict) else None
    comments = gh.paginate(f"{gh.api_url}/repos/{repo}/issues/{pr}/comments?per_page=100")
    for comment in comments:
        author = (comment.get("user") or {}).get("login")
        if marker in (comment.get("body") or "") and (login is None or author == login):
            if comment.get("body") == body:
                return "unchanged", int(comment["id"])
            gh.request(
                "PATCH",
                f"{gh.api_url}/repos/{repo}/issues/comments/{comment['id']}",
                {"body": body},
            )
            return "updated", int(comment["id"])
    created, _ = gh.request(
        "POST", f"{gh.api_url}/repos/{repo}/issues/{pr}/comments", {"body": body}
    )
    return "created", int(created["id"])


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m infra.deploy.pr_comment")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--pr", type=int, required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument(
        "--api-url", default=os.environ.get("GITHUB_API_URL", "https://api.github.com")
    )
    args = parser.parse_args(argv)
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        print("error: GITHUB_TOKEN is not set", file=sys.stderr)
        return 2
    try:
        done, comment_id = upsert_comment(
            GitHub(args.api_url.rstrip("/"), token),
            args.repo,
            args.pr,
            args.file.read_text(),
            args.marker,
        )
    except (GitHubError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"comment {comment_id} {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
