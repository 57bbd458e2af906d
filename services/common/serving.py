"""How a service process runs under uvicorn: credential-free logs, bounded handshakes.

Two edges that no route can guard, because they happen before or outside
the ASGI application:

- Logs. uvicorn logs every WebSocket handshake at INFO with its query string
  (``?access_token=...``) whatever the access-log setting, and the websockets
  library logs request lines and headers at DEBUG. `RedactCredentials` is a
  logging filter that replaces bearer tokens, ``access_token`` values,
  anything shaped like a JWT and the values of the service's own secret
  settings (`register_secrets`) with ``[redacted]`` in every record a handler
  emits (message, arguments and formatted traceback). `logging_config`
  puts it on uvicorn's handlers, `install_redaction` on the root logger's,
  `redact_server_loggers` on the server's loggers themselves (whatever
  handlers another library gives them: Streamlit does).
- Oversized requests. The websockets protocol refuses a handshake whose
  request line or a header exceeds 8 KiB (``414``/``431``) but uvicorn never
  writes that answer: the connection stays open, holding a socket per
  attacker. `BoundedWebSocketProtocol` writes the refusal and closes.
  `BoundedHttpProtocol` bounds the request line and headers of plain HTTP
  requests too (httptools itself has no limit), answering 400 and closing.
- Unparseable requests. uvicorn answers a request it cannot parse (oversized
  head, a bad or repeated Content-Length, TLS sent to plain HTTP) with a
  ``text/plain`` 400; `BoundedHttpProtocol` answers ``{detail, reason}`` JSON
  like every other error of the services.
- Slow requests. uvicorn puts no time limit on a request's head or body: a
  connection that sends nothing, a head a byte at a time, or a body that
  never ends holds its socket (and, once the head is in, a task) for ever,
  and a few thousand of them exhaust the process (slowloris).
  `BoundedHttpProtocol` gives a new connection and each request's head
  `REQUEST_HEAD_TIMEOUT_SECONDS`, and a body `REQUEST_BODY_TIMEOUT_SECONDS`
  plus one second per `REQUEST_BODY_MIN_BYTES_PER_SECOND` bytes received (as
  Apache's mod_reqtimeout does): a slow but honest upload of any size goes
  through, a trickle does not. Past the limit the request is answered 408
  ``request_timeout`` (if it has no answer yet) and the connection closed.
- Refused handshakes. uvicorn's websockets protocol logs "ASGI callable
  returned without completing handshake" at ERROR after every handshake the
  app refuses with an HTTP answer (a 401 for an expired token): one ERROR
  line per refused reconnect, which anyone without a token can cause.
  `BoundedWebSocketProtocol` marks the handshake done once the refusal is
  sent, as uvicorn's wsproto protocol does.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

import orjson
from pydantic import BaseModel, SecretStr
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.server import ServerProtocol
from websockets.typing import StatusLike

from services.common.errors import reason_for_status

REDACTED = "[redacted]"
MAX_REQUEST_LINE_BYTES = 8192
"""Longest request line (method, target, version) a service reads."""
MAX_HEADER_BYTES = 8192
"""Longest single header (name and value) a service reads."""
MAX_HEADERS_TOTAL_BYTES = 65536
"""Most bytes of request line and headers together."""
WS_MAX_MESSAGE_BYTES = 4096
"""Largest WebSocket message a client may send (the feed reads none; 1009 above it)."""
REQUEST_HEAD_TIMEOUT_SECONDS = 20.0
"""Longest a new connection may wait before its request's head is complete, and each
request's head may take from its first byte."""
REQUEST_BODY_TIMEOUT_SECONDS = 20.0
"""Time a request body gets from the end of its head, before the credit below."""
REQUEST_BODY_MIN_BYTES_PER_SECOND = 500
"""Each this many body bytes received extend the body's deadline by a second."""

_WS_REFUSAL_PREFIX = "Failed to open a WebSocket connection: "

# Order matters: the specific forms first so that their names stay readable.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # ?access_token=... / &access_token=... up to the next separator.
    (re.compile(r"(?i)(access_token=)[^&\s\"'#]+"), r"\1" + REDACTED),
    # Authorization: Bearer ... / Basic ... (header lines, repr'd header lists).
    (
        re.compile(r"(?i)(authorization['\"]?\s*[:,=]\s*['\"]?\s*)(bearer|basic)?\s*[^\s'\"]+"),
        r"\1\2 " + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    # A JWT anywhere (header.payload.signature, base64url, header starts "{").
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
)


# A run of URL characters holding a percent-escape: a query the server decodes
# before use. `access%5Ftoken=eyJ...%2EeyJ...%2E...` authenticates a feed socket
# like its plain form, and matched no pattern above.
_ENCODED_RUN = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")
#: Decodings tried on one run (a double-encoded credential takes two).
_MAX_DECODINGS = 3


