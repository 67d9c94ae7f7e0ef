"""A change to a session felt on every gateway at once — its settings changed, a member left
or was removed by its owner, or the owner deleted it: the gateway that made it announces it on
`gateway.members`, and each gateway forgets what it cached of the session (a connect and a
message read it from persistence again) and closes with 4403 a removed member's open sockets
on it, or every socket on a deleted session."""

import json
import logging

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from gateway.revocations import Revocations
from gateway.sessions import SessionCache
from shared import rpc, subjects

log = logging.getLogger(__name__)


class Membership:
    def __init__(self, nc: NatsClient, sessions: SessionCache, sockets: Revocations) -> None:
        self._nc = nc
        self._sessions = sessions
        self._sockets = sockets

    async def subscribe(self) -> None:
        """Apply every announcement from now on (the connection's drain ends it)."""
        await self._nc.subscribe(subjects.MEMBERSHIP, cb=self._announced)

    async def removed(self, session_id: str, user_id: str, session: rpc.SessionInfo) -> None:
        """`user_id` is no longer a member of `session` (as persistence now has it)."""
        self._sessions.put(session_id, session)
        self._evict(session_id, user_id)
        await self._announce(session_id, user_id)

    async def deleted(self, session_id: str) -> None:
        """The session is gone: every socket on it closes."""
        self._sessions.put(session_id, None)
        self._evict_all(session_id)
        await self._announce(session_id, None, deleted=True)

    async def changed(self, session: rpc.SessionInfo) -> None:
        """`session`'s settings changed (it is as given now)."""
        self._sessions.put(session.session_id, session)
        await self._announce(session.session_id, None)

    async def _announce(
        self, session_id: str, user_id: str | None, *, deleted: bool = False
    ) -> None:
        change = {"session_id": session_id, "user_id": user_id, "deleted": deleted}
        await self._nc.publish(subjects.MEMBERSHIP, json.dumps(change).encode())

    async def _announced(self, msg: Msg) -> None:
        try:
            change = json.loads(msg.data)
            session_id, user_id = str(change["session_id"]), change.get("user_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("a session announcement that does not parse; ignored")
            return
        self._sessions.forget(session_id)
        if change.get("deleted") is True:
            self._evict_all(session_id)
        elif isinstance(user_id, str):
            self._evict(session_id, user_id)

    def _evict_all(self, session_id: str) -> None:
        for holder in self._sockets.everyone():
            if holder.session_id == session_id:
                holder.evict("the session was deleted")

    def _evict(self, session_id: str, user_id: str) -> None:
        for holder in self._sockets.holding(user_id):
            if holder.session_id == session_id:
                holder.evict()
