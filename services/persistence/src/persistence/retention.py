"""Pruning old sessions: their messages, members and the session go; usage rows stay (they
are the account of what was spent). The stream's own retention is separate
(`TOKENWIRE_STREAM_MAX_AGE_S`)."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence.models import ChatSession, Member, Message

log = logging.getLogger(__name__)


async def prune(db: AsyncSession, inactive_since: datetime, *, batch: int = 500) -> int:
    """Delete up to `batch` sessions with no user message since `inactive_since`; returns how
    many. The caller commits."""
    stale = (
        select(col(ChatSession.id))
        .where(col(ChatSession.last_active_at) < inactive_since)
        .limit(batch)
    )
    ids = list((await db.exec(stale)).all())
    if ids:
        await db.exec(delete(Message).where(col(Message.session_id).in_(ids)))
        await db.exec(delete(Member).where(col(Member.session_id).in_(ids)))
        await db.exec(delete(ChatSession).where(col(ChatSession.id).in_(ids)))
    return len(ids)


async def prune_forever(
    sessions: async_sessionmaker[AsyncSession], *, days: float, every_s: float
) -> None:
    """Prune sessions inactive for `days`, every `every_s`, until cancelled."""
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        try:
            pruned = 0
            while True:
                async with sessions() as db:
                    count = await prune(db, cutoff)
                    await db.commit()
                pruned += count
                if count == 0:
                    break
            if pruned:
                log.info("pruned %d sessions inactive since %s", pruned, cutoff.date())
        except SQLAlchemyError as exc:
            log.warning("pruning failed (%s); next try in %.0f s", exc, every_s)
        await asyncio.sleep(every_s)