def _redact_patterns(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_encoded(match: re.Match[str]) -> str:
    """The run decoded and redacted when a decoding of it holds a credential, else as is."""
    run = decoded = match.group(0)
    for _ in range(_MAX_DECODINGS):
        decoded, previous = unquote_plus(decoded), decoded
        if decoded == previous:
            break
        redacted = _redact_patterns(decoded)
        if redacted != decoded:
            return redacted
    return run


#: The running service's secret settings, redacted wherever they appear, longest
#: first (a DSN holds its password): a URL that is itself the credential
#: (SLACK_WEBHOOK_URL) matches no pattern above, and httpx logs every request's
#: URL whole (at LOG_LEVEL=DEBUG it named the Slack webhook of every rollback notice).
_SECRETS: tuple[str, ...] = ()
#: Shorter values would redact ordinary words; every secret setting is longer.
MIN_SECRET_CHARS = 8


def _secret_texts(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        text = value.get_secret_value()
        yield text
        try:
            password = urlsplit(text).password
        except ValueError:
            password = None
        if password:
            # A DSN's password is logged alone too (a driver's message, a repr).
            yield password
            yield unquote(password)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_texts(item)


def register_secrets(settings: BaseModel) -> None:
    """Redact the values of ``settings``' secret fields (``SecretStr``, or a mapping of
    them) from every log record, in whatever line they turn up."""
    global _SECRETS
    found = {text for value in vars(settings).values() for text in _secret_texts(value)}
    known = set(_SECRETS) | {text for text in found if len(text) >= MIN_SECRET_CHARS}
    _SECRETS = tuple(sorted(known, key=len, reverse=True))


def _redact_secrets(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(text: str) -> str:
    """``text`` with every credential the patterns above know, and every registered
    secret, replaced by ``[redacted]``, percent-encoded ones included."""
    if _SECRETS:
        text = _redact_secrets(text)
    text = _redact_patterns(text)
    if "%" in text:
        text = _ENCODED_RUN.sub(_redact_encoded, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("latin-1"))
    if value is None or isinstance(value, int | float):
        return value  # kept for %d and %f
    # Any other object is written as its str() (httpx passes its URL object).
    text = str(value)
    redacted = redact(text)
    return value if redacted == text else redacted


_REDACTED_MARK = "credentials_redacted"


class RedactCredentials(logging.Filter):
    """Rewrites a record so that no bearer token or JWT reaches any log output.

    Arguments are redacted one by one (not merged into the message) because
    uvicorn's access formatter reads them positionally.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # A record may pass two of these (its logger's and a handler's): once is enough.
        if getattr(record, _REDACTED_MARK, False):
            return True
        setattr(record, _REDACTED_MARK, True)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        elif not isinstance(record.msg, int | float):
            record.msg = redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER_NAME = "redact_credentials"


def logging_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with `RedactCredentials` on every handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})[_FILTER_NAME] = {"()": f"{__name__}.RedactCredentials"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append(_FILTER_NAME)
    return config


#: HTTP clients that log every request at INFO with its URL: httpx (the CRM
#: client) and httpx2 (the ``anthropic`` SDK's).
CLIENT_REQUEST_LOGGERS = ("httpx", "httpx2")


def quiet_client_request_logs(log_level: str) -> None:
    """Below DEBUG, keep the HTTP clients' line per request out of the logs.

    A line per outbound call, with ids in its URL (a CRM contact), costs CPU on
    hot paths (0.17 of churn's 2.36 ms per send at INFO, docs/benchmarks.md W4)
    and says nothing a failure log, a metric or a stored row does not.
    """
    if log_level == "DEBUG":
        return
    for name in CLIENT_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Put `RedactCredentials` on every handler of ``logger`` (the root logger by default).

    Handler filters apply to records propagated from child loggers too, which
    a logger's own filters would not.
    """
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactCredentials) for f in handler.filters):
            handler.addFilter(RedactCredentials())


#: The server's loggers: uvicorn's and the websockets library's.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "websockets")


def redact_server_loggers() -> None:
    """Put `RedactCredentials` on the server's loggers themselves.

    A logger's filter rewrites a record before any handler sees it, whichever
    handlers the logger has: Streamlit gives these loggers console handlers of
    its own (re-made whenever its configuration changes) and stops them
    propagating to the redacting ones, and a handshake's query reached the log.
    """
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())


class _JsonRefusingServerProtocol(ServerProtocol):
    """websockets' server side, refusing a handshake with ``{detail, reason}`` JSON."""

    def reject(self, status: StatusLike, text: str) -> Response:
        """The refusal websockets would send (status, headers), its body as JSON."""
        plain = super().reject(status, text)
        detail = text.strip().removeprefix(_WS_REFUSAL_PREFIX).rstrip(".") or plain.reason_phrase
        body = orjson.dumps({"detail": detail, "reason": reason_for_status(plain.status_code)})
        headers = Headers(
            (name, value)
            for name, value in plain.headers.raw_items()
            if name.lower() not in ("content-type", "content-length")
        )
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(body))
        return dataclasses.replace(plain, headers=headers, body=body)


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol that answers a refused handshake and closes.

    websockets' parser rejects an oversized or malformed handshake by queueing
    a 4xx response (or an EOF) but reports no event, and uvicorn only writes
    what follows an event: the client waits forever on an open connection.
    Its refusals (a bad ``Sec-WebSocket-Key`` or version) are text/plain; here
    they are ``{detail, reason}`` JSON like every other error of the services.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn builds its ServerProtocol itself, with no hook to choose the
        # class: the same object, given the subclass that words refusals.
        self.conn.__class__ = _JsonRefusingServerProtocol

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            output = self.conn.data_to_send()
            self.transport.write(b"".join(output))
            self.handshake_initiated = self.handshake_complete = self.close_sent = True
            self.transport.close()

    async def send(self, message: Any) -> None:
        """uvicorn's ``send``; a refusal sent in full (denial response) ends the handshake."""
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # Otherwise run_asgi logs an ERROR for every refused handshake.
            self.handshake_complete = True


