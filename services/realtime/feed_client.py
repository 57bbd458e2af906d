"""``enterprisehub feed``: watch a tenant's live feed from a terminal.

A reference client of ``WS /v1/feed`` (docs/contracts.md) that works as
pasted: it mints a ``feed:read`` token from JWT_SECRET_KEY/JWT_KEY_ID unless
given one, prints one line per event (or the raw frames with ``--json``),
and behaves as a client should: after a dropped connection or a 1013 it
waits the ``reconnect_delay`` the server announced and resumes after the
last ``stream_id`` it printed, so nothing is missed or printed twice. A
feed it never reached (a wrong ``--url``, the service not started) ends it
at once with the address it tried. A
refusal that retrying cannot fix (401/403, 1008) ends it with the reason,
except a close for an expired token (1008 ``expired_token``) when the client
minted that token itself: it mints a fresh one and resumes at once.

Everything it prints passes through `printable`: ``data`` is whatever a CRM
sent (free text), and so are the lead and agent ids of events the ingest
accepted before it read them as ids (still replayed); an escape sequence in
them would otherwise be run by the operator's terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TOKEN_ENV = "ENTERPRISEHUB_TOKEN"  # noqa: S105 - the variable's name, not a secret
WS_POLICY_VIOLATION = 1008
#: The feed's close reason when the socket's token expired (services.realtime.hub).
TOKEN_EXPIRED_REASON = "expired_token"  # noqa: S105 - a close reason, not a secret
DEFAULT_RECONNECT_DELAY = 5.0
OPEN_TIMEOUT = 10.0


# What a terminal acts on instead of showing: C0 controls (ESC starts every
# escape sequence; CR and BS overwrite what was printed; BEL), DEL, C1 controls
# (U+009B is a one-character CSI for terminals that read 8-bit controls), the
# bidi embeddings, overrides and isolates that reorder a line's text, and the
# Unicode line and paragraph separators. Everything else printable is kept.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each character a terminal would act on escaped (ESC as ``\\u001b``).

    The escape is JSON's own, so a ``--json`` line stays the same JSON.
    """
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class OutputClosed(Exception):  # noqa: N818 - reads as the condition it names
    """Whoever read the output went away (``feed | head``): there is nothing left to do.

    Apart from ``OSError`` on purpose: a write to a closed pipe raised
    BrokenPipeError, which the reconnect loop took for a lost connection, and
    the client reconnected every few seconds, forever, to print to nobody.
    """


class FeedClientError(Exception):
    """The feed cannot be watched; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.code = code
        # The message may carry what the server sent (a refusal's body, a close reason).
        super().__init__(printable(message))


def _given_token(args: argparse.Namespace) -> str | None:
    given = args.token or os.environ.get(TOKEN_ENV)
    return str(given) if given else None


def _token(args: argparse.Namespace) -> str:
    given = _given_token(args)
    if given is not None:
        claimed = _claimed_tenant(given)
        if claimed is not None and claimed != args.tenant:
            # The feed serves the token's tenant whatever --tenant says: a token
            # of another tenant (an old ENTERPRISEHUB_TOKEN) showed that tenant's
            # leads under a --tenant the operator believed they were watching.
            raise FeedClientError(
                f"--tenant {args.tenant} but the token is for tenant {claimed}: "
                f"pass --tenant {claimed}, or a token of {args.tenant} (--token or {TOKEN_ENV})",
                2,
            )
        return given
    from services.common.auth import issue_token
    from services.common.scopes import FEED_READ
    from services.common.settings import AuthSettings, SettingsError

    try:
        settings = AuthSettings.from_env()
    except SettingsError:
        raise FeedClientError(
            f"no token: pass --token, set {TOKEN_ENV}, or set JWT_SECRET_KEY and JWT_KEY_ID "
            "so that one can be minted",
            2,
        ) from None
    try:
        return issue_token(
            settings,
            tenant_id=args.tenant,
            subject=args.subject,
            scopes=(FEED_READ,),
            ttl_seconds=min(3600.0, settings.jwt_max_ttl_feed_read),
        )
    except ValueError as exc:
        raise FeedClientError(str(exc), 2) from None


def _claimed_tenant(token: str) -> str | None:
    """The tenant a token claims, unverified (the server verifies it); None if unreadable."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None  # the server's 401 names what is wrong with it
    tenant = claims.get("tid")
    return printable(tenant) if isinstance(tenant, str) else None


def feed_url(base: str, cursor: str | None) -> str:
    """``base`` with ``last_event_id`` set to ``cursor`` (when there is one)."""
    parts = urlsplit(base)
    if parts.scheme not in {"ws", "wss"}:
        raise FeedClientError(f"--url must be ws:// or wss://, not {base!r}", 2)
    query = parts.query
    if cursor is not None:
        query = "&".join(filter(None, (query, urlencode({"last_event_id": cursor}))))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/v1/feed", query, ""))


