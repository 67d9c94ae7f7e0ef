"""Waiting out a Redis outage before a reply, instead of using up its deliveries."""

from redis.exceptions import ConnectionError as RedisConnectionError

from llm_worker.patience import patiently


async def test_patiently_waits_out_a_redis_outage_instead_of_failing() -> None:
    calls = 0

    async def step() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RedisConnectionError("Connection refused")
        return "claimed"

    assert await patiently(step) == "claimed"
    assert calls == 3
