"""The Redis client every service uses: bounded, patient, and surviving a Redis restart.

- A blocking pool: under a burst (hundreds of sockets opening at once) a command waits up to
  `pool_wait_s` for one of `max_connections` connections instead of failing with "Too many
  connections" (found by the benchmark at 250 concurrent sessions). The wait is longer than
  `timeout_s` (a command's own time limit, which detects a Redis that is gone): a free
  connection is only late when the process is overloaded, and a refusal then costs a resend.
- A pooled connection that Redis closed (a restart, a failover) fails once; the command is
  retried on a fresh connection before an error is reported.

`script_and_reads` runs a script and reads beside it in one round trip.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, NoScriptError, TimeoutError

Command = tuple[str | int | float, ...]
"""A command as Redis takes it: its name, then its arguments."""


def text(reply: object) -> str:
    """A Redis reply as text: clients made here return bytes."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def redis_client(
    url: str, *, timeout_s: float, max_connections: int = 200, pool_wait_s: float = 10.0
) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


async def read_all(redis: Redis, reads: Sequence[Command]) -> list[Any]:
    """The answers to `reads`, asked in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for command in reads:
            pipe.execute_command(*command)
        return list(await pipe.execute())


async def script_and_reads(
    redis: Redis, script: AsyncScript, keys: list[str], args: list[Any], reads: Sequence[Command]
) -> tuple[Any, list[Any]]:
    """`script`'s result and the answers to `reads`, asked in one round trip: a pipeline, not a
    transaction (redis-py's pipelined scripts would ask whether Redis has them in a round trip
    of their own each time). A script Redis lost (a restart) is loaded and run on its own;
    `reads` must not write, as they may be sent twice when a connection fails."""
    if not reads:
        return await script(keys=keys, args=args), []
    async with redis.pipeline(transaction=False) as pipe:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        for command in reads:
            pipe.execute_command(*command)
        first, *answers = await pipe.execute(raise_on_error=False)
    if isinstance(first, NoScriptError):
        first = await script(keys=keys, args=args)
    for answer in (first, *answers):
        if isinstance(answer, Exception):
            raise answer
    return first, answers


@dataclass(frozen=True, slots=True)
class ListAppend:
    """Items to add at the end of a list kept to its last `max_len` items for `ttl_s`, and a
    key that goes when they are added (a mark that the list was never written)."""

    key: str
    items: Sequence[str]
    max_len: int
    ttl_s: int
    clears: str

    @property
    def keys(self) -> list[str]:
        return [self.key, self.clears]

    @property
    def args(self) -> list[Any]:
        """`keys` and `args` are what `reply_scripts.FINISH` takes to append in its script."""
        return [self.max_len, self.ttl_s, *self.items]

    def queue_on(self, pipe: Pipeline) -> None:
        """The append as commands of a pipeline (a transaction, for it to be whole)."""
        pipe.rpush(self.key, *self.items)
        pipe.ltrim(self.key, -self.max_len, -1)
        pipe.expire(self.key, self.ttl_s)
        pipe.delete(self.clears)