class _HeadersTooLarge(Exception):  # noqa: N818 - raised inside httptools' callbacks only
    pass


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request lines and headers.

    httptools buffers a header until its end, however long: the bytes of a
    request's head are counted as they arrive, and a request line or header
    over the limits is refused from the parser callbacks (an error raised
    there fails the parse; uvicorn answers 400 and closes the connection).
    """

    _in_head = True
    _head_bytes = 0
    _milestones = 0
    # The pending deadline of the head or body being received, if any.
    _timer: asyncio.TimerHandle | None = None
    _deadline = 0.0
    # Whether a request has begun since the last one ended (its first byte parsed).
    _begun = False
    head_timeout_seconds = REQUEST_HEAD_TIMEOUT_SECONDS
    body_timeout_seconds = REQUEST_BODY_TIMEOUT_SECONDS
    body_min_bytes_per_second = REQUEST_BODY_MIN_BYTES_PER_SECOND

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_deadline(self.head_timeout_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _start_deadline(self, seconds: float) -> None:
        self._stop_deadline()
        self._deadline = self.loop.time() + seconds
        self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _stop_deadline(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The server stopped reading (a pipelined request, a body not yet
            # consumed): the client cannot be late meanwhile.
            self._deadline = now + self.body_timeout_seconds
        elif self._in_head and self.cycle is not None and not self.cycle.response_complete:
            # A head pipelined behind a request still being answered: its clock
            # runs from that answer (a 408 now would read as the answer to it).
            self._deadline = now + self.head_timeout_seconds
        if now < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        if not self._begun:
            # Nothing of a request yet: an idle connection, closed as keep-alive's are.
            self.transport.close()
            return
        if self.cycle is not None and self.cycle.response_started and not self._in_head:
            # Answered already, the rest of its body trickling in: just close.
            self.transport.close()
            return
        self._send_json(408, "the request was not received in time", "request_timeout")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._timer is None:
            self._start_deadline(self.head_timeout_seconds)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._deadline += len(body) / self.body_min_bytes_per_second

    def data_received(self, data: bytes) -> None:
        milestones = self._milestones
        super().data_received(data)
        # Only a chunk that ended no head and no message is wholly head
        # bytes; counting others could refuse a large body sent with its head.
        if self._in_head and milestones == self._milestones and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADERS_TOTAL_BYTES:
                self.send_400_response("Request header fields too large.")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, as ``{detail, reason}`` JSON."""
        self._send_json(400, msg, "bad_request")

    def _send_json(self, status: int, detail: str, reason: str) -> None:
        """Answer ``{detail, reason}`` with ``status`` outside the app, and close."""
        self._stop_deadline()
        body = orjson.dumps({"detail": detail, "reason": reason})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_REQUEST_LINE_BYTES:
            raise _HeadersTooLarge("request line too long")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER_BYTES:
            raise _HeadersTooLarge("header field too large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._milestones += 1
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            # The WebSocket protocol takes the connection over.
            self._stop_deadline()
        else:
            self._start_deadline(self.body_timeout_seconds)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._milestones += 1
        self._begun = False
        # The app's own time is not bounded here; the next request's head is.
        self._stop_deadline()


def uvicorn_protocols() -> dict[str, Any]:
    """The ``http``, ``ws`` and ``ws_max_size`` options every service runs with."""
    return {
        "http": BoundedHttpProtocol,
        "ws": BoundedWebSocketProtocol,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
    }
