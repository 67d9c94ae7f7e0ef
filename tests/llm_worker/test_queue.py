"""A queued session answers one message after the other, in stream order, through failures
and however long a reply runs: real Redis, and a real nats-server for redeliveries."""

import asyncio
import time
import uuid
from typing import Any, cast

import httpx2
import pytest
from faststream.nats import NatsBroker, TestNatsBroker
from redis.asyncio import Redis

from llm_worker import responder as responder_module
from llm_worker.cancels import CancelRegistry
from llm_worker.context import ContextStore
from llm_worker.coordination import Coordinator
from llm_worker.delivery import Delivery
from llm_worker.main import create_app
from llm_worker.prompts import SystemPrompts
from llm_worker.publisher import Streamed
from llm_worker.responder import Responder
from llm_worker.settings import WorkerSettings
from llm_worker.upstream import ModelServer
from shared import keys, rpc, stream, subjects
from shared.events import (
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    UserMessage,
)
from support.llm_mock import (
    RecordingPublisher,
    SlowStream,
    chunk,
    model_over,
    sse,
    streaming,
    usage,
)

pytestmark = pytest.mark.real
REPLY = sse(chunk("Hi"), chunk("!"), chunk(None, "stop"), usage(3, 2))


def message(session_id: str, message_id: str) -> UserMessage:
    return UserMessage(session_id=session_id, message_id=message_id, participant="u", content="hi")


async def until(done: Any) -> None:
    """Until `done()` is true, for at most 10 s."""
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.05)


class FailsFirstToken(RecordingPublisher):
    """Loses the first token event of the first attempt at `message_id` (as a broker that
    went away would)."""

    def __init__(self, message_id: str) -> None:
        super().__init__()
        self.message_id = message_id

    async def token(self, event: Streamed) -> "asyncio.Future[Any] | None":
        if event.message_id == self.message_id and event.attempt == 1:
            raise ConnectionError("the broker went away")
        return await super().token(event)


async def test_a_failed_attempt_keeps_its_place_in_line(nats_url: str, redis: Redis) -> None:
    sid = uuid.uuid4().hex
    publisher = FailsFirstToken("first")
    settings = WorkerSettings(openai_base_url="http://llm/v1", nats_url=nats_url, worker_fetchers=1)
    app = create_app(
        settings, client=model_over(streaming(REPLY)), publisher=publisher, redis=redis
    )
    await stream.prepare(settings, name="test")

    def starts() -> list[tuple[str, int]]:
        return [(e.message_id, e.attempt) for e in publisher.events if isinstance(e, ReplyStart)]

    async with TestNatsBroker(cast(NatsBroker, app.broker), with_real=True) as broker:
        for mid in ("first", "second"):
            await broker.publish(
                message(sid, mid).model_dump_json(), subjects.chat_in(sid), stream=subjects.STREAM
            )
            await until(starts)  # "first" is in line before "second" is sent
        await until(lambda: len([e for e in publisher.events if isinstance(e, ReplyEnd)]) == 2)
    # The first attempt failed and the message came back a second later: "second" waited.
    assert starts() == [("first", 1), ("first", 2), ("second", 1)]


@pytest.fixture
def quick_stall(monkeypatch: pytest.MonkeyPatch) -> WorkerSettings:
    """Settings under which an unanswered head of line is skipped after 0.4 s."""
    monkeypatch.setattr(responder_module, "RETRY_DELAY_MAX_S", 0.0)
    return WorkerSettings(
        openai_base_url="http://llm/v1", worker_ack_wait_s=0.2, worker_max_deliver=1
    )


def responder(
    settings: WorkerSettings,
    redis: Redis,
    publisher: RecordingPublisher,
    client: ModelServer | None = None,
) -> Responder:
    async def no_history(request: rpc.HistoryRequest) -> rpc.HistoryPage:
        return rpc.HistoryPage()

    async def no_session(session_id: str) -> str | None:
        return None

    return Responder(
        settings,
        client or model_over(streaming(REPLY)),
        lambda: publisher,
        Coordinator(redis, fence_ttl_s=60),
        ContextStore(redis, no_history, max_turns=10, ttl_s=60),
        SystemPrompts(redis, no_session, default=settings.system_prompt),
        CancelRegistry(),
    )


async def test_a_long_reply_that_beats_is_waited_for(
    quick_stall: WorkerSettings, redis: Redis, publisher: RecordingPublisher
) -> None:
    sid, coordinator = uuid.uuid4().hex, Coordinator(redis, fence_ttl_s=60)
    await coordinator.line(sid, 10)  # another worker streams the reply to seq 10

    async def stream_for(seconds: float) -> float:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await coordinator.beat(sid, quick_stall.worker_ack_wait_s)
            await asyncio.sleep(0.05)
        await coordinator.finish(sid, "m10", 1, place=10, answered=True)
        return time.monotonic()

    other = asyncio.create_task(stream_for(1.5))  # well past the 0.4 s stall limit
    replied = await responder(quick_stall, redis, publisher).respond(
        Delivery(message(sid, "m11"), 1, 11)
    )
    replied_at = time.monotonic()
    ended_at = await other
    assert replied
    assert replied_at > ended_at  # it waited for seq 10 instead of skipping it
    assert isinstance(publisher.events[-1], ReplyEnd)
    assert await redis.zcard(keys.session_queue(sid)) == 0


