"""Revoked tokens: one token (its `jti`), or every token of a user issued until a moment.

Kept in one Redis hash, `tw:revocations`, that any gateway reads whole, and announced on
`gateway.revocations`, so that every gateway closes the sockets such tokens opened at once
(4401: the client signs in again). Each gateway holds the list in memory (`RevocationList`,
no I/O): loaded at start, read again every `refresh_s` (which also catches an announcement a
gateway missed while cut off from the broker, and checks its open sockets again), and
updated by each announcement. So checking a token at connect or on a REST call costs no round
trip, and still works while Redis is unreachable.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.auth import Principal
from shared import keys, subjects
from shared.redis import text

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Revocation:
    until: float
    """When the entry stops mattering (the token would have expired by then)."""
    token_id: str | None = None
    user_id: str | None = None
    issued_until: float | None = None
    """With `user_id`: tokens issued at or before this moment are revoked."""

    @property
    def field(self) -> str:
        return f"jti:{self.token_id}" if self.token_id else f"user:{self.user_id}"

    def covers(self, principal: Principal) -> bool:
        if self.token_id is not None:
            return principal.token_id == self.token_id
        if principal.user_id != self.user_id:
            return False
        issued = principal.issued_at
        return issued is None or self.issued_until is None or issued <= self.issued_until


class RevocationList:
    """The revocations a gateway knows, by token id and by user."""

    def __init__(self) -> None:
        self._tokens: dict[str, Revocation] = {}
        self._users: dict[str, Revocation] = {}

    def add(self, revocation: Revocation) -> None:
        if revocation.token_id is not None:
            self._tokens[revocation.token_id] = revocation
        elif revocation.user_id is not None:
            known = self._users.get(revocation.user_id)
            if known is None or (known.issued_until or 0) <= (revocation.issued_until or 0):
                self._users[revocation.user_id] = revocation

    def covers(self, principal: Principal, now: float | None = None) -> bool:
        moment = time.time() if now is None else now
        known = (self._tokens.get(principal.token_id or ""), self._users.get(principal.user_id))
        return any(
            each is not None and each.until > moment and each.covers(principal) for each in known
        )

    def replace(self, revocations: list[Revocation]) -> None:
        self._tokens.clear()
        self._users.clear()
        for revocation in revocations:
            self.add(revocation)


def encode(revocation: Revocation) -> bytes:
    return json.dumps(asdict(revocation), separators=(",", ":")).encode()


def decode(raw: bytes | str) -> Revocation | None:
    try:
        data = json.loads(raw)
        return Revocation(
            until=float(data["until"]),
            token_id=data.get("token_id"),
            user_id=data.get("user_id"),
            issued_until=data.get("issued_until"),
        )
    except (ValueError, KeyError, TypeError):
        return None


class Holder(Protocol):
    """An open socket: whose token it runs on, and the session it is in."""

    principal: Principal
    session_id: str

    def revoke(self) -> None:
        """Close it: its token was revoked."""

    def evict(self, reason: str = "no longer a member of the session") -> None:
        """Close it (4403): its user is no longer a member of its session, or the session
        was deleted."""


class Revocations:
    def __init__(self, redis: Redis, nc: NatsClient, *, refresh_s: float = 30.0) -> None:
        self._redis = redis
        self._nc = nc
        self._refresh_s = refresh_s
        self.known = RevocationList()
        self._open: dict[str, set[Holder]] = {}

    def covers(self, principal: Principal) -> bool:
        return self.known.covers(principal)

    async def revoke(self, revocation: Revocation) -> None:
        """Store it, tell every gateway, and close this gateway's sockets it covers; raises
        `RedisError` when it could not be stored (nothing is announced then)."""
        await self._redis.hset(keys.REVOCATIONS, revocation.field, encode(revocation))
        self._apply(revocation)
        await self._nc.publish(subjects.REVOCATIONS, encode(revocation))

    def hold(self, holder: Holder) -> None:
        self._open.setdefault(holder.principal.user_id, set()).add(holder)

    def holding(self, user_id: str) -> list[Holder]:
        """The open sockets of `user_id` on this gateway."""
        return list(self._open.get(user_id, ()))

    def everyone(self) -> list[Holder]:
        """Every open socket of this gateway."""
        return [holder for holders in self._open.values() for holder in holders]

    def release(self, holder: Holder) -> None:
        held = self._open.get(holder.principal.user_id)
        if held is not None:
            held.discard(holder)
            if not held:
                del self._open[holder.principal.user_id]

    async def subscribe(self) -> None:
        """Apply every announcement from now on (the connection's drain ends it)."""
        await self._nc.subscribe(subjects.REVOCATIONS, cb=self._announced)

    async def refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._refresh_s)

    async def refresh(self) -> None:
        """Read the stored list again (dropping entries past their time), then close the
        open sockets it covers."""
        try:
            stored: Mapping[bytes | str, bytes | str] = await self._redis.hgetall(keys.REVOCATIONS)
        except RedisError as exc:
            log.warning("revocations not refreshed: %s", exc)
            return
        now, current, stale = time.time(), [], []
        for field, raw in stored.items():
            revocation = decode(raw)
            if revocation is None or revocation.until <= now:
                stale.append(text(field))
            else:
                current.append(revocation)
        self.known.replace(current)
        if stale:
            with contextlib.suppress(RedisError):
                await self._redis.hdel(keys.REVOCATIONS, *stale)
        for holders in list(self._open.values()):
            for holder in list(holders):
                if self.known.covers(holder.principal):
                    holder.revoke()

    async def _announced(self, msg: Msg) -> None:
        revocation = decode(msg.data)
        if revocation is None:
            log.warning("a revocation announcement that does not parse; ignored")
            return
        self._apply(revocation)

    def _apply(self, revocation: Revocation) -> None:
        self.known.add(revocation)
        if revocation.user_id is not None:
            candidates = list(self._open.get(revocation.user_id, ()))
        else:  # a token's user is not known: every open socket is a candidate
            candidates = [holder for held in self._open.values() for holder in held]
        for holder in candidates:
            if revocation.covers(holder.principal):
                holder.revoke()
