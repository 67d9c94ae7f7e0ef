"""Stored events become the frames of the client protocol, with their stream sequence."""

import pytest
from pydantic import ValidationError

from gateway.translate import frame_for
from shared.events import (
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    Usage,
    UserMessage,
    parse_event,
)
from shared.frames import (
    ChatMessageFrame,
    StreamEndFrame,
    StreamErrorFrame,
    StreamStartFrame,
    StreamTokenFrame,
)


def frame_for_event(data: bytes, seq: int) -> object:
    """The frame a client sees for the stored event `data` at stream sequence `seq`."""
    return frame_for(parse_event(data), seq)


def test_each_event_maps_to_its_frame() -> None:
    user = UserMessage(session_id="s", message_id="m", participant="u", content="hi")
    assert frame_for_event(user.model_dump_json().encode(), 1) == ChatMessageFrame(
        seq=1, message_id="m", participant="u", content="hi"
    )
    start = ReplyStart(session_id="s", message_id="m", attempt=2, model="x")
    assert frame_for_event(start.model_dump_json().encode(), 2) == StreamStartFrame(
        seq=2, message_id="m", attempt=2, model="x"
    )
    token = ReplyToken(session_id="s", message_id="m", attempt=2, index=0, text="H")
    assert frame_for_event(token.model_dump_json().encode(), 3) == StreamTokenFrame(
        seq=3, message_id="m", index=0, text="H"
    )
    end = ReplyEnd(
        session_id="s",
        message_id="m",
        attempt=2,
        model="x",
        text="H",
        finish_reason="stop",
        usage=Usage(total_tokens=3),
        ttft_ms=1,
        duration_ms=2,
    )
    end_frame = frame_for_event(end.model_dump_json().encode(), 4)
    assert isinstance(end_frame, StreamEndFrame)
    assert (end_frame.seq, end_frame.text, end_frame.usage.total_tokens) == (4, "H", 3)


def test_errors_come_with_solutions() -> None:
    error = ReplyError(
        session_id="s",
        message_id="m",
        attempt=1,
        code="upstream_rate_limited",
        message="busy",
        retryable=True,
    )
    frame = frame_for_event(error.model_dump_json().encode(), 9)
    assert isinstance(frame, StreamErrorFrame)
    assert frame.retryable
    assert frame.solutions


def test_bytes_that_are_no_event_are_refused() -> None:
    with pytest.raises(ValidationError):
        frame_for_event(b'{"type":"nope"}', 1)
