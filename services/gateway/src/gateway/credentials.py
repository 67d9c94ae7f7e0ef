"""A socket's token: checked at the handshake with the session it joins; while the socket is
open, its expiry closes the socket (4401), and a fresh token of the same user, handed over in
an `auth` frame, moves that expiry without reconnecting."""

import asyncio
import time
from collections.abc import Callable

from fastapi import WebSocket

from gateway.auth import Authenticator, AuthError, Principal, token_from_handshake
from gateway.bus import Unavailable
from gateway.connection import Close, ConnectionProtocol
from gateway.deps import Resources
from gateway.refusal import Refusal
from gateway.revocations import Revocations
from shared import rpc, subjects


async def authenticate(
    ws: WebSocket, protocol: ConnectionProtocol, offered: list[str], resources: Resources
) -> tuple[Principal, rpc.SessionInfo] | Close:
    """Who the handshake's token names and the session they join, or the close refusing
    them (decided by the protocol)."""
    try:
        principal = await resources.auth.principal(
            token_from_handshake(ws.headers, offered, ws.query_params)
        )
    except AuthError as exc:
        return protocol.unauthenticated(str(exc))
    if resources.revocations.covers(principal):
        return protocol.unauthenticated("token revoked")
    session_id = protocol.session_id
    try:
        session = (
            await resources.sessions.get(session_id) if subjects.is_session_id(session_id) else None
        )
    except Unavailable:
        return protocol.sessions_unavailable()
    refusal = protocol.join(principal.user_id, session)
    if refusal is not None:
        return refusal
    assert session is not None  # join refuses a session that does not exist
    return principal, session


class Expiry:
    """A timer, not a task: an idle connection should cost as little as it can."""

    def __init__(self, on_expired: Callable[[], None]) -> None:
        self._on_expired = on_expired
        self._timer: asyncio.TimerHandle | None = None

    def set(self, expires_at: float | None) -> None:
        """Expire at `expires_at` (seconds since the epoch; None: never), instead of before."""
        self.cancel()
        if expires_at is not None:
            delay = max(expires_at - time.time(), 0)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_expired)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def renewed(
    auth: Authenticator, revocations: Revocations, current: Principal, token: str
) -> Principal | Refusal:
    """Who a fresh token names, if it may replace `current`'s: valid, not revoked, and the
    same user; else why not (the socket keeps its current token)."""
    try:
        principal = await auth.principal(token)
    except AuthError as exc:
        return Refusal("unauthorized", f"{exc}; the connection keeps its current token")
    if principal.user_id != current.user_id:
        return Refusal("forbidden", "a fresh token must name the connection's user")
    if revocations.covers(principal):
        return Refusal("unauthorized", "token revoked; the connection keeps its current token")
    return principal
