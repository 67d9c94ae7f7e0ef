"""The Redis client every service uses: bounded, patient, and surviving a Redis restart.

- A blocking pool: under a burst (hundreds of sockets opening at once) a command waits up to
  `pool_wait_s` for one of `max_connections` connections instead of failing with "Too many
  connections" (found by the benchmark at 250 concurrent sessions). The wait is longer than
  `timeout_s` (a command's own time limit, which detects a Redis that is gone): a free
  connection is only late when the process is overloaded, and a refusal then costs a resend.
- A pooled connection that Redis closed (a restart, a failover) fails once; the command is
  retried on a fresh connection before an error is reported.
"""

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


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
