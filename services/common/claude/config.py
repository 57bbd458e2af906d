"""Settings of the shared Claude client.

They live with every other setting in ``services.common.settings``
(``ClaudeSettings``, part of ``CommonSettings``); prices are US dollars per
million tokens, which is also micro-dollars per token, so the ledger's
integer micro-dollars follow without floating point.
"""

from __future__ import annotations

from services.common.settings import DEFAULT_CLAUDE_PRICES, ClaudeSettings, ModelPrice

__all__ = ["DEFAULT_CLAUDE_PRICES", "ClaudeSettings", "ModelPrice"]
