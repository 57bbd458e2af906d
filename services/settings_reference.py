"""``docs/settings.md``: every environment variable the services read, from their settings.

The page is generated from the settings classes, so that it cannot drift from
them: a variable's name, default, allowed values and description (the
docstring under its field) are read from the class that declares it::

    python -m services.settings_reference          # write docs/settings.md
    python -m services.settings_reference --check  # exit 1 when the page is stale

Each section lists what one program adds to the sections it builds on
(CommonSettings is every feature service's; the lead model's are read by
websocket-manager and ml-services), so a variable is described once.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from services.churn.config import ChurnSettings
from services.coaching.config import CoachingSettings
from services.common.lead_model.settings import LeadModelSettings
from services.common.settings import CommonSettings, DatabaseSettings, EnvSettings, RedisSettings
from services.dashboards.config import DashboardSettings
from services.impact.config import AssumptionsSettings, ImpactSettings
from services.ml.config import MLSettings
from services.realtime.config import RealtimeSettings
from services.rollback.cli import NotifySettings
from services.rollback.config import RollbackSettings
from services.rollout.config import RolloutSettings

#: The page, from the repository's root.
PAGE: Final = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


@dataclass(frozen=True)
class Section:
    """One program's variables: those of ``settings`` that none of ``builds_on`` has."""

    title: str
    settings: type[EnvSettings]
    builds_on: tuple[type[EnvSettings], ...] = ()
    note: str = ""


SECTIONS: Final[tuple[Section, ...]] = (
    Section(
        "Every feature service",
        CommonSettings,
        note="websocket-manager, ml-services, coaching-engine, churn-orchestrator, the "
        "dashboards and the rollback handler read these (`services.common.settings`).",
    ),
    Section(
        "The lead model (websocket-manager and ml-services)",
        LeadModelSettings,
        note="`services.common.lead_model.settings`.",
    ),
    Section("websocket-manager", RealtimeSettings, (CommonSettings, LeadModelSettings)),
    Section("ml-services", MLSettings, (CommonSettings, LeadModelSettings)),
    Section("coaching-engine", CoachingSettings, (CommonSettings,)),
    Section("churn-orchestrator", ChurnSettings, (CommonSettings,)),
    Section(
        "dashboards",
        DashboardSettings,
        (CommonSettings, AssumptionsSettings),
        note=(
            "The ROI page also reads IMPACT_ASSUMPTIONS, as the impact commands do (below);"
            " a stack sets it with impactAssumptions (docs/deploying.md)."
        ),
    ),
    Section("rollback handler", RollbackSettings, (CommonSettings,)),
    Section(
        "Operator commands: flags and rollout",
        RolloutSettings,
        note="`enterprisehub flags|rollout ...` and their Jobs; they also read DATABASE_URL, "
        "ENVIRONMENT and the Redis variables above.",
        builds_on=(DatabaseSettings, RedisSettings),
    ),
    Section(
        "Operator commands: impact and experiments",
        ImpactSettings,
        (DatabaseSettings,),
        note="`enterprisehub impact|experiment ...` and the daily impact CronJob.",
    ),
    Section(
        "Operator commands: rollback notices",
        NotifySettings,
        note="`enterprisehub rollback ...` posts its notices to Slack when this is set.",
    ),
)


def settings_classes() -> list[type[EnvSettings]]:
    """Every settings class (this module imports each), mixins included."""
    found: list[type[EnvSettings]] = []
    pending: list[type[EnvSettings]] = [EnvSettings]
    while pending:
        settings_class = pending.pop()
        found.append(settings_class)
        pending.extend(settings_class.__subclasses__())
    return found


def _is_secret(field: FieldInfo) -> bool:
    return any(
        isinstance(arg, type) and issubclass(arg, SecretStr)
        for arg in (field.annotation, *typing.get_args(field.annotation))
    )


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value) if value else "empty"
    if isinstance(value, dict):
        return json.dumps(to_jsonable_python(value), sort_keys=True)
    return str(value)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        default = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        default = field.default
    # A secret's default is never printed, should one ever have a real one.
    return "(set)" if _is_secret(field) and default else _value(default)


_BOUNDS: Final = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)


def _allowed(field: FieldInfo) -> str:
    if typing.get_origin(field.annotation) is typing.Literal:
        return ", ".join(str(choice) for choice in typing.get_args(field.annotation))
    bounds = [
        f"{symbol} {_value(getattr(item, attribute))}"
        for kind, attribute, symbol in _BOUNDS
        for item in field.metadata
        if isinstance(item, kind)
    ]
    return ", ".join(bounds)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _rows(section: Section) -> list[str]:
    inherited = {name for base in section.builds_on for name in base.model_fields}
    rows = []
    for name, field in section.settings.model_fields.items():
        if name in inherited:
            continue
        variable = f"`{name.upper()}`" + (" (secret)" if _is_secret(field) else "")
        cells = (variable, _default(field), _allowed(field), field.description or "")
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def render() -> str:
    """The page's text."""
    lines = [
        "# Settings reference",
        "",
        "<!-- Generated by `python -m services.settings_reference` from the settings classes;",
        "     `--check` (run by the tests) fails when this page and the code drift apart. -->",
        "",
        "Every variable is read from the environment, by name in any case, when the program "
        "starts; a bad value stops the start with a message naming every bad variable. The "
        "stacks write them into each workload's ConfigMap and Secret (docs/contracts.md); "
        "`make run` sets them for the local platform. An empty value of an optional variable "
        "means unset. Durations are in seconds unless the name says otherwise.",
    ]
    for section in SECTIONS:
        lines += ["", f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        lines += ["| Variable | Default | Allowed | Description |", "|---|---|---|---|"]
        lines += _rows(section)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page, or with ``--check`` say whether it is current."""
    parser = argparse.ArgumentParser(prog="python -m services.settings_reference")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE} is stale: run python -m services.settings_reference", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
