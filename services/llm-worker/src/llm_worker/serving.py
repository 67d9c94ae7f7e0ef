"""A worker says which models it serves: every `EVERY_S` it puts itself, with the time, in each
of its models' sorted set (`keys.serving`), and takes itself out when it stops. Gateways read
them to refuse a message for a model no worker serves while others do (`gateway.model_pools`)."""

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys

log = logging.getLogger(__name__)
EVERY_S = 10.0


class Serving:
    def __init__(self, redis: Redis, worker_id: str, models: list[str]) -> None:
        self._redis = redis
        self._worker = worker_id
        self._models = models
        self._task: asyncio.Task[None] | None = None

    async def say(self) -> None:
        """Once (best effort: a worker serves whether or not Redis hears it)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in self._models:
                    pipe.zadd(keys.serving(model), {self._worker: time.time()})
                    pipe.expire(keys.serving(model), 24 * 3600)
                await pipe.execute()
        except RedisError as exc:
            log.warning("serving not announced: %s", exc)

    def start(self) -> None:
        async def forever() -> None:
            while True:
                await self.say()
                await asyncio.sleep(EVERY_S)

        self._task = asyncio.create_task(forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in self._models:
                    pipe.zrem(keys.serving(model), self._worker)
                await pipe.execute()
        except RedisError as exc:
            log.warning("serving not withdrawn (it ages out): %s", exc)
