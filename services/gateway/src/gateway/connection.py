"""One WebSocket connection's protocol, without I/O: what the connection says and does for
each thing that happens to it (docs/protocol.md; its states are drawn in
docs/architecture.md, "The connection lifecycle").

The adapter (`gateway.ws`) feeds it what happened — the stream's head and the client's resume
cursor, client text, the outbox's items and marks, the token's expiry, a submission's outcome
— and carries out what it answers: frames to send, commands for the bus, a close.
"""

from dataclasses import dataclass
from typing import Literal, assert_never

from gateway.commands import is_command, unescaped
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outgoing, coalesce
from gateway.refusal import Refusal
from gateway.replay import can_resume
from gateway.submissions import Stored
from shared import rpc
from shared.events import TypingRelay
from shared.frames import (
    AuthFrame,
    CancelFrame,
    ErrorFrame,
    FrameError,
    MessageFrame,
    PingFrame,
    PongFrame,
    ReadyFrame,
    TypingFrame,
    parse_client_frame,
)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013
State = Literal["authenticating", "replaying", "live", "closing"]


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Submit:
    """Store the message (`gateway.submissions`), then tell the protocol `submitted`."""

    frame: MessageFrame


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run the command the message carries (`gateway.command_runner`): it is not stored."""

    frame: MessageFrame


@dataclass(frozen=True, slots=True)
class Cancel:
    message_id: str


@dataclass(frozen=True, slots=True)
class Relay:
    """Tell the session's other connections that this one is typing."""

    typing: TypingRelay


@dataclass(frozen=True, slots=True)
class Reauthenticate:
    """Check the fresh token an `auth` frame gave (`gateway.credentials`)."""

    token: str


Command = Submit | RunCommand | Cancel | Relay | Reauthenticate
Output = str | Close | Command
"""A frame to send (its text), a close, or a command for the bus."""


def cursor(value: str | None) -> int | None:
    """`?last_seq=` as a sequence, or None when absent or not a non-negative integer."""
    if value is None or not value.isdigit() or len(value) > 19:
        return None
    return int(value)


