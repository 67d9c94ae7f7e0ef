"""The client protocol `tokenwire.v1`: JSON text frames over WebSocket.

Client → server frames are parsed with `parse_client_frame`, which raises `FrameError`
carrying the `error` frame's code. Server → client frames are built by the gateway; stored
events carry the stream sequence `seq`, the client's resume cursor.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from shared.events import MAX_CONTENT_CHARS
from shared.frame_base import STORED_AT, TURN, Frame
from shared.stream_frames import StreamEndFrame as StreamEndFrame
from shared.stream_frames import StreamErrorFrame as StreamErrorFrame
from shared.stream_frames import StreamReasoningFrame as StreamReasoningFrame
from shared.stream_frames import StreamSourcesFrame as StreamSourcesFrame
from shared.stream_frames import StreamStartFrame as StreamStartFrame
from shared.stream_frames import StreamTokenFrame as StreamTokenFrame
from shared.stream_frames import StreamToolCallFrame as StreamToolCallFrame
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


# --- client → server -------------------------------------------------------------------------


class _ClientFrame(Frame):
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
class ReadyFrame(Frame):
    type: Literal["ready"] = "ready"
    session_id: str
    participant: str
    last_seq: int
    recovered: bool | None = None


class ChatMessageFrame(Frame):
    type: Literal["message"] = "message"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    turn: int | None = TURN
    participant: str
    content: str
    role: Literal["user", "system"] = "user"
    """`system`: what a command did to the session (`participant` ran it)."""


class SessionTitleFrame(Frame):
    """The model titled the session from its first exchange. Show `title` where the session's
    title is still `replaces` (the first message's): a title somebody set meanwhile stays."""

    type: Literal["session_title"] = "session_title"
    seq: int
    ts: str | None = STORED_AT
    message_id: str
    """The session's first message."""
    title: str
    replaces: str


class TypingRelayFrame(Frame):
    type: Literal["typing"] = "typing"
    participant: str
    state: bool


class PresenceFrame(Frame):
    type: Literal["presence"] = "presence"
    participant: str
    state: Literal["joined", "left"]


class PongFrame(Frame):
    type: Literal["pong"] = "pong"


class AuthenticatedFrame(Frame):
    """The socket now runs on the token an `auth` frame gave."""

    type: Literal["authenticated"] = "authenticated"
    participant: str
    expires_at: float | None = None
    """The new token's `exp` (seconds since the epoch): the socket closes with 4401 then."""


class CommandResultFrame(Frame):
    """To the sender of a command (a `message` whose content starts with `/`) only."""

    type: Literal["command_result"] = "command_result"
    message_id: str
    command: str
    ok: bool
    text: str
    data: dict[str, Any] | None = None


class ProgressFrame(Frame):
    """A long command's progress, before its `command_result`."""

    type: Literal["progress"] = "progress"
    message_id: str
    command: str
    percent: int = Field(ge=0, le=100)
    label: str


class WaitingFrame(Frame):
    """To the sender of a message stored while no worker serves its model: it waits for one
    up to `give_up_after_s`, then its reply ends with `stream_error` `no_worker`."""

    type: Literal["waiting"] = "waiting"
    message_id: str
    model: str
    """The model's id."""
    give_up_after_s: float | None = None
    """None: it waits as long as the stream keeps it."""
    detail: str


class ErrorFrame(Frame):
    type: Literal["error"] = "error"
    code: ErrorCode
    detail: str
    retry_after_s: float | None = None


ServerFrame = Annotated[
    ReadyFrame
    | ChatMessageFrame
    | SessionTitleFrame
    | StreamStartFrame
    | StreamTokenFrame
    | StreamReasoningFrame
    | StreamSourcesFrame
    | StreamToolCallFrame
    | StreamEndFrame
    | StreamErrorFrame
    | TypingRelayFrame
    | PresenceFrame
    | PongFrame
    | AuthenticatedFrame
    | CommandResultFrame
    | ProgressFrame
    | WaitingFrame
    | ErrorFrame,
    Field(discriminator="type"),
]
_server_frame: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


def parse_server_frame(raw: str | bytes) -> ServerFrame:
    """Parse a server frame (clients and tests); raises `pydantic.ValidationError`."""
    return _server_frame.validate_json(raw)
