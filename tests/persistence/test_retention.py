"""Pruning removes inactive sessions with their messages and members, and keeps usage."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import records, repository, retention
from persistence.models import ChatSession, Member, Message, Usage
from shared import rpc
from shared.events import ReplyEnd, UserMessage
from shared.events import Usage as UsageEvent

Sessions = async_sessionmaker[AsyncSession]


async def count(
    db: AsyncSession, table: type[Message] | type[Member] | type[Usage], session_id: str
) -> int:
    statement = select(func.count()).select_from(table).where(col(table.session_id) == session_id)
    return (await db.exec(statement)).one()


async def test_inactive_sessions_go_and_their_usage_stays(sessions: Sessions) -> None:
    now = datetime.now(UTC)
    async with sessions() as db:
        old = await repository.create_session(db, rpc.SessionCreate(owner="a"))
        fresh = await repository.create_session(db, rpc.SessionCreate(owner="a"))
        await records.record(
            db,
            [
                (
                    UserMessage(
                        session_id=old.session_id, message_id="m", participant="a", content="hi"
                    ),
                    1,
                ),
                (
                    ReplyEnd(
                        session_id=old.session_id,
                        message_id="m",
                        attempt=1,
                        model="x",
                        text="yo",
                        finish_reason="stop",
                        usage=UsageEvent(total_tokens=3),
                        duration_ms=1,
                    ),
                    2,
                ),
            ],
        )
        await db.exec(
            update(ChatSession)
            .where(col(ChatSession.id) == old.session_id)
            .values(last_active_at=now - timedelta(days=40))
        )
        await db.commit()
    async with sessions() as db:
        assert await retention.prune(db, now - timedelta(days=30)) == 1
        await db.commit()
    async with sessions() as db:
        assert await repository.get_session(db, old.session_id) is None
        assert await repository.get_session(db, fresh.session_id) is not None
        assert await count(db, Message, old.session_id) == 0
        assert await count(db, Member, old.session_id) == 0
        assert await count(db, Usage, old.session_id) == 1


async def test_a_user_message_keeps_a_session_alive(sessions: Sessions) -> None:
    async with sessions() as db:
        info = await repository.create_session(db, rpc.SessionCreate(owner="a"))
        await db.exec(
            update(ChatSession)
            .where(col(ChatSession.id) == info.session_id)
            .values(last_active_at=datetime.now(UTC) - timedelta(days=40))
        )
        await records.record(
            db,
            [
                (
                    UserMessage(
                        session_id=info.session_id,
                        message_id="m",
                        participant="a",
                        content="still here",
                    ),
                    1,
                )
            ],
        )
        await db.commit()
    async with sessions() as db:
        assert await retention.prune(db, datetime.now(UTC) - timedelta(days=30)) == 0
