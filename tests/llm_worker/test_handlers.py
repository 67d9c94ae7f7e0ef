"""The worker's handler through FastStream's in-memory broker, then through a real nats-server.

Both use a real Redis-compatible server for fencing, queueing and context.
"""

import asyncio
import uuid
from typing import cast

import pytest
from faststream.nats import NatsBroker, TestNatsBroker
from redis.asyncio import Redis

from llm_worker.handlers import retry_delay
from llm_worker.main import create_app
from llm_worker.settings import WorkerSettings
from shared import stream, subjects
from shared.events import ReplyEnd, ReplyStart, ReplyToken, UserMessage
from support.llm_mock import RecordingPublisher, chunk, model_over, sse, streaming, usage

pytestmark = pytest.mark.real


def worker(
    publisher: RecordingPublisher, redis: Redis, nats_url: str = "nats://127.0.0.1:4222"
) -> tuple[NatsBroker, WorkerSettings]:
    # One pull loop: the in-memory test broker hands a message to every subscriber, where
    # JetStream's durable consumer hands it to one of the loops.
    settings = WorkerSettings(openai_base_url="http://llm/v1", nats_url=nats_url, worker_fetchers=1)
    client = model_over(streaming(sse(chunk("Hi"), chunk("!"), chunk(None, "stop"), usage(3, 2))))
    app = create_app(settings, client=client, publisher=publisher, redis=redis)
    return cast(NatsBroker, app.broker), settings


def message(**fields: object) -> UserMessage:
    return UserMessage.model_validate(
        {
            "session_id": uuid.uuid4().hex,
            "message_id": uuid.uuid4().hex,
            "participant": "u",
            "content": "hi",
            **fields,
        }
    )


async def test_a_user_message_becomes_a_reply(publisher: RecordingPublisher, redis: Redis) -> None:
    broker, _ = worker(publisher, redis)
    async with TestNatsBroker(broker) as broker:
        await broker.publish(
            message().model_dump_json(), subjects.chat_in("s1"), stream=subjects.STREAM
        )
    assert [type(e) for e in publisher.events] == [ReplyStart, ReplyToken, ReplyToken, ReplyEnd]


async def test_messages_without_reply_only_join_the_context(
    publisher: RecordingPublisher, redis: Redis
) -> None:
    broker, _ = worker(publisher, redis)
    note = message(reply=False, content="for the record")
    async with TestNatsBroker(broker) as broker:
        await broker.publish(
            note.model_dump_json(), subjects.chat_in(note.session_id), stream=subjects.STREAM
        )
    assert publisher.events == []
    cached = await redis.lrange(f"tw:ctx:{note.session_id}", 0, -1)
    assert [b"for the record" in raw for raw in cached] == [True]


async def test_the_same_reply_through_a_real_nats_server(
    publisher: RecordingPublisher, nats_url: str, redis: Redis
) -> None:
    broker, settings = worker(publisher, redis, nats_url)
    await stream.prepare(settings, name="test")
    sent = message()
    async with TestNatsBroker(broker, with_real=True) as broker:
        await broker.publish(
            sent.model_dump_json(), subjects.chat_in(sent.session_id), stream=subjects.STREAM
        )
        for _ in range(100):
            if any(
                isinstance(e, ReplyEnd) and e.message_id == sent.message_id
                for e in publisher.events
            ):
                break
            await asyncio.sleep(0.05)
    ends = [
        e for e in publisher.events if isinstance(e, ReplyEnd) and e.message_id == sent.message_id
    ]
    assert [(e.text, e.attempt) for e in ends] == [("Hi!", 1)]


def test_failed_attempts_come_back_later_each_time() -> None:
    assert [retry_delay(a) for a in (1, 2, 3, 4, 5, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
