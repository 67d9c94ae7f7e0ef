"""The durable consumer on a real nats-server: acks after commit, naks through an outage."""

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import db, migrate
from persistence.models import Message
from persistence.recorder import Recorder
from shared import stream, subjects
from shared.events import ReplyToken, UserMessage
from shared.settings import TokenwireSettings
from support.events import reply_end

pytestmark = pytest.mark.real


async def rows(sessions: async_sessionmaker[AsyncSession], sid: str) -> list[tuple[str, str]]:
    async with sessions() as session:
        result = await session.exec(select(Message).where(Message.session_id == sid))
        return sorted((m.message_id, m.content) for m in result.all())


async def publish_conversation(nats_url: str, sid: str) -> None:
    nc = await stream.connect(nats_url, name="test")
    js = nc.jetstream()
    user = UserMessage(session_id=sid, message_id="m1", participant="u", content="hi")
    token = ReplyToken(session_id=sid, message_id="m1", attempt=1, index=0, text="yo")
    end = reply_end(sid, model="x", text="yo")
    await js.publish(subjects.chat_in(sid), user.model_dump_json().encode())
    await js.publish(subjects.out_token(sid), token.model_dump_json().encode())
    await js.publish(subjects.out_end(sid), end.model_dump_json().encode())
    await js.publish(subjects.out_end(sid), b"{not an event")
    await nc.close()


async def test_events_survive_a_database_outage(nats_url: str, tmp_path: Path) -> None:
    await stream.prepare(TokenwireSettings(nats_url=nats_url), name="test")
    sid = uuid.uuid4().hex
    await publish_conversation(nats_url, sid)
    nc = await stream.connect(nats_url, name="test-recorder")
    # The database's folder does not exist yet: every write fails until it does.
    engine = db.make_engine(f"sqlite+aiosqlite:///{tmp_path}/later/tw.db")
    sessions = db.sessionmaker(engine)
    recorder = Recorder(nc.jetstream(), sessions, batch_size=50, retry_delay_s=0.2)
    task = asyncio.create_task(recorder.run())
    try:
        await asyncio.sleep(0.8)
        (tmp_path / "later").mkdir()
        await migrate.upgrade(engine)
        for _ in range(50):
            if len(await rows(sessions, sid)) == 2:
                break
            await asyncio.sleep(0.1)
        assert await rows(sessions, sid) == [("m1", "hi"), ("m1/reply", "yo")]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()
        await nc.close()
