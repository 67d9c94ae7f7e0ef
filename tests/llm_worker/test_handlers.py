"""The worker's handler through FastStream's in-memory broker, then through a real nats-server."""

import asyncio
import uuid

import pytest
from faststream.nats import TestNatsBroker

from llm_worker.main import create_app
from llm_worker.settings import WorkerSettings
from shared import stream, subjects
from shared.events import ReplyEnd, ReplyStart, ReplyToken, UserMessage
from support.llm_mock import RecordingPublisher, chunk, openai_over, sse, streaming, usage


def worker(publisher: RecordingPublisher, nats_url: str = "nats://127.0.0.1:4222"):  # type: ignore[no-untyped-def]
    settings = WorkerSettings(openai_base_url="http://llm/v1", nats_url=nats_url)
    client = openai_over(streaming(sse(chunk("Hi"), chunk("!"), chunk(None, "stop"), usage(3, 2))))
    return create_app(settings, client=client, publisher=publisher)


async def test_a_user_message_becomes_a_reply(publisher: RecordingPublisher) -> None:
    app = worker(publisher)
    message = UserMessage(
        session_id="s1", message_id=uuid.uuid4().hex, participant="u", content="hi"
    )
    async with TestNatsBroker(app.broker) as broker:
        await broker.publish(
            message.model_dump_json(), subjects.chat_in("s1"), stream=subjects.STREAM
        )
    kinds = [type(e) for e in publisher.events]
    assert kinds == [ReplyStart, ReplyToken, ReplyToken, ReplyEnd]


async def test_messages_without_reply_are_only_acknowledged(publisher: RecordingPublisher) -> None:
    app = worker(publisher)
    message = UserMessage(
        session_id="s1", message_id="m2", participant="u", content="note", reply=False
    )
    async with TestNatsBroker(app.broker) as broker:
        await broker.publish(
            message.model_dump_json(), subjects.chat_in("s1"), stream=subjects.STREAM
        )
    assert publisher.events == []


@pytest.mark.real
async def test_the_same_reply_through_a_real_nats_server(
    publisher: RecordingPublisher, nats_url: str
) -> None:
    app = worker(publisher, nats_url)
    await stream.prepare(WorkerSettings(openai_base_url="http://x", nats_url=nats_url), name="t")
    message = UserMessage(
        session_id="s1", message_id=uuid.uuid4().hex, participant="u", content="hi"
    )
    async with TestNatsBroker(app.broker, with_real=True) as broker:
        await broker.publish(
            message.model_dump_json(), subjects.chat_in("s1"), stream=subjects.STREAM
        )
        for _ in range(100):
            if any(
                isinstance(e, ReplyEnd) and e.message_id == message.message_id
                for e in publisher.events
            ):
                break
            await asyncio.sleep(0.05)
    ends = [
        e
        for e in publisher.events
        if isinstance(e, ReplyEnd) and e.message_id == message.message_id
    ]
    assert [(e.text, e.attempt) for e in ends] == [("Hi!", 1)]
