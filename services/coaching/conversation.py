"""Deterministic conversation metrics, computed locally before Claude is asked.

- ``talk_listen_ratio``: the agent's words over the lead's words (None when
  the lead said nothing).
- ``questions_asked``: question marks in the agent's messages.
- ``response_delays``: for every lead message directly answered by the agent
  (the next message is the agent's), the seconds between them; reported as
  count, mean, median and max.
- ``objections``: lead messages matching a phrase list per kind (price,
  timing, commitment, competition, trust); one is ``answered`` when an agent
  message follows it before the conversation ends.

The same transcript always gives the same numbers; they are stored with the
session and shown to Claude as facts, never recomputed by it.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Sequence
from typing import Any, Final

from services.coaching.schemas import TranscriptMessage

OBJECTION_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "price": re.compile(
        r"\b(too (expensive|much|high)|can'?t afford|out of (my|our) budget|over (my|our) budget"
        r"|price is (too )?high|cheaper|lower (the )?price|commission is)\b",
        re.IGNORECASE,
    ),
    "timing": re.compile(
        r"\b(not (ready|now|yet)|maybe later|next (year|month|spring|summer)|no rush"
        r"|bad time|wait (a bit|until))\b",
        re.IGNORECASE,
    ),
    "commitment": re.compile(
        r"\b(think about it|need to talk to|not sure|have to check with|sleep on it)\b",
        re.IGNORECASE,
    ),
    "competition": re.compile(
        r"\b(another (agent|realtor|broker)|other (agent|realtor|broker)|already working with"
        r"|zillow|redfin|sell it (myself|ourselves)|fsbo)\b",
        re.IGNORECASE,
    ),
    "trust": re.compile(r"\b(don'?t trust|sounds like a scam|pushy|pressure)\b", re.IGNORECASE),
}
_WORD = re.compile(r"\w+", re.UNICODE)


def ordered(messages: Sequence[TranscriptMessage]) -> list[TranscriptMessage]:
    """Messages by timestamp, keeping the given order for equal timestamps."""
    return sorted(messages, key=lambda message: message.timestamp)


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _next_agent_messages(
    conversation: Sequence[TranscriptMessage],
) -> list[TranscriptMessage | None]:
    """For each message, the first agent message after it (None: none came).

    One backward pass: scanning forward from every objection was quadratic
    (2,000 lead messages without a reply held the event loop 0.4 s).
    """
    following: TranscriptMessage | None = None
    found: list[TranscriptMessage | None] = []
    for message in reversed(conversation):
        found.append(following)
        if message.speaker == "agent":
            following = message
    return found[::-1]


def compute_metrics(messages: Sequence[TranscriptMessage]) -> dict[str, Any]:
    """The metrics of the module docstring, as a JSON-ready dict."""
    conversation = ordered(messages)
    agent_words = sum(_words(m.text) for m in conversation if m.speaker == "agent")
    lead_words = sum(_words(m.text) for m in conversation if m.speaker == "lead")
    delays = [
        (after.timestamp - before.timestamp).total_seconds()
        for before, after in itertools.pairwise(conversation)
        if before.speaker == "lead" and after.speaker == "agent"
    ]
    objections: list[dict[str, Any]] = []
    for message, answer in zip(conversation, _next_agent_messages(conversation), strict=True):
        if message.speaker != "lead":
            continue
        for kind, pattern in OBJECTION_PATTERNS.items():
            if pattern.search(message.text):
                objections.append(
                    {
                        "message_id": message.id,
                        "kind": kind,
                        "answered": answer is not None,
                        "answered_by": answer.id if answer is not None else None,
                    }
                )
    return {
        "messages": len(conversation),
        "agent_messages": sum(1 for m in conversation if m.speaker == "agent"),
        "lead_messages": sum(1 for m in conversation if m.speaker == "lead"),
        "agent_words": agent_words,
        "lead_words": lead_words,
        "talk_listen_ratio": round(agent_words / lead_words, 3) if lead_words else None,
        "questions_asked": sum(m.text.count("?") for m in conversation if m.speaker == "agent"),
        "response_delays_seconds": {
            "count": len(delays),
            "mean": round(statistics.fmean(delays), 3) if delays else None,
            "median": round(statistics.median(delays), 3) if delays else None,
            "max": round(max(delays), 3) if delays else None,
        },
        "objections": objections,
        "objections_unanswered": sum(1 for o in objections if not o["answered"]),
    }
