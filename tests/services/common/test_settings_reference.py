"""docs/settings.md: generated from the settings classes, current, and complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from services import settings_reference
from services.settings_reference import SECTIONS, main, render, settings_classes


def test_the_page_is_current() -> None:
    assert main(["--check"]) == 0, "run: python -m services.settings_reference"


def test_a_stale_page_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "settings.md"
    page.write_text(render().replace("Largest photo accepted", "Largest photo"))
    monkeypatch.setattr(settings_reference, "PAGE", page)
    assert main(["--check"]) == 1


def test_every_setting_is_described() -> None:
    """A variable listed with an empty description tells an operator only its name."""
    undescribed = [
        f"{section.settings.__name__}.{name}"
        for section in SECTIONS
        for name, field in section.settings.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert undescribed == []


def test_every_variable_of_every_settings_class_is_on_the_page() -> None:
    """A new settings class (or field) without a section would be missing silently."""
    text = render()
    names = {name for settings_class in settings_classes() for name in settings_class.model_fields}
    assert [name for name in sorted(names) if f"| `{name.upper()}`" not in text] == []


def test_a_secret_is_marked_and_its_default_never_shown() -> None:
    text = render()
    assert "| `JWT_SECRET_KEY` (secret) | **required** |" in text
    assert "| `ANTHROPIC_API_KEY` (secret) | unset |" in text


def test_a_secrets_default_is_never_printed() -> None:
    field = FieldInfo.from_annotated_attribute(SecretStr, SecretStr("hunter2-not-for-docs"))
    assert settings_reference._default(field) == "(set)"
