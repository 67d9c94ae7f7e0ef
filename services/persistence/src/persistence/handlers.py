"""Request-reply handlers on `svc.*` (queue group `persistence`): thin, typed, never raising."""

import logging

from faststream.nats import NatsBroker
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import repository, usage
from shared import rpc, subjects

log = logging.getLogger(__name__)
QUEUE = "persistence"
_UNAVAILABLE = rpc.RpcError(code="internal", detail="database unavailable")
_NOT_FOUND = rpc.RpcError(code="not_found", detail="no such session")


def register(broker: NatsBroker, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Attach the `svc.*` handlers to `broker`, reading and writing through `sessions`."""

    @broker.subscriber(subjects.SVC_PING, queue=QUEUE)
    async def ping() -> rpc.Pong:
        return rpc.Pong(service="persistence")

    @broker.subscriber(subjects.SVC_SESSION_CREATE, queue=QUEUE)
    async def create_session(request: rpc.SessionCreate) -> rpc.SessionReply:
        try:
            async with sessions() as db:
                info = await repository.create_session(db, request)
                await db.commit()
        except SQLAlchemyError:
            log.exception("creating a session failed")
            return rpc.SessionReply(error=_UNAVAILABLE)
        return rpc.SessionReply(session=info)

    @broker.subscriber(subjects.SVC_SESSION_GET, queue=QUEUE)
    async def get_session(request: rpc.SessionGet) -> rpc.SessionReply:
        try:
            async with sessions() as db:
                info = await repository.get_session(db, request.session_id)
        except SQLAlchemyError:
            log.exception("reading a session failed")
            return rpc.SessionReply(error=_UNAVAILABLE)
        if info is None:
            return rpc.SessionReply(error=_NOT_FOUND)
        return rpc.SessionReply(session=info)

    @broker.subscriber(subjects.SVC_MEMBER_ADD, queue=QUEUE)
    async def add_member(request: rpc.MemberAdd) -> rpc.SessionReply:
        try:
            async with sessions() as db:
                info = await repository.get_session(db, request.session_id)
                if info is None:
                    return rpc.SessionReply(error=_NOT_FOUND)
                if info.owner != request.by:
                    return rpc.SessionReply(
                        error=rpc.RpcError(code="forbidden", detail="only the owner adds members")
                    )
                await repository.add_member(db, request.session_id, request.user_id)
                await db.commit()
                info = await repository.get_session(db, request.session_id)
        except SQLAlchemyError:
            log.exception("adding a member failed")
            return rpc.SessionReply(error=_UNAVAILABLE)
        return rpc.SessionReply(session=info)

    @broker.subscriber(subjects.SVC_USAGE, queue=QUEUE)
    async def usage_report(request: rpc.UsageRequest) -> rpc.UsageReport:
        try:
            async with sessions() as db:
                return await usage.report(db, request)
        except SQLAlchemyError:
            log.exception("reading usage failed")
            return rpc.UsageReport(error=_UNAVAILABLE)

    @broker.subscriber(subjects.SVC_HISTORY, queue=QUEUE)
    async def history(request: rpc.HistoryRequest) -> rpc.HistoryPage:
        try:
            async with sessions() as db:
                return await repository.history(db, request)
        except SQLAlchemyError:
            log.exception("reading history failed")
            return rpc.HistoryPage(error=_UNAVAILABLE)
