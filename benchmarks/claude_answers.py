"""Answers of the Messages API stand-in during W3 (kept light: the stand-in imports it)."""

from __future__ import annotations

import re
from typing import Any

import orjson

_IDS = re.compile(r"^\[([^\]]+)\] (?:agent|lead) ", re.MULTILINE)
VISION_ANSWER = orjson.dumps(
    {
        "room_type": "kitchen",
        "luxury_score": 0.72,
        "condition_score": 0.88,
        "features": ["island", "stone countertops"],
        "defects": [],
        "summary": "A renovated kitchen.",
    }
).decode()


def respond(body: dict[str, Any]) -> str:
    """The stand-in's answer: a coaching answer citing real ids, or a vision answer."""
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        first = _IDS.findall(content)[0]
        insight = {"title": "Quick reply", "detail": "Answered fast.", "message_ids": [first]}
        return orjson.dumps(
            {
                "strengths": [insight],
                "improvement_areas": [insight],
                "next_best_actions": [insight],
                "summary": "Fine.",
            }
        ).decode()
    return VISION_ANSWER