async def test_a_head_of_line_nobody_answers_is_skipped(
    quick_stall: WorkerSettings, redis: Redis, publisher: RecordingPublisher
) -> None:
    sid, coordinator = uuid.uuid4().hex, Coordinator(redis, fence_ttl_s=60)
    await coordinator.line(sid, 10)  # stored, then given up on by the stream
    began = time.monotonic()
    assert await responder(quick_stall, redis, publisher).respond(
        Delivery(message(sid, "m11"), 1, 11)
    )
    assert 0.4 <= time.monotonic() - began < 5
    assert isinstance(publisher.events[-1], ReplyEnd)
    assert await redis.zcard(keys.session_queue(sid)) == 0


class StallsBeforeItsEnd(RecordingPublisher):
    """Attempt 1 stalls between its last claim check and its terminal event, and attempt 2
    claims the reply meanwhile (as with a worker frozen past the ack wait)."""

    def __init__(self, coordinator: Coordinator) -> None:
        super().__init__()
        self.coordinator = coordinator

    async def end(self, event: ReplyEnd | ReplyError) -> None:
        if event.attempt == 1:
            assert await self.coordinator.claim(event.session_id, event.message_id, 2) == "ours"
        await super().end(event)


async def test_an_attempt_that_ends_after_a_newer_one_took_over_leaves_it_the_reply(
    redis: Redis,
) -> None:
    sid, seq = uuid.uuid4().hex, 10
    settings = WorkerSettings(openai_base_url="http://llm/v1")
    publisher = StallsBeforeItsEnd(Coordinator(redis, fence_ttl_s=60))
    worker = responder(settings, redis, publisher)
    await redis.zadd(keys.inflight(sid), {"m10": time.time()})

    # The stale attempt's end is stored, but the message is neither acked nor answered: the
    # newer attempt streams the reply, and the session's turn and in-flight entry stay its.
    assert not await worker.respond(Delivery(message(sid, "m10"), 1, seq))
    assert await redis.get(keys.fence(sid, "m10")) == b"2"
    assert await redis.zrange(keys.session_queue(sid), 0, -1) == [str(seq).encode()]
    assert await redis.zcard(keys.inflight(sid)) == 1
    assert await worker.superseded(Delivery(message(sid, "m10"), 1, seq))

    assert await worker.respond(Delivery(message(sid, "m10"), 2, seq))
    ends = [
        (e.attempt, type(e).__name__) for e in publisher.events if not isinstance(e, ReplyToken)
    ]
    assert ends == [(1, "ReplyStart"), (1, "ReplyEnd"), (2, "ReplyStart"), (2, "ReplyEnd")]
    assert await redis.get(keys.fence(sid, "m10")) == b"done"
    assert await redis.zcard(keys.session_queue(sid)) == 0
    assert await redis.zcard(keys.inflight(sid)) == 0


async def test_two_attempts_on_one_worker_are_stopped_apart(
    redis: Redis, publisher: RecordingPublisher
) -> None:
    # The stream redelivered a message to the worker that still streams its first attempt:
    # fencing off attempt 1 must not stop attempt 2.
    def slow(request: httpx2.Request) -> httpx2.Response:
        body = SlowStream(deltas=30, delay_s=0.02)
        return httpx2.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    sid = uuid.uuid4().hex
    worker = responder(
        WorkerSettings(openai_base_url="http://llm/v1"), redis, publisher, model_over(slow)
    )
    first, second = (Delivery(message(sid, "m10"), attempt, 10) for attempt in (1, 2))

    def streaming_attempt(attempt: int) -> bool:
        return any(isinstance(e, ReplyToken) and e.attempt == attempt for e in publisher.events)

    older = asyncio.create_task(worker.respond(first))
    await until(lambda: streaming_attempt(1))
    newer = asyncio.create_task(worker.respond(second))
    await until(lambda: streaming_attempt(2))
    assert len(worker.cancels) == 2
    await worker.watch(first)  # its in-progress beat finds attempt 2 holds the reply

    assert not await older
    assert await newer
    ends = [e.attempt for e in publisher.events if isinstance(e, ReplyEnd)]
    assert ends == [2]
    assert len(worker.cancels) == 0


async def test_a_redelivery_counted_again_after_a_broker_crash_is_the_next_attempt(
    redis: Redis,
) -> None:
    # The broker lost its count in a crash: the message comes back counted 1, as the
    # delivery that began (and failed) before the crash was.
    sid = uuid.uuid4().hex
    await Coordinator(redis).begin(sid, "m1", 1, place=5, delivery="before the crash")
    publisher = RecordingPublisher()
    worker = responder(WorkerSettings(openai_base_url="http://llm/v1"), redis, publisher)
    delivery = Delivery(message(sid, "m1"), 1, 5)
    assert await worker.respond(delivery)
    assert delivery.attempt == 2
    assert {e.attempt for e in publisher.events} == {2}
    assert await redis.get(keys.fence(sid, "m1")) == b"done"


async def test_a_rate_limited_model_call_halves_the_calls_the_worker_makes(redis: Redis) -> None:
    def overloaded(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, json={"error": {"message": "slow down"}})

    settings = WorkerSettings(openai_base_url="http://llm/v1", worker_concurrency=8)
    publisher = RecordingPublisher()
    worker = responder(settings, redis, publisher, client=model_over(overloaded))
    sid = uuid.uuid4().hex
    assert await worker.respond(Delivery(message(sid, "m1"), 1, 0))
    end = publisher.events[-1]
    assert isinstance(end, ReplyError)
    assert end.code == "upstream_rate_limited"
    assert worker.metrics.registry.get_sample_value("tokenwire_worker_upstream_limit") == 4