class ConnectionProtocol:
    """`authenticating` (the token, then membership) → `replaying` (ready, then the stored
    events after the client's cursor) → `live` (stored events newer than the head the client
    was told, and relays) → `closing` (nothing more is sent)."""

    def __init__(
        self,
        session_id: str,
        connection_id: str,
        *,
        max_frame_bytes: int,
        metrics: GatewayMetrics,
    ) -> None:
        self.session_id = session_id
        self.connection_id = connection_id
        self._max_frame_bytes = max_frame_bytes
        self._metrics = metrics
        self.state: State = "authenticating"
        self.user = ""
        """The authenticated user, once known."""
        self.head = 0
        """The newest stored event the client was told of in `ready`; live events up to it
        were replayed or predate the connection."""
        self.replay_after: int | None = None
        """Where the replay starts (exclusive), or None for no replay."""

    # Authenticating.
    def unauthenticated(self, reason: str) -> Close:
        """No valid token: 4401 (the client gets a fresh one)."""
        return self._close(CLOSE_UNAUTHORIZED, reason)

    def sessions_unavailable(self) -> Close:
        return self._close(CLOSE_TRY_AGAIN_LATER, "sessions unavailable; retry")

    def join(self, user: str, session: rpc.SessionInfo | None) -> Close | None:
        """The user may join when the session exists and counts them as a member; else 4403."""
        if session is None or user not in session.members:
            return self._close(CLOSE_FORBIDDEN, "not a member of this session")
        self.user = user
        self.state = "replaying"
        return None

    # Replaying.
    def open(
        self, head: int, cursor_param: str | None, bounds: tuple[int, int] | None
    ) -> list[str]:
        """`ready` (and an error for a cursor that is not one). `bounds` are the stream's
        first and last sequence, asked for only when `cursor(cursor_param)` is one."""
        self.head = head
        last_seq = cursor(cursor_param)
        recovered: bool | None = None
        if last_seq is not None and bounds is not None:
            recovered = can_resume(last_seq, *bounds)
            self._metrics.resumes.labels(str(recovered).lower()).inc()
        frames = [
            ReadyFrame(
                session_id=self.session_id,
                participant=self.user,
                last_seq=head,
                recovered=recovered,
            ).model_dump_json()
        ]
        if cursor_param is not None and last_seq is None:
            detail = "last_seq must be a non-negative integer; not resumed"
            frames.append(ErrorFrame(code="bad_frame", detail=detail).model_dump_json())
        self.replay_after = last_seq if recovered else None
        return frames

    def replayed(self, items: list[Outgoing]) -> list[str]:
        """The frames for a batch of stored events read back from the stream."""
        return self._frames(items)

    def go_live(self) -> None:
        if self.state == "replaying":
            self.state = "live"

    # Live.
    def forward(self, items: list[Outgoing]) -> list[str]:
        """The frames for events from the live path: none once closing; stored events the
        client has already (at or below the head), dropped."""
        if self.state != "live":
            return []
        head = self.head
        return self._frames([i for i in items if i.seq is None or i.seq > head])

    def drained(self, *, overflowed: bool, interrupted: bool) -> Close | None:
        """After the outbox was sent: close when it overflowed (the client is too slow) or
        the live path was interrupted (the broker connection dropped)."""
        if self.state != "live" or not (overflowed or interrupted):
            return None
        if overflowed:
            self._metrics.slow_closes.inc()
            return self._close(CLOSE_TRY_AGAIN_LATER, "client too slow; resume with last_seq")
        return self._close(CLOSE_TRY_AGAIN_LATER, "broker connection lost; resume with last_seq")

    def receive(self, raw: str | bytes) -> Output | None:
        """What to do for one client frame: an `error` frame for a bad one (the connection
        stays open), `pong` for `ping`, or a command. A message that starts with `/` is a chat
        command; one that starts with `//` is the message with one `/` less."""
        try:
            frame = parse_client_frame(raw, max_bytes=self._max_frame_bytes)
        except FrameError as exc:
            self._metrics.frames_in.labels(exc.code).inc()
            return ErrorFrame(code=exc.code, detail=exc.detail).model_dump_json()
        self._metrics.frames_in.labels(frame.type).inc()
        match frame:
            case MessageFrame() if is_command(frame.content):
                return RunCommand(frame)
            case MessageFrame():
                return Submit(frame.model_copy(update={"content": unescaped(frame.content)}))
            case CancelFrame():
                return Cancel(frame.message_id)
            case TypingFrame():
                return Relay(
                    TypingRelay(participant=self.user, state=frame.state, origin=self.connection_id)
                )
            case PingFrame():
                return PongFrame().model_dump_json()
            case AuthFrame():
                return Reauthenticate(frame.token)
            case _:
                assert_never(frame)

    def submitted(self, result: Stored | Refusal) -> str | None:
        """When stored, nothing (the echo acknowledges it) or the `waiting` frame of a message
        no worker serves now; else the refusal's `error` frame."""
        if isinstance(result, Stored):
            return None if result.waiting is None else result.waiting.model_dump_json()
        return self.refused(result)

    def refused(self, refusal: Refusal) -> str:
        """The `error` frame of a request refused on a connection that stays open."""
        self._metrics.refusals.labels(refusal.code).inc()
        return refusal.frame()

    # Closing.
    def refuse(self, refusal: Refusal) -> tuple[str, Close]:
        """Tell the client why it cannot stay (with when to retry), then close with 1013."""
        self._metrics.refusals.labels(refusal.code).inc()
        return refusal.frame(), self._close(CLOSE_TRY_AGAIN_LATER, refusal.detail)

    def expired(self) -> Close:
        """The token expired: the client reconnects with a fresh one."""
        return self._close(CLOSE_UNAUTHORIZED, "token expired")

    def evicted(self, reason: str = "no longer a member of the session") -> Close:
        """The user left the session or was removed from it, or the session was deleted."""
        return self._close(CLOSE_FORBIDDEN, reason)

    def revoked(self) -> Close:
        """The token was revoked: the client signs in again."""
        return self._close(CLOSE_UNAUTHORIZED, "token revoked")

    def unavailable(self) -> Close:
        """The broker did not answer: the client resumes, here or on another gateway."""
        return self._close(CLOSE_TRY_AGAIN_LATER, "broker unavailable; resume with last_seq")

    def gone(self) -> None:
        """The client went away: nothing more is sent."""
        self.state = "closing"

    def _close(self, code: int, reason: str) -> Close:
        self.state = "closing"
        return Close(code, reason)

    def _frames(self, items: list[Outgoing]) -> list[str]:
        frames = coalesce(items)
        if len(frames) < len(items):
            self._metrics.merged.inc(len(items) - len(frames))
        self._metrics.frames_out.inc(len(frames))
        return frames
