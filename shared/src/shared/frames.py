"""The client protocol `tokenwire.v1`: JSON text frames over WebSocket.

Client → server frames are parsed with `parse_client_frame`, which raises `FrameError`
carrying the `error` frame's code. Server → client frames are built by the gateway; stored
events carry the stream sequence `seq`, the client's resume cursor.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.events import MAX_CONTENT_CHARS, FinishReason, Source, Usage
from shared.versions import REPLY_ID_PATTERN

SUBPROTOCOL = "tokenwire.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_TOKEN_CHARS = 8192
"""The longest token an `auth` frame may carry."""

ErrorCode = Literal[
    "bad_json",
    "bad_frame",
    "too_large",
    "rate_limited",
    "busy",
    "budget_exceeded",
    "forbidden",
    "unauthorized",
    "unavailable",
    "internal",
]


class FrameError(Exception):
    """A client frame the server refuses; becomes an `error` frame on an open connection."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: ErrorCode = code
        self.detail = detail


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _unless_none(description: str) -> Any:
    """An optional field left out of a frame that has none (one built without the stream)."""
    return Field(default=None, exclude_if=lambda value: value is None, description=description)


_TURN = _unless_none("The message's turn in its session (1, 2…), and its reply's.")
_STORED_AT = _unless_none("When the stream stored the event (ISO 8601, UTC, milliseconds).")


# --- client → server -------------------------------------------------------------------------


class _ClientFrame(_Frame):
    """Strict: `"yes"` is no boolean and `1` no string; a client says exactly what it means."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class MessageFrame(_ClientFrame):
    type: Literal["message"]
    message_id: str = Field(pattern=MESSAGE_ID_PATTERN)
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    reply: bool = True


class CancelFrame(_ClientFrame):
    type: Literal["cancel"]
    message_id: str = Field(pattern=REPLY_ID_PATTERN)
    """A message's id, or a version's (`m~v2`: see `stream_start.version`)."""


class TypingFrame(_ClientFrame):
    type: Literal["typing"]
    state: bool


class PingFrame(_ClientFrame):
    type: Literal["ping"]


class AuthFrame(_ClientFrame):
    """A fresh token for the open socket (same user), before the current one expires."""

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS)


ClientFrame = Annotated[
    MessageFrame | CancelFrame | TypingFrame | PingFrame | AuthFrame, Field(discriminator="type")
]
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def parse_client_frame(raw: str | bytes, *, max_bytes: int = 64 * 1024) -> ClientFrame:
    """Parse one client frame.

    Raises `FrameError` with code `too_large` (over `max_bytes`), `bad_json` (not a JSON
    object) or `bad_frame` (unknown `type` or invalid fields; `detail` says which).
    """
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise FrameError("too_large", f"frame is {size} bytes; the limit is {max_bytes}")
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError("bad_json", "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise FrameError("bad_json", "frame must be a JSON object")
    try:
        return _client_frame.validate_python(data)
    except ValidationError as exc:
        raise FrameError("bad_frame", _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(part) for part in first['loc']) or 'frame'}: {first['msg']}"


# --- server → client -------------------------------------------------------------------------
class ReadyFrame(_Frame):
    type: Literal["ready"] = "ready"
    session_id: str
    participant: str
    last_seq: int
    recovered: bool | None = None


class ChatMessageFrame(_Frame):
    type: Literal["message"] = "message"
    seq: int
    ts: str | None = _STORED_AT
    message_id: str
    turn: int | None = _TURN
    participant: str
    content: str
    role: Literal["user", "system"] = "user"
    """`system`: what a command did to the session (`participant` ran it)."""


class StreamStartFrame(_Frame):
    type: Literal["stream_start"] = "stream_start"
    seq: int
    ts: str | None = _STORED_AT
    message_id: str
    turn: int | None = _TURN
    attempt: int
    model: str
    version: int = 1
    """2, 3…: a regenerated reply, a new version of the reply to `regenerates`; its events'
    `message_id` is the version's own (`<regenerates>~v<version>`)."""
    regenerates: str | None = None


class StreamTokenFrame(_Frame):
    type: Literal["stream_token"] = "stream_token"
    seq: int
    ts: str | None = _STORED_AT
    message_id: str
    index: int
    text: str


class StreamReasoningFrame(_Frame):
    """What the model reasons before it answers (models that stream their reasoning): shown
    apart from the reply's text, e.g. collapsed."""

    type: Literal["stream_reasoning"] = "stream_reasoning"
    seq: int
    ts: str | None = _STORED_AT
    message_id: str
    index: int
    text: str


class StreamSourcesFrame(_Frame):
    """What the reply draws on, before its first token (or as the model cites them)."""

    type: Literal["stream_sources"] = "stream_sources"
    seq: int
    ts: str | None = _STORED_AT
    message_id: str
    attempt: int
    sources: list[Source]


class StreamEndFrame(_Frame):
    type: Literal["stream_end"] = "stream_end"
    seq: int
    ts: str | None = _STORED_AT
    message_id: str
    turn: int | None = _TURN
    text: str
    reasoning: str = ""
    sources: list[Source] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    finish_reason: FinishReason
    usage: Usage
    cost_usd: float | None
    ttft_ms: float | None
    duration_ms: float


class StreamErrorFrame(_Frame):
    type: Literal["stream_error"] = "stream_error"
    seq: int
    ts: str | None = _STORED_AT
    message_id: str
    code: str
    message: str
    retryable: bool
    solutions: list[str] = Field(default_factory=list)


class TypingRelayFrame(_Frame):
    type: Literal["typing"] = "typing"
    participant: str
    state: bool


class PresenceFrame(_Frame):
    type: Literal["presence"] = "presence"
    participant: str
    state: Literal["joined", "left"]


class PongFrame(_Frame):
    type: Literal["pong"] = "pong"


class AuthenticatedFrame(_Frame):
    """The socket now runs on the token an `auth` frame gave."""

    type: Literal["authenticated"] = "authenticated"
    participant: str
    expires_at: float | None = None
    """The new token's `exp` (seconds since the epoch): the socket closes with 4401 then."""


class CommandResultFrame(_Frame):
    """To the sender of a command (a `message` whose content starts with `/`) only."""

    type: Literal["command_result"] = "command_result"
    message_id: str
    command: str
    ok: bool
    text: str
    data: dict[str, Any] | None = None


class ProgressFrame(_Frame):
    """A long command's progress, before its `command_result`."""

    type: Literal["progress"] = "progress"
    message_id: str
    command: str
    percent: int = Field(ge=0, le=100)
    label: str


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: ErrorCode
    detail: str
    retry_after_s: float | None = None


ServerFrame = Annotated[
    ReadyFrame
    | ChatMessageFrame
    | StreamStartFrame
    | StreamTokenFrame
    | StreamReasoningFrame
    | StreamSourcesFrame
    | StreamEndFrame
    | StreamErrorFrame
    | TypingRelayFrame
    | PresenceFrame
    | PongFrame
    | AuthenticatedFrame
    | CommandResultFrame
    | ProgressFrame
    | ErrorFrame,
    Field(discriminator="type"),
]
_server_frame: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


def parse_server_frame(raw: str | bytes) -> ServerFrame:
    """Parse a server frame (clients and tests); raises `pydantic.ValidationError`."""
    return _server_frame.validate_json(raw)
