"""``enterprisehub serve``'s uvicorn options: valid for this uvicorn, quiet realtime."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from services.cli import SERVICES, build_parser, uvicorn_options
from services.common.serving import WS_MAX_MESSAGE_BYTES


def _options(*argv: str) -> dict[str, object]:
    args = build_parser().parse_args(["serve", *argv])
    return uvicorn_options(args, SERVICES[args.service], log_level="INFO")


def test_serve_options_load_in_this_uvicorn() -> None:
    options = _options("realtime")
    config = uvicorn.Config(FastAPI(), **options)  # type: ignore[arg-type]
    config.load()  # imports the loop, http and websocket implementations named
    assert options["loop"] == "uvloop"
    # uvloop, httptools and websockets' sans-I/O protocol, bounded (serving.py).
    assert issubclass(config.http_protocol_class, HttpToolsProtocol)
    assert issubclass(config.ws_protocol_class, WebSocketsSansIOProtocol)  # type: ignore[arg-type]
    assert options["ws_per_message_deflate"] is False
    assert config.ws_max_size == WS_MAX_MESSAGE_BYTES


def test_realtime_has_no_access_log_and_others_keep_it() -> None:
    assert _options("realtime")["access_log"] is False
    assert _options("ml")["access_log"] is True
    assert _options("ml", "--no-access-log")["access_log"] is False
    assert _options("realtime", "--port", "9001")["port"] == 9001
    assert _options("ml")["port"] == SERVICES["ml"].port
