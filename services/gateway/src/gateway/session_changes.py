"""Changing a session, the same way from a REST route or a command: persistence records it
(and refuses anyone but the owner), the workers' copy of its prompt is written to Redis, and
every gateway forgets what it cached of it."""

import asyncio
import logging

from redis.exceptions import RedisError

from gateway.bus import Unavailable
from gateway.deps import Resources
from shared import keys, rpc, subjects

log = logging.getLogger(__name__)
PURGE_AGAIN_S = 5.0
"""A deleted session's stream is purged again after this: what replies stopped by the delete
stored meanwhile (their ends) goes too."""
_later: set[asyncio.Task[None]] = set()


async def change(resources: Resources, request: rpc.SessionUpdate) -> rpc.SessionReply:
    """Apply `request`; the session as it is now, or persistence's refusal. Raises
    `gateway.bus.Unavailable` when persistence does not answer."""
    answer = await resources.bus.request(subjects.SVC_SESSION_UPDATE, request, rpc.SessionReply)
    if answer.session is None:
        return answer
    if request.system_prompt is not None:
        try:
            key = keys.session_prompt(request.session_id)
            await resources.redis.set(key, request.system_prompt, ex=keys.SESSION_PROMPT_TTL_S)
        except RedisError as exc:  # workers then ask persistence when the old one expires
            log.warning("session prompt not cached: %s", exc)
    await resources.membership.changed(answer.session)
    return answer


async def invite(
    resources: Resources, session_id: str, user_id: str, by: str, role: rpc.MemberRole
) -> rpc.SessionReply:
    """Make `user_id` a member (the owner's right, checked by persistence)."""
    answer = await resources.bus.add_member(session_id, user_id, by, role)
    if answer.session is not None:
        resources.sessions.put(session_id, answer.session)
    return answer


async def clear_context(resources: Resources, session_id: str) -> None:
    """Later replies start from here: the workers' cached turns go, and the session is marked
    as having none (persistence moves its context's start when it records the system
    message). Raises `RedisError`."""
    async with resources.redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.context(session_id))
        pipe.set(keys.fresh_session(session_id), 1, ex=keys.FRESH_SESSION_TTL_S)
        await pipe.execute()


async def delete(resources: Resources, session_id: str, by: str) -> rpc.SessionReply:
    """Delete the session (the owner's right, checked by persistence): every socket on it
    closes with 4403 on every gateway, its replies in flight stop, and its stored events and
    the workers' copies of its context and prompt go. Raises `gateway.bus.Unavailable` when
    persistence does not answer (then nothing was deleted)."""
    asked = rpc.SessionDelete(session_id=session_id, by=by)
    answer = await resources.bus.request(subjects.SVC_SESSION_DELETE, asked, rpc.SessionReply)
    if answer.session is None:
        return answer
    await resources.membership.deleted(session_id)
    await resources.bus.cancel(session_id, subjects.EVERY_REPLY)
    await _purge(resources, session_id)
    try:
        await resources.redis.delete(keys.context(session_id), keys.session_prompt(session_id))
    except RedisError as exc:  # they expire on their own
        log.warning("a deleted session's keys stay until they expire: %s", exc)
    task = asyncio.create_task(_purge(resources, session_id, after_s=PURGE_AGAIN_S))
    _later.add(task)
    task.add_done_callback(_later.discard)
    return answer


async def _purge(resources: Resources, session_id: str, after_s: float = 0.0) -> None:
    await asyncio.sleep(after_s)
    try:
        await resources.bus.purge_session(session_id)
    except Unavailable as exc:  # the stream's retention removes them in the end
        log.warning("stored events of deleted session %s not purged: %s", session_id, exc)
