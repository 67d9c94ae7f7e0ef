"""Request-reply handlers on `svc.*` (queue group `persistence`): thin, typed, never raising."""

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from faststream.nats import NatsBroker
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import history, repository, usage
from shared import rpc, subjects

log = logging.getLogger(__name__)
QUEUE = "persistence"
_UNAVAILABLE = rpc.RpcError(code="internal", detail="database unavailable")
_NOT_FOUND = rpc.RpcError(code="not_found", detail="no such session")
R = TypeVar("R")


def register(broker: NatsBroker, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Attach the `svc.*` handlers to `broker`, reading and writing through `sessions`."""
    answer = Answerer(sessions)

    @broker.subscriber(subjects.SVC_PING, queue=QUEUE)
    async def ping() -> rpc.Pong:
        return rpc.Pong(service="persistence")

    @broker.subscriber(subjects.SVC_SESSION_CREATE, queue=QUEUE)
    async def create_session(request: rpc.SessionCreate) -> rpc.SessionReply:
        async def create(db: AsyncSession) -> rpc.SessionReply:
            info = await repository.create_session(db, request)
            await db.commit()
            return rpc.SessionReply(session=info)

        return await answer("creating a session", create, rpc.SessionReply)

    @broker.subscriber(subjects.SVC_SESSION_GET, queue=QUEUE)
    async def get_session(request: rpc.SessionGet) -> rpc.SessionReply:
        async def get(db: AsyncSession) -> rpc.SessionReply:
            info = await repository.get_session(db, request.session_id)
            return rpc.SessionReply(session=info, error=None if info else _NOT_FOUND)

        return await answer("reading a session", get, rpc.SessionReply)

    @broker.subscriber(subjects.SVC_SESSION_LIST, queue=QUEUE)
    async def list_sessions(request: rpc.SessionList) -> rpc.SessionPage:
        return await answer(
            "listing sessions", lambda db: repository.list_sessions(db, request), rpc.SessionPage
        )

    @broker.subscriber(subjects.SVC_MEMBER_ADD, queue=QUEUE)
    async def add_member(request: rpc.MemberAdd) -> rpc.SessionReply:
        return await answer(
            "adding a member", lambda db: _add_member(db, request), rpc.SessionReply
        )

    @broker.subscriber(subjects.SVC_SESSION_UPDATE, queue=QUEUE)
    async def update_session(request: rpc.SessionUpdate) -> rpc.SessionReply:
        return await answer(
            "updating a session", lambda db: _update_session(db, request), rpc.SessionReply
        )

    @broker.subscriber(subjects.SVC_SESSION_DELETE, queue=QUEUE)
    async def delete_session(request: rpc.SessionDelete) -> rpc.SessionReply:
        return await answer(
            "deleting a session", lambda db: _delete_session(db, request), rpc.SessionReply
        )

    @broker.subscriber(subjects.SVC_MEMBER_REMOVE, queue=QUEUE)
    async def remove_member(request: rpc.MemberRemove) -> rpc.SessionReply:
        return await answer(
            "removing a member", lambda db: _remove_member(db, request), rpc.SessionReply
        )

    _register_reads(broker, answer)


def _register_reads(broker: NatsBroker, answer: "Answerer") -> None:
    """The handlers that only read: usage, history, one message."""

    @broker.subscriber(subjects.SVC_USAGE, queue=QUEUE)
    async def usage_report(request: rpc.UsageRequest) -> rpc.UsageReport:
        return await answer("reading usage", lambda db: usage.report(db, request), rpc.UsageReport)

    @broker.subscriber(subjects.SVC_HISTORY, queue=QUEUE)
    async def history_page(request: rpc.HistoryRequest) -> rpc.HistoryPage:
        return await answer(
            "reading history", lambda db: history.page(db, request), rpc.HistoryPage
        )

    @broker.subscriber(subjects.SVC_MESSAGE_GET, queue=QUEUE)
    async def message(request: rpc.MessageGet) -> rpc.MessageInfo:
        return await answer(
            "reading a message", lambda db: history.message(db, request), rpc.MessageInfo
        )


class Answerer:
    """Runs a handler's work in a database session; a database failure is logged once here
    and answered with the reply type's `internal` error, never raised to the requester."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __call__(
        self, what: str, work: Callable[[AsyncSession], Awaitable[R]], reply: Callable[..., R]
    ) -> R:
        try:
            async with self._sessions() as db:
                return await work(db)
        except SQLAlchemyError:
            log.exception("%s failed", what)
            return reply(error=_UNAVAILABLE)


async def _update_session(db: AsyncSession, request: rpc.SessionUpdate) -> rpc.SessionReply:
    """Only the owner changes a session's settings."""
    info = await repository.get_session(db, request.session_id)
    if info is None or request.by not in info.members:
        return rpc.SessionReply(error=_NOT_FOUND)
    if request.by != info.owner:
        detail = "only the owner changes the session"
        return rpc.SessionReply(error=rpc.RpcError(code="forbidden", detail=detail))
    await repository.update_session(db, request)
    await db.commit()
    return rpc.SessionReply(session=await repository.get_session(db, request.session_id))


async def _delete_session(db: AsyncSession, request: rpc.SessionDelete) -> rpc.SessionReply:
    """Only the owner deletes a session; the answer is the session as it was."""
    info = await repository.get_session(db, request.session_id)
    if info is None or request.by not in info.members:
        return rpc.SessionReply(error=_NOT_FOUND)
    if request.by != info.owner:
        detail = "only the owner deletes the session"
        return rpc.SessionReply(error=rpc.RpcError(code="forbidden", detail=detail))
    await repository.delete_session(db, request.session_id)
    await db.commit()
    return rpc.SessionReply(session=info)


async def _remove_member(db: AsyncSession, request: rpc.MemberRemove) -> rpc.SessionReply:
    """The owner removes anyone but themself; a member removes themself (leaves)."""
    info = await repository.get_session(db, request.session_id)
    if info is None or request.by not in info.members:
        return rpc.SessionReply(error=_NOT_FOUND)
    if request.user_id == info.owner:
        detail = "the owner cannot leave their session"
        return rpc.SessionReply(error=rpc.RpcError(code="conflict", detail=detail))
    if request.by not in (info.owner, request.user_id):
        detail = "only the owner removes others; a member may leave"
        return rpc.SessionReply(error=rpc.RpcError(code="forbidden", detail=detail))
    if not await repository.remove_member(db, request.session_id, request.user_id):
        return rpc.SessionReply(error=rpc.RpcError(code="not_found", detail="not a member"))
    await db.commit()
    return rpc.SessionReply(session=await repository.get_session(db, request.session_id))


async def _add_member(db: AsyncSession, request: rpc.MemberAdd) -> rpc.SessionReply:
    """Only the session's owner adds members; adding one twice is harmless."""
    info = await repository.get_session(db, request.session_id)
    if info is None:
        return rpc.SessionReply(error=_NOT_FOUND)
    if info.owner != request.by:
        return rpc.SessionReply(
            error=rpc.RpcError(code="forbidden", detail="only the owner adds members")
        )
    await repository.add_member(db, request.session_id, request.user_id, request.role)
    await db.commit()
    return rpc.SessionReply(session=await repository.get_session(db, request.session_id))
