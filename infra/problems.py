"""The error ``load_stack_config`` raises: every invalid key of a stack at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The Pulumi project name, hence the config namespace of every key.
PROJECT: Final = "enterprisehub"


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid setting: which key, what it held, and what is allowed instead."""

    key: str
    value: object
    allowed: str

    def render(self) -> str:
        """One line for the aggregated error message."""
        shown = "is not set" if self.value is None else f"= {self.value!r}"
        return f"{PROJECT}:{self.key} {shown}: {self.allowed}"


class StackConfigError(ValueError):
    """The stack's configuration is invalid; raised before any resource is declared."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.stack = stack
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem.render()}" for problem in problems)
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"stack '{stack}': invalid configuration ({count}):\n{lines}")
