"""The hardening rules every workflow and local action must follow, as a checker.

Rules (GitHub's and OpenSSF's hardening guides):
* top-level `permissions: {}`; every job declares its own, least privilege;
* `id-token: write` only in deploy jobs, each with an `environment:` named
  after its stack and a concurrency group for that stack;
* no `pull_request_target`;
* every job has `timeout-minutes`;
* every action pinned to a full commit SHA with its version in a comment;
* checkout never persists credentials;
* no `${{ }}` expression inside a `run:` script (pass values through `env:`);
* write scopes only where named in `ALLOWED_WRITES`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

PINNED = re.compile(r"^\s*-?\s*uses:\s*([^\s#]+)(\s*#\s*(\S+))?")
SHA_REF = re.compile(r"\A[\w.-]+/[\w./-]+@[0-9a-f]{40}\Z")
VERSION = re.compile(r"\Av?\d+(\.\d+)*\Z")
STACK_EXPRESSIONS = ("${{ matrix.stack }}", "${{ inputs.stack }}")
STACKS = ("dev", "staging", "production")
#: (workflow file, job) -> the write scopes it may hold.
ALLOWED_WRITES: Mapping[tuple[str, str], frozenset[str]] = {
    ("pr.yml", "comment"): frozenset({"pull-requests"}),
    ("key-rotation.yml", "remind"): frozenset({"issues"}),
    ("drift.yml", "report"): frozenset({"issues"}),
}


def triggers(doc: Mapping[Any, Any]) -> Mapping[str, Any]:
    """The `on:` block (PyYAML reads the bare key `on` as True)."""
    value = doc.get("on", doc.get(True, {}))
    if isinstance(value, str):
        return {value: None}
    if isinstance(value, list):
        return dict.fromkeys(value)
    return value or {}


def check_uses_lines(name: str, text: str) -> list[str]:
    """Every `uses:` line is local or pinned to a SHA with a version comment."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = PINNED.match(line)
        if not match:
            continue
        ref, comment = match.group(1).strip("'\""), match.group(3)
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            problems.append(f"{name}:{number}: docker action {ref} (use a pinned action)")
        elif not SHA_REF.fullmatch(ref):
            problems.append(f"{name}:{number}: {ref} is not pinned to a full commit SHA")
        elif not comment or not VERSION.fullmatch(comment):
            problems.append(f"{name}:{number}: {ref} lacks its version in a comment (# vX.Y.Z)")
    return problems


def _environment_name(job: Mapping[str, Any]) -> str | None:
    env = job.get("environment")
    if isinstance(env, Mapping):
        env = env.get("name")
    return str(env) if env is not None else None


def _stack_of(job: Mapping[str, Any]) -> str | None:
    name = _environment_name(job)
    if name in STACKS or name in STACK_EXPRESSIONS:
        return name
    return None


def check_workflow(name: str, text: str) -> list[str]:
    """Every rule above for one workflow file; [] when it complies."""
    doc = yaml.safe_load(text)
    problems = check_uses_lines(name, text)
    if doc.get("permissions") != {}:
        problems.append(
            f"{name}: top-level permissions must be {{}}, got {doc.get('permissions')!r}"
        )
    if "pull_request_target" in triggers(doc):
        problems.append(f"{name}: pull_request_target runs fork code with a write token")
    for job_id, job in (doc.get("jobs") or {}).items():
        where = f"{name}: job {job_id}"
        if "uses" in job:
            problems.append(f"{where}: reusable workflows hide their permissions; inline the job")
            continue
        if "timeout-minutes" not in job:
            problems.append(f"{where}: no timeout-minutes")
        permissions = job.get("permissions")
        if not isinstance(permissions, Mapping):
            problems.append(f"{where}: no job-level permissions block")
            permissions = {}
        allowed = ALLOWED_WRITES.get((name, job_id), frozenset())
        for scope, level in permissions.items():
            if level == "write" and scope != "id-token" and scope not in allowed:
                problems.append(f"{where}: {scope}: write is not needed here")
        if permissions.get("id-token") == "write":
            stack = _stack_of(job)
            if stack is None:
                problems.append(
                    f"{where}: id-token: write without an environment named after its stack "
                    f"(got {_environment_name(job)!r})"
                )
            else:
                group = str((job.get("concurrency") or {}).get("group", ""))
                if stack not in group:
                    problems.append(
                        f"{where}: concurrency group {group!r} is not per stack ({stack})"
                    )
        for index, step in enumerate(job.get("steps") or []):
            uses = str(step.get("uses", ""))
            if (
                uses.startswith("actions/checkout@")
                and (step.get("with") or {}).get("persist-credentials") is not False
            ):
                problems.append(
                    f"{where} step {index}: checkout must set persist-credentials: false"
                )
            if "${{" in str(step.get("run", "")):
                problems.append(f"{where} step {index}: expression in run: pass it through env")
    return problems


def check_action(name: str, text: str) -> list[str]:
    """A local composite action: pinned actions and no expressions in scripts."""
    doc = yaml.safe_load(text)
    problems = check_uses_lines(name, text)
    for index, step in enumerate((doc.get("runs") or {}).get("steps") or []):
        if "${{" in str(step.get("run", "")):
            problems.append(f"{name} step {index}: expression in run: pass it through env")
    return problems
