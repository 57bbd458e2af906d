"""pulumi-kubernetes' ``pulumi.com/waitFor`` annotation, as the mocks must honour it.

With the annotation (pulumi-kubernetes 4.18+), the provider does not return
from create or update until the live object satisfies it, and then returns that
object, status included. Without it, a custom resource comes back as the API
server stored it, before any controller wrote a status. The mocks model both:
an object that waits gets the status its controller would write, and that status
must satisfy the wait, or ``pulumi up`` would sit until its timeout and fail.

The forms are those of the provider (pulumi/pulumi-kubernetes#3134, as
``kubectl`` reads them):

* ``jsonpath={expr}`` (any value at the path) or ``jsonpath={expr}=value``;
* ``condition=Type`` (status ``True``) or ``condition=Type=value``;
* a JSON list of these, all of which must hold.

Only the JSONPath the program uses is evaluated here: member names and list
indices (``{.status.addresses[0].value}``); anything else is refused rather
than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

WAIT_FOR_ANNOTATION: Final = "pulumi.com/waitFor"
_JSONPATH: Final = re.compile(r"\Ajsonpath=\{(?P<path>[^{}]+)\}(?:=(?P<value>.*))?\Z", re.DOTALL)
_CONDITION: Final = re.compile(r"\Acondition=(?P<type>[A-Za-z0-9_.-]+)(?:=(?P<value>.+))?\Z")
_STEP: Final = re.compile(r"\.(?P<member>[A-Za-z0-9_-]+)|\[(?P<index>\d+)\]")


class UnsatisfiedWaitError(ValueError):
    """Objects whose ``waitFor`` never holds of what their controllers write."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"`pulumi up` would wait until its timeout and fail:\n{lines}")


def wait_expressions(annotations: Mapping[str, Any]) -> list[str]:
    """The ``waitFor`` expressions of an object's annotations (none: the provider does not wait)."""
    raw = annotations.get(WAIT_FOR_ANNOTATION)
    if raw is None:
        return []
    text = str(raw).strip()
    if text.startswith("["):
        expressions = json.loads(text)
        if not isinstance(expressions, list) or not all(isinstance(e, str) for e in expressions):
            raise ValueError(f"{WAIT_FOR_ANNOTATION}: a list must hold strings, got {text!r}")
        return list(expressions)
    return [text]


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    position = 0
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(
                f"JSONPath {{{path}}}: the mocks evaluate only .member and [index] steps "
                f"(unsupported from {path[position:]!r})"
            )
        member, index = match.group("member"), match.group("index")
        steps.append(member if member is not None else int(index))
        position = match.end()
    return steps


def jsonpath_value(obj: Any, path: str) -> Any:
    """The value at a ``.member[index]`` path, or None where the path leads nowhere."""
    current = obj
    for step in _steps(path):
        if isinstance(step, int):
            if not isinstance(current, Sequence) or isinstance(current, str):
                return None
            if step >= len(current):
                return None
            current = current[step]
        else:
            if not isinstance(current, Mapping) or step not in current:
                return None
            current = current[step]
    return current


def _holds(expression: str, obj: Mapping[str, Any]) -> bool:
    jsonpath = _JSONPATH.match(expression)
    if jsonpath is not None:
        found = jsonpath_value(obj, jsonpath.group("path"))
        if found is None:
            return False
        expected = jsonpath.group("value")
        return expected is None or str(found) == expected
    condition = _CONDITION.match(expression)
    if condition is not None:
        wanted = condition.group("value") or "True"
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(
            c.get("type") == condition.group("type")
            and str(c.get("status", "")).lower() == wanted.lower()
            for c in conditions
        )
    raise ValueError(
        f"{WAIT_FOR_ANNOTATION}: {expression!r} is neither jsonpath={{expr}}[=value] "
        "nor condition=Type[=value]"
    )


def check_wait(
    type_token: str, name: str, annotations: Mapping[str, Any], live: Mapping[str, Any]
) -> None:
    """Raise ValueError unless the live object satisfies every ``waitFor`` expression."""
    for expression in wait_expressions(annotations):
        if not _holds(expression, live):
            raise ValueError(
                f"{type_token} {name}: {WAIT_FOR_ANNOTATION} {expression!r} never holds of "
                f"what its controller writes (status {live.get('status')!r})"
            )
