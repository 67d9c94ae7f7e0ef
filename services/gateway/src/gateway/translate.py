"""Stored bus events → server frames. Pure: no I/O."""

from typing import assert_never

from gateway.outbox import Outgoing
from shared import versions
from shared.events import (
    BusEvent,
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyReasoning,
    ReplySources,
    ReplyStart,
    ReplyToken,
    ReplyToolCall,
    SessionTitled,
    SystemMessage,
    UserMessage,
    parse_event,
)
from shared.frames import (
    ChatMessageFrame,
    ServerFrame,
    SessionTitleFrame,
    StreamEndFrame,
    StreamErrorFrame,
    StreamReasoningFrame,
    StreamSourcesFrame,
    StreamStartFrame,
    StreamTokenFrame,
    StreamToolCallFrame,
)

SOLUTIONS: dict[str, list[str]] = {
    "upstream_rate_limited": ["The model server is busy: send the message again in a moment."],
    "upstream_unavailable": ["The model server cannot be reached: try again shortly."],
    "upstream_timeout": ["The model took too long: try again, or ask for a shorter answer."],
    "upstream_error": ["The model server refused the request: rephrase or try again."],
    "no_worker": [
        "Send the message again once a worker for its model runs, or switch the session's "
        "model with /model."
    ],
}


_TOOL_CALL_FIELDS = {
    "message_id",
    "attempt",
    "step",
    "call_id",
    "name",
    "status",
    "arguments",
    "result",
    "error",
}


def outgoing_for_event(data: bytes, seq: int, ts: str | None = None) -> Outgoing | None:
    """The frame for a stored event (stored at `ts`), decoded once and serialised once for
    every connection that gets it; None for an event clients do not see (a model call, for
    billing). Raises `pydantic.ValidationError` for bytes that are no bus event."""
    event = parse_event(data)
    frame = frame_for(event, seq, ts)
    return None if frame is None else Outgoing(frame.model_dump_json(), seq, event, ts)


def frame_for(event: BusEvent, seq: int, ts: str | None = None) -> ServerFrame | None:
    """The frame a client sees for a stored event at `seq`, stored at `ts`; None for one it
    does not see."""
    match event:
        case UserMessage() if "~" in event.message_id:
            return None  # asks for a new version of a reply: the reply's frames show it
        case UserMessage() | SystemMessage():
            return ChatMessageFrame(
                seq=seq,
                ts=ts,
                message_id=event.message_id,
                participant=event.participant,
                content=event.content,
                role="system" if isinstance(event, SystemMessage) else "user",
                turn=event.turn if isinstance(event, UserMessage) else None,
            )
        case ModelCall():
            return None
        case SessionTitled():
            return SessionTitleFrame(
                seq=seq,
                ts=ts,
                message_id=event.message_id,
                title=event.title,
                replaces=event.replaces,
            )
        case _:
            return _reply_frame(event, seq, ts)


def _reply_frame(
    event: ReplyStart
    | ReplyToken
    | ReplyReasoning
    | ReplySources
    | ReplyToolCall
    | ReplyEnd
    | ReplyError,
    seq: int,
    ts: str | None,
) -> ServerFrame:
    match event:
        case ReplySources():
            return StreamSourcesFrame(
                seq=seq,
                ts=ts,
                message_id=event.message_id,
                attempt=event.attempt,
                sources=event.sources,
            )
        case ReplyStart():
            asked, version = versions.split(event.message_id)
            return StreamStartFrame(
                seq=seq,
                ts=ts,
                message_id=event.message_id,
                attempt=event.attempt,
                model=event.model,
                version=version,
                regenerates=asked if version > 1 else None,
                turn=event.turn,
            )
        case ReplyToken():  # the hot path: fields of a validated event need no second check
            return StreamTokenFrame.model_construct(
                seq=seq, ts=ts, message_id=event.message_id, index=event.index, text=event.text
            )
        case ReplyReasoning():
            return StreamReasoningFrame.model_construct(
                seq=seq, ts=ts, message_id=event.message_id, index=event.index, text=event.text
            )
        case ReplyToolCall():
            return StreamToolCallFrame(
                seq=seq,
                ts=ts,
                **event.model_dump(include=_TOOL_CALL_FIELDS),
            )
        case ReplyEnd() | ReplyError():
            return _ending_frame(event, seq, ts)
        case _:
            assert_never(event)


def _ending_frame(event: ReplyEnd | ReplyError, seq: int, ts: str | None) -> ServerFrame:
    if isinstance(event, ReplyError):
        return StreamErrorFrame(
            seq=seq,
            ts=ts,
            message_id=event.message_id,
            code=event.code,
            message=event.message,
            retryable=event.retryable,
            solutions=SOLUTIONS.get(event.code, []),
        )
    return StreamEndFrame(
        seq=seq,
        ts=ts,
        message_id=event.message_id,
        text=event.text,
        reasoning=event.reasoning,
        sources=event.sources,
        warnings=event.warnings,
        tool_calls=event.tool_calls,
        turn=event.turn,
        finish_reason=event.finish_reason,
        usage=event.usage,
        cost_usd=event.cost_usd,
        ttft_ms=event.ttft_ms,
        duration_ms=event.duration_ms,
    )
