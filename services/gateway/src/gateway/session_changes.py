"""Changing a session, the same way from a REST route or a command: persistence records it
(and refuses anyone but the owner), the workers' copy of its prompt is written to Redis, and
every gateway forgets what it cached of it."""

import logging

from redis.exceptions import RedisError

from gateway.deps import Resources
from shared import keys, rpc, subjects
from shared.events import SystemMessage

log = logging.getLogger(__name__)


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


async def post(resources: Resources, message: SystemMessage) -> None:
    """Store a system message: every member sees it, history keeps it. Raises
    `gateway.bus.Unavailable`."""
    await resources.bus.post_system(message)
