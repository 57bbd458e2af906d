"""One id format checks a value on the server and publishes the same set to clients."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from services.common.identifiers import CanonicalUuid, IdentifierFormat
from tests.ecma_regex import ecma_test

PROBES = [
    "lead-1",
    "a",
    "A.b:c_d-e",
    "x" * 32,
    "x" * 33,
    "",
    "-lead",
    ".lead",
    "lead\n",
    "lead\r\n",
    "\nlead",
    "le ad",
    "lead\x00",
    "jo@example.com",
    "lead/1",
    "é",
]


class Lead(BaseModel):
    lead_id: Annotated[str, IdentifierFormat(32)]


class Contact(BaseModel):
    contact_id: Annotated[str, IdentifierFormat(32, punctuation="_.:@-")]


def _server_accepts(model: type[BaseModel], value: str) -> bool:
    field = next(iter(model.model_fields))
    try:
        model.model_validate({field: value})
    except ValidationError:
        return False
    return True


def test_a_trailing_newline_is_refused_with_the_set_in_words() -> None:
    with pytest.raises(ValidationError) as refused:
        Lead(lead_id="lead-1\n")
    assert "1-32 characters from A-Z a-z 0-9 . _ : -" in str(refused.value)


@pytest.mark.parametrize("model", [Lead, Contact])
def test_the_published_pattern_accepts_what_the_server_accepts(model: type[BaseModel]) -> None:
    """A client validating with the OpenAPI document (ECMA-262) and the server agree
    on every probe: the document used to publish ``\\A...\\z``, which ECMA-262
    refuses with the ``u`` flag and, without it, reads as the letters A and z."""
    schema = model.model_json_schema()["properties"]
    (published,) = schema.values()
    [answer] = ecma_test([(published["pattern"], PROBES)])
    assert answer == {"matches": [_server_accepts(model, probe) for probe in PROBES]}
    assert published["maxLength"] == 32


def test_the_address_form_is_only_where_asked_for() -> None:
    assert _server_accepts(Contact, "jo@example.com")
    assert not _server_accepts(Lead, "jo@example.com")


@pytest.mark.parametrize("punctuation", ["/", "]", "\\", " "])
def test_characters_that_differ_between_dialects_are_refused(punctuation: str) -> None:
    with pytest.raises(ValueError, match="unsupported identifier format"):
        IdentifierFormat(8, punctuation=punctuation)


class _Named(BaseModel):
    id: CanonicalUuid


def test_a_uuid_is_read_from_its_canonical_text_only() -> None:
    text = "f1a7c0de-0000-4000-8000-00000000abcd"
    assert str(_Named(id=text).id) == text
    assert str(_Named(id=text.upper()).id) == text
    for other_form in (f"{{{text}}}", text.replace("-", ""), f"urn:uuid:{text}", f"{text}\n"):
        with pytest.raises(ValidationError, match="8-4-4-4-12"):
            _Named(id=other_form)
    pattern = _Named.model_json_schema()["properties"]["id"]["pattern"]
    [published] = ecma_test([(pattern, [text, text.replace("-", ""), f"{{{text}}}"])])
    assert published == {"matches": [True, False, False]}
