"""Sessions as the gateway sees them: asked of persistence, cached briefly.

Membership is checked on every connect and REST call; a cache of a few seconds keeps that
from costing a NATS round trip each time. A change made through this gateway is seen at once;
one made through another gateway as soon as its announcement arrives (`gateway.membership`
forgets the entry), or within `ttl_s` if the announcement was lost. A message on an open socket
reads its session with a longer `max_age_s` (`SETTINGS_MAX_AGE_S`): the announcements keep it
current, and a burst of messages on sockets opened a while ago then costs persistence no
read each.
"""

import logging
import time
from collections import OrderedDict

from gateway.bus import Bus, Unavailable
from shared import rpc

log = logging.getLogger(__name__)
SETTINGS_MAX_AGE_S = 60.0
"""How old a cached session a message on an open socket may use (announced changes drop it)."""


class SessionCache:
    def __init__(self, bus: Bus, *, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self._bus = bus
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, rpc.SessionInfo | None]] = OrderedDict()
        """Per session: when it was read (monotonic), and what."""

    async def get(
        self, session_id: str, *, max_age_s: float | None = None
    ) -> rpc.SessionInfo | None:
        """The session, or None if it does not exist; a cached copy younger than `max_age_s`
        (default `ttl_s`) is used. While persistence does not answer, an older entry is still
        used (membership rarely changes; chatting goes on through an outage); with none,
        raises `Unavailable`."""
        now = time.monotonic()
        cached = self._entries.get(session_id)
        age_limit = self._ttl_s if max_age_s is None else max_age_s
        if cached is not None and now - cached[0] < age_limit:
            return cached[1]
        try:
            info = await self._bus.get_session(session_id)
        except Unavailable:
            if cached is None:
                raise
            log.warning("sessions unavailable: using what was known of %s", session_id)
            return cached[1]
        self.put(session_id, info)
        return info

    def forget(self, session_id: str) -> None:
        """Ask persistence next time (its members changed through another gateway)."""
        self._entries.pop(session_id, None)

    def put(self, session_id: str, info: rpc.SessionInfo | None) -> None:
        self._entries[session_id] = (time.monotonic(), info)
        self._entries.move_to_end(session_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
