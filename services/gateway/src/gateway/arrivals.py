"""A connection arriving in its session and leaving it: its presence (`gateway.presence`)
and its slot among its user's connections (`gateway.limits`), with the session told when a
participant's first connection opens or their last one closes."""

import logging

from redis.exceptions import RedisError

from gateway.deps import Resources
from shared import keys
from shared.events import PresenceChange

log = logging.getLogger(__name__)


async def arrive(r: Resources, session_id: str, user: str, connection: str) -> bool:
    """Record presence; announce the user if this is their first connection here. Whether
    presence was recorded (without Redis, it is not)."""
    try:
        first = await r.presence.enter(session_id, user, connection)
    except RedisError as exc:
        log.warning("presence unavailable: %s", exc)
        return False
    if first:
        await r.bus.announce(
            session_id, PresenceChange(participant=user, state="joined", origin=connection)
        )
    return True


async def depart(
    r: Resources, session_id: str, user: str, connection: str, *, present: bool
) -> None:
    """Give back the connection's slot, and its presence if it had one: one round trip."""
    slot = keys.connections(user)
    try:
        if not present:
            await r.limits.close_connection(user, connection)
            return
        last = await r.presence.leave(session_id, user, connection, also_from=slot)
    except RedisError as exc:
        log.warning("the connection's slot and presence stay until they expire: %s", exc)
        return
    if last:
        await r.bus.announce(
            session_id, PresenceChange(participant=user, state="left", origin=connection)
        )
