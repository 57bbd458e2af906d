"""The most a call that got no answer can have cost.

A request sent to the Messages API whose answer never arrived (a read
timeout, or a caller that stopped waiting) may have been processed and
billed in full, and no ``usage`` says for how much. The client books it at an
upper bound (``ClaudeClient`` asks the API's free ``count_tokens`` for the
input first and falls back to ``input_token_bound``):

- input: the request's input tokens, priced as cache writes (1.25x the input
  price) when the request marks a cache breakpoint, since its prefix may
  have been written;
- output: all of ``max_tokens``, at the output price.

Reports show such costs apart from billed ones (``claude_cost_ledger.outcome``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from pydantic import BaseModel

from services.common.claude.ledger import Usage

#: The API scales an image down until it costs about 1,600 tokens at most
#: (Anthropic's vision guide: long edge 1568 px, about 1.15 megapixels).
IMAGE_TOKEN_BOUND: Final = 1_600
#: Tokens the API adds of its own: the system prompt of tool use (a few hundred
#: tokens, per the tool-use pricing table) and of structured output.
API_OVERHEAD_TOKENS: Final = 1_000
#: The parts of a request that are tokens; the rest (``max_tokens``,
#: ``temperature``, ...) are settings.
_CONTENT_KEYS: Final = ("system", "messages", "tools", "tool_choice", "cache_control")
#: The parameters ``messages.count_tokens`` takes of a ``messages.create`` request.
COUNT_TOKENS_KEYS: Final = (
    "model",
    "system",
    "messages",
    "tools",
    "tool_choice",
    "thinking",
    "cache_control",
)


def input_token_bound(params: Mapping[str, Any], output_format: type[BaseModel] | None) -> int:
    """An upper bound of the request's input tokens, computed without the API.

    One token per UTF-8 byte of the request's content as JSON (a token covers
    at least one byte; the JSON's syntax is counted too), ``IMAGE_TOKEN_BOUND``
    per image, the output schema's JSON, and ``API_OVERHEAD_TOKENS``. For
    English text this is about four times the API's count: it is the fallback
    when the API cannot count the request (``ClaudeClient`` asks it first).
    """
    content = {key: params[key] for key in _CONTENT_KEYS if key in params}
    tokens = API_OVERHEAD_TOKENS + _bytes_or_images(content)
    if output_format is not None:
        tokens += len(orjson.dumps(output_format.model_json_schema()))
    return tokens


def _bytes_or_images(value: Any) -> int:
    if isinstance(value, Mapping):
        if value.get("type") == "image":
            return IMAGE_TOKEN_BOUND
        return sum(len(str(key).encode()) + _bytes_or_images(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sum(_bytes_or_images(item) for item in value)
    if value is None:
        return 0
    return len(str(value).encode())


def _marks_cache(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "cache_control" in value or any(_marks_cache(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_marks_cache(item) for item in value)
    return False


def upper_bound_usage(input_tokens: int, params: Mapping[str, Any]) -> Usage:
    """The usage an unanswered request of ``input_tokens`` is priced at (module docstring)."""
    output_tokens = int(params.get("max_tokens") or 0)
    if _marks_cache({key: params[key] for key in _CONTENT_KEYS if key in params}):
        return Usage(cache_write_tokens=input_tokens, output_tokens=output_tokens)
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)
