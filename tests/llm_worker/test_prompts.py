"""A session's own system prompt: Redis, then persistence (real Redis)."""

import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from llm_worker.prompts import SystemPrompts
from shared import keys

pytestmark = pytest.mark.real


class Persistence:
    def __init__(self, prompt: str | None) -> None:
        self.prompt = prompt
        self.asked: list[str] = []

    async def fetch(self, session_id: str) -> str | None:
        self.asked.append(session_id)
        return self.prompt


async def test_the_prompt_the_gateway_stored_is_read_for_every_reply(redis: Redis) -> None:
    sid, persistence = uuid.uuid4().hex, Persistence("never asked")
    await redis.set(keys.session_prompt(sid), "Answer in French.")
    prompts = SystemPrompts(redis, persistence.fetch, default="Be helpful.")
    assert await prompts.of(sid) == "Answer in French."
    await redis.set(keys.session_prompt(sid), "Answer in German.")  # the owner changed it
    assert await prompts.of(sid) == "Answer in German."
    assert persistence.asked == []


async def test_a_session_without_its_own_prompt_gets_the_default(redis: Redis) -> None:
    sid = uuid.uuid4().hex
    await redis.set(keys.session_prompt(sid), "")
    prompts = SystemPrompts(redis, Persistence(None).fetch, default="Be helpful.")
    assert await prompts.of(sid) == "Be helpful."


async def test_a_miss_asks_persistence_once_and_caches_the_answer(redis: Redis) -> None:
    sid, persistence = uuid.uuid4().hex, Persistence("Be terse.")
    assert await SystemPrompts(redis, persistence.fetch, default="x").of(sid) == "Be terse."
    assert await redis.get(keys.session_prompt(sid)) == b"Be terse."
    assert 0 < await redis.ttl(keys.session_prompt(sid)) <= keys.SESSION_PROMPT_TTL_S
    assert await SystemPrompts(redis, persistence.fetch, default="x").of(sid) == "Be terse."
    assert persistence.asked == [sid]


async def test_without_redis_persistence_answers(redis_url: str) -> None:
    broken = Redis.from_url("redis://127.0.0.1:1")  # nothing listens there
    persistence = Persistence("From the database.")
    try:
        assert await SystemPrompts(broken, persistence.fetch, default="x").of("s") == (
            "From the database."
        )
    finally:
        await broken.aclose()
    assert persistence.asked == ["s"]


async def test_when_nobody_can_say_the_default_serves_this_reply_only(redis: Redis) -> None:
    sid, calls = uuid.uuid4().hex, 0

    async def flaky(session_id: str) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RedisConnectionError("persistence unavailable")
        return "Be terse."

    prompts = SystemPrompts(redis, flaky, default="Be helpful.")
    assert await prompts.of(sid) == "Be helpful."
    assert await prompts.of(sid) == "Be terse."  # not remembered: asked again
