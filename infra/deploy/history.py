"""A stack's update history, read through Pulumi's Automation API.

`pulumi stack history --json` (what `Stack.history()` runs) lists updates
newest first, each with its kind, result, times and the environment the CLI
recorded, including `git.head`: the commit the program was run from. That
commit is what makes a rollback possible at all; Pulumi's own history holds
neither the code nor the config (pulumi/pulumi#96).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pulumi import automation as auto

#: The message of a rollback's update: its target and the commit it left.
ROLLBACK_MESSAGE = "rollback to {target} (from {current})"
_ROLLED_BACK_FROM = re.compile(r"\Arollback to [0-9a-f]+ \(from ([0-9a-f]+)\)\Z")


def rollback_message(target: str, current: str) -> str:
    """The message a rollback records (abbreviated commits), which `rolled_back_from` reads."""
    return ROLLBACK_MESSAGE.format(target=target[:12], current=current[:12])


class HistoryError(RuntimeError):
    """The history could not be read, or does not allow what was asked."""


@dataclass(frozen=True)
class Update:
    """One entry of the history."""

    version: int
    kind: str
    result: str
    start: datetime
    end: datetime | None
    commit: str | None
    message: str
    #: The config the update ran with: key -> value, None for a secret
    #: (never requested). Out-of-band keys such as the image digest CI sets
    #: live only here and in that run's working copy.
    config: tuple[tuple[str, str | None], ...] = ()

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Every config key the update had, secrets included."""
        return tuple(key for key, _ in self.config)

    def plain_config(self) -> dict[str, str]:
        """The non-secret config values the update ran with."""
        return {key: value for key, value in self.config if value is not None}

    @property
    def succeeded(self) -> bool:
        """A completed `update` (not a preview, refresh or destroy) that succeeded."""
        return self.kind == "update" and self.result == "succeeded"

    @property
    def in_progress(self) -> bool:
        """An operation still running (or one whose CLI died without saying)."""
        return self.result == "in-progress"


def _update(summary: auto.UpdateSummary) -> Update:
    environment = dict(summary.environment or {})
    return Update(
        version=int(summary.version or 0),
        kind=str(summary.kind),
        result=str(summary.result),
        start=summary.start_time,
        end=summary.end_time,
        commit=environment.get("git.head") or None,
        message=str(summary.message or ""),
        config=tuple(
            sorted(
                (key, None if value.secret else str(value.value))
                for key, value in (summary.config or {}).items()
            )
        ),
    )


def load_history(stack: str, work_dir: Path) -> list[Update]:
    """The stack's updates, newest first (secrets never requested)."""
    try:
        selected = auto.select_stack(stack_name=stack, work_dir=str(work_dir))
        summaries = selected.history(show_secrets=False)
    except auto.CommandError as exc:
        raise HistoryError(f"cannot read the history of stack {stack}: {exc}") from exc
    except FileNotFoundError as exc:
        # The Automation API runs the `pulumi` binary; without it, say so.
        raise HistoryError(
            f"cannot read the history of stack {stack}: the Pulumi CLI (pulumi) is not on PATH"
        ) from exc
    return sorted((_update(s) for s in summaries), key=lambda u: u.version, reverse=True)


def current_update(updates: Sequence[Update]) -> Update:
    """The update that produced what is deployed: the newest successful one."""
    for update in updates:
        if update.succeeded:
            return update
    raise HistoryError("the stack has no successful update")


def rolled_back_from(updates: Sequence[Update]) -> dict[str, int]:
    """Abbreviated commits a successful rollback moved the stack away from, with
    the version of the newest such rollback."""
    left: dict[str, int] = {}
    for update in updates:
        match = _ROLLED_BACK_FROM.fullmatch(update.message)
        if update.succeeded and match:
            left[match.group(1)] = max(left.get(match.group(1), 0), update.version)
    return left


def previous_update(updates: Sequence[Update]) -> Update:
    """The last successful update before the current one, from another commit.

    Right after a rollback from B to A, "the previous update" is B's: a second
    run of the same rollback would deploy B again. So when the current update
    is a rollback there is no default target (going further back is a
    decision: name it), and an update whose commit a later rollback moved away
    from is never the default target.
    """
    current = current_update(updates)
    if _ROLLED_BACK_FROM.fullmatch(current.message):
        raise HistoryError(
            f"update {current.version} already rolled the stack back ({current.message}); "
            "to go further back, name the target"
        )
    left = rolled_back_from(updates)

    def abandoned(update: Update) -> bool:
        return any(
            str(update.commit).startswith(commit) and version > update.version
            for commit, version in left.items()
        )

    for update in updates:
        if (
            update.version < current.version
            and update.succeeded
            and update.commit
            and update.commit != current.commit
            and not abandoned(update)
        ):
            return update
    skipped = f" (rolled back from: {', '.join(sorted(left))})" if left else ""
    raise HistoryError(
        f"no earlier successful update from another commit than {current.commit or '(unknown)'}"
        f" to roll back to{skipped}"
    )


def recorded_config(updates: Sequence[Update], commit: str) -> dict[str, str]:
    """The plain config of the newest successful update of `commit` ({} if none)."""
    for update in updates:
        if update.succeeded and update.commit == commit:
            return update.plain_config()
    return {}


def releases_back(updates: Sequence[Update], commit: str) -> int | None:
    """How many deployed commits back `commit` is: 0 for the current one, 1 for
    the one before, ...; None when no successful update ran it.

    Counted in distinct commits of successful updates, newest first, as each
    deploy of a new commit pushes one image to the stack's repository.
    """
    seen: list[str] = []
    for update in updates:
        if not update.succeeded or not update.commit or update.commit in seen:
            continue
        if update.commit == commit:
            return len(seen)
        seen.append(update.commit)
    return None


def render(updates: Sequence[Update]) -> str:
    """The history as a fixed-width table, newest first."""
    lines = [
        f"{'version':>7}  {'kind':<8} {'result':<11} {'started (UTC)':<19}  commit        message"
    ]
    for u in updates:
        started = u.start.strftime("%Y-%m-%d %H:%M:%S")
        commit = (u.commit or "-")[:12]
        lines.append(
            f"{u.version:>7}  {u.kind:<8} {u.result:<11} {started:<19}  {commit:<12}  {u.message}"
        )
    return "\n".join(lines)