def describe(event: dict[str, Any]) -> str:
    """One line for a lead event: time, type, lead, score, target agent, stream id."""
    accepted = time.strftime("%H:%M:%S", time.localtime(float(event.get("accepted_at", 0))))
    score = event.get("score")
    score_text = f"{score:.3f}" if isinstance(score, int | float) else "-"
    agent = event.get("agent_id") or "all agents"
    return (
        f"{accepted}  {event.get('event_type', '?'):<16} {event.get('lead_id', '?'):<14} "
        f"score {score_text}  to {agent}  [{event.get('stream_id', '?')}]"
    )


class _Printer:
    def __init__(self, out: TextIO, *, raw: bool, count: int | None) -> None:
        self.out = out
        self.raw = raw
        self.remaining = count
        self.cursor: str | None = None
        self.reconnect_delay = DEFAULT_RECONNECT_DELAY

    @property
    def done(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def frame(self, text: str | bytes) -> None:
        frame = orjson.loads(text)
        kind = frame.get("type")
        if kind == "ready":
            self.reconnect_delay = float(frame.get("reconnect_delay", self.reconnect_delay))
            if self.raw:
                self._line(orjson.dumps(frame).decode())
            else:
                self._line(
                    f"-- connected to tenant {frame.get('tenant_id')}'s feed "
                    f"(replayed {frame.get('replayed', 0)}); Ctrl-C to stop"
                )
            return
        events = [frame] if kind == "lead_event" else frame.get("events", [])
        if kind not in {"lead_event", "lead_events"}:
            if self.raw:
                self._line(orjson.dumps(frame).decode())
            elif kind == "replay_truncated":
                self._line("-- some missed events are too old to replay (replay_truncated)")
            return
        for event in events:
            if self.done:
                return
            self.cursor = event.get("stream_id", self.cursor)
            self._line(orjson.dumps(event).decode() if self.raw else describe(event))
            if self.remaining is not None:
                self.remaining -= 1

    def _line(self, text: str) -> None:
        try:
            self.out.write(printable(text) + "\n")
            self.out.flush()
        except BrokenPipeError:
            raise OutputClosed from None


async def watch_feed(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print the feed until Ctrl-C (or ``--count`` events); returns the exit code.

    Raises ``OutputClosed`` when ``out`` is a pipe whose reader has gone.
    """
    token = _token(args)
    printer = _Printer(out, raw=args.json, count=args.count)
    printer.cursor = args.last_event_id
    headers = {"Authorization": f"Bearer {token}"}
    connected_once = False
    while not printer.done:
        url = feed_url(args.url, printer.cursor)
        try:
            async with connect(
                url, additional_headers=headers, open_timeout=OPEN_TIMEOUT, max_size=2**22
            ) as conn:
                connected_once = True
                async for message in conn:
                    printer.frame(message)
                    if printer.done:
                        return 0
                code, reason = conn.close_code, conn.close_reason
        except InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace") if exc.response.body else ""
            raise FeedClientError(
                f"{url.split('?')[0]} refused the handshake: HTTP "
                f"{exc.response.status_code} {body}".strip()
            ) from None
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            reason = exc.rcvd.reason if exc.rcvd else "connection lost"
        except (OSError, TimeoutError) as exc:
            if not connected_once:
                # A wrong --url or a service not started: retrying every few
                # seconds, for ever, said "reconnecting" to a feed never reached.
                raise FeedClientError(
                    f"cannot connect to {url.split('?')[0]} ({exc}): is the realtime "
                    "service running there? (--url)"
                ) from None
            code, reason = None, f"cannot connect ({exc})"
        if code == WS_POLICY_VIOLATION and reason == TOKEN_EXPIRED_REASON:
            if _given_token(args) is not None:
                # A token passed in cannot be renewed here; a reconnect with it
                # would only be refused 401.
                resume = f" and --last-event-id {printer.cursor}" if printer.cursor else ""
                raise FeedClientError(
                    f"the token expired: run again with a new one (--token or {TOKEN_ENV}){resume}"
                )
            # Nothing was missed: the next socket resumes after the cursor.
            token = _token(args)
            headers = {"Authorization": f"Bearer {token}"}
            continue
        if code == WS_POLICY_VIOLATION:
            raise FeedClientError(f"the feed refused this client: {reason}")
        print(
            printable(
                f"-- feed closed ({code or 'no close code'}: {reason or 'no reason'}); "
                f"reconnecting in {printer.reconnect_delay:g} s"
            ),
            file=sys.stderr,
            flush=True,
        )
        await asyncio.sleep(printer.reconnect_delay)
    return 0
