"""Events as tests make them: a finished reply with defaults for every field a test does not
care about."""

from typing import Any

from shared.events import ReplyEnd, Usage


def reply_end(session_id: str, message_id: str = "m1", **fields: Any) -> ReplyEnd:
    """A `stop`-finished reply of attempt 1 by model `m`; `fields` override any field."""
    defaults: dict[str, Any] = {
        "attempt": 1,
        "model": "m",
        "text": "hi",
        "finish_reason": "stop",
        "usage": Usage(),
        "duration_ms": 1,
    }
    return ReplyEnd(session_id=session_id, message_id=message_id, **{**defaults, **fields})
