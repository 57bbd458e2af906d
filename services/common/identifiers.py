"""The ids a client names things by: leads, agents, properties, messages, event types.

A concept has one definition here (`LeadId`, `AgentId`), used by every service
that takes it: a lead id one service accepted and another refused split one
CRM lead between them.

One definition both validates an id and publishes it. The check is a
``fullmatch`` (``$`` would let a trailing newline through). The OpenAPI document
gets the same set as JSON Schema reads a pattern: ECMA-262, where ``\\A`` and
``\\z`` do not exist (a client's validator refuses them, or reads ``\\A`` as the
letter A) and ``^...$`` already spans the whole string.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

#: Characters an id may use besides letters and digits, unless it says otherwise.
DEFAULT_PUNCTUATION: Final = "._:-"
#: What ``punctuation`` may hold: characters that are literal inside a class in
#: both Python's and ECMA-262's regular expressions (with the ``u`` flag).
_ALLOWED_PUNCTUATION: Final = frozenset("._:@-")


@dataclass(frozen=True)
class IdentifierFormat:
    """``Annotated[str, IdentifierFormat(128)]``: 1 to ``max_length`` characters,
    a letter or digit first, then letters, digits and ``punctuation``.

    A value outside the set is a 422 whose message names the set, in a body field
    and a query parameter alike.
    """

    max_length: int
    punctuation: str = DEFAULT_PUNCTUATION
    pattern: str = field(init=False)
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_length < 1 or not set(self.punctuation) <= _ALLOWED_PUNCTUATION:
            raise ValueError(
                f"unsupported identifier format: max_length={self.max_length}, "
                f"punctuation={self.punctuation!r}"
            )
        # "-" last, so that it is a literal in the class in either dialect.
        chars = set(self.punctuation)
        others = "".join(sorted(chars - {"-"})) + ("-" if "-" in chars else "")
        body = f"[A-Za-z0-9][A-Za-z0-9{others}]{{0,{self.max_length - 1}}}"
        object.__setattr__(self, "pattern", body)
        # Compiled once: ids are checked on hot paths (every ingested event's type).
        object.__setattr__(self, "_compiled", re.compile(body))

    @property
    def description(self) -> str:
        """The set in words, as a refusal names it."""
        return (
            f"1-{self.max_length} characters from A-Z a-z 0-9 {' '.join(self.punctuation)}"
            " (letter or digit first)"
        )

    def matches(self, value: str) -> bool:
        """Whether the whole of ``value`` is such an id."""
        return self._compiled.fullmatch(value) is not None

    def _check(self, value: str) -> str:
        if not self.matches(value):
            raise ValueError(f"expected {self.description}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_length,
            "pattern": f"^{self.pattern}$",
        }


#: What the CRM's ids may also hold: ``@`` (a contact or an agent named by an
#: address) on top of the default punctuation.
CRM_PUNCTUATION: Final = "_.:@-"

#: The CRM's id of a lead, wherever a client sends one (realtime's events,
#: churn's leads and signals, scoring's echoed id). 255 is every lead_id
#: column's width (varchar(255)); with churn's set, nothing churn took is refused.
LEAD_ID_FORMAT: Final = IdentifierFormat(255, punctuation=CRM_PUNCTUATION)
LeadId = Annotated[str, LEAD_ID_FORMAT]

#: An agent: the subject of the agent's tokens, which the feed compares with an
#: event's ``agent_id`` to deliver it, and whom coaching sessions are about. One
#: format for both, so that an event can target any agent a token can be minted
#: for, and an id that no token could carry is refused instead of reaching no
#: socket. 255 is every agent_id column's width; it takes what churn and
#: coaching (128, no ``@``) took.
AGENT_ID_FORMAT: Final = IdentifierFormat(255, punctuation=CRM_PUNCTUATION)
AgentId = Annotated[str, AGENT_ID_FORMAT]


#: A UUID as the platform writes it: 8-4-4-4-12 hex digits. Python's ``UUID()``
#: also reads braces, a ``urn:uuid:`` prefix and no hyphens; the ids it would
#: accept through them were the same, but an id is checked by a full match of
#: the one form, wherever it is read.
UUID_TEXT: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _canonical_uuid(value: Any) -> Any:
    if isinstance(value, str) and UUID_TEXT.fullmatch(value) is None:
        raise ValueError("expected a UUID written 8-4-4-4-12 in hex digits")
    return value


#: ``uuid.UUID`` read from its canonical text only (a path's or a body's id).
CanonicalUuid = Annotated[
    uuid.UUID,
    BeforeValidator(_canonical_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": f"^{UUID_TEXT.pattern}$"}),
]


#: A token's ``jti`` as ``issue_token`` writes it: ``uuid4().hex``, 32 lower-case hex
#: digits with the version (4) and variant (8, 9, a or b) digits in their places.
TOKEN_ID_TEXT: Final = re.compile(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}")
