"""Regenerating a reply: a new version of the reply to a user message, asked for by a message
of its own (`m~v2`: `shared.versions`) with the same content, admitted and stored like any
message, so that it streams, resumes, is cancelled and billed like any reply. Its sender is
who asked for it (who may cancel it, whose budget it spends)."""

from dataclasses import dataclass

from gateway.auth import Principal
from gateway.bus import Bus
from gateway.refusal import Refusal
from gateway.submissions import Stored, Submissions
from shared import rpc, subjects, versions
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
