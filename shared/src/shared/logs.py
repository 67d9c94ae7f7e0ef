"""Logging setup shared by the services: one line per record, text or JSON."""

import json
import logging
import re
import sys

from typing_extensions import override

CONTEXT_FIELDS = ("session_id", "message_id", "attempt", "trace_id")
"""Passed as `extra=` by the services; JSON lines carry them as fields of their own."""


def context(session_id: str, message_id: str, attempt: int | None = None) -> dict[str, object]:
    """`extra=` for a log record about one message."""
    fields: dict[str, object] = {"session_id": session_id, "message_id": message_id}
    if attempt is not None:
        fields["attempt"] = attempt
    return fields


class _JsonFormatter(logging.Formatter):
    @override
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


_SECRETS = re.compile(
    r"(?P<key>token=|bearer[ .]|authorization: ?bearer )(?P<value>[A-Za-z0-9._~+/=-]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with bearer tokens and `token=` query values replaced by `[redacted]`."""
    return _SECRETS.sub(lambda m: f"{m.group('key')}[redacted]", text)


class _Redacting(logging.Filter):
    """Tokens never reach a log, whoever logs them (uvicorn logs request paths and queries)."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _NoSocketChatter(logging.Filter):
    """uvicorn logs each WebSocket's handshake and opening at INFO on its error logger:
    access logs by another name (a benchmark run wrote 36,000 such lines), silenced like those."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        message = str(record.msg)
        return not (message.startswith("connection ") or '"WebSocket ' in message)


def configure_logging(service: str, level: str = "INFO", *, json_lines: bool = False) -> None:
    """Send every log record to stderr, tagged with `service`, with tokens redacted; safe to
    call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Redacting())
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs are off: one line per request is noise at this volume (and tokens in query
    # strings are redacted anyway).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    server = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _NoSocketChatter) for f in server.filters):
        server.addFilter(_NoSocketChatter())
    # One line per HTTP request to the model server is noise at INFO.
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def dump_tasks_on_sigusr1() -> None:
    """On SIGUSR1, log every asyncio task of the running loop with where it waits: what a
    stuck process is doing, without stopping it. Call from inside the loop."""
    import asyncio
    import io
    import signal

    def dump() -> None:
        out = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(limit=8, file=out)
        logging.getLogger("tokenwire.tasks").warning("asyncio tasks:\n%s", out.getvalue())

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
