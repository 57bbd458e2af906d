"""What stops a deploy, one type for all of it: ``Problem`` and ``StackConfigError``.

A problem is either an invalid key of the stack's configuration (raised by
``load_stack_config`` as a ``StackConfigError`` listing every one at once) or a
missing prerequisite of the deployer's machine (reported by
``infra.deploy.preflight``); both name what is wrong and what would be right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The Pulumi project name, hence the config namespace of every key.
PROJECT: Final = "enterprisehub"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing in the way: which key (or prerequisite), what it held, what is right.

    ``Problem(key, value, allowed)`` is an invalid setting of the stack's
    configuration; ``Problem.prerequisite(what, fix)`` a missing piece of the
    deployer's machine (no config key, nothing held, a command that fixes it).
    """

    key: str
    value: object
    allowed: str
    #: True for a key of the stack's configuration (shown as ``enterprisehub:<key>``).
    config_key: bool = True

    @classmethod
    def prerequisite(cls, what: str, fix: str) -> Problem:
        """A missing prerequisite and the command or step that provides it."""
        return cls(what, None, fix, config_key=False)

    @property
    def what(self) -> str:
        """What is wrong, in words (the key, or the prerequisite's description)."""
        return self.key

    @property
    def fix(self) -> str:
        """What would be right: the allowed values, or the fixing command."""
        return self.allowed

    def render(self) -> str:
        """One entry for the aggregated report."""
        if not self.config_key:
            return f"- {self.what}\n  fix: {self.fix}"
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
