"""One id format checks a value on the server and publishes the same set to clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.common.auth import issue_token
from services.common.identifiers import (
    AGENT_ID_FORMAT,
    LEAD_ID_FORMAT,
    CanonicalUuid,
    IdentifierFormat,
)
from services.common.scopes import FEED_READ
from services.common.settings import CommonSettings
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


# -- one format per concept, in every service ---------------------------------

#: Ids a CRM could send, among them what one service took and another refused
#: before the concepts had one definition each.
ID_PROBES = [
    *PROBES,
    "bob\n",
    "bob smith",
    "jo@example.com",
    "lead:42.a_b-c",
    "x" * 128,
    "x" * 129,
    "x" * 255,
    "x" * 256,
]


def _field_accepts(model: type[BaseModel], name: str) -> Callable[[str], bool]:
    info = model.model_fields[name]
    # The field's own constraints (Field(max_length=...)) travel in its metadata.
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    def accepts(value: str) -> bool:
        try:
            adapter.validate_python(value)
        except ValidationError:
            return False
        return True

    return accepts


def _minter(settings: CommonSettings) -> Callable[[str], bool]:
    def mints(subject: str) -> bool:
        try:
            issue_token(settings, tenant_id="tenant-a", subject=subject, scopes=(FEED_READ,))
        except ValueError:
            return False
        return True

    return mints


def _takers(concept: str, settings: CommonSettings) -> dict[str, Callable[[str], bool]]:
    from services.churn.schemas import LeadUpsert, SignalCreate
    from services.coaching.schemas import CoachingSessionCreate
    from services.ml.schemas import LeadScoreCreate
    from services.realtime.schemas import LeadEventCreate

    if concept == "lead_id":
        return {
            "realtime event": _field_accepts(LeadEventCreate, "lead_id"),
            "churn lead": _field_accepts(LeadUpsert, "lead_id"),
            "churn signal": _field_accepts(SignalCreate, "lead_id"),
            "scoring": _field_accepts(LeadScoreCreate, "lead_id"),
        }
    return {
        "realtime event": _field_accepts(LeadEventCreate, "agent_id"),
        "churn lead": _field_accepts(LeadUpsert, "agent_id"),
        "coaching session": _field_accepts(CoachingSessionCreate, "agent_id"),
        "token subject": _minter(settings),
    }


@pytest.mark.parametrize("concept", ["lead_id", "agent_id"])
def test_an_id_one_service_accepts_every_service_accepts(
    concept: str, settings: CommonSettings
) -> None:
    """Realtime took any text (``"bob\\n"`` included: acknowledged, then delivered
    to no socket), churn a 255-character set with ``@`` and coaching 128
    characters without it: one CRM lead or agent was accepted by one service
    and refused by the next."""
    takers = _takers(concept, settings)
    answers = {name: [accepts(probe) for probe in ID_PROBES] for name, accepts in takers.items()}
    reference = answers["churn lead"]
    differing = {
        name: [probe for probe, a, b in zip(ID_PROBES, got, reference, strict=True) if a != b]
        for name, got in answers.items()
    }
    assert differing == {name: [] for name in takers}
    expected = LEAD_ID_FORMAT if concept == "lead_id" else AGENT_ID_FORMAT
    assert reference == [expected.matches(probe) for probe in ID_PROBES]


def test_nothing_churn_or_coaching_took_is_refused_now() -> None:
    """The shared formats are a superset of what the two services took before."""
    before = {
        "churn": IdentifierFormat(255, punctuation="_.:@-"),
        "coaching": IdentifierFormat(128),
    }
    for old in before.values():
        for probe in ID_PROBES:
            if old.matches(probe):
                assert LEAD_ID_FORMAT.matches(probe)
                assert AGENT_ID_FORMAT.matches(probe)
