"""The gateway's side of NATS: storing user messages, asking persistence, reading the stream."""

from typing import TypeVar

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from shared import rpc, subjects
from shared.events import PresenceChange, ReplyError, SystemMessage, TypingRelay, UserMessage

T = TypeVar("T", bound=BaseModel)


class Unavailable(Exception):
    """A dependency (NATS or persistence) did not answer in time; the caller may retry."""


class Bus:
    def __init__(self, nc: NatsClient, *, timeout_s: float) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout_s)
        self._timeout_s = timeout_s

    async def store_user_message(
        self, event: UserMessage, headers: dict[str, str] | None = None, pool: str = ""
    ) -> tuple[int, bool]:
        """Store `event` in the stream, in the queue of the model `pool`; returns its sequence
        and whether it was new (a resend within the dedup window is stored once). Raises
        `Unavailable` when the stream does not confirm in time."""
        try:
            ack = await self.js.publish(
                subjects.chat_in(event.session_id, pool),
                event.model_dump_json().encode(),
                headers={
                    **(headers or {}),
                    "Nats-Msg-Id": f"{event.session_id}:{event.message_id}",
                },
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"message not stored: {type(exc).__name__}") from exc
        return ack.seq, not ack.duplicate

    async def post_system(self, event: SystemMessage) -> None:
        """Store a system message (once, however often it is posted within the dedup window);
        raises `Unavailable`."""
        dedup = f"{event.session_id}:{event.message_id}:system"
        await self._store(subjects.system(event.session_id), event, dedup)

    async def store_reply_error(self, event: ReplyError) -> None:
        """Store the end of a reply no worker gave (`gateway.unserved`), once; raises
        `Unavailable`."""
        dedup = f"{event.session_id}:{event.message_id}:{event.code}"
        await self._store(subjects.out_error(event.session_id), event, dedup)

    async def _store(self, subject: str, event: BaseModel, dedup: str) -> None:
        try:
            await self.js.publish(
                subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": dedup}
            )
        except (nats.errors.Error, TimeoutError) as exc:
            what = type(event).__name__
            raise Unavailable(f"{what} not stored: {type(exc).__name__}") from exc

    async def purge_session(self, session_id: str) -> None:
        """Delete every stored event of the session from the stream; raises `Unavailable`."""
        try:
            await self.js.purge_stream(subjects.STREAM, subject=subjects.session_stored(session_id))
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"stream not purged: {type(exc).__name__}") from exc

    async def cancel(self, session_id: str, message_id: str) -> None:
        await self.nc.publish(subjects.cancel(session_id), message_id.encode())

    async def relay_typing(self, session_id: str, relay: TypingRelay) -> None:
        await self.nc.publish(subjects.typing(session_id), relay.model_dump_json().encode())

    async def announce(self, session_id: str, change: PresenceChange) -> None:
        await self.nc.publish(subjects.presence(session_id), change.model_dump_json().encode())

    async def stream_bounds(self) -> tuple[int, int]:
        """First and last sequence stored in the stream."""
        try:
            info = await self.js.stream_info(subjects.STREAM)
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"stream info: {type(exc).__name__}") from exc
        return info.state.first_seq, info.state.last_seq

    async def request(self, subject: str, payload: BaseModel, reply: type[T]) -> T:
        """Ask a `svc.*` service; raises `Unavailable` on no responder or timeout."""
        try:
            msg = await self.nc.request(
                subject, payload.model_dump_json().encode(), timeout=self._timeout_s
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise Unavailable(f"{subject}: {type(exc).__name__}") from exc
        return reply.model_validate_json(msg.data)

    async def get_session(self, session_id: str) -> rpc.SessionInfo | None:
        answer = await self.request(
            subjects.SVC_SESSION_GET, rpc.SessionGet(session_id=session_id), rpc.SessionReply
        )
        if answer.error is not None and answer.error.code != "not_found":
            raise Unavailable(answer.error.detail)
        return answer.session

    async def add_member(
        self, session_id: str, user_id: str, by: str, role: rpc.MemberRole = "member"
    ) -> rpc.SessionReply:
        return await self.request(
            subjects.SVC_MEMBER_ADD,
            rpc.MemberAdd(session_id=session_id, user_id=user_id, by=by, role=role),
            rpc.SessionReply,
        )

    async def session_head(self, session_id: str) -> int:
        """Stream sequence of the session's newest stored event (0 if it has none)."""
        try:
            msg = await self.js.get_last_msg(
                subjects.STREAM, subjects.session_stored(session_id), direct=True
            )
        except NotFoundError:
            return 0
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"stream head: {type(exc).__name__}") from exc
        return msg.seq or 0

    async def ping_persistence(self) -> bool:
        try:
            await self.request(subjects.SVC_PING, rpc.Ping(), rpc.Pong)
        except Unavailable:
            return False
        return True
