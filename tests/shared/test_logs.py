"""Tokens never reach a log line."""

import io
import logging

from shared.logs import configure_logging, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"


def test_redact_covers_query_header_and_subprotocol() -> None:
    assert redact(f'"WebSocket /v1/sessions/s/ws?token={JWT}&last_seq=4"') == (
        '"WebSocket /v1/sessions/s/ws?token=[redacted]&last_seq=4"'
    )
    assert JWT not in redact(f"Authorization: Bearer {JWT}")
    assert JWT not in redact(f"subprotocols tokenwire.v1, bearer.{JWT}")
    assert redact("nothing to hide") == "nothing to hide"


def test_configured_logging_redacts_what_libraries_log() -> None:
    configure_logging("test")
    stream = io.StringIO()
    root = logging.getLogger()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("uvicorn.error").warning(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1", f"/v1/sessions/s/ws?token={JWT}"
    )
    assert "token=[redacted]" in stream.getvalue()
    assert JWT not in stream.getvalue()
    root.handlers.clear()


def test_json_lines_carry_the_message_context() -> None:
    import json

    from shared.logs import context

    configure_logging("test", json_lines=True)
    stream = io.StringIO()
    root = logging.getLogger()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("x").warning("took %d", 3, extra=context("s1", "m1", 2))
    line = json.loads(stream.getvalue())
    assert (line["msg"], line["session_id"], line["message_id"], line["attempt"]) == (
        "took 3",
        "s1",
        "m1",
        2,
    )
    root.handlers.clear()


def test_uvicorn_logs_no_line_per_socket_but_keeps_its_warnings() -> None:
    configure_logging("test")
    stream = io.StringIO()
    root = logging.getLogger()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    server = logging.getLogger("uvicorn.error")
    server.info('%s - "WebSocket %s" [accepted]', "127.0.0.1", "/v1/sessions/s/ws")
    server.info("connection open")
    server.info("connection closed")
    server.info("Started server process [%d]", 7)
    server.warning("connection rejected: %s", "too big")
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "Started server process [7]",
        "connection rejected: too big",
    ]
    root.handlers.clear()
