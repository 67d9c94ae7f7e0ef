"""The frames of a reply (server → client), each with its stream sequence `seq`: its start,
tokens, reasoning, sources, tool calls, and its end or error (see `shared.frames`)."""

from typing import Literal

from pydantic import Field

from shared.events import FinishReason, Source, ToolCall, ToolStatus, Usage
from shared.frame_base import STORED_AT, TURN, Frame


class StreamStartFrame(Frame):
    type: Literal["stream_start"] = "stream_start"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    turn: int | None = TURN
    attempt: int
    model: str
    version: int = 1
    """2, 3…: a regenerated reply, a new version of the reply to `regenerates`; its events'
    `message_id` is the version's own (`<regenerates>~v<version>`)."""
    regenerates: str | None = None


class StreamTokenFrame(Frame):
    type: Literal["stream_token"] = "stream_token"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    index: int
    text: str


class StreamReasoningFrame(Frame):
    """What the model reasons before it answers (models that stream their reasoning): shown
    apart from the reply's text, e.g. collapsed."""

    type: Literal["stream_reasoning"] = "stream_reasoning"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    index: int
    text: str


class StreamSourcesFrame(Frame):
    """What the reply draws on, before its first token (or as the model cites them)."""

    type: Literal["stream_sources"] = "stream_sources"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    attempt: int
    sources: list[Source]


class StreamToolCallFrame(Frame):
    """A tool call of the reply as it happens: the model's argument deltas (`arguments`),
    `running` while the tool runs, then `done` with a short `result` or `failed` with the
    `error`. `call_id` ties the frames of one call together."""

    type: Literal["stream_tool_call"] = "stream_tool_call"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    attempt: int
    step: int
    call_id: str
    name: str
    status: ToolStatus
    arguments: str = ""
    result: str = ""
    error: str = ""


class StreamEndFrame(Frame):
    type: Literal["stream_end"] = "stream_end"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    turn: int | None = TURN
    text: str
    reasoning: str = ""
    sources: list[Source] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason
    usage: Usage
    cost_usd: float | None
    ttft_ms: float | None
    duration_ms: float


class StreamErrorFrame(Frame):
    type: Literal["stream_error"] = "stream_error"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    code: str
    message: str
    retryable: bool
    solutions: list[str] = Field(default_factory=list)
