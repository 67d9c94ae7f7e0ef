"""Messages no worker serves: their deadlines (sans I/O), and giving them up against a real
Valkey, where a worker that began one meanwhile keeps it."""

import uuid

import pytest
from redis.asyncio import Redis

from gateway.model_pools import ModelPools
from gateway.unserved import MAX_TRIES, RETRY_S, Deadlines, Unserved, UnservedMessages
from llm_worker.serving import Serving
from shared import keys
from shared.events import ReplyError
from shared.models import Catalogue, ModelSpec
from shared.reply_queue import ReplyQueue


def test_messages_fall_due_in_the_order_they_were_stored() -> None:
    deadlines = Deadlines(timeout_s=60, limit=3)
    assert deadlines.next_in(0) is None
    assert deadlines.add("s", "m1", "small", now=10)
    assert deadlines.add("s", "m2", "small", now=15)
    assert deadlines.next_in(20) == 50
    assert deadlines.due(69.9) == []
    assert deadlines.due(75) == [
        Unserved(70, "s", "m1", "small"),
        Unserved(75, "s", "m2", "small"),
    ]
    assert deadlines.next_in(80) is None


def test_beyond_the_limit_a_message_is_not_noted_and_simply_waits() -> None:
    deadlines = Deadlines(timeout_s=1, limit=2)
    assert deadlines.add("s", "m1", "small", now=0)
    assert deadlines.add("s", "m2", "small", now=0)
    assert not deadlines.add("s", "m3", "small", now=0)
    assert len(deadlines) == 2
    assert deadlines.next_in(5) == 0  # overdue: at once


def test_a_message_not_given_up_comes_back_a_few_times() -> None:
    deadlines = Deadlines(timeout_s=60)
    deadlines.add("s", "m1", "small", now=0)
    (message,) = deadlines.due(60)
    for tries in range(1, MAX_TRIES):
        assert deadlines.again(message, now=100)
        (message,) = deadlines.due(100 + RETRY_S)
        assert message.tries == tries
    assert not deadlines.again(message, now=200)  # then it waits as any message does
    assert len(deadlines) == 0


class Recorded:
    """Where the errors go instead of the stream (the stream's part is tested end to end)."""

    def __init__(self) -> None:
        self.errors: list[ReplyError] = []

    async def store_reply_error(self, event: ReplyError) -> None:
        self.errors.append(event)


@pytest.mark.real
async def test_a_message_still_unserved_is_given_up_with_a_clear_error(redis: Redis) -> None:
    model = f"solo-{uuid.uuid4().hex[:8]}"
    models = Catalogue.of(
        [ModelSpec(id=model, name=model)], model="x", max_tokens=9, prompt_tokens=99
    )
    pools, queue, bus = ModelPools(redis, models), ReplyQueue(redis), Recorded()
    unserved = UnservedMessages(queue, bus, pools, timeout_s=30)  # type: ignore[arg-type]
    sid = uuid.uuid4().hex
    await pools.refresh()

    assert await unserved.settle(Unserved(0, sid, "m1", model))
    (error,) = bus.errors
    assert (error.message_id, error.code, error.retryable) == ("m1", "no_worker", True)
    assert (
        error.message == f"no worker took this message within 30 s: none serves the model {model}"
    )
    assert await redis.get(keys.fence(sid, "m1")) == b"done"

    assert not await unserved.settle(Unserved(0, sid, "m1", model))  # given up once
    await queue.begin(sid, "m2", 1)
    assert not await unserved.settle(Unserved(0, sid, "m2", model))  # a worker began it
    worker = Serving(redis, "w1", [model])
    await worker.say()
    await pools.refresh()
    assert not await unserved.settle(Unserved(0, sid, "m3", model))  # one serves it now
    await worker.stop()
    assert len(bus.errors) == 1
    assert not await redis.exists(keys.fence(sid, "m3"))


@pytest.mark.real
async def test_without_redis_a_message_is_tried_again_later(redis: Redis) -> None:
    model = f"solo-{uuid.uuid4().hex[:8]}"
    models = Catalogue.of(
        [ModelSpec(id=model, name=model)], model="x", max_tokens=9, prompt_tokens=99
    )
    gone = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    bus = Recorded()
    unserved = UnservedMessages(ReplyQueue(gone), bus, ModelPools(redis, models), timeout_s=30)  # type: ignore[arg-type]
    assert not await unserved.settle(Unserved(0, "s", "m1", model))
    assert len(unserved.deadlines) == 1  # due again RETRY_S later
    assert bus.errors == []
    await gone.aclose()
