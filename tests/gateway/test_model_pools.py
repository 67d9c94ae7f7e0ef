"""Which models have a worker, as workers say it in Redis and gateways read it: a message for a
model nobody serves is refused while others are served, and waits when nobody is heard from."""

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from gateway.model_pools import ModelPools
from llm_worker.serving import Serving
from shared import keys
from shared.models import Catalogue, ModelSpec

pytestmark = pytest.mark.real


def catalogue() -> Catalogue:
    """Ids of their own, so that no other test's workers count."""
    tag = uuid.uuid4().hex[:8]
    specs = [ModelSpec(id=f"{name}-{tag}", name=name) for name in ("small", "large")]
    return Catalogue.of(specs, model="x", max_tokens=100, prompt_tokens=1000)


async def test_a_model_without_workers_is_refused_while_another_is_served(redis: Redis) -> None:
    models = catalogue()
    small, large = models.ids()
    pools = ModelPools(redis, models)
    await pools.refresh()
    assert pools.workers == {small: 0, large: 0}
    assert pools.refusal(large) is None  # nobody heard from: messages wait, as in an outage

    worker = Serving(redis, "w1", [small])
    await worker.say()
    await pools.refresh()
    assert pools.workers == {small: 1, large: 0}
    assert pools.refusal(None) is None  # the default, small, is served
    refused = pools.refusal(large)
    assert refused is not None
    assert refused.code == "unavailable"
    assert refused.detail == (
        f"no worker serves the model {large} now; switch to one that is served "
        f"(/model {small}): {small}"
    )

    await worker.stop()
    await pools.refresh()
    assert pools.workers == {small: 0, large: 0}
    assert pools.refusal(large) is None


async def test_a_worker_not_heard_from_ages_out(redis: Redis) -> None:
    models = catalogue()
    small, _ = models.ids()
    await redis.zadd(keys.serving(small), {"gone": time.time() - 300, "here": time.time()})
    pools = ModelPools(redis, models, absent_s=120)
    await pools.refresh()
    assert pools.workers[small] == 1
    assert await redis.zrange(keys.serving(small), 0, -1) == [b"here"]


async def test_a_model_nobody_serves_waits_once_the_pools_are_read(redis: Redis) -> None:
    models = catalogue()
    small, large = models.ids()
    pools = ModelPools(redis, models)
    assert pools.waiting(small) is None  # not read yet: nothing is known
    await pools.refresh()
    assert (pools.waiting(None), pools.waiting(large)) == (small, large)
    worker = Serving(redis, "w1", [small])
    await worker.say()
    await pools.refresh()
    assert pools.waiting(small) is None
    assert pools.waiting(large) == large  # refused (`refusal`) before it could wait
    await worker.stop()


async def test_an_unserved_model_is_read_again_at_most_once_a_recheck(redis: Redis) -> None:
    models = catalogue()
    small, _ = models.ids()
    pools = ModelPools(redis, models, recheck_s=0.2)
    await pools.recheck(small)  # nothing read yet: read now
    assert pools.workers[small] == 0
    worker = Serving(redis, "w1", [small])
    await worker.say()
    await pools.recheck(small)  # read a moment ago: not again yet
    assert pools.workers[small] == 0
    await asyncio.sleep(0.25)
    await pools.recheck(small)  # the worker that just started is seen without the 5 s wait
    assert pools.workers[small] == 1
    await redis.delete(keys.serving(small))
    await asyncio.sleep(0.25)
    await pools.recheck(small)  # served as read: no read
    assert pools.workers[small] == 1
    await worker.stop()
