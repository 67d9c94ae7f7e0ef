"""Regenerating a reply: a new version of the reply to a user message, asked for by a message
of its own (`m~v2`: `shared.versions`) with the same content, admitted and stored like any
message, so that it streams, resumes, is cancelled and billed like any reply. Its sender is
who asked for it (who may cancel it, whose budget it spends)."""

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.auth import Principal
from gateway.bus import Bus
from gateway.refusal import Refusal
from gateway.submissions import Stored, Submissions
from shared import keys, rpc, subjects, versions
from shared.frames import MessageFrame


@dataclass(frozen=True, slots=True)
class Regenerated:
    message_id: str
    """The new version's own message id."""
    version: int
    seq: int


async def regenerate(
    bus: Bus,
    submissions: Submissions,
    session: rpc.SessionInfo,
    principal: Principal,
    message_id: str,
) -> Regenerated | Refusal:
    """Ask for a new version of the reply to `message_id` (a member's right, like sending).
    Refused: a viewer; a message unknown here; the admission's limits. Two asked for at
    once may be the same version (stored once). Raises `gateway.bus.Unavailable`."""
    asked = rpc.MessageGet(session_id=session.session_id, message_id=message_id)
    info = await bus.request(subjects.SVC_MESSAGE_GET, asked, rpc.MessageInfo)
    if info.message is None:
        detail = info.error.detail if info.error else f"no message {message_id}"
        return Refusal("bad_frame", detail)
    version = max(info.versions, 1) + 1  # a first reply not recorded yet is still the first
    try:
        own_id = versions.version_id(message_id, version)
    except ValueError as exc:
        return Refusal("bad_frame", str(exc))
    frame = MessageFrame.model_construct(
        type="message", message_id=own_id, content=info.message.content, reply=True
    )
    stored = await submissions.submit(session, principal, frame)
    if not isinstance(stored, Stored):
        return stored
    return Regenerated(own_id, version, stored.seq)


async def last_asked(
    redis: Redis, session_id: str, newest_first: Sequence[rpc.HistoryMessage]
) -> str | None:
    """The message whose reply is the session's newest, from a page of history: the newest
    recorded reply's, or a message after it that a worker took already (its reply streams, or
    ended a moment ago and is not recorded yet). None: no reply yet."""
    newer: list[str] = []
    recorded = None
    for message in newest_first:
        if message.role == "assistant" and message.in_reply_to:
            recorded = message.in_reply_to
            break
        if message.role == "user":
            newer.append(message.message_id)
    if newer:
        async with redis.pipeline(transaction=False) as pipe:
            for mid in newer:
                pipe.exists(keys.fence(session_id, mid))
            taken = await pipe.execute()
        return next((mid for mid, began in zip(newer, taken, strict=True) if began), recorded)
    return recorded
