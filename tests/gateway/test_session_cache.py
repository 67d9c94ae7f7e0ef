"""The gateway's cache of sessions: a copy younger than the asked age is used without asking
persistence (a message on an open socket accepts an older copy than a connect does), a
forgotten entry (an announced change) is read again, and an outage keeps the last copy."""

from datetime import UTC, datetime

import pytest

from gateway.bus import Unavailable
from gateway.sessions import SETTINGS_MAX_AGE_S, SessionCache
from shared import rpc

SESSION = rpc.SessionInfo(
    session_id="s1", owner="u1", title="", members=["u1"], created_at=datetime.now(UTC)
)


class Persistence:
    def __init__(self) -> None:
        self.reads = 0
        self.down = False

    async def get_session(self, session_id: str) -> rpc.SessionInfo | None:
        if self.down:
            raise Unavailable("persistence is down")
        self.reads += 1
        return SESSION


def aged(cache: SessionCache, seconds: float) -> None:
    """Make every entry `seconds` older."""
    for sid, (read_at, info) in list(cache._entries.items()):
        cache._entries[sid] = (read_at - seconds, info)


async def test_an_open_socket_accepts_an_older_copy_than_a_connect() -> None:
    persistence = Persistence()
    cache = SessionCache(persistence, ttl_s=5)  # type: ignore[arg-type]
    await cache.get("s1")
    aged(cache, 10)
    assert await cache.get("s1", max_age_s=SETTINGS_MAX_AGE_S) == SESSION
    assert persistence.reads == 1  # a message on an open socket: the cached copy
    await cache.get("s1")
    assert persistence.reads == 2  # a connect: read again after ttl_s
    cache.forget("s1")  # an announced change
    await cache.get("s1", max_age_s=SETTINGS_MAX_AGE_S)
    assert persistence.reads == 3
    aged(cache, SETTINGS_MAX_AGE_S + 1)
    await cache.get("s1", max_age_s=SETTINGS_MAX_AGE_S)
    assert persistence.reads == 4  # no copy is kept forever
    persistence.down = True
    aged(cache, SETTINGS_MAX_AGE_S + 1)
    assert await cache.get("s1") == SESSION  # an outage: the last copy
    with pytest.raises(Unavailable):
        await cache.get("s2")
